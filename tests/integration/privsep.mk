# tests/integration: privilege separation, the master dropped to
# daemon_user and the spawner that keeps root (spawner.c, privsep.c)
SUITES	+= 'privsep=python3 tests/integration/test_privsep.py'
