# tests/integration: idle sessions frozen and thawed (freeze_after), and a
# wave of sessions ending together beside a busy one.
SUITES	+= 'scale=python3 tests/integration/test_scale.py'
