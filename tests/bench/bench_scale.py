#!/usr/bin/env python3
"""hotplexd at scale with tests/fake-claude (which answers at once): for
each N of BENCH_SCALE (default "100 1000 2000"), one daemon and
- open rate: N sessions opened in one burst (each spawns a worker and its
  CLI), and the master's CPU per open;
- master CPU per warm turn of one busy session with N idle sessions beside
  it, against the same with none (measured first);
- master RSS per live session;
- reap-wave stall: all N sessions stopped at once while the busy session
  runs turns: its worst round trip during the wave, beside its worst in
  the warm turns before (what the machine's own load costs);
- stop time: SIGTERM with N live sessions until hotplexd has exited, and
  the CPU every process of the daemon spent meanwhile (its wall time on a
  quiet machine is at least that over the cores);
- idle-expiry wave: N sessions reaching idle_timeout together (the master
  is stopped, SIGSTOP, until every one's timer is due, then continued)
  while a busy session (its background task keeps it from idling) runs
  turns: its worst round trip from the moment the master goes on, and how
  long until every worker of the wave is gone;
- warm turn, alternated: two daemons side by side, one with N idle
  sessions (frozen) and one with none, the busy session's turns taken in
  blocks alternating between them; the medians of the master's CPU per
  turn and their ratio (BENCH_SCALE_ROUNDS blocks, default 6).
CPU is the master's on-CPU time from /proc/PID/schedstat.  Reports; never
fails on a slow machine (an N the machine cannot hold is reported as such).
"""

import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import Daemon, Client, rss_kb, children_of  # noqa: E402

SCALES = [int(x) for x in os.environ.get("BENCH_SCALE",
                                          "100 1000 2000").split()]
TURNS = int(os.environ.get("BENCH_SCALE_TURNS", "300"))
REPLY_S = 600.0             # a burst of 2,000 on a loaded box is slow
WAVE_TURN = "stream:1"


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def own_cpu_s(pid):
    """The on-CPU time of a live process's main thread, in seconds (0 once
    gone): schedstat's nanoseconds, not stat's ticks, which would lose up
    to a tick per process and per field, a bias of 10-20 ms a session."""
    try:
        return cpu_ns(pid) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def reaped_cpu_s(pid):
    """cutime + cstime: the CPU of the children pid reaped, and of theirs."""
    st = stat_fields(pid)
    return (int(st[13]) + int(st[14])) / TICK


def tree_cpu_s(root):
    """The CPU so far of every process below root."""
    return sum(own_cpu_s(p) for p in tree_pids(root) if p != root)


def task_cpu_s(pid):
    """A live process's CPU so far, every thread (schedstat's ns), and the
    CPU of the children it reaped (ticks: one truncation a process)."""
    total = 0.0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0]) / 1e9
        return total + reaped_cpu_s(pid)
    except (OSError, ValueError, IndexError):
        return total


