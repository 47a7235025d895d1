# tests/e2e: the real Claude CLI (pinned) against the mock Messages API
SUITES	+= 'e2e=python3 tests/e2e/test_e2e.py'
SUITES	+= 'e2e-egress=python3 tests/e2e/test_egress.py'
# Approvals by the app and configure, with the real CLI (issue 16).
SUITES	+= 'e2e-apps=python3 tests/e2e/test_apps_e2e.py'
# The sandbox escape suite: the real CLI's Bash tool, default config,
# root and two users (issue 9).
SUITES	+= 'escape=python3 tests/e2e/test_escape.py'
# The oldest CLI supported (tests/e2e/CLI_VERSION_OLDEST), in $(B)/cli-oldest.
SUITES	+= 'e2e-oldest=HP_CLI=$$B/cli-oldest/claude HP_KILL_ROUNDS=2 python3 tests/e2e/test_e2e.py'
# The CLI's transcript kept in the store and restored into a wiped
# config dir (issue 14).
SUITES	+= 'e2e-transcript=python3 tests/e2e/test_transcript.py'
# Two hosts sharing a PostgreSQL store: a conversation moves A -> B -> A,
# then B takes it over from a killed A (issue 14).
SUITES	+= 'e2e-hosts=python3 tests/e2e/test_hosts.py'
