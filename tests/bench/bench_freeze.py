#!/usr/bin/env python3
"""CPU of idle real CLIs (build/cli/claude against tests/e2e/mock_api.py)
before and after freeze_after stops them: BENCH_FREEZE_CLIS sessions
(default 50) each run one turn, then their CLI process groups' CPU is
measured over BENCH_FREEZE_WINDOW seconds (default 10) running idle, and
again once every one of them is frozen.  Reports; never fails."""

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
            clis = []
            for r in rids:
                evs = c.events(r)
                st = first(evs, "session_start")
                if st and evs[-1]["type"] == "done":
                    clis.append(st["data"]["cli_pid"])
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
                  "each), %.3f CPU s/s frozen" %
                  (len(clis), idle / WINDOW_S, idle / WINDOW_S / len(clis)
                   * 1e3, frozen / WINDOW_S))
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


try:
    main()
except Exception as e:  # report, never fail
    print("# not measured: %r" % e)
