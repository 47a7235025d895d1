#!/bin/sh
# TAP suite of the CLI sandbox (policy/sandbox/: sandbox.c, landlock.c,
# seccomp.c).
#
#  1. try-escape under sandbox-run as an unprivileged test user (root only:
#     the user is created with useradd if missing), the configuration
#     hotplexd uses with worker_user;
#  2. try-escape again as the caller (root: seccomp and Landlock are then
#     the only barriers, capabilities do not help);
#  3. sandbox-run's error paths (bad profiles, missing paths), and a
#     control that Landlock is what denies;
#  4. the worker's own confinement (confine-test);
#  5. the real CLI inside the sandbox: --version, and one turn with a Bash
#     tool call against tests/e2e/mock_api.py when it exists.
#
# Every process started here is gone at the end (sandbox-run reaps its
# tree; the mock is killed), and the temp dir is removed.
set -u
: "${B:=build}"
BIN=$B/tests/sandbox
PROFILE=$(pwd)/policy/sandbox/seccomp.profile
TEST_USER=hotplex-sbx
NPROC=64		# RLIMIT_NPROC of the user pass (fork bomb bound)
NOFILE=256
CLI_NPROC=512		# the CLI and its tools need more
CLI_NOFILE=4096
# A loaded machine (another make check beside us) gets more time, as in
# tests/integration/hplib.py: times the load per CPU (tests/time-scale.sh).
SCALE=$(sh tests/time-scale.sh)
CLI_TIMEOUT=$((120 * SCALE))	# seconds for a CLI run, a hang is a failure
MOCK_WAIT=$((100 * SCALE))	# tenths of a second for the mock to listen
API_TIMEOUT_MS=$((5000 * SCALE))	# the CLI's wait for the local mock

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # check "what" command...
	what=$1
	shift
	if "$@"; then ok "$what"; else notok "$what"; fi
}

T=$(mktemp -d) || exit 1
MOCK_PID=
cleanup() {
	if [ -n "$MOCK_PID" ]; then
		kill "$MOCK_PID" 2>/dev/null
		wait "$MOCK_PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for b in sandbox-run try-escape confine-test; do
	if [ ! -x "$BIN/$b" ]; then
		echo "not ok 1 - $BIN/$b is not built (make tests)"
		exit 1
	fi
done

# The tree: two workdirs, a private tmp, a config dir, a fake home with a
# key, a directory outside everything; all readable by anyone, so that
# only the sandbox can deny.
chmod 755 "$T"
mkdir -p "$T/work1" "$T/work2" "$T/tmp" "$T/config" "$T/home/.ssh" \
    "$T/outside" "$T/bin"
echo hello >"$T/work1/hello"
echo secret >"$T/work2/secret"
echo "-----BEGIN OPENSSH PRIVATE KEY----- fake" >"$T/home/.ssh/id_ed25519"
echo file >"$T/outside/file"
chmod 666 "$T/work2/secret" "$T/home/.ssh/id_ed25519" "$T/outside/file"
chmod 777 "$T/work2" "$T/outside"
cp "$BIN/try-escape" "$T/bin/try-escape"

export TE_OTHER="$T/work2" TE_SSHKEY="$T/home/.ssh/id_ed25519" \
    TE_OUTSIDE="$T/outside"
unset TE_SUID TE_NPROC

# Runs try-escape in the sandbox; renumbers its TAP lines into ours and
# tags them.  $1: tag, then sandbox-run options.
escape_pass() {
	tag=$1
	shift
	# LeakSanitizer needs ptrace, which the profile denies: sanitizer
	# builds of try-escape run without it inside the sandbox.
	"$BIN/sandbox-run" -D -w "$T/work1" -t "$T/tmp" -c "$T/config" \
	    -r "$T/bin" -L required -s "$PROFILE" \
	    -e ASAN_OPTIONS=detect_leaks=0 "$@" -- \
	    "$T/bin/try-escape" >"$T/escape.out" 2>"$T/escape.err"
	rc=$?
	grep '^# ' "$T/escape.out"
	while IFS= read -r line; do
		case $line in
		"ok "*" # SKIP "*)
			rest=${line#ok * - }
			skip "[$tag] ${rest% \# SKIP *}" "${rest#* \# SKIP }" ;;
		"ok "*)		ok "[$tag] ${line#ok * - }" ;;
		"not ok "*)	notok "[$tag] ${line#not ok * - }" ;;
		esac
	done <"$T/escape.out"
	# 1 means probes failed, reported above; anything else is a crash.
	if [ "$rc" -ne 0 ] && { [ "$rc" -ne 1 ] ||
	    ! grep -q '^not ok' "$T/escape.out"; }; then
		notok "[$tag] try-escape exited with status $rc"
		sed 's/^/# /' "$T/escape.err"
	fi
}

