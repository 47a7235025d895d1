#!/usr/bin/env python3
"""CPU of idle real CLIs (build/cli/claude against tests/e2e/mock_api.py)
before and after freeze_after stops them: BENCH_FREEZE_CLIS sessions
(default 50) each run one turn, then their CLI process groups' CPU is
measured over BENCH_FREEZE_WINDOW seconds (default 10) running idle, and
again once every one of them is frozen.  Then what a freeze costs a turn:
half of them are continued (a turn each, freeze_after then off), both
halves stay idle BENCH_FREEZE_WINDOW seconds, and a turn on a frozen one
and on a running one are taken in pairs; the medians of their round trips
(to the CLI's first line and to done) are compared.  A turn right after
another would flatter the running side: its pages were just touched,
while a loaded machine takes an idle CLI's pages back.  Reports; never
fails."""

import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from hplib import Daemon, Client, BDIR, first, wait_for  # noqa: E402

N = int(os.environ.get("BENCH_FREEZE_CLIS", "50"))
WINDOW_S = float(os.environ.get("BENCH_FREEZE_WINDOW", "10"))
CLI = os.path.join(BDIR, "cli", "claude")
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgids):
    """CPU seconds so far of every process in the given process groups."""
    tot = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                v = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(v[2]) in pgids:
            tot += int(v[11]) + int(v[12])
    return tot / TICK


def state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def timed_turn(c, name):
    """(seconds to the turn's first line from the CLI, past the daemon's
    session_start, and to its done); None if it failed."""
    t0 = time.perf_counter()
    rid = c.send("execute", session=name, prompt="Say hi.")
    first_s, evs = None, []
    while True:
        o = c.line()
        if o is None:
            return None
        if o.get("id") != rid:
            continue
        evs.append(o)
        if first_s is None and o["type"] != "session_start":
            first_s = time.perf_counter() - t0
        if o["type"] in ("done", "error"):
            break
    if evs[-1]["type"] != "done":
        return None
    return first_s, time.perf_counter() - t0


def frozen_vs_running(d, c, names, clis):
    """Half the sessions frozen, half running idle (continued by a turn
    with freeze_after off), both idle for WINDOW_S; then a turn on each,
    alternated, each pair's order swapped in turn."""
    with open(d.conf_path, "a") as f:
        f.write("freeze_after = 0\n")
    n0 = open(d.log).read().count("configuration reloaded")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: open(d.log).read().count("configuration reloaded") >
             n0, 30, "the reload")
    half = len(names) // 2
    run = names[half:2 * half]
    for n in run:
        c.execute(n, "Say hi.")
    if any(state(p) == "T" for p in clis[half:2 * half]):
        print("# frozen vs running: a running one is still frozen")
        return
    time.sleep(WINDOW_S)    # both halves idle as long: not a bound
    fz, rn = [], []

    def turn_cpu(name, pid):
        """A timed turn and its CLI's CPU in it, in seconds."""
        c0 = group_cpu({pid})
        r = timed_turn(c, name)
        return r and r + (group_cpu({pid}) - c0,)
    for i in range(half):
        if state(clis[i]) != "T":
            continue
        if i % 2 == 0:
            a = turn_cpu(names[i], clis[i])
            b = turn_cpu(run[i], clis[half + i])
        else:
            b = turn_cpu(run[i], clis[half + i])
            a = turn_cpu(names[i], clis[i])
        if a and b:
            fz.append(a)
            rn.append(b)
    if not fz:
        print("# frozen vs running: no turn pair measured")
        return

    def med(v, i):
        v = sorted(x[i] for x in v)
        return v[len(v) // 2] * 1e3
    print("warm turn on a frozen CLI vs a running one, both idle %.0f s, "
          "medians of %d pairs: first line %.1f vs %.1f ms (%+.1f), done "
          "%.1f vs %.1f ms (%+.1f), the CLI's CPU in it %.0f vs %.0f ms; "
          "load average %.1f" %
          (WINDOW_S, len(fz), med(fz, 0), med(rn, 0), med(fz, 0) - med(rn, 0),
           med(fz, 1), med(rn, 1), med(fz, 1) - med(rn, 1), med(fz, 2),
           med(rn, 2), os.getloadavg()[0]))


def main():
    if not os.access(CLI, os.X_OK):
        print("# %s not installed (make deps): not measured" % CLI)
        return
    from test_e2e import Mock, OFFLINE_ENV  # noqa: E402  (runs no test)
    tmp = tempfile.mkdtemp(prefix="hpfreeze.")
    mock = Mock(tmp)
    try:
        conf = {"cli_path": CLI, "cli_env": OFFLINE_ENV, "kill_grace": "2s",
                "freeze_after": "0", "idle_timeout": "0",
                "max_sessions": str(N + 4), "max_spawn_queue": str(N + 4),
                "log_level": "info"}
        with Daemon(conf, env=mock.env()) as d:
            c = Client(d.sock, timeout=600)
            d.clients.append(c)
            names = ["c%d" % i for i in range(N)]
            rids = [c.send("execute", session=n, prompt="Say hi.",
                           workdir=d.work + "/" + n) for n in names]
            clis, up = [], []
            for n, r in zip(names, rids):
                evs = c.events(r)
                st = first(evs, "session_start")
                if st and evs[-1]["type"] == "done":
                    clis.append(st["data"]["cli_pid"])
                    up.append(n)
            print("# %d of %d real CLIs up after one turn each" %
                  (len(clis), N))
            pg = set(clis)
            c0 = group_cpu(pg)
            time.sleep(WINDOW_S)    # the measurement: CPU over this span
            idle = group_cpu(pg) - c0
            # freeze_after 1s from the next turn on.
            with open(d.conf_path, "a") as f:
                f.write("freeze_after = 1s\n")
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in
                     open(d.log).read(), 30, "the reload")
            for n in names:
                c.execute(n, "Say hi.")
            wait_for(lambda: all(state(p) == "T" for p in clis), 120,
                     "every CLI frozen")
            c0 = group_cpu(pg)
            time.sleep(WINDOW_S)
            frozen = group_cpu(pg) - c0
            print("%d idle real CLIs: %.3f CPU s/s running (%.1f ms/s "
                  "each), %.3f CPU s/s frozen; load average %.1f" %
                  (len(clis), idle / WINDOW_S, idle / WINDOW_S / len(clis)
                   * 1e3, frozen / WINDOW_S, os.getloadavg()[0]))
            sys.stdout.flush()
            frozen_vs_running(d, c, up, clis)
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


try:
    main()
except Exception as e:  # report, never fail
    print("# not measured: %r" % e)
