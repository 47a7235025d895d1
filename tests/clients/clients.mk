# tests/clients: the Python and Node client packages (client/python,
# client/node) against hotplexd with tests/fake-claude.
SUITES	+= 'python-client=python3 tests/clients/test_python.py'
SUITES	+= 'node-client=cd client/node && node --test --test-reporter=tap'
