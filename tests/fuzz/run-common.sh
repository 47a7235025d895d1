#!/bin/sh
# Runs the fuzz targets of tests/fuzz/common.mk, FUZZ_COMMON_TIME seconds each
# (default 10), on their seed corpus; prints TAP: ok when libFuzzer found
# no crash, leak, timeout or sanitizer report.  New inputs go to a temp
# dir, never into the committed corpus; a crashing input is kept under
# $B/fuzz/artifacts/ to reproduce with `$B/fuzz/fuzz_NAME FILE`.
: "${B:=build}"
: "${FUZZ_COMMON_TIME:=10}"
# Seconds for one input on an idle machine, times the load (a slow
# input is a failure, a descheduled one is not).
FUZZ_COMMON_TIMEOUT=$((10 * $(sh "$(dirname "$0")/../time-scale.sh")))
FUZZ_RSS_MB=2048
here=$(dirname "$0")
targets="request msg"

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
set -- $targets
echo "1..$#"
i=0 status=0
for t in $targets; do
	i=$((i + 1))
	bin=$B/fuzz/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "ok $i - fuzz_$t # SKIP $bin not built (make fuzz-common)"
		continue
	fi
	mkdir "$tmp/$t"
	if "$bin" -max_total_time="$FUZZ_COMMON_TIME" -timeout="$FUZZ_COMMON_TIMEOUT" \
	    -rss_limit_mb="$FUZZ_RSS_MB" -print_final_stats=1 \
	    -artifact_prefix="$tmp/$t-" "$tmp/$t" "$here/corpus/$t" \
	    >"$tmp/$t.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
		    "$tmp/$t.log")
		echo "ok $i - fuzz_$t: ${runs:-?} runs in ${FUZZ_COMMON_TIME}s, no crash"
	else
		echo "not ok $i - fuzz_$t: libFuzzer reported a failure"
		mkdir -p "$B/fuzz/artifacts"
		for a in "$tmp/$t-"*; do
			[ -e "$a" ] || continue
			cp "$a" "$B/fuzz/artifacts/" &&
			    echo "# input kept: $B/fuzz/artifacts/${a##*/}"
		done
		tail -n 40 "$tmp/$t.log" >&2
		status=1
	fi
done
exit $status
