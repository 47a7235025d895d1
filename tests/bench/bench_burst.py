#!/usr/bin/env python3
"""Where a burst of opens waits, with tests/fake-claude (which answers at
once).  For each N of BENCH_BURST (default "300 1000"), one daemon, N
`open`s sent at once on one connection, and:
- opens served per second, and the median and worst wait for a reply;
- CPU per open of each part, from /proc/PID/schedstat (on-CPU ns): the
  master, the spawner, the workers and the CLIs (with their children),
  taken when every open is answered (none has exited: idle_timeout 0);
- the machine's load average beside them (it is shared).
Reports; never fails on a slow machine.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import Daemon, Client, _proc_stats  # noqa: E402

SCALES = [int(x) for x in os.environ.get("BENCH_BURST",
                                          "300 1000").split()]
REPLY_S = 600.0             # a burst of 1,000 on a loaded box is slow
SPARE_MIN = os.environ.get("BENCH_BURST_SPARES", "4")
# BENCH_BURST_FIREWALL=on: the firewall as an empty config has it (its
# rules compiled by every worker); by default off, as the tests run.
FIREWALL = None if os.environ.get("BENCH_BURST_FIREWALL") == "on" else "off"


def cpu_ns(pid):
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def kids_map():
    """ppid -> live children, from one read of /proc."""
    m = {}
    for p, state, ppid, pg, sid in _proc_stats():
        if state != "Z":
            m.setdefault(ppid, []).append(p)
    return m


def tree_ns(pid, kids):
    """On-CPU ns of pid's descendants (not pid itself)."""
    total = 0
    for k in kids.get(pid, []):
        total += cpu_ns(k) + tree_ns(k, kids)
    return total


def one(n):
    conf = {"max_sessions": str(n + 8), "max_spawn_queue": str(n + 8),
            "spare_min": SPARE_MIN, "spare_max": "16", "log_level": "warn",
            "idle_timeout": "0", "freeze_after": "0", "max_clients": "64",
            "firewall": FIREWALL}
    with Daemon(conf) as d:
        pid = d.proc.pid
        c = Client(d.sock, timeout=REPLY_S)
        d.clients.append(c)
        c.request("status")
        sp = d.spawner()
        # Spares up: a burst starts from the daemon at rest.
        deadline = time.time() + 60
        while len(d.workers()) < int(SPARE_MIN) and time.time() < deadline:
            time.sleep(0.05)
        kids = kids_map()
        wk0 = sum(cpu_ns(w) for w in kids.get(sp, []))
        cli0 = sum(tree_ns(w, kids) for w in kids.get(sp, []))
        m0, s0 = cpu_ns(pid), cpu_ns(sp) if sp else 0
        load0 = os.getloadavg()[0]

        names = ["b%d" % i for i in range(n)]
        t0 = time.perf_counter()
        rids = {c.send("open", session=s): s for s in names}
        waits, bad = [], []
        for _ in range(n):
            o = c.line()
            if o is None:
                break
            if o.get("id") in rids:
                waits.append(time.perf_counter() - t0)
                if o["type"] != "ok":
                    bad.append(o)
        dt = time.perf_counter() - t0
        m1, s1 = cpu_ns(pid), cpu_ns(sp) if sp else 0
        kids = kids_map()
        wk1 = sum(cpu_ns(w) for w in kids.get(sp, []))
        cli1 = sum(tree_ns(w, kids) for w in kids.get(sp, []))
        waits.sort()
        served = n - len(bad)
        print("N=%-5d%s %6.0f opens/s (%d served, %d failed%s); wait median "
              "%.0f ms, worst %.0f ms; load %.1f -> %.1f" %
              (n, " firewall on" if FIREWALL is None else "",
               served / dt, served, len(bad),
               (": " + bad[0].get("code", "?")) if bad else "",
               waits[len(waits) // 2] * 1e3 if waits else 0,
               waits[-1] * 1e3 if waits else 0, load0, os.getloadavg()[0]))
        print("        CPU per open: master %.2f ms, spawner %.2f ms, "
              "worker %.1f ms, CLI %.1f ms" %
              ((m1 - m0) / n / 1e6, (s1 - s0) / n / 1e6,
               (wk1 - wk0) / n / 1e6, (cli1 - cli0) / n / 1e6))
        sys.stdout.flush()


for n in SCALES:
    try:
        one(n)
    except Exception as e:  # report, never fail
        print("N=%d: not measured: %r" % (n, e))
