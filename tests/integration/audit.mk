# tests/integration: the tool audit (audit.c, the audit op, hotplexctl audit)
SUITES	+= 'audit=python3 tests/integration/test_audit.py'
