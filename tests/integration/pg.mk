# tests/integration: the shared store on PostgreSQL (store-pg.c, lease.c)
SUITES	+= 'pg=python3 tests/integration/test_pg.py'
