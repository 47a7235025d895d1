#!/bin/sh
# make bench: reports, side by side in one run; never fails on slowness.
: "${B:=build}"
export B
echo "== turn latency: hotplexd vs a direct pipe to the same CLI"
python3 tests/bench/bench_turns.py || exit 1
echo
echo "== model-API gateway: one streamed request, direct vs through it"
python3 tests/bench/bench_gateway.py || exit 1
echo
echo "== firewall: throughput and latency on benign text, default rules"
# Look-alike prompts (the hardest benign text), C source, English prose.
"$B/firewall-bench" policy/firewall/rules tests/data/firewall/benign.txt \
    policy/firewall/firewall.c README.md || exit 1
echo
echo "== firewall: detection and false alarms on the labelled corpus"
# Tuning and held-out parts, per target and category; a report only.
"$B/test_firewall_corpus" -r -T tests/data/firewall/tune.tsv \
    -H tests/data/firewall/heldout.tsv tests/data/firewall/dangerous.txt \
    tests/data/firewall/benign.txt policy/firewall/rules || exit 1
echo
echo "== scale: 100, 1,000 and 2,000 sessions with tests/fake-claude"
# BENCH_SCALE="100 1000" chooses; each N is reported, never failed.
python3 tests/bench/bench_scale.py || exit 1
echo
echo "== a worker's start: CPU while a spare, per open + first turn"
# The rules are compiled while a spare; BENCH_OPENS sets the count.
python3 tests/bench/bench_worker_start.py || exit 1
echo
echo "== bursts: where 300 and 1,000 opens at once wait"
# BENCH_BURST="300" chooses; CPU per open of each process, reported only.
python3 tests/bench/bench_burst.py || exit 1
echo
echo "== idle real CLIs: CPU before and after freeze_after"
python3 tests/bench/bench_freeze.py || exit 1
echo
echo "== moving a session between two hosts sharing PostgreSQL (real CLI)"
python3 tests/bench/bench_move.py || exit 1
