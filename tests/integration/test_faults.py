#!/usr/bin/env python3
"""Fault matrix of hotplexd with tests/fake-claude ("nothing lost, nothing
orphaned"): SIGKILL of the CLI and of the worker at random points of a
turn, hanging and interrupt-ignoring CLIs, floods, huge lines, tools that
escape the process group, CLIs that die at start, SIGKILL of the master.

Each case runs ITERS times, spread over PAR concurrent sessions of one
daemon.  For every case: each execute gets exactly one terminal line, no
process of the case is left (process groups, workers, escaped pids, and
anything whose cwd is under the case's workdir root), the master leaks no
fd, and every session still serves a turn after each fault.

Random delays come from HP_SEED (printed); HP_FAULT_ITERS sets ITERS;
HP_FAULT_ONLY="test_a test_b" runs only those cases.
"""

import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (METRICS_ANY, time_scale, scaled, TAP, BDIR, Daemon, Client,
                   wait_for, proc_alive, procs_in_group, procs_under,
                   children_of, fd_count, first, master_fds, give_tree)

ITERS = int(os.environ.get("HP_FAULT_ITERS", "20"))
SPARE_MIN = 2           # the daemons' spare_min
SEED = int(os.environ.get("HP_SEED", str(int(time.time() * 1000) % 1000000)))
PAR = 5                     # concurrent sessions per case
TURN_TIMEOUT_S = 60.0       # silence longer than this is a hang
GONE_TIMEOUT_S = 10.0       # processes of a stopped session must die by then
PIDFILE = "escape.pids"     # relative: fake-claude writes it in the workdir
GRACE = "300ms"             # kill_grace of every daemon here
INTERRUPT_MAX_S = 2.5       # an interrupt the CLI ignores ends a turn by
                            # then (kill_grace and slack; scaled), well
                            # before its 3 s turn timeout on an idle box
# The turn timeout of a flood, per MB flooded: a 50 MB flood's answer,
# assistant and result lines are ~150 MB through the worker, ~40 s under
# ASan on an idle 2-core box and over 100 s on a loaded one.  A hang is
# caught by TURN_TIMEOUT_S of silence long before this.
FLOOD_MS_PER_MB = 10000
FLOOD_MIN_MS = 50000
STALL_SILENCE_S = 10        # a flood's lines come far closer than this

t = TAP()
print("# seed %d (HP_SEED=%d reproduces), %d iterations per case"
      % (SEED, SEED, ITERS))
if os.environ.get("HP_VALGRIND"):
    t.skip("fault matrix", "too slow under valgrind")
    t.done()


class RecClient(Client):
    """A Client that keeps every line it read, to count terminal lines
    per request id after the fact; answer deltas are not decoded (floods)."""

    def __init__(self, path):
        super().__init__(path, timeout=TURN_TIMEOUT_S)  # Client scales it
        self.terms = {}         # rid -> terminal lines seen
        self.rids = []          # execute ids sent

    def decode(self, raw):
        if b'"type":"answer"' in raw[:200]:
            return {"type": "answer", "id": None, "data": {}}
        import json
        o = json.loads(raw)
        if o.get("type") in ("done", "error") and o.get("id") in self.terms:
            self.terms[o["id"]] += 1
        return o

    def send_exec(self, session, prompt, **fields):
        rid = self.send("execute", session=session, prompt=prompt, **fields)
        self.rids.append(rid)
        self.terms[rid] = 0
        return rid

    def events_of(self, rid):
        """Lines of rid until its terminal line; answer deltas are kept as
        placeholders (their id is not decoded)."""
        out = []
        while True:
            o = self.line()
            if o is None:
                return out
            if o["type"] == "answer" or o.get("id") == rid:
                out.append(o)
                if o["type"] in ("done", "error") and o.get("id") == rid:
                    return out


def workers_of(d):
    return d.workers()


def fd_names(pid):
    """What each of pid's descriptors is, for a failure's diagnosis."""
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" %
                                                     (pid, fd))))
        except OSError:
            pass
    return "\n".join(out)


def fd_key(d):
    """Master fds net of its workers' channels and clients (one each), as
    the master counts them in one step (hplib.master_fds)."""
    c = d.client()
    try:
        return master_fds(c)
    finally:
        c.close()
        d.clients.remove(c)


def settled_fd_key(d):
    """fd_key once the spares are up (a case's baseline)."""
    wait_for(lambda: len(workers_of(d)) >= SPARE_MIN, 10, "the spares")
    return fd_key(d)


