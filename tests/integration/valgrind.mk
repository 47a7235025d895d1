# The integration suite again, with hotplexd and its workers under valgrind.
SUITES	+= 'valgrind=HP_VALGRIND=1 python3 tests/integration/test_core.py'
