SUITES	+= 'firewall-integration=python3 tests/integration/test_firewall.py'
