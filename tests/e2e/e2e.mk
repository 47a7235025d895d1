# tests/e2e: the real Claude CLI (pinned) against the mock Messages API
SUITES	+= 'e2e=python3 tests/e2e/test_e2e.py'
SUITES	+= 'e2e-egress=python3 tests/e2e/test_egress.py'
