#!/bin/sh
# The Debian packages end to end, as root on this machine: make deb, then
# install hotplex and libhotplex-dev, check the user, group, files and
# unit, start the daemon through the init script, run a turn as an
# unprivileged member of the socket group in a directory of their own home
# (real pinned CLI, mock model API), stop it (nothing left running), purge
# (nothing left on disk; the system user and group stay, as Debian's do),
# and lintian finds no error.  TAP on stdout.
# Skips where it cannot run: not root, no debhelper or dpkg-buildpackage,
# no pinned CLI, or a hotplex package already installed (never touched).
: "${B:=build}"
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; failed=$((failed + 1)); }
check() { d=$1; shift; if "$@"; then ok "$d"; else nok "$d"; fi; }
skip_all() { echo "1..0 # SKIP $1"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip_all "not root"
[ -z "${HP_SAN:-}" ] || skip_all "sanitizer build (packages are built plain; make check runs this)"
for c in dpkg-buildpackage dh lintian; do
	command -v $c >/dev/null 2>&1 ||
	    skip_all "$c missing (tests/deps.sh installs debhelper devscripts lintian)"
done
cli=$(cd "$B/cli" 2>/dev/null && pwd)/claude
[ -x "$cli" ] || skip_all "no pinned CLI in $B/cli (make deps)"

# One packaging test at a time on a machine: it installs system-wide.
exec 9>/run/lock/hotplex-pkg-test.lock
flock 9
if dpkg-query -W -f='${Status}' hotplex 2>/dev/null | grep -q installed; then
	skip_all "a hotplex package is installed here already"
fi

tmp=$(mktemp -d /tmp/hp-deb.XXXXXX) || exit 1
chmod 0755 "$tmp"
user=hpdeb$$
mock_pid=
cleanup()
{
	[ -x /etc/init.d/hotplexd ] && /etc/init.d/hotplexd stop >/dev/null 2>&1
	dpkg --purge hotplex libhotplex-dev >/dev/null 2>&1
	[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null
	getent passwd "$user" >/dev/null && userdel -r "$user" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Lintian is slow to start: it runs while the rest goes on.
if DEB_BUILD_OPTIONS="noautodbgsym nocheck" nice make -s deb B="$B" \
    >"$tmp/build.log" 2>&1; then
	ok "make deb"
else
	nok "make deb"
	tail -30 "$tmp/build.log" | sed 's/^/# /'
	echo "1..$n"
	exit 1
fi
debs=$(ls "$B"/hotplex_*.deb "$B"/libhotplex-dev_*.deb 2>/dev/null)
check "make deb wrote hotplex and libhotplex-dev in $B/" \
    [ "$(echo "$debs" | wc -w)" -eq 2 ]
nice lintian "$B"/hotplex_*.changes >"$tmp/lintian.log" 2>&1 &
lintian_pid=$!

# shellcheck disable=SC2086
if dpkg -i $debs >"$tmp/dpkg.log" 2>&1; then
	ok "dpkg -i hotplex libhotplex-dev"
else
	nok "dpkg -i hotplex libhotplex-dev"
	sed 's/^/# /' "$tmp/dpkg.log" | tail -20
fi
check "system user and group hotplex exist" \
    sh -c 'getent passwd hotplex >/dev/null && getent group hotplex >/dev/null'
missing=
for f in /usr/sbin/hotplexd /usr/bin/hotplexctl \
    /usr/libexec/hotplex/hotplex-worker /etc/hotplex/hotplexd.conf \
    /etc/default/hotplexd /etc/init.d/hotplexd \
    /lib/systemd/system/hotplexd.service /var/lib/hotplex \
    /usr/include/hotplex.h /usr/share/man/man8/hotplexd.8.gz; do
	[ -e "$f" ] || missing="$missing $f"
done
check "installed files${missing:+ (missing:$missing)}" [ -z "$missing" ]
check "the init script is enabled (rc2.d) and the unit too" \
    sh -c 'ls /etc/rc2.d/S*hotplexd >/dev/null 2>&1 &&
	[ -e /etc/systemd/system/multi-user.target.wants/hotplexd.service ]'
unit=/lib/systemd/system/hotplexd.service
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify "$unit" 2>&1); rc=$?
	check "systemd-analyze verify: the unit is valid (rc $rc)" \
	    [ "$rc" -eq 0 ]
	[ "$rc" -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
	score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null |
	    sed -n 's/.*exposure level for hotplexd.service: \([0-9.]*\).*/\1/p')
	check "systemd-analyze security: ${score:-no} exposure, 4.0 at most" \
	    awk -v s="${score:-99}" 'BEGIN { exit !(s <= 4.0) }'
fi
check "the configuration is a conffile" \
    grep -qx /etc/hotplex/hotplexd.conf /var/lib/dpkg/info/hotplex.conffiles
check "pkg-config finds hotplex" pkg-config --exists hotplex

# Without the CLI the init script refuses, loudly.
out=$(/etc/init.d/hotplexd start 2>&1); rc=$?
check "init script start without a CLI: 6, saying why (rc $rc)" \
    sh -c '[ "$1" -eq 6 ] && printf "%s" "$2" | grep -q "cli_path"' sh \
    "$rc" "$out"

# Bounds that stop a stuck step grow with the load (tests/time-scale.sh).
SCALE=$(sh tests/time-scale.sh)

# The model API: tests/e2e/mock_api.py on a loopback port.
python3 tests/e2e/mock_api.py --port 0 --port-file "$tmp/port" \
    --log "$tmp/mock.log" </dev/null >/dev/null 2>&1 &
mock_pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt $((600 * SCALE)) ]; do
	sleep 0.1
	i=$((i + 1))
done
port=$(cat "$tmp/port")
mkdir -p "$tmp/cli" && chmod 1777 "$tmp/cli"
{
	echo "ANTHROPIC_API_KEY=dummy"
	echo "ANTHROPIC_BASE_URL=http://127.0.0.1:$port"
	echo "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"
	echo "CLAUDE_CONFIG_DIR=$tmp/cli"
	echo "CLAUDE_CODE_MAX_RETRIES=1"
	echo "API_TIMEOUT_MS=$((20000 * SCALE))"
} >>/etc/default/hotplexd
printf 'cli_path = %s\nworkdir_root = /home\n' "$cli" \
    >>/etc/hotplex/hotplexd.conf

out=$(/etc/init.d/hotplexd start 2>&1); rc=$?
check "init script start: 0 (rc $rc)" [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || printf '%s\n' "$out" | sed 's/^/# /'
i=0
while [ ! -S /run/hotplex/hotplexd.sock ] && [ $i -lt $((300 * SCALE)) ]; do
	sleep 0.1
	i=$((i + 1))
done
/etc/init.d/hotplexd status >/dev/null 2>&1; rc=$?
check "init script status while running: 0 (rc $rc)" [ "$rc" -eq 0 ]
check "the socket belongs to group hotplex" \
    sh -c '[ "$(stat -c %G /run/hotplex/hotplexd.sock)" = hotplex ]'

# A user of the socket group, working in a directory of their home.
useradd -m -d "/home/$user" -s /bin/sh -G hotplex "$user"
mkdir -p "/home/$user/proj"
chown "$user:$user" "/home/$user/proj"
out=$(cd "/home/$user" && timeout $((120 * SCALE)) setpriv --reuid="$user" \
    --regid="$user" --init-groups env HOME="/home/$user" \
    hotplexctl -S /run/hotplex/hotplexd.sock exec -s proj \
    -w "/home/$user/proj" '[[bash:pwd]]' 2>"$tmp/exec.err"); rc=$?
check "a turn as $user (member of hotplex) in ~/proj: rc $rc" \
    sh -c '[ "$1" -eq 0 ] && printf "%s" "$2" |
	grep -q "First line of its output: /home/$3/proj"' sh "$rc" "$out" "$user"
[ "$rc" -eq 0 ] || { printf '%s\n' "$out"; tail -5 "$tmp/exec.err"; } |
    sed 's/^/# /'
out=$(timeout $((60 * SCALE)) setpriv --reuid=nobody --regid=nogroup --clear-groups \
    hotplexctl -S /run/hotplex/hotplexd.sock sessions 2>&1); rc=$?
check "a user outside the group cannot connect (rc $rc)" [ "$rc" -ne 0 ]

/etc/init.d/hotplexd stop >/dev/null 2>&1; rc=$?
check "init script stop: 0 (rc $rc)" [ "$rc" -eq 0 ]
/etc/init.d/hotplexd status >/dev/null 2>&1; rc=$?
check "init script status when stopped: 3 (rc $rc)" [ "$rc" -eq 3 ]
clireal=$(readlink -f "$cli")
left=
for p in /proc/[0-9]*; do
	exe=$(readlink "$p/exe" 2>/dev/null) || continue
	case $exe in
	/usr/sbin/hotplexd|/usr/libexec/hotplex/hotplex-worker|"$clireal")
		left="$left ${p#/proc/}:$exe" ;;
	esac
done
check "nothing left running${left:+ (left:$left)}" [ -z "$left" ]

dpkg --purge hotplex libhotplex-dev >"$tmp/dpkg.log" 2>&1
check "dpkg --purge" [ $? -eq 0 ]
left=
for f in /etc/hotplex /var/lib/hotplex /run/hotplex /etc/default/hotplexd \
    /etc/init.d/hotplexd /lib/systemd/system/hotplexd.service \
    /usr/sbin/hotplexd /usr/libexec/hotplex /usr/share/hotplex \
    /usr/include/hotplex.h \
    /etc/systemd/system/multi-user.target.wants/hotplexd.service; do
	[ -e "$f" ] && left="$left $f"
done
ls /etc/rc?.d/*hotplexd >/dev/null 2>&1 && left="$left /etc/rc?.d/*hotplexd"
check "purge leaves nothing on disk${left:+ (left:$left)}" [ -z "$left" ]

wait "$lintian_pid"
errs=$(grep -c '^E: ' "$tmp/lintian.log")
check "lintian: no error ($errs)" [ "$errs" -eq 0 ]
grep '^[EW]: ' "$tmp/lintian.log" | sed 's/^/# /'

echo "1..$n"
[ "$failed" -eq 0 ]