class Case:
    """What a case saw: problems, and every pid it must not leave."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.problems = []
        self.pgids = set()
        self.pids = set()       # workers, CLIs, escapees
        self.outcomes = {}      # terminal code -> count
        self.execs = 0
        self.bad_terms = []
        self.after_fail = []
        self.raced = []         # kills that landed between two turns

    def problem(self, msg):
        with self.lock:
            self.problems.append(msg)

    @staticmethod
    def code(evs):
        last = evs[-1] if evs else None
        if last is None or last["type"] not in ("done", "error"):
            return "none"
        if last["type"] == "done":
            return "done"
        return last["data"].get("code", "?")

    def outcome(self, evs):
        code = self.code(evs)
        with self.lock:
            self.outcomes[code] = self.outcomes.get(code, 0) + 1
        return code

    def track(self, evs, workdir=None):
        s = first(evs, "session_start")
        with self.lock:
            if s:
                self.pgids.add(s["data"]["pgid"])
                self.pids.add(s["data"]["worker_pid"])
                self.pids.add(s["data"]["cli_pid"])
        if workdir:
            self.read_pidfile(workdir)
        return s["data"] if s else None

    def read_pidfile(self, workdir):
        path = os.path.join(workdir, PIDFILE)
        try:
            with open(path) as f:
                pids = [int(x) for x in f.read().split() if int(x) > 0]
            os.unlink(path)
        except (OSError, ValueError):
            return []
        with self.lock:
            self.pids.update(pids)
        return pids

    def left(self, root):
        out = set(procs_under(root))
        for g in self.pgids:
            if g:
                out.update(procs_in_group(g))
        out.update(p for p in self.pids if p and proc_alive(p))
        return sorted(out)


def describe(pids):
    out = []
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            out.append(st[:120])
        except OSError:
            out.append("%d (gone)" % p)
    return out


OURS = ("fake-claude", "hotplex-worker", "hotplexd", "sh", "claude-wrap")


def kill_left(pids):
    """The test stops what it started, whatever the daemon left (only
    programs of ours: a tracked pid may have been reused)."""
    for p in pids:
        try:
            with open("/proc/%d/comm" % p) as f:
                if f.read().strip() in OURS:
                    os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def run_case(case, d, body, par=PAR, iters=ITERS, after="stream:1"):
    """Runs body(case, client, session, workdir, i, rng) for iters
    iterations over par sessions in parallel; after each, a turn `after`
    must end done.  Then stops the sessions and checks the invariants."""
    fds0 = settled_fd_key(d)
    t0 = time.monotonic()

    def thread(k):
        rng = random.Random(SEED * 1000 + zlib.crc32(case.name.encode()) +
                            k)
        sess = "%s-%d" % (case.name, k)
        wd = os.path.join(d.work, sess)
        os.makedirs(wd, exist_ok=True)
        give_tree(wd)       # the session's user works in it
        c = RecClient(d.sock)
        try:
            for i in range(k, iters, par):
                try:
                    raced = body(case, c, sess, wd, i, rng)
                    if after:
                        rid = c.send_exec(sess, after, workdir=wd)
                        evs = c.events_of(rid)
                        case.track(evs, wd)
                        code = case.code(evs)
                        if raced and code in ("cli_exited", "worker_exited"):
                            # The kill came after the turn's end: the next
                            # turn met the dying process.  Once, not twice.
                            with case.lock:
                                case.raced.append("iteration %d: %s" %
                                                  (i, code))
                            rid = c.send_exec(sess, after, workdir=wd)
                            evs = c.events_of(rid)
                            case.track(evs, wd)
                            code = case.code(evs)
                        if code != "done":
                            case.after_fail.append(
                                "iteration %d: turn after the fault: %r" %
                                (i, evs[-1:]))
                except socket.timeout:
                    case.problem("iteration %d (session %s): no terminal "
                                 "line within %ds" % (i, sess, TURN_TIMEOUT_S))
                    return
            # Late or doubled terminal lines arrive before this reply.
            c.request("sessions")
            with case.lock:
                case.execs += len(c.rids)
                case.bad_terms += ["%s %s: %d terminal lines" % (sess, r, n)
                                   for r, n in c.terms.items() if n != 1]
            r = c.request("stop", session=sess) if c.rids else {"type": "ok"}
            if r is None or r["type"] != "ok":
                case.problem("stop %s: %r" % (sess, r))
        except Exception as e:
            case.problem("session %s raised %r" % (sess, e))
        finally:
            c.close()

    ths = [threading.Thread(target=thread, args=(k,)) for k in range(par)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    el = time.monotonic() - t0
    print("# %s: %d executes in %.1fs, outcomes %s" %
          (case.name, case.execs, el, sorted(case.outcomes.items())))
    if case.raced:
        print("# %s: %d kills landed after the turn ended and failed the "
              "next turn (%s)" % (case.name, len(case.raced),
                                  "; ".join(case.raced)))
    t.ok(not case.problems, "%s: no hang, no client error" % case.name,
         "\n".join(case.problems))
    t.ok(not case.bad_terms and case.execs >= iters,
         "%s: each of %d executes got exactly one terminal line" %
         (case.name, case.execs), "\n".join(case.bad_terms))
    if after:
        t.ok(not case.after_fail, "%s: every session serves a turn after "
             "each fault" % case.name, "\n".join(case.after_fail))
    check_gone(case, d.work)
    try:
        wait_for(lambda: fd_key(d) <= fds0, GONE_TIMEOUT_S, "fds")
        t.ok(True, "%s: no fd leaked in the master (%d net of workers)" %
             (case.name, fds0))
    except TimeoutError:
        t.ok(False, "%s: no fd leaked in the master" % case.name,
             "before %d, after %d (net of %d workers)\n%s" %
             (fds0, fd_key(d), len(workers_of(d)),
              fd_names(d.proc.pid)))


def check_gone(case, root, timeout=GONE_TIMEOUT_S):
    try:
        wait_for(lambda: not case.left(root), timeout, "leftovers")
        t.ok(True, "%s: no process left (%d pids, %d groups tracked)" %
             (case.name, len(case.pids), len(case.pgids)))
        return True
    except TimeoutError:
        left = case.left(root)
        t.ok(False, "%s: no process left" % case.name,
             "left: %s" % "\n".join(describe(left)))
        kill_left(left)
        return False


def outcomes_ok(case, allowed):
    bad = {k: v for k, v in case.outcomes.items() if k not in allowed}
    t.ok(not bad, "%s: fault turns end %s" % (case.name, "/".join(allowed)),
         "unexpected outcomes %r" % bad)


def daemon(conf=None, env=None, cli=None):
    c = {"kill_grace": GRACE, "spare_min": str(SPARE_MIN), "spare_max": "8",
         "log_level": "info"}
    c.update(conf or {})
    e = {"FAKE_CLAUDE_PIDFILE": PIDFILE}
    e.update(env or {})
    return Daemon(c, env=e, cli=cli)


def kill_during(sig_target):
    """A body: a streaming turn whose CLI or worker gets SIGKILL after a
    random delay from its session_start."""
    def body(case, c, sess, wd, i, rng):
        delay, n = rng.randint(2, 20), rng.randint(3, 20)
        at = rng.uniform(0, delay * n * 1.2) / 1000.0
        extra = " fork-escape" if sig_target == "worker+escape" else ""
        rid = c.send_exec(sess, "delay:%d stream:%d%s" % (delay, n, extra),
                          workdir=wd)
        evs = []
        ev = c.line()
        evs.append(ev)
        if ev and ev["type"] == "session_start":
            case.track(evs)
            time.sleep(at)      # the fault's moment: not a bound
            pid = ev["data"]["cli_pid" if sig_target == "cli" else
                             "worker_pid"]
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            evs += c.events_of(rid)
        case.read_pidfile(wd)
        code = case.outcome(evs)
        if code not in ("done", "cli_exited", "worker_exited"):
            case.problem("iteration %d: kill after %.3fs (delay:%d "
                         "stream:%d): %r" % (i, at, delay, n, evs[-1:]))
        return code == "done"
    return body


def test_kill_cli():
    case = Case("kill-cli")
    with daemon() as d:
        run_case(case, d, kill_during("cli"))
    outcomes_ok(case, ("done", "cli_exited"))


def test_kill_worker():
    case = Case("kill-worker")
    with daemon() as d:
        run_case(case, d, kill_during("worker"))
    outcomes_ok(case, ("done", "worker_exited"))


def test_kill_worker_escape():
    case = Case("kill-worker-escape")
    with daemon() as d:
        run_case(case, d, kill_during("worker+escape"))
    outcomes_ok(case, ("done", "worker_exited"))


def test_hang_timeout():
    """A stalled CLI (answering or ignoring the interrupt) hits its turn
    timeout: error turn_timeout."""
    case = Case("hang-timeout")

    def body(case, c, sess, wd, i, rng):
        ms = rng.randint(50, 400)
        p = "stall" + (" ignore-interrupt" if i % 2 else "")
        rid = c.send_exec(sess, p, workdir=wd, options={"timeout_ms": ms})
        evs = c.events_of(rid)
        case.track(evs)
        case.outcome(evs)
    with daemon() as d:
        run_case(case, d, body)
    outcomes_ok(case, ("turn_timeout",))


def test_ignore_interrupt():
    """interrupt on a CLI that ignores it: the turn must still end soon
    (within kill_grace and some slack), not at its turn timeout."""
    case = Case("ignore-interrupt")
    late = []

    def body(case, c, sess, wd, i, rng):
        rid = c.send_exec(sess, "ignore-interrupt " +
                          ("stall" if i % 2 else "delay:50 stream:200"),
                          workdir=wd, options={"timeout_ms": 3000})
        evs = [c.line()]
        case.track(evs)
        time.sleep(rng.uniform(0, 0.1))     # a random moment: not a bound
        t0 = time.monotonic()
        c.send("interrupt", session=sess)
        evs += c.events_of(rid)
        el = time.monotonic() - t0
        code = case.outcome(evs)
        if el > INTERRUPT_MAX_S * time_scale() or code == "turn_timeout":
            late.append("iteration %d: ended %s after %.1fs" % (i, code, el))
    with daemon() as d:
        run_case(case, d, body)
    t.ok(not late, "ignore-interrupt: an interrupt ends the turn within "
         "%.1fs (scaled) though the CLI ignores it" % INTERRUPT_MAX_S,
         "\n".join(late[:10]))


def flood_timeout_ms(size):
    return int(max(FLOOD_MIN_MS, size * FLOOD_MS_PER_MB // 1000000) *
               time_scale())


def flood_body(size_of, timeout_ms):
    """timeout_ms: the turn timeout, or a function of the flood's size."""
    def body(case, c, sess, wd, i, rng):
        size = size_of(i)
        ms = timeout_ms(size) if callable(timeout_ms) else timeout_ms
        rid = c.send_exec(sess, "flood:%d" % size, workdir=wd,
                          options={"timeout_ms": ms})
        evs = c.events_of(rid)
        case.track(evs)
        n = sum(1 for e in evs if e["type"] == "answer")
        if case.outcome(evs) != "done" or n < size // 256:
            case.problem("iteration %d: flood:%d: %d answer lines, %r" %
                         (i, size, n, evs[-1:]))
    return body


