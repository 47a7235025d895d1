# tests/integration: hotplexd + hotplex-worker + tests/fake-claude
SUITES	+= 'integration=python3 tests/integration/test_core.py'
