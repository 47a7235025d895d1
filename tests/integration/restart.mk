# tests/integration: the session table survives restarts (state.c)
SUITES	+= 'restart=python3 tests/integration/test_restart.py'
