# The integration suite again, with hotplexd and its workers under valgrind.
SUITES	+= 'valgrind=HP_VALGRIND=1 python3 tests/integration/test_core.py'
# The shared store (PostgreSQL), a move between two hosts and a store
# restart under valgrind: store-pg.c, notify.c, move.c, lease.c.
SUITES	+= 'valgrind-pg=HP_VALGRIND=1 HP_PG_CASES=valgrind python3 tests/integration/test_pg.py'
