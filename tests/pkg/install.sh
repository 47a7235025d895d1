#!/bin/sh
# make install PREFIX=/usr into a throwaway DESTDIR, from a build of its
# own: the paths compiled in are the installed ones, every file is where
# it belongs, the library links through its pkg-config file, the init
# script fails loudly when its daemon is missing, the unit rates OK with
# systemd-analyze, and make uninstall removes it all.  TAP on stdout.
# Run from the top of the tree with B set.
: "${B:=build}"
if [ -n "${HP_SAN:-}" ]; then
	echo "1..0 # SKIP sanitizer build (installing is tested by make check)"
	exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hp-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; failed=$((failed + 1)); }
check() { d=$1; shift; if "$@"; then ok "$d"; else nok "$d"; fi; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

inst="PREFIX=/usr DESTDIR=$root B=$tmp/build"
if nice make -s -j2 $inst install >"$tmp/make.log" 2>&1; then
	ok "make install PREFIX=/usr DESTDIR=... B=..."
else
	nok "make install PREFIX=/usr DESTDIR=... B=..."
	sed 's/^/# /' "$tmp/make.log" | tail -20
	echo "1..$n"
	exit 1
fi

missing=
for f in usr/sbin/hotplexd usr/bin/hotplexctl \
    usr/libexec/hotplex/hotplex-worker usr/lib/libhotplex.a \
    usr/include/hotplex.h usr/lib/pkgconfig/hotplex.pc \
    usr/share/man/man8/hotplexd.8 usr/share/man/man7/hotplex-protocol.7 \
    usr/share/hotplex/seccomp.profile usr/lib/systemd/system/hotplexd.service \
    etc/init.d/hotplexd etc/default/hotplexd etc/hotplex/hotplexd.conf \
    usr/share/hotplex/rules/00-destructive.rules; do
	[ -e "$root/$f" ] || missing="$missing $f"
done
check "every file installed${missing:+ (missing:$missing)}" [ -z "$missing" ]

# The worker path is the installed one: -n names it (and, under DESTDIR,
# finds it missing), not one under /usr/local.
out=$("$root/usr/sbin/hotplexd" -n -c /dev/null 2>&1)
check "hotplexd -n looks for /usr/libexec/hotplex/hotplex-worker" \
    sh -c 'printf "%s\n" "$1" | grep -q "worker /usr/libexec/hotplex/hotplex-worker: No such file"' \
    sh "$out"
[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# /'
check "hotplexd -n fails when the worker is missing" \
    sh -c '! "$1" -n -c /dev/null >/dev/null 2>&1' sh "$root/usr/sbin/hotplexd"
check "init script and unit run /usr/sbin/hotplexd" \
    sh -c 'grep -q "^DAEMON=/usr/sbin/hotplexd$" "$1" &&
	grep -q "^ExecStart=/usr/sbin/hotplexd " "$2"' sh \
    "$root/etc/init.d/hotplexd" "$root/usr/lib/systemd/system/hotplexd.service"
check "the sample config is the generated one and loads" \
    sh -c 'cmp -s "$1" "$2" && "$3" -n -c "$1" 2>&1 | grep -q "configuration .* OK"' \
    sh "$root/etc/hotplex/hotplexd.conf" "$tmp/build/hotplexd.conf" \
    "$tmp/build/hotplexd"

# A client built against the installed library through hotplex.pc.
cat >"$tmp/client.c" <<'C'
#include <hotplex.h>
int main(void) { return hp_connect == 0; }
C
if command -v pkg-config >/dev/null; then
	flags=$(PKG_CONFIG_SYSROOT_DIR=$root \
	    PKG_CONFIG_LIBDIR=$root/usr/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	    pkg-config --cflags --libs --static hotplex)
	# shellcheck disable=SC2086
	check "a program links with pkg-config hotplex ($flags)" \
	    cc -o "$tmp/client" "$tmp/client.c" $flags
else
	skip "a program links with pkg-config hotplex" "no pkg-config"
fi

# The init script says what is missing and returns the LSB code.
out=$(sh "$root/etc/init.d/hotplexd" status 2>&1); rc=$?
check "init script status with no daemon: 4 and says so (rc $rc)" \
    sh -c '[ "$1" -eq 4 ] && printf "%s" "$2" | grep -q "not installed"' \
    sh "$rc" "$out"
out=$(sh "$root/etc/init.d/hotplexd" start 2>&1); rc=$?
check "init script start with no daemon: 5 and says so (rc $rc)" \
    sh -c '[ "$1" -eq 5 ] && printf "%s" "$2" | grep -q "not installed"' \
    sh "$rc" "$out"

if command -v systemd-analyze >/dev/null &&
    score=$(systemd-analyze security --offline=yes \
    "$root/usr/lib/systemd/system/hotplexd.service" 2>/dev/null |
    sed -n 's/.*exposure level for hotplexd.service: \([0-9.]*\).*/\1/p') &&
    [ -n "$score" ]; then
	check "systemd-analyze security rates the unit $score (at most 4.0)" \
	    awk -v s="$score" 'BEGIN { exit !(s <= 4.0) }'
else
	skip "systemd-analyze security of the unit" "no systemd-analyze --offline"
fi
check "the unit sets LimitNOFILE and Delegate=yes" \
    sh -c 'grep -q "^LimitNOFILE=" "$1" && grep -q "^Delegate=yes" "$1"' sh \
    "$root/usr/lib/systemd/system/hotplexd.service"

nice make -s $inst uninstall >"$tmp/make.log" 2>&1
left=$(find "$root" -type f | sed "s|^$root||")
check "make uninstall leaves no file${left:+ (left: $left)}" [ -z "$left" ]

echo "1..$n"
[ "$failed" -eq 0 ]
