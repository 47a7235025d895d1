#!/usr/bin/env python3
"""Privilege separation (hotplexd(8), Processes): started as root, the
master drops to daemon_user (hotplexd) with no capabilities and
no_new_privs, and a spawner keeps root to start, signal and reap the
workers.  Turns still work; killing the spawner ends the master (status 1)
and everything it ran; killing the master ends the spawner and everything;
a store made by a root master is taken over; daemon_user missing or root
keeps the master root and says UNSAFE; the spawner reopens the log file on
SIGUSR1."""

import os
import pwd
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hplib import (TAP, Daemon, BDIR, DAEMON_USER, scaled, wait_for,
                   proc_alive, procs_under, children_of)

t = TAP()
if os.geteuid() != 0:
    t.skip("privilege separation", "needs root (the master drops from root)")
    t.done()

GONE_S = 10        # a dead daemon's processes are gone by then (scaled)
EXIT_S = 30        # a master whose spawner died has exited by then


def status(pid):
    """Uid, CapEff and NoNewPrivs lines of /proc/PID/status as a dict."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            k, _, v = l.partition(":")
            out[k] = v.split()
    return out


def everything_gone(d, pids):
    return (not [p for p in pids if proc_alive(p)] and
            not procs_under(d.work))


def test_dropped():
    du = pwd.getpwnam(DAEMON_USER)
    with Daemon() as d:
        c = d.client()
        evs = c.execute("p", "stream:2", workdir=d.work + "/p")
        t.eq(evs[-1]["type"], "done", "a turn works with the master dropped")
        st = status(d.proc.pid)
        t.ok(st["Uid"] == [str(du.pw_uid)] * 4,
             "the master runs as daemon_user %s (real, effective, saved, "
             "fs)" % DAEMON_USER, st["Uid"])
        t.ok(st["Gid"] == [str(du.pw_gid)] * 4 and
             st.get("Groups") == [str(du.pw_gid)],
             "the master has daemon_user's group and no other",
             (st["Gid"], st.get("Groups")))
        t.eq(st["CapEff"], ["0000000000000000"],
             "the master has no effective capability")
        t.eq(st["CapPrm"], ["0000000000000000"],
             "the master has no permitted capability")
        t.eq(st["NoNewPrivs"], ["1"], "the master has no_new_privs")
        if os.environ.get("HP_SAN"):
            t.skip("the master's seccomp filter", "sanitizer build (LSan "
                   "clones and ptraces at exit: no filter there)")
        elif os.environ.get("HP_VALGRIND"):
            t.skip("the master's seccomp filter", "under valgrind "
                   "(seccomp = off: valgrind knows no seccomp)")
        else:
            t.eq(st["Seccomp"], ["2"], "the master runs under a seccomp "
                 "filter")
        sp = d.spawner()
        t.ok(sp is not None and status(sp)["Uid"][1] == "0",
             "the spawner is the master's child and keeps root", sp)
        wk = d.workers()
        t.ok(wk and all(p in children_of(sp) for p in wk),
             "the workers are the spawner's children", wk)
        st_dir = os.stat(os.path.join(d.dir, "state"))
        db = os.stat(os.path.join(d.dir, "state", "hotplex.db"))
        t.ok(st_dir.st_uid == du.pw_uid and db.st_uid == du.pw_uid and
             db.st_mode & 0o077 == 0,
             "state_dir and the store are daemon_user's, the store 0600",
             (st_dir.st_uid, db.st_uid, oct(db.st_mode)))
        with open(d.log) as f:
            log = f.read()
        t.ok("isolation: master: drops to daemon_user %s" % DAEMON_USER
             in log and "master: now daemon_user %s" % DAEMON_USER in log,
             "the start-up report says what the master runs as, and the "
             "drop is logged", d.logtail())
        # The turn's stop goes through the spawner (the CLI runs as another
        # uid than the master): its CLI is gone once stop answers ok.
        ss = c.request("sessions")["data"]
        cli = [s for s in ss if s["session"] == "p"][0]["cli_pid"]
        r = c.request("stop", session="p")
        t.eq(r["type"], "ok", "stop answers")
        try:
            wait_for(lambda: not proc_alive(cli), GONE_S, "the CLI to go")
            t.ok(True, "stop ends the CLI (signalled by the spawner)")
        except TimeoutError:
            t.ok(False, "stop ends the CLI (signalled by the spawner)",
                 d.logtail())
        rc = d.stop()
        t.eq(rc, 0, "SIGTERM: the master exits 0")
        t.ok(not os.path.exists(d.sock),
             "the socket is removed (by the spawner) at exit")


def test_check_report():
    d = Daemon()
    try:
        out = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c",
                              d.conf_path], capture_output=True, text=True,
                             timeout=scaled(120), env=d.env)
        t.ok("isolation: master: drops to daemon_user %s" % DAEMON_USER
             in out.stdout, "hotplexd -n says the master will drop",
             out.stdout + out.stderr)
    finally:
        d.cleanup()


def test_spawner_killed():
    with Daemon({"spare_min": "2"}) as d:
        c = d.client()
        rid = c.send("execute", session="k", prompt="stall",
                     workdir=d.work + "/k")
        o = c.line()
        t.eq(o and o["type"], "session_start", "a stalled turn is running")
        pids = d.workers() + [o["data"]["cli_pid"]]
        sp = d.spawner()
        os.kill(sp, signal.SIGKILL)
        try:
            d.proc.wait(scaled(EXIT_S))
        except subprocess.TimeoutExpired:
            pass
        t.eq(d.proc.returncode, 1,
             "the spawner killed: the master exits with status 1")
        try:
            wait_for(lambda: everything_gone(d, pids), GONE_S,
                     "the workers and the CLI to go")
            t.ok(True, "the spawner killed: no worker or CLI is left")
        except TimeoutError:
            t.ok(False, "the spawner killed: no worker or CLI is left",
                 [p for p in pids if proc_alive(p)])
        with open(d.log) as f:
            log = f.read()
        t.ok("the spawner exited" in log,
             "the master says the spawner exited", d.logtail())
        ends = c.events(rid)
        t.ok(len([e for e in ends if e["type"] in ("done", "error")]) <= 1,
             "the running execute gets at most one terminal line", ends)


def test_master_killed():
    with Daemon({"spare_min": "2"}) as d:
        c = d.client()
        c.send("execute", session="m", prompt="stall", workdir=d.work + "/m")
        o = c.line()
        t.eq(o and o["type"], "session_start", "a stalled turn is running")
        sp = d.spawner()
        pids = [sp] + d.workers() + [o["data"]["cli_pid"]]
        d.proc.kill()
        d.proc.wait()
        try:
            wait_for(lambda: everything_gone(d, pids), GONE_S,
                     "the spawner, workers and CLI to go")
            t.ok(True, "the master killed: the spawner, workers and CLI go")
        except TimeoutError:
            t.ok(False, "the master killed: the spawner, workers and CLI go",
                 [p for p in pids if proc_alive(p)])


def test_store_taken_over():
    """A store made by a master that ran as root is given to daemon_user,
    and its sessions come back."""
    du = pwd.getpwnam(DAEMON_USER)
    d = Daemon({"daemon_user": "root"})
    try:
        d.start()
        c = d.client()
        evs = c.execute("old", "stream:1", workdir=d.work + "/old")
        t.eq(evs[-1]["type"], "done", "a turn with the master root")
        t.eq(status(d.proc.pid)["Uid"][1], "0",
             "daemon_user = root: the master stays root")
        with open(d.log) as f:
            t.ok("master: stays root (daemon_user = root): UNSAFE"
                 in f.read(), "... and says UNSAFE", d.logtail())
        db = os.path.join(d.dir, "state", "hotplex.db")
        t.eq(os.stat(db).st_uid, 0, "its store is root's")
        t.eq(d.stop(), 0, "it stops")
        # The same state_dir, the default daemon_user.
        with open(d.conf_path) as f:
            conf = [l for l in f if not l.startswith("daemon_user")]
        with open(d.conf_path, "w") as f:
            f.writelines(conf)
        d.start()
        c = d.client()
        # Answered from the loop: the drop (and the chown) came before it.
        ss = c.request("sessions")["data"]
        t.eq(os.stat(db).st_uid, du.pw_uid,
             "the next start gives the store to daemon_user")
        t.ok([s for s in ss if s["session"] == "old"],
             "the session of the root master is restored", ss)
        evs = c.execute("old", "stream:1")
        t.eq(evs[-1]["type"], "done", "and takes a turn")
        t.eq(d.stop(), 0, "it stops")
    finally:
        d.stop(signal.SIGKILL)
        d.cleanup()


def test_no_daemon_user():
    with Daemon({"daemon_user": "hp-no-such-user"}) as d:
        c = d.client()
        evs = c.execute("n", "stream:1", workdir=d.work + "/n")
        t.eq(evs[-1]["type"], "done", "daemon_user missing: turns work")
        t.eq(status(d.proc.pid)["Uid"][1], "0",
             "daemon_user missing: the master stays root")
        with open(d.log) as f:
            t.ok("master: stays root (daemon_user hp-no-such-user does "
                 "not exist): UNSAFE" in f.read(),
                 "daemon_user missing: the report says UNSAFE", d.logtail())


def test_log_reopen():
    """SIGUSR1: the spawner reopens log_file (root's directory: the master
    could not), and the master writes to the new file."""
    d = Daemon()
    path = os.path.join(d.dir, "daemon.log")
    with open(d.conf_path, "a") as f:
        f.write("log_file = %s\n" % path)
    try:
        d.start()
        c = d.client()
        c.execute("l", "stream:1", workdir=d.work + "/l")
        os.rename(path, path + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(path) and
                 "log file reopened" in open(path).read(), GONE_S,
                 "the new log file")
        c.execute("l", "stream:1")
        with open(path) as f:
            new = f.read()
        t.ok("session l" in new or "worker" in new,
             "SIGUSR1: the master and workers log to the new file", new)
    except TimeoutError as e:
        t.ok(False, "SIGUSR1: the log file is reopened", repr(e))
    finally:
        d.stop()
        d.cleanup()


for fn in (test_dropped, test_check_report, test_spawner_killed,
           test_master_killed, test_store_taken_over, test_no_daemon_user,
           test_log_reopen):
    try:
        fn()
    except Exception as e:
        import traceback
        t.ok(False, fn.__name__ + " raised " + repr(e), traceback.format_exc())
t.done()