def test_flood():
    """A flood read by its client.  Iteration 0 is flood:50000000 (the
    answer, and so the assistant and result lines, exceed cli_line_max);
    the others flood 4 MB (HP_FAULT_FULL=1: all 50 MB)."""
    case = Case("flood")
    full = os.environ.get("HP_FAULT_FULL")
    with daemon() as d:
        run_case(case, d, flood_body(lambda i: 50000000 if i == 0 or full
                                     else 4000000, flood_timeout_ms), par=2)
    outcomes_ok(case, ("done",))


def test_flood_over_line_max():
    """The same bug as a full-size flood, quickly: with cli_line_max 64K a
    300 KB flood makes the CLI's result line too long; the turn must still
    end (done) and not wait for its timeout."""
    case = Case("flood-over-line-max")
    with daemon({"cli_line_max": "64K"}) as d:
        run_case(case, d, flood_body(lambda i: 300000, 3000))
    outcomes_ok(case, ("done",))


def hugeline_body(size_of):
    def body(case, c, sess, wd, i, rng):
        size = size_of(i)
        rid = c.send_exec(sess, "hugeline:%d stream:2" % size, workdir=wd)
        evs = c.events_of(rid)
        case.track(evs)
        drops = [e for e in evs if e["type"] == "system" and
                 e["data"].get("subtype") == "line_dropped"]
        if case.outcome(evs) != "done" or not drops or \
                max(x["data"].get("bytes", 0) for x in drops) < size:
            case.problem("iteration %d: hugeline:%d: drops %r, end %r" %
                         (i, size, drops, evs[-1:]))
    return body