if [ "$(id -u)" -eq 0 ]; then
	if ! id "$TEST_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir /nonexistent \
		    --shell /usr/sbin/nologin "$TEST_USER" >/dev/null 2>&1
	fi
	if id "$TEST_USER" >/dev/null 2>&1; then
		chown -R "$TEST_USER:" "$T/work1" "$T/tmp" "$T/config"
		# A setuid-root program the user may run.
		cp "$BIN/try-escape" "$T/bin/suid-try-escape"
		chmod 4755 "$T/bin/suid-try-escape"
		TE_SUID="$T/bin/suid-try-escape" TE_NPROC=$NPROC \
		    escape_pass user -u "$TEST_USER" -n "$NOFILE" -p "$NPROC"
		# Leaves of the user pass that belong to root now.
		chown -R "$(id -u):$(id -g)" "$T/work1" "$T/tmp" "$T/config"
		rm -f "$T/work1"/*link* "$T/work1/null-dev"
	else
		skip "[user] try-escape as an unprivileged user" \
		    "useradd $TEST_USER failed"
	fi
else
	skip "[user] try-escape as an unprivileged user" \
	    "not root: cannot create a user or drop to one"
fi
[ "$(id -u)" -ne 0 ] && export TE_BND_KEPT=1
escape_pass "$(id -un)" -n "$NOFILE"

# ---- sandbox-run error paths and controls ----
bad="$T/bad.profile"
printf 'default allow\nmount errno:EWHAT\n' >"$bad"
"$BIN/sandbox-run" -w "$T/work1" -s "$bad" -- true 2>"$T/err"
rc=$?
check "unknown errno in a profile: exit 125" test "$rc" -eq 125
check "unknown errno in a profile: message names the line" \
    grep -q "bad.profile:2:" "$T/err"
printf 'mount errno:EPERM\n' >"$bad"
"$BIN/sandbox-run" -w "$T/work1" -s "$bad" -- true 2>"$T/err"
check "profile without default: refused" test $? -eq 125
printf 'default allow\nnot_a_syscall errno:EPERM\n' >"$bad"
"$BIN/sandbox-run" -w "$T/work1" -s "$bad" -- true 2>"$T/err"
check "profile with an unknown syscall: refused" \
    grep -q "unknown syscall not_a_syscall" "$T/err"
printf 'default allow\nsocket errno:EPERM arg1&SOCK_TYPE_MASK=3\n' >"$bad"
"$BIN/sandbox-run" -w "$T/work1" -s "$bad" -- true 2>"$T/err"
check "profile with a malformed condition: refused" \
    grep -q "bad condition" "$T/err"
"$BIN/sandbox-run" -w "$T/nonexistent" -- true 2>"$T/err"
check "missing workdir: exit 125" test $? -eq 125
"$BIN/sandbox-run" -w "$T/work1" -W "$T/nonexistent" -- true 2>"$T/err"
check "missing rw path: exit 125" test $? -eq 125
"$BIN/sandbox-run" -w "$T/work1" -L off -- cat "$T/work2/secret" \
    >"$T/out" 2>&1
check "control: with Landlock off the other workdir is readable" \
    grep -q secret "$T/out"
"$BIN/sandbox-run" -w "$T/work1" -L required -- cat "$T/work2/secret" \
    >"$T/out" 2>&1
check "with Landlock on the same read is denied" \
    grep -q "Permission denied" "$T/out"
"$BIN/sandbox-run" -w "$T/work1" -s "$PROFILE" -L off -- \
    sh -c 'exit 3' 2>"$T/err"
check "the program's exit status comes through" test $? -eq 3

# ---- the worker's own confinement: compiled by itself, and shared ----
# (-s: compiled once as the spawner does, two filters stacked)
for mode in "" -s; do
	"$BIN/confine-test" $mode >"$T/confine.out" 2>"$T/confine.err"
	rc=$?
	while IFS= read -r line; do
		case $line in
		"ok "*)		ok "[worker$mode] ${line#ok * - }" ;;
		"not ok "*)	notok "[worker$mode] ${line#not ok * - }" ;;
		esac
	done <"$T/confine.out"
	check "[worker$mode] confine-test exited 0" test "$rc" -eq 0
done

# ---- the real CLI inside the sandbox ----
CLI=$B/cli/claude
if [ -x "$CLI" ]; then
	CLI=$(readlink -f "$CLI")
	CLIDIR=$(dirname "$CLI")
	mkdir -p "$T/cli/work" "$T/cli/tmp" "$T/cli/config"
	echo "alpha" >"$T/cli/work/alpha.txt"
	as_user=
	if [ "$(id -u)" -eq 0 ] && id "$TEST_USER" >/dev/null 2>&1; then
		chown -R "$TEST_USER:" "$T/cli"
		as_user="-u $TEST_USER"
	fi
	# $as_user is split on purpose.
	cli_run() {
		timeout "$CLI_TIMEOUT" "$BIN/sandbox-run" $as_user \
		    -w "$T/cli/work" -t "$T/cli/tmp" -c "$T/cli/config" \
		    -r "$CLIDIR" -L required -s "$PROFILE" \
		    -n "$CLI_NOFILE" -p "$CLI_NPROC" \
		    -e HOME="$T/cli/config" -e CLAUDE_CONFIG_DIR="$T/cli/config" \
		    "$@"
	}
	cli_run -- "$CLI" --version >"$T/out" 2>"$T/err"
	rc=$?
	check "CLI --version runs in the sandbox (${as_user:-as caller})" \
	    test "$rc" -eq 0
	check "CLI --version prints the pinned version" \
	    grep -q "$(cat tests/e2e/CLI_VERSION)" "$T/out"

	if [ -f tests/e2e/mock_api.py ] && command -v python3 >/dev/null; then
		python3 tests/e2e/mock_api.py --port 0 \
		    --port-file "$T/port" --log "$T/mock.log" \
		    >"$T/mock.out" 2>&1 &
		MOCK_PID=$!
		i=0
		while [ ! -s "$T/port" ] && [ "$i" -lt "$MOCK_WAIT" ] &&
		    kill -0 "$MOCK_PID" 2>/dev/null; do
			sleep 0.1
			i=$((i + 1))
		done
		if [ -s "$T/port" ]; then
			port=$(cat "$T/port")
			printf '%s\n' '{"type":"user","message":{"role":"user","content":"[[bash:ls]] list the files"}}' |
			    cli_run -e ANTHROPIC_BASE_URL="http://127.0.0.1:$port" \
			    -e ANTHROPIC_API_KEY=dummy \
			    -e CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
			    -e CLAUDE_CODE_MAX_RETRIES=1 \
			    -e API_TIMEOUT_MS="$API_TIMEOUT_MS" \
			    -- "$CLI" -p --input-format stream-json \
			    --output-format stream-json --verbose \
			    --settings '{"sandbox":{"enabled":false}}' \
			    >"$T/turn.out" 2>"$T/turn.err"
			rc=$?
			check "CLI turn in the sandbox: exit 0" test "$rc" -eq 0
			# Parsed, not grepped: CLI versions order the fields
			# of their result line differently.
			check "CLI turn: result is a success" python3 -c '
import json, sys
for l in open(sys.argv[1]):
    try:
        d = json.loads(l)
    except ValueError:
        continue
    if d.get("type") == "result":
        sys.exit(not (d.get("subtype") == "success" and
                      d.get("is_error") is False))
sys.exit(1)' "$T/turn.out"
			check "CLI turn: Bash ran ls in the sandboxed workdir" \
			    grep -q '"content":"alpha.txt"' "$T/turn.out"
			check "CLI turn: the session was written to the config dir" \
			    test -n "$(find "$T/cli/config/projects" -name '*.jsonl' 2>/dev/null)"
			if [ "$rc" -ne 0 ]; then
				sed 's/^/# /' "$T/turn.err" | tail -n 20
			fi
		else
			notok "mock API did not start"
			sed 's/^/# /' "$T/mock.out"
		fi
		kill "$MOCK_PID" 2>/dev/null
		wait "$MOCK_PID" 2>/dev/null
		MOCK_PID=
	else
		skip "CLI turn in the sandbox" "tests/e2e/mock_api.py missing"
	fi
else
	skip "CLI in the sandbox" "$CLI missing (make deps)"
fi

echo "1..$n"
[ "$failed" -eq 0 ]
