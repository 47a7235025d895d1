SUITES	+= 'ops=python3 tests/integration/test_ops.py'
