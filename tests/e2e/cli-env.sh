# Sourced by end-to-end tests: the offline environment of the real Claude
# CLI (PROTOCOL.md section 7), talking only to tests/e2e/mock_api.py.
#
#   MOCK_PORT=N (or MOCK_UNIX=/path.sock)   where the mock listens
#   CLI_TMP=dir                             throwaway dir (HOME, config)
#   B=build                                 build tree holding cli/claude
#   . tests/e2e/cli-env.sh
#
# Exports CLAUDE_CLI (the binary), CLAUDE_CLI_ARGS (the flags the Agent SDK
# uses; add --permission-prompt-tool stdio etc. as needed) and the
# environment. Override CLAUDE_CODE_MAX_RETRIES / API_TIMEOUT_MS before
# sourcing to change them.

: "${B:=build}"
if [ -z "${CLI_TMP:-}" ]; then
	echo "cli-env.sh: CLI_TMP is not set" >&2
	return 1 2>/dev/null || exit 1
fi

if [ -n "${MOCK_UNIX:-}" ]; then
	ANTHROPIC_UNIX_SOCKET=$MOCK_UNIX
	ANTHROPIC_BASE_URL=http://localhost
	export ANTHROPIC_UNIX_SOCKET
elif [ -n "${MOCK_PORT:-}" ]; then
	ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT
	unset ANTHROPIC_UNIX_SOCKET
else
	echo "cli-env.sh: set MOCK_PORT or MOCK_UNIX" >&2
	return 1 2>/dev/null || exit 1
fi
export ANTHROPIC_BASE_URL
export ANTHROPIC_API_KEY=dummy
unset ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_OAUTH_TOKEN CLAUDE_CODE_USE_BEDROCK \
    CLAUDE_CODE_USE_VERTEX ANTHROPIC_MODEL
# No telemetry, autoupdate or error reporting: loopback traffic only.
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
mkdir -p "$CLI_TMP/home" "$CLI_TMP/config" "$CLI_TMP/tmp"
export HOME="$CLI_TMP/home"
export CLAUDE_CONFIG_DIR="$CLI_TMP/config"
# The CLI keeps Bash tool state in $TMPDIR (claude-<uid>/<cwd-key>/tasks,
# claude-<hex>-cwd): without this it litters /tmp.
export TMPDIR="$CLI_TMP/tmp"
# A failing mock must fail the turn fast (defaults: 10 retries, 600 s).
export CLAUDE_CODE_MAX_RETRIES="${CLAUDE_CODE_MAX_RETRIES:-1}"
export API_TIMEOUT_MS="${API_TIMEOUT_MS:-5000}"

CLAUDE_CLI="$(cd "$B/cli" 2>/dev/null && pwd)/claude"
CLAUDE_CLI_ARGS="--input-format stream-json --output-format stream-json --verbose --include-partial-messages"
export CLAUDE_CLI CLAUDE_CLI_ARGS