def test_hugeline():
    """A 100 MB line (cli_line_max 16M): system/line_dropped and the turn
    goes on.  Iteration 0 is full size; the loop runs the same path with
    cli_line_max 64K and 200 KB lines (HP_FAULT_FULL=1: all 100 MB)."""
    case = Case("hugeline")
    full = os.environ.get("HP_FAULT_FULL")
    with daemon() as d:
        run_case(case, d, hugeline_body(lambda i: 100000000),
                 par=3 if full else 1, iters=ITERS if full else 1)
    outcomes_ok(case, ("done",))
    if full:
        return
    case = Case("hugeline-64K")
    with daemon({"cli_line_max": "64K"}) as d:
        run_case(case, d, hugeline_body(lambda i: 200000))
    outcomes_ok(case, ("done",))


def test_fork_escape():
    """Escaped tools die when their session is stopped."""
    case = Case("fork-escape")

    def body(case, c, sess, wd, i, rng):
        rid = c.send_exec(sess, "fork-escape stream:%d" % rng.randint(1, 5),
                          workdir=wd)
        evs = c.events_of(rid)
        case.track(evs)
        pids = case.read_pidfile(wd)
        if case.outcome(evs) != "done" or len(pids) != 2:
            case.problem("iteration %d: pids %r, end %r" %
                         (i, pids, evs[-1:]))
        r = c.request("stop", session=sess)
        try:
            wait_for(lambda: not [p for p in pids if proc_alive(p)],
                     GONE_TIMEOUT_S, "escapees")
        except TimeoutError:
            case.problem("iteration %d: escaped pids alive after stop "
                         "(%r): %s" % (i, r, describe(
                             [p for p in pids if proc_alive(p)])))
    with daemon() as d:
        run_case(case, d, body)
    outcomes_ok(case, ("done",))


