#!/usr/bin/env python3
"""What a move between hosts costs (issue 14: one CLI cold start plus under
100 ms).  Two hotplexd sharing a PostgreSQL of the bench's own, the real
CLI against tests/e2e/mock_api.py; one session is executed on host a, then
on b, a, b... (BENCH_MOVES moves, default 10): each turn on the other host
is a move.  For comparison, the same session's cold resume on one host
with nothing to move: the host restarted, so that the next turn starts a
CLI with --resume.

Per turn, from session_start: ready_us (the request to the turn handed to
the new CLI: the move's own cost, the worker and the CLI's spawn) and the
whole turn (request to done).  The move's cost beyond a cold resume is the
difference of the medians.  Reports; never fails."""

import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from hplib import Daemon, DIR_SHARED, first  # noqa: E402
import hppg  # noqa: E402
from test_e2e import CLI, OFFLINE_ENV, Mock  # noqa: E402

MOVES = int(os.environ.get("BENCH_MOVES", "10"))


def host(name, url, shared, env):
    return Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                   "kill_grace": "2s", "store": url, "host_id": name,
                   "log_level": "info", "workdir_root": shared}, env=env)


def turn(d, prompt, **kw):
    t0 = time.monotonic()
    e = d.client().execute("bench", prompt, **kw)
    ms = (time.monotonic() - t0) * 1000
    st = (first(e, "session_start") or {}).get("data", {})
    if e[-1]["type"] != "done":
        raise RuntimeError("turn ended %r" % e[-1])
    return st, ms


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    if not os.access(CLI, os.X_OK):
        print("bench_move: %s not installed (make deps): skipped" % CLI)
        return
    tmp = tempfile.mkdtemp(prefix="hpbmove.")
    shared = os.path.join(tmp, "work")
    os.makedirs(shared)
    os.chmod(tmp, 0o711)
    os.chmod(shared, DIR_SHARED)
    mock = Mock(tmp)
    moved, cold = [], []
    try:
        with hppg.Postgres() as pg:
            url = pg.url("hotplex")
            with host("a", url, shared, mock.env()) as a, \
                    host("b", url, shared, mock.env()) as b:
                hosts = [a, b]
                turn(a, "first", workdir=os.path.join(shared, "bench"))
                for i in range(MOVES):
                    st, ms = turn(hosts[(i + 1) % 2], "move %d" % i)
                    if not st.get("resumed"):
                        raise RuntimeError("not resumed: %r" % st)
                    moved.append((st["ready_us"] / 1000, ms))
                # Cold resumes on the last host, nothing to move.
                d = hosts[MOVES % 2]
                for i in range(MOVES):
                    d.stop()
                    d.start()
                    st, ms = turn(d, "cold %d" % i)
                    cold.append((st["ready_us"] / 1000, ms))
    except hppg.Unavailable as e:
        print("bench_move: no PostgreSQL: %s: skipped" % e)
        return
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    mr, mt = med([x[0] for x in moved]), med([x[1] for x in moved])
    cr, ct = med([x[0] for x in cold]), med([x[1] for x in cold])
    print("moves between two hosts: %d, median request->turn sent to the "
          "new CLI %.1f ms, whole turn %.1f ms" % (len(moved), mr, mt))
    print("cold resumes on one host: %d, median request->turn sent %.1f ms, "
          "whole turn %.1f ms" % (len(cold), cr, ct))
    print("a move's own cost beyond a cold resume: %.1f ms (request->turn "
          "sent), %.1f ms (whole turn); goal < 100 ms" % (mr - cr, mt - ct))


if __name__ == "__main__":
    main()
