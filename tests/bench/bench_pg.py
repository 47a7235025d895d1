#!/usr/bin/env python3
"""What a commit of the shared store costs: the end of a turn with the
PostgreSQL store (store = postgresql://...) against the SQLite file, with
hotplexd and tests/fake-claude, a server of the test's own on a Unix
socket (hppg.py; fsync on, as a real server).  Prints the median and 90th
percentile of a turn's wall time (execute to done) over N turns, one
session, warm CLI, each store in turn."""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import hplib
import hppg

TURNS = int(os.environ.get("BENCH_TURNS", "300"))


def turns(conf, name):
    with hplib.Daemon(conf) as d:
        c = d.client()
        c.execute(name, "stream:1")         # the CLI starts: not counted
        out = []
        for _ in range(TURNS):
            t0 = time.monotonic()
            evs = c.execute(name, "stream:1")
            out.append((time.monotonic() - t0) * 1000)
            assert evs[-1]["type"] == "done", evs[-1]
        return out


def show(name, ms):
    ms = sorted(ms)
    print("%-10s turns %d  median %.2f ms  p90 %.2f ms" % (
        name, len(ms), statistics.median(ms), ms[int(len(ms) * 0.9)]))


def main():
    # BENCH_PG_FSYNC=0: the round trip alone, without the disk.
    with hppg.Postgres(fsync=os.environ.get("BENCH_PG_FSYNC") != "0") as pg:
        url = pg.url("bench")
        # Alternating, so that the machine's load falls on both alike.
        a, b = [], []
        for i in range(2):
            # A session per daemon: the database outlives each one.
            a += turns({"host_id": "bench"}, "s%d" % i)
            b += turns({"store": url, "host_id": "bench"}, "p%d" % i)
        show("sqlite", a)
        show("postgresql", b)
        print("difference of the medians: %.2f ms per turn" % (
            statistics.median(b) - statistics.median(a)))


if __name__ == "__main__":
    main()
