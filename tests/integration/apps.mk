# tests/integration: what applications drive (issue 16): queued turns.
SUITES	+= 'apps=python3 tests/integration/test_apps.py'
