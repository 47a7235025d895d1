#!/usr/bin/env python3
"""A worker's start-up cost with tests/fake-claude (which answers at once)
and the built-in firewall rules: BENCH_OPENS (default 40) spares are
spawned and left to get ready, then as many sessions are opened one after
another, each with its first turn.  Reports, per session, the worker CPU
spent while a spare (spawn to ready), the worker CPU its open and first
turn cost, and the open+turn round trip.  CPU is on-CPU time from
/proc/PID/schedstat.  Reports; never fails on a slow machine.
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import Daemon, Client, wait_for  # noqa: E402

N = int(os.environ.get("BENCH_OPENS", "40"))
REPLY_S = 600.0


def cpu_ns(pid):
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except OSError:
        return None


def main():
    conf = {"max_sessions": str(2 * N + 8), "spare_min": str(N),
            "spare_max": str(N), "log_level": "warn", "idle_timeout": "0",
            "firewall": None}
    with Daemon(conf) as d:
        c = Client(d.sock, timeout=REPLY_S)
        d.clients.append(c)
        wait_for(lambda: c.request("status")["data"]["spares_ready"] >= N,
                 REPLY_S, "%d ready spares" % N)
        before = {p: cpu_ns(p) for p in d.workers()}
        spare = sum(v for v in before.values() if v is not None)
        rtt = []
        for i in range(N):
            t0 = time.perf_counter()
            evs = c.execute("s%d" % i, "hello")
            rtt.append(time.perf_counter() - t0)
            if not evs or evs[-1]["type"] != "done":
                raise RuntimeError("turn failed: %r" % (evs[-1:],))
        used = 0
        for p, v in before.items():
            a = cpu_ns(p)
            if a is not None and v is not None:
                used += a - v
        print("N=%d worker CPU: %.2f ms per spare (spawn to ready), "
              "%.2f ms per open + first turn; open+turn round trip median "
              "%.1f ms, p90 %.1f ms; load average %.1f" %
              (N, spare / 1e6 / len(before), used / 1e6 / N,
               statistics.median(rtt) * 1e3,
               sorted(rtt)[int(0.9 * N)] * 1e3, os.getloadavg()[0]))


main()
