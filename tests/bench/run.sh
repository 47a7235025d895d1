#!/bin/sh
# make bench: reports, side by side in one run; never fails on slowness.
: "${B:=build}"
export B
echo "== turn latency: hotplexd vs a direct pipe to the same CLI"
python3 tests/bench/bench_turns.py || exit 1
if [ -x "$B/firewall-bench" ]; then
	echo
	echo "== firewall throughput"
	"$B/firewall-bench"
fi