def tree_pids(root):
    """root and every live process below it."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                kids.setdefault(int(stat_fields(int(d))[1]), []).append(
                    int(d))
            except (OSError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def sigterm_stop(d, n):
    """SIGTERM to exit: (wall s, CPU s of every process of the daemon
    meanwhile, master CPU s, spawner CPU s).  The CPU is the master's
    rusage once reaped here (its own, the spawner's, every worker's and
    CLI's: each is reaped by its parent in the tree), less what the tree
    had used before: a figure a loaded machine cannot inflate, unlike the
    wall time.  The gateway (not waited for) is not counted."""
    pid = d.proc.pid
    sp = d.spawner()
    # The gateway, not waited for at exit, is left out on both sides.
    before = task_cpu_s(pid) + sum(task_cpu_s(p) for p in tree_pids(sp))
    m0, s0 = cpu_ns(pid), cpu_ns(sp)
    m1, s1 = m0, s0
    t0 = time.perf_counter()
    d.proc.send_signal(signal.SIGTERM)
    while True:
        r, status, ru = os.wait4(pid, os.WNOHANG)
        if r == pid:
            break
        if time.perf_counter() - t0 > REPLY_S:
            raise RuntimeError("SIGTERM: hotplexd did not exit")
        try:
            m1, s1 = cpu_ns(pid), cpu_ns(sp)
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.02)  # not a bound: how often the CPU is read
    wall = time.perf_counter() - t0
    d.proc.returncode = os.waitstatus_to_exitcode(status)
    total = ru.ru_utime + ru.ru_stime - before
    return wall, total, (m1 - m0) / 1e9, (s1 - s0) / 1e9


def stop_phase(n):
    """n live sessions, then SIGTERM: the stop time and its CPU."""
    conf = {"max_sessions": str(n + 8), "max_spawn_queue": str(n + 8),
            "spare_min": "4", "spare_max": "16", "log_level": "warn",
            "idle_timeout": "0", "max_clients": "64"}
    with Daemon(conf) as d:
        c = Client(d.sock, timeout=REPLY_S)
        d.clients.append(c)
        names = ["s%d" % i for i in range(n)]
        bad = burst(c, "open", names)
        if bad:
            print("# N=%d: %d opens failed (first %r)" % (n, len(bad),
                                                          bad[0]))
        live = len(d.workers())
        load0 = os.getloadavg()[0]
        wall, total, m, s = sigterm_stop(d, n)
        print("N=%-5d SIGTERM to exit %.2f s with %d workers; CPU of every "
              "process meanwhile %.2f s (%.2f ms a worker; master %.3f s, "
              "spawner %.3f s); exit %s; load average %.1f before, %.1f "
              "after" % (n, wall, live, total, total * 1e3 / max(live, 1),
                         m, s, d.proc.returncode, load0,
                         os.getloadavg()[0]))
        sys.stdout.flush()


def warm_turns(c, sess, n):
    """n warm turns; returns (master ns per turn, worst round trip s)."""
    worst = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        evs = c.execute(sess, WAVE_TURN)
        if not evs or evs[-1]["type"] != "done":
            raise RuntimeError("turn failed: %r" % (evs[-1:],))
        worst = max(worst, time.perf_counter() - t0)
    return worst


def lat_summary(lat):
    """Round trips (s): how many, p90, p99, worst, and how many > 50 ms."""
    lat = sorted(lat)
    if not lat:
        return "no turns"
    return ("%d turns p90 %.1f p99 %.1f worst %.1f ms, %d > 50 ms" %
            (len(lat), lat[int(len(lat) * 0.9)] * 1e3,
             lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3,
             sum(1 for x in lat if x > 0.05)))


def burst(c, op, names, **extra):
    """Sends op for every name at once; waits for every reply."""
    rids = {c.send(op, session=s, **extra): s for s in names}
    bad = []
    for rid in rids:
        o = c.reply(rid)
        if o is None or o["type"] != "ok":
            bad.append(o)
    return bad


def one(n):
    conf = {"max_sessions": str(n + 8), "max_spawn_queue": str(n + 8),
            "spare_min": "4", "spare_max": "16", "log_level": "warn",
            "idle_timeout": "0", "max_clients": "64"}
    with Daemon(conf) as d:
        pid = d.proc.pid
        c = Client(d.sock, timeout=REPLY_S)
        d.clients.append(c)
        busy = "busy"
        c.execute(busy, WAVE_TURN)
        warm_turns(c, busy, 20)
        c0 = cpu_ns(pid)
        warm_turns(c, busy, TURNS)
        turn0 = (cpu_ns(pid) - c0) / TURNS
        rss0 = rss_kb(pid)

        names = ["s%d" % i for i in range(n)]
        c0, t0 = cpu_ns(pid), time.perf_counter()
        bad = burst(c, "open", names)
        dt = time.perf_counter() - t0
        per_open = (cpu_ns(pid) - c0) / n
        if bad:
            print("# N=%d: %d opens failed (first %r): the machine cannot "
                  "hold this many" % (n, len(bad), bad[0]))
        rss1 = rss_kb(pid)

        warm_turns(c, busy, 20)
        c0 = cpu_ns(pid)
        calm = warm_turns(c, busy, TURNS)   # worst without a wave
        turn1 = (cpu_ns(pid) - c0) / TURNS

        # The wave: every session stopped at once, the busy one goes on.
        worst = [0.0]
        done = threading.Event()
        bc = Client(d.sock, timeout=REPLY_S)
        d.clients.append(bc)

        def drive():
            while not done.is_set():
                worst[0] = max(worst[0], warm_turns(bc, busy, 1))
        th = threading.Thread(target=drive)
        th.start()
        t1 = time.perf_counter()
        burst(c, "stop", names)
        wave = time.perf_counter() - t1
        done.set()
        th.join()

        # Stop time: reopen them (all live), then SIGTERM.
        burst(c, "open", names)
        stop, stop_cpu, m, s = sigterm_stop(d, n)

        print("N=%-5d open %6.0f/s  master %.3f ms/open  turn %.0f us "
              "(idle 0: %.0f us, x%.2f)  RSS %.1f KB/session" %
              (n, n / dt, per_open / 1e6, turn1 / 1e3, turn0 / 1e3,
               turn1 / turn0 if turn0 else 0,
               (rss1 - rss0) / n))
        print("        stop wave %.2f s, busy turn worst %.1f ms during it "
              "(%.1f ms in %d turns before it); SIGTERM to exit %.2f s "
              "(master %.2f ms, spawner %.2f ms, every process %.2f ms CPU "
              "a session); load average %.1f" %
              (wave, worst[0] * 1e3, calm * 1e3, TURNS, stop, m * 1e3 / n,
               s * 1e3 / n, stop_cpu * 1e3 / n, os.getloadavg()[0]))
        sys.stdout.flush()
    return dt


def idle_wave(n, burst_s):
    """n sessions expire together; a busy one runs turns meanwhile."""
    # Long enough that none expires while the burst is still opening.
    idle_s = int(burst_s * 1.5) + 5
    conf = {"max_sessions": str(n + 8), "max_spawn_queue": str(n + 8),
            "spare_min": "4", "spare_max": "16", "log_level": "warn",
            "idle_timeout": "%ds" % idle_s,
            # Frozen before they expire, as with the defaults (60 s, 30 m).
            "freeze_after": os.environ.get("BENCH_SCALE_FREEZE", "1s"),
            "max_clients": "64"}
    with Daemon(conf) as d:
        pid = d.proc.pid
        c = Client(d.sock, timeout=REPLY_S)
        d.clients.append(c)
        busy = "busy"
        evs = c.execute(busy, "bgtask " + WAVE_TURN)  # never idle
        if not evs or evs[-1]["type"] != "done":
            raise RuntimeError("busy session: %r" % (evs[-1:],))
        c0 = cpu_ns(pid)
        warm_turns(c, busy, TURNS)
        per_turn = (cpu_ns(pid) - c0) / TURNS
        names = ["i%d" % i for i in range(n)]
        t_first = time.monotonic()
        bad = burst(c, "open", names)
        if bad:
            raise RuntimeError("%d opens failed (first %r)" % (len(bad),
                                                                bad[0]))
        if time.monotonic() - t_first >= idle_s:
            raise RuntimeError("the burst outlasted idle_timeout")
        bw = [x["worker_pid"] for x in c.request("sessions")["data"]
              if x["session"] == busy][0]
        busy_pids = [bw] + children_of(bw)
        # Every timer due while the master is stopped: one wave.
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(idle_s + 1.0)
        workers0 = len(d.workers())
        sp = d.spawner()
        # The CPU of workers and CLIs during the wave: the spawner
        # reaps them (its children's CPU grows by their whole lives), the
        # rest (the busy one, spares) are still there.
        before = tree_cpu_s(sp)
        busy0 = sum(own_cpu_s(p) for p in busy_pids)
        reaped0, sp0 = reaped_cpu_s(sp), own_cpu_s(sp)
        worst, turns, lat = [0.0], [0], []
        done = threading.Event()

        def drive():
            while not done.is_set():
                lat.append(warm_turns(c, busy, 1))
                if lat[-1] > worst[0]:
                    worst[0] = lat[-1]
                    worst_at[0] = time.perf_counter() - t0
                turns[0] += 1
        worst_at = [0.0]
        c0 = cpu_ns(pid)
        t0 = time.perf_counter()
        d.proc.send_signal(signal.SIGCONT)
        th = threading.Thread(target=drive)
        th.start()
        try:
            while len(d.workers()) > workers0 - n:
                if time.perf_counter() - t0 > REPLY_S:
                    raise RuntimeError("the wave did not end")
                time.sleep(0.1)
        finally:
            done.set()
            th.join()
        wave = time.perf_counter() - t0
        # Less the busy session's turns meanwhile, at their cost before.
        per = (cpu_ns(pid) - c0 - turns[0] * per_turn) / n
        # Less the busy session's worker and CLI.
        exits = (reaped_cpu_s(sp) - reaped0 - before + tree_cpu_s(sp) -
                 sum(own_cpu_s(p) for p in busy_pids) + busy0) / n
        spw = (own_cpu_s(sp) - sp0) / n
        load = os.getloadavg()[0]
        # The same turns for as long again with no wave: what the
        # machine's own load does to them, counted alike.
        after = []
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < wave:
            after.append(warm_turns(c, busy, 1))
        print("        idle-expiry wave of %d: busy turn %s during it; "
              "%s as long after it; wave %.2f s (worst %.2f s in), "
              "master %.3f ms/session, spawner %.2f, a worker and its CLI "
              "%.1f; load average %.1f, %.1f after" %
              (n, lat_summary(lat), lat_summary(after), wave, worst_at[0],
               per / 1e6, spw * 1e3, exits * 1e3, load,
               os.getloadavg()[0]))
        sys.stdout.flush()


def proc_state(pid):
    try:
        return stat_fields(pid)[0]
    except (OSError, IndexError):
        return None


def warm_pair(n):
    """A warm turn's master CPU with n idle sessions beside it against none,
    measured in two daemons side by side, their turns alternated in blocks
    (the machine's load then weighs on both alike).  The idle sessions are
    frozen first, as freeze_after leaves them; the busy session's
    background task keeps it from freezing (as in idle_wave)."""
    conf = {"max_sessions": str(n + 8), "max_spawn_queue": str(n + 8),
            "spare_min": "4", "spare_max": "16", "log_level": "warn",
            "idle_timeout": "0", "max_clients": "64",
            "freeze_after": os.environ.get("BENCH_SCALE_FREEZE", "1s")}
    with Daemon(conf) as d0, Daemon(conf) as dn:
        cs = []
        for d in (d0, dn):
            c = Client(d.sock, timeout=REPLY_S)
            d.clients.append(c)
            evs = c.execute("busy", "bgtask " + WAVE_TURN)
            if not evs or evs[-1]["type"] != "done":
                raise RuntimeError("busy session: %r" % (evs[-1:],))
            cs.append(c)
        names = ["i%d" % i for i in range(n)]
        bad = burst(cs[1], "open", names)
        if bad:
            raise RuntimeError("%d opens failed (first %r)" % (len(bad),
                                                                bad[0]))
        clis = [x["cli_pid"] for x in cs[1].request("sessions")["data"]
                if x["session"] != "busy" and x.get("cli_pid")]
        if conf["freeze_after"] != "0":
            t0 = time.perf_counter()
            while any(proc_state(p) not in ("T", None) for p in clis):
                if time.perf_counter() - t0 > REPLY_S:
                    raise RuntimeError("the idle sessions did not freeze")
                time.sleep(0.5)
        rounds = int(os.environ.get("BENCH_SCALE_ROUNDS", "6"))
        per = max(TURNS // rounds, 1)
        ns = ([], [])
        loads = [os.getloadavg()[0]]
        for r in range(rounds):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                pid = (d0, dn)[i].proc.pid
                warm_turns(cs[i], "busy", 5)
                c0 = cpu_ns(pid)
                warm_turns(cs[i], "busy", per)
                ns[i].append((cpu_ns(pid) - c0) / per)
        loads.append(os.getloadavg()[0])
        med = [sorted(x)[len(x) // 2] for x in ns]
        print("N=%-5d warm turn, master CPU: %.0f us with %d idle (%d "
              "frozen), %.0f us with none, x%.2f (medians of %d blocks of "
              "%d turns, alternated; blocks %s / %s us); load average %.1f"
              "-%.1f" % (n, med[1] / 1e3, n, sum(proc_state(p) == "T"
                                                  for p in clis),
                         med[0] / 1e3, med[1] / med[0] if med[0] else 0,
                         rounds, per,
                         " ".join("%.0f" % (x / 1e3) for x in ns[1]),
                         " ".join("%.0f" % (x / 1e3) for x in ns[0]),
                         min(loads), max(loads)))
        sys.stdout.flush()


# BENCH_SCALE_PHASES: "all", "idle" for the idle-expiry wave alone (its
# idle_timeout then assumes a burst of 10 opens a second), "stop" for
# the SIGTERM stop alone, with the CPU every process spent in it, or
# "warm" for the warm turn beside n frozen idle sessions alone
# (warm_pair, which "all" runs last: one()'s own ratio is of two blocks
# taken minutes apart, which the machine's load alone can set 1.5x apart).
PHASES = os.environ.get("BENCH_SCALE_PHASES", "all")
for n in SCALES:
    try:
        if PHASES == "stop":
            stop_phase(n)
            continue
        if PHASES == "warm":
            warm_pair(n)
            continue
        dt = one(n) if PHASES == "all" else n / 10.0
        idle_wave(n, dt)
        if PHASES == "all":
            warm_pair(n)
    except Exception as e:  # report, never fail
        print("N=%d: not measured: %r" % (n, e))
