#!/bin/sh
# Lints every man page (man/*.[1-8]) with mandoc -Tlint -Wwarning and
# prints one TAP line per page: ok when mandoc says nothing at all.
# Run from the top of the tree.  Without mandoc every page is skipped.
set -- man/*.[1-8]
if [ ! -e "$1" ]; then
	echo "1..0 # SKIP no man pages"
	exit 0
fi
have_mandoc=0
command -v mandoc >/dev/null 2>&1 && have_mandoc=1
echo "1..$#"
n=0 failed=0
for page in "$@"; do
	n=$((n + 1))
	if [ "$have_mandoc" -eq 0 ]; then
		echo "ok $n - $page # SKIP mandoc not installed"
		continue
	fi
	out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
	if [ -z "$out" ]; then
		echo "ok $n - $page"
	else
		echo "not ok $n - $page"
		printf '%s\n' "$out" | sed 's/^/# /'
		failed=$((failed + 1))
	fi
done
[ "$failed" -eq 0 ]
