# tests/integration: fault matrix (kills, hangs, floods, huge lines,
# escaping tools, master SIGKILL) and load (200 sessions x 20 turns).
SUITES	+= 'faults=python3 tests/integration/test_faults.py'
SUITES	+= 'load=python3 tests/integration/test_load.py'