def test_exit_at_start():
    """A CLI that exits at start (FAKE_CLAUDE_START=exit:1, set by a
    wrapper while a marker file is in the workdir): the execute ends with
    an error, and once the CLI starts again the session serves."""
    case = Case("exit-at-start")
    d = daemon()
    # Its own dir, with the fake CLI beside it: Landlock lets the CLI
    # run what is in its dir.
    cli = os.path.join(d.dir, "cli")
    os.mkdir(cli)
    os.chmod(cli, 0o755)
    wrap = os.path.join(cli, "claude-wrap")
    fake = os.path.join(cli, "fake-claude")
    shutil.copy2(os.path.join(BDIR, "fake-claude"), fake)
    with open(wrap, "w") as f:
        f.write("#!/bin/sh\n[ -e exit-at-start ] && FAKE_CLAUDE_START=exit:1 "
                "&& export FAKE_CLAUDE_START\nexec %s \"$@\"\n" % fake)
    os.chmod(wrap, 0o755)
    with open(d.conf_path, "a") as f:
        f.write("cli_path = %s\n" % wrap)

    def body(case, c, sess, wd, i, rng):
        if c.rids:      # the CLI of the turn before must start anew
            c.request("stop", session=sess)
        mark = os.path.join(wd, "exit-at-start")
        open(mark, "w").close()
        rid = c.send_exec(sess, "stream:2", workdir=wd)
        evs = c.events_of(rid)
        os.unlink(mark)
        case.track(evs)
        case.outcome(evs)
    with d:
        run_case(case, d, body)
    # Not worker_exited: the master may fail to send the turn to a worker
    # whose CLI is already gone (EPIPE), but it still reads that worker's
    # last messages, the CLI's exit among them.
    outcomes_ok(case, ("cli_exited", "spawn_failed"))


