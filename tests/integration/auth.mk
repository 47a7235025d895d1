SUITES	+= 'auth=python3 tests/integration/test_auth.py'
