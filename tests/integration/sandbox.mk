# tests/integration: the CLI sandbox configured from hotplexd.conf, applied
# by hotplex-worker (fake-claude tools and the real CLI against the mock).
SUITES	+= 'sandbox-integration=python3 tests/integration/test_sandbox.py'