def test_master_killed():
    """SIGKILL of hotplexd mid-turn: no worker, CLI or escaped tool of it
    survives (workers die by PR_SET_PDEATHSIG; setsid() tools are the hard
    case)."""
    case = Case("master-killed")
    iters = max(ITERS // 4, 1) * 4
    lock = threading.Lock()
    survivors = []

    def one(i, rng):
        d = daemon({"spare_min": "1"})
        d.start()
        try:
            c = RecClient(d.sock)
            rids = {}
            for k, p in enumerate(("fork-escape delay:20 stream:100",
                                   "stall", "fork-escape stall",
                                   "delay:10 stream:300")):
                sess = "m%d" % k
                wd = os.path.join(d.work, sess)
                rids[c.send_exec(sess, p, workdir=wd)] = wd
            starts = 0
            while starts < len(rids):
                o = c.line()
                if o is None:
                    break
                if o["type"] == "session_start":
                    starts += 1
                    case.track([o])
            # fork-escape writes its pids before its first output line.
            for wd in rids.values():
                case.read_pidfile(wd)
            workers = workers_of(d)
            with case.lock:
                case.pids.update(workers)
            time.sleep(rng.uniform(0, 0.2))     # not a bound: a moment
            d.proc.kill()
            d.proc.wait()
            c.close()
            mine = set(workers)
            try:
                wait_for(lambda: not [p for p in mine if proc_alive(p)] and
                         not procs_under(d.work), 5, "the master's "
                         "processes to die")
            except TimeoutError:
                left = sorted(set(p for p in mine if proc_alive(p)) |
                              set(procs_under(d.work)))
                with lock:
                    survivors.append("iteration %d: %s" %
                                     (i, describe(left)))
                kill_left(left)
        finally:
            d.stop()
            d.cleanup()

    def thread(k):
        rng = random.Random(SEED * 1000 + 77 + k)
        for i in range(k, iters, 4):
            try:
                one(i, rng)
            except Exception as e:
                case.problem("iteration %d raised %r" % (i, e))

    t0 = time.monotonic()
    ths = [threading.Thread(target=thread, args=(k,)) for k in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    print("# master-killed: %d daemons killed in %.1fs" %
          (iters, time.monotonic() - t0))
    t.ok(not case.problems, "master-killed: every iteration ran",
         "\n".join(case.problems))
    t.ok(not survivors, "master-killed: no worker, CLI or escaped tool "
         "survives SIGKILL of hotplexd", "\n".join(survivors[:10]))


def cpu_seconds(pid):
    """User and system CPU time a process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors():
    """With its descriptors used up, the master pauses accepting on both of
    its sockets instead of spinning on them, and serves once some are
    free again."""
    import http.client
    import resource
    # daemon_user = root: see test_descriptor_capacity.
    with Daemon({"metrics_listen": METRICS_ANY,
                 "kill_grace": GRACE, "daemon_user": "root"}) as d:
        port = d.metrics_port()
        c = d.client()
        c.execute("fd1", "stream:1", workdir=d.work + "/fd1")
        pid = d.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE,
                         (fd_count(pid) + 2, hard))
        held = []
        for _ in range(8):
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(d.sock)
            held.append(u)
            held.append(socket.create_connection(("127.0.0.1", port)))

        def log():
            return open(d.log, errors="replace").read()
        wait_for(lambda: "master: accept: pausing" in log() and
                 "metrics: accept: pausing" in log(), 10,
                 "both listeners to pause")
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(1.5)         # a measurement span: not a bound
        used = cpu_seconds(pid) - c0
        t.ok(used < 0.5 * (time.monotonic() - t0),
             "out of descriptors: the master pauses, it does not spin",
             "%.2f s of CPU in %.2f s" % (used, time.monotonic() - t0))
        for h in held:
            h.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

        def serves():
            r = d.client().request("sessions")
            h = http.client.HTTPConnection("127.0.0.1", port,
                                           timeout=scaled(5))
            try:
                h.request("GET", "/metrics")
                st = h.getresponse().status
            finally:
                h.close()
            return r is not None and r["type"] == "sessions" and st == 200
        try:
            wait_for(serves, 10, "the daemon to serve again")
            t.ok(True, "out of descriptors: both sockets serve again once "
                 "descriptors are free")
        except (TimeoutError, OSError) as e:
            t.ok(False, "out of descriptors: both sockets serve again once "
                 "descriptors are free", (repr(e), d.logtail()))


def test_stalled_client_worker_killed():
    """A worker killed while its reading is paused for a client that does
    not read is read on to its end: its session leaves busy (before, each
    line read paused it again and its EOF was never read, so the session
    stayed busy and a shutdown never ended), and hotplexd stops cleanly."""
    with daemon({"client_pause_bytes": "64K", "client_stall_timeout": "1h",
                 "log_level": "info"}) as d:
        c = d.client()
        c.send("execute", session="stall", prompt="flood:50000000",
               workdir=d.work + "/stall")
        ev = c.line()
        if not ev or ev.get("type") != "session_start":
            t.ok(False, "stalled client: session_start", repr(ev))
            return
        wpid = ev["data"]["worker_pid"]

        def log():
            return open(d.log, errors="replace").read()
        wait_for(lambda: "session stall: client does not read" in log(), 60,
                 "the worker to be paused for the stalled client")
        os.kill(wpid, signal.SIGKILL)
        other = d.client()

        def not_busy():
            r = other.request("sessions")
            st = [x.get("state") for x in r["data"]
                  if x.get("session") == "stall"]
            return st and st[0] != "busy"
        try:
            wait_for(not_busy, 30, "the killed worker's session to leave busy")
            t.ok(True, "stalled client: a killed worker's end is read, its "
                 "session leaves busy")
        except TimeoutError:
            t.ok(False, "stalled client: a killed worker's end is read, its "
                 "session leaves busy", d.logtail())
        rc = d.stop()
        t.ok(rc == 0 and "not accounted for" not in log(),
             "stalled client: hotplexd then stops, every worker accounted for",
             "rc %r\n%s" % (rc, log()[-3000:]))


def test_stalled_client_resumes():
    """One client runs two sessions' turns and stops reading: each worker
    is paused (by its own next line for that client), and once the client
    reads again both go on to their end, each execute with one terminal
    line, done, and every flooded byte there.  A resume that missed a
    paused worker would leave its turn silent: the read gives up after
    STALL_SILENCE_S (scaled) without a line.  A second client's turn
    meanwhile is not held."""
    flood = 2000000
    with daemon({"client_pause_bytes": "64K", "client_stall_timeout": "1h",
                 "log_level": "info"}) as d:
        c = RecClient(d.sock)
        c.timeout = STALL_SILENCE_S     # line() scales it by the load
        d.clients.append(c)
        names = ("stall1", "stall2")
        rids = [c.send_exec(n, "flood:%d" % flood, workdir=d.work + "/" + n)
                for n in names]

        def log():
            return open(d.log, errors="replace").read()
        wait_for(lambda: all("session %s: client does not read" % n in log()
                             for n in names), 60,
                 "both workers paused for the stalled client")
        other = d.client()
        evs = other.execute("other", "stream:3", workdir=d.work + "/other")
        t.ok(evs and evs[-1]["type"] == "done",
             "stalled client: another client's turn is served meanwhile",
             evs[-2:])
        ends, text = {}, {r: 0 for r in rids}
        c.decode = lambda raw: Client.decode(c, raw)   # count the text
        while len(ends) < len(rids):
            o = c.line()
            if o is None:
                break
            if o.get("id") in text and o["type"] == "answer":
                text[o["id"]] += len(o["data"].get("text", ""))
            if o["type"] in ("done", "error") and o.get("id") in text:
                ends[o["id"]] = ends.get(o["id"], 0) + 1
                if ends[o["id"]] > 1:
                    break
                c.terms[o["id"]] += 1
        t.ok(len(ends) == 2 and all(n == 1 for n in c.terms.values()),
             "stalled client: both paused turns resume and end, one terminal "
             "line each", (ends, d.logtail()))
        t.ok(all(text[r] >= flood for r in rids),
             "stalled client: nothing lost while paused", text)
        pauses = [log().count("session %s: client does not read" % n)
                  for n in names]
        print("# pauses per session: %r" % (pauses,))


def test_descriptor_capacity():
    """hotplexd with few descriptors (soft and hard limit low): executes
    past what they allow each get their terminal line (capacity) within a
    bound, a client that cannot be accepted is told capacity, and the
    sessions that got a worker go on serving turns."""
    import resource
    nsess = 24
    # daemon_user = root: the master stays root, so that this test may
    # prlimit it (a root without CAP_SYS_RESOURCE, as in a container, may
    # not change another uid's limits).
    with daemon({"max_sessions": "100", "spare_min": "1",
                 "spare_max": "1", "daemon_user": "root"}) as d:
        c = RecClient(d.sock)
        d.clients.append(c)
        first_evs = c.execute("nofile0", "stream:1",
                              workdir=d.work + "/nofile0")
        pid = d.proc.pid
        # Room for a few sessions only (each holds its worker's channel).
        lim = fd_count(pid) + 6
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lim, lim))
        rids = [c.send_exec("nofile%d" % i, "stream:1",
                            workdir=d.work + "/nofile%d" % i)
                for i in range(1, nsess)]
        ends = {}
        for rid in rids:
            evs = c.events(rid)
            ends[rid] = evs[-1] if evs else None
        lost = [r for r in rids if ends[r] is None or
                ends[r]["type"] not in ("done", "error")]
        t.ok(not lost and all(c.terms[r] == 1 for r in rids),
             "out of descriptors: every execute gets one terminal line",
             "lost %r\n%s" % (lost, d.logtail()))
        codes = [e["data"].get("code") for e in ends.values()
                 if e is not None and e["type"] == "error"]
        done = [r for r in rids if ends[r] is not None and
                ends[r]["type"] == "done"]
        t.ok(codes and set(codes) == {"capacity"} and done,
             "out of descriptors: the executes past the limit end "
             "capacity, the others done",
             "codes %r, %d done" % (codes, len(done)))
        # New connections take the last descriptors; the first that
        # cannot be accepted is told capacity, not left waiting.
        conns, refused = [], None
        try:
            for _ in range(lim):
                k = Client(d.sock, timeout=TURN_TIMEOUT_S)  # Client scales it
                conns.append(k)
                try:
                    k.send("hello")
                except BrokenPipeError:
                    pass    # refused and closed first: the refusal is read
                o = k.line()    # the hello, or the refusal (id null)
                if o is not None and o["type"] == "error":
                    refused = o
                    break
        finally:
            for k in conns:
                try:
                    k.close()
                except OSError:
                    pass    # a refused one: our hello is unflushed
        t.ok(refused is not None and refused["data"]["code"] == "capacity",
             "out of descriptors: a client that cannot be accepted gets "
             "capacity", refused)
        # The daemon keeps serving the sessions it has.
        ok = first_evs and first_evs[-1]["type"] == "done"
        for sess in ["nofile0"] + ["nofile%d" % (i + 1) for i, r in
                                   enumerate(rids) if r in done][:3]:
            evs = c.events(c.send_exec(sess, "stream:1"))
            ok = ok and bool(evs) and evs[-1]["type"] == "done"
        t.ok(ok, "out of descriptors: sessions with a worker still serve "
             "turns", d.logtail())


def test_nofile_warning():
    """hotplexd -n warns when max_sessions needs more descriptors than
    the hard limit allows."""
    import resource
    import subprocess
    d = Daemon({"max_sessions": "5000"})
    try:
        def low():
            resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))
        r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c",
                            d.conf_path], capture_output=True,
                           preexec_fn=low, timeout=scaled(TURN_TIMEOUT_S))
        err = r.stderr.decode(errors="replace")
        t.ok(r.returncode == 0 and "need about" in err and "512" in err,
             "hotplexd -n warns when max_sessions needs more descriptors "
             "than the limit", err)
    finally:
        d.cleanup()


def test_nproc_warning():
    """hotplexd -n warns when max_sessions of one user could need more
    tasks than rlimit_nproc, which counts them together; not when the
    limit is off or high enough."""
    import subprocess
    errs = []
    for nproc in ("4096", "0", "100000"):
        d = Daemon({"max_sessions": "1000", "rlimit_nproc": nproc})
        try:
            r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c",
                                d.conf_path], capture_output=True,
                               timeout=scaled(TURN_TIMEOUT_S))
            errs.append((r.returncode,
                         "counts all of that user" in
                         r.stderr.decode(errors="replace")))
        finally:
            d.cleanup()
    t.ok(errs == [(0, True), (0, False), (0, False)],
         "hotplexd -n warns when max_sessions needs more tasks than "
         "rlimit_nproc (4096: warned; 0 or 100000: not)", errs)


def test_cli_spawn_capacity():
    """The worker cannot make its CLI's pipes (its descriptors run out):
    the execute ends at once with capacity, not spawn_failed, and the
    next one is served by another worker."""
    import resource
    with daemon({"spare_min": "1", "spare_max": "1"}) as d:
        c = RecClient(d.sock)
        d.clients.append(c)

        def spare():
            r = c.request("status")
            if r is None or r["data"]["spares_ready"] < 1:
                return None
            ws = [p for p in d.workers() if comm(p) == "hotplex-worker"]
            return ws[0] if len(ws) == 1 else None
        wait_for(spare, TURN_TIMEOUT_S, "one ready spare")
        wk = spare()
        # Room for one more descriptor: a pipe needs two.
        top = max(int(f) for f in os.listdir("/proc/%d/fd" % wk))
        resource.prlimit(wk, resource.RLIMIT_NOFILE, (top + 2, top + 2))
        rid = c.send_exec("cap1", "stream:1", workdir=d.work + "/cap1")
        evs = c.events(rid)
        end = evs[-1] if evs else None
        t.ok(end is not None and end["type"] == "error" and
             end["data"].get("code") == "capacity" and c.terms[rid] == 1,
             "CLI spawn out of descriptors: the execute ends capacity",
             (evs[-2:], d.logtail()))
        evs = c.events(c.send_exec("cap1", "stream:1"))
        t.ok(evs and evs[-1]["type"] == "done",
             "CLI spawn out of descriptors: the next execute is served",
             evs[-2:])


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


ONLY = os.environ.get("HP_FAULT_ONLY", "").split()  # cases to run
T0 = time.monotonic()
for fn in (test_kill_cli, test_kill_worker, test_kill_worker_escape,
           test_hang_timeout, test_ignore_interrupt, test_fork_escape,
           test_exit_at_start, test_hugeline, test_flood,
           test_flood_over_line_max, test_master_killed,
           test_out_of_descriptors, test_descriptor_capacity,
           test_cli_spawn_capacity, test_nofile_warning, test_nproc_warning,
           test_stalled_client_worker_killed, test_stalled_client_resumes):
    if ONLY and fn.__name__ not in ONLY:
        continue
    t1 = time.monotonic()
    try:
        fn()
    except Exception as e:  # a crashed case is a failure, not an abort
        import traceback
        t.ok(False, fn.__name__ + " raised " + repr(e), traceback.format_exc())
    print("# %s: %.1fs" % (fn.__name__, time.monotonic() - t1))
print("# total %.1fs" % (time.monotonic() - T0))
t.done()
