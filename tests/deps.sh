#!/bin/sh
# Installs what the build and the tests need, if missing:
#  - Debian -dev packages (apt-get when root, else prints the command);
#  - the pinned Claude Code CLI from the npm registry under $B/cli.
# Idempotent and quiet when everything is present.
set -e
B=${1:-build}
CLI_VERSION=$(cat tests/e2e/CLI_VERSION)
CLI_VERSION_OLDEST=$(cat tests/e2e/CLI_VERSION_OLDEST)
PKGS="libevent-dev libcjson-dev libonig-dev libseccomp-dev libcmocka-dev
    libsqlite3-dev libpq-dev postgresql libssl-dev openssl pkg-config mandoc clang valgrind
    debhelper devscripts lintian"
# Programs that may come from elsewhere than Debian's packages (a newer
# Node.js, say): installed from Debian only when no such command exists.
for c in python3:python3 node:nodejs npm:npm; do
	command -v "${c%%:*}" >/dev/null 2>&1 || PKGS="$PKGS ${c#*:}"
done

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "deps: installing$missing"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing \
		    >/dev/null
	else
		echo "deps: missing packages:$missing"
		echo "deps: run: sudo apt-get install$missing"
		exit 1
	fi
fi

# The pinned CLI under $B/cli, and the oldest one supported under
# $B/cli-oldest (one e2e run keeps it working).  npm may skip the package's
# postinstall, which links the native binary into bin/ (PROTOCOL.md gotcha
# 19): we run the native binary of the platform package directly instead.
cli_install() {	# version dir
	cli="$2/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
	have=$(cat "$2/.version" 2>/dev/null || true)
	if [ ! -x "$cli" ] || [ "$have" != "$1" ]; then
		echo "deps: installing @anthropic-ai/claude-code@$1 under $2"
		rm -rf "$2/node_modules"
		mkdir -p "$2"
		(cd "$2" && npm install --no-audit --no-fund --loglevel=error \
		    --no-save "@anthropic-ai/claude-code@$1" >/dev/null)
		[ -x "$cli" ] || { echo "deps: $cli not found after install"; exit 1; }
		echo "$1" >"$2/.version"
	fi
	ln -sf "node_modules/@anthropic-ai/claude-code-linux-x64/claude" \
	    "$2/claude"
}
cli_install "$CLI_VERSION" "$B/cli"
cli_install "$CLI_VERSION_OLDEST" "$B/cli-oldest"

# hotplexd as root runs root's sessions as worker_user (default hotplex),
# never as root, and its master as daemon_user (default hotplexd): the
# system users must exist (no home, no login).
for u in hotplex hotplexd; do
	if [ "$(id -u)" -eq 0 ] && ! id "$u" >/dev/null 2>&1; then
		echo "deps: creating the system user $u"
		useradd --system --no-create-home --home-dir /nonexistent \
		    --shell /usr/sbin/nologin "$u"
	fi
done
