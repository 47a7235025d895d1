#!/bin/sh
# make demo: hotplexd on a private socket in a temp dir, a two-turn
# conversation that uses a tool through `hotplexctl exec`, the session's
# stats, then everything stopped.  Talks to the real model when
# ANTHROPIC_API_KEY is set, else to the offline mock Messages API of the
# tests, and says so.  (A CLI logged in by itself keeps its credentials in
# the user's config dir, which a session, with a config dir of its own,
# does not see.)  Run as root, the session runs as worker_user hotplex
# (make demo creates that user): the workdir is given to it.
set -eu
: "${B:=build}"
top=$(pwd)
tmp=$(mktemp -d /tmp/hotplex-demo.XXXXXX)
daemon= mock=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	[ -n "$mock" ] && kill "$mock" 2>/dev/null && wait "$mock" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

cli="$top/$B/cli/claude"
mkdir -p "$tmp/work/demo" "$tmp/home" "$tmp/tmp"
printf 'alpha\n' >"$tmp/work/demo/alpha.txt"
printf 'int main(void) { return 0; }\n' >"$tmp/work/demo/beta.c"
chmod 711 "$tmp"	# the session's user passes through to its workdir
if [ "$(id -u)" -eq 0 ]; then
	chown -R hotplex: "$tmp/work/demo"
fi

if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
	echo "demo: talking to the real model (ANTHROPIC_API_KEY)"
	env_names="PATH HOME LANG TMPDIR ANTHROPIC_API_KEY ANTHROPIC_BASE_URL CLAUDE_CONFIG_DIR CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
	p1="List the files in the current directory with the Bash tool, then say in one sentence what they are."
	p2="Thanks. How many files did you find? Answer in a few words."
else
	echo "demo: no ANTHROPIC_API_KEY: talking to the OFFLINE MOCK model API of the tests"
	python3 tests/e2e/mock_api.py --port 0 --port-file "$tmp/port" \
	    --log "$tmp/mock.log" </dev/null &
	mock=$!
	while [ ! -s "$tmp/port" ]; do
		kill -0 "$mock" 2>/dev/null || { echo "demo: mock died"; exit 1; }
		sleep 0.05
	done
	export ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$tmp/port")"
	export ANTHROPIC_API_KEY=dummy CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
	export HOME="$tmp/home" CLAUDE_CONFIG_DIR="$tmp/home/.claude"
	env_names="PATH HOME LANG TMPDIR ANTHROPIC_API_KEY ANTHROPIC_BASE_URL CLAUDE_CONFIG_DIR CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
	p1="[[think]] [[bash:ls]] List the files here."
	p2="Thanks. How many files were there?"
fi
export TMPDIR="$tmp/tmp"

cat >"$tmp/hotplexd.conf" <<CONF
socket = $tmp/hotplexd.sock
workdir_root = $tmp/work
state_dir = $tmp/state
cli_path = $cli
cli_env = $env_names
spare_min = 1
CONF
"$top/$B/hotplexd" -f -c "$tmp/hotplexd.conf" 2>"$tmp/hotplexd.log" &
daemon=$!
export HOTPLEX_SOCKET="$tmp/hotplexd.sock"
ctl="$top/$B/hotplexctl"
while ! "$ctl" sessions >/dev/null 2>&1; do
	kill -0 "$daemon" 2>/dev/null || { cat "$tmp/hotplexd.log"; exit 1; }
	sleep 0.05
done

echo
echo "\$ hotplexctl exec -s demo -w $tmp/work/demo \"$p1\""
"$ctl" exec -s demo -w "$tmp/work/demo" "$p1"
echo
echo "\$ hotplexctl exec -s demo \"$p2\"   # same CLI process, warm"
"$ctl" exec -s demo "$p2"
echo
echo "\$ hotplexctl sessions"
"$ctl" sessions
echo
echo "\$ hotplexctl stats demo"
"$ctl" stats demo
"$ctl" stop demo >/dev/null
kill "$daemon"
wait "$daemon" && daemon=
echo
echo "demo: hotplexd stopped; nothing left running"
