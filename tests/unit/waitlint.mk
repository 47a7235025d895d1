# tests/unit: no test bounds a wait by a bare number of seconds (a bound
# that does not follow the load flakes beside another make check).
SUITES		+= 'waitlint=python3 tests/unit/waitlint.py'
