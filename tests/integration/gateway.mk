# The model-API gateway against a local TLS upstream (test CA)
SUITES	+= 'gateway=python3 tests/integration/test_gateway.py'
