#!/usr/bin/env python3
"""Load: NSESS concurrent sessions x NTURNS turns with tests/fake-claude,
driven by one select loop over NCONN connections; meanwhile a slow client
floods a session and never reads (the daemon must cut it off without
slowing the others), and a few random workers are SIGKILLed mid-turn.

Asserts: every execute gets exactly one terminal line; turns whose worker
was killed end done or error worker_exited, all others done; no process
is left.  Reports the master's VmRSS before and after, the total time and
turns/s as TAP comments.  HP_LOAD_SESSIONS, HP_LOAD_TURNS, HP_LOAD_KILLS
and HP_SEED change the defaults.
"""

import json
import os
import random
import selectors
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (scaled, time_scale, TAP, Daemon, wait_for, proc_alive,
                   procs_in_group, procs_under, rss_kb)

NSESS = int(os.environ.get("HP_LOAD_SESSIONS", "200"))
NTURNS = int(os.environ.get("HP_LOAD_TURNS", "20"))
NKILLS = int(os.environ.get("HP_LOAD_KILLS", "5"))
SEED = int(os.environ.get("HP_SEED", str(int(time.time() * 1000) % 1000000)))
NCONN = 20                  # sessions share connections, NSESS/NCONN each
RUN_TIMEOUT_S = 220.0       # the whole run; a turn never ending fails it
SILENCE_S = 60.0            # no line at all for this long is a hang
GONE_TIMEOUT_S = 15.0
READ_CHUNK = 65536
SLOW_RCVBUF = 4096          # the slow client's socket takes almost nothing
PROMPTS = ("stream:3", "stream:5 delay:2", "think stream:2", "stream:1",
           "tool:true stream:2")

t = TAP()
if os.environ.get("HP_VALGRIND"):
    t.skip("load", "too slow under valgrind")
    t.done()
print("# seed %d (HP_SEED=%d reproduces): %d sessions x %d turns, %d "
      "worker kills" % (SEED, SEED, NSESS, NTURNS, NKILLS))
rng = random.Random(SEED)


class Sess:
    def __init__(self, name, conn, workdir):
        self.name = name
        self.conn = conn
        self.workdir = workdir
        self.turn = 0           # turns sent
        self.rid = None         # the execute in flight
        self.started = False    # its session_start seen
        self.worker = None
        self.killed_rids = set()  # turns whose worker we killed


class Conn:
    def __init__(self, path, k):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.k = k
        self.inbuf = b""
        self.outbuf = b""
        self.n = 0

    def send(self, o):
        self.outbuf += (json.dumps(o) + "\n").encode()


class Load:
    def __init__(self, d):
        self.d = d
        self.sel = selectors.DefaultSelector()
        self.conns = [Conn(d.sock, k) for k in range(NCONN)]
        self.sessions = {}
        self.terms = {}         # rid -> terminal lines
        self.ends = {}          # rid -> (type, code)
        self.rid_sess = {}
        self.pgids = set()
        self.workers = set()
        self.done_turns = 0
        self.kill_at = sorted(rng.sample(range(NSESS * NTURNS // 10,
                                               NSESS * NTURNS * 9 // 10),
                                         min(NKILLS, NSESS * NTURNS // 2)))
        self.kills = []
        for i in range(NSESS):
            c = self.conns[i % NCONN]
            name = "l%03d" % i
            wd = os.path.join(d.work, name)
            self.sessions[name] = Sess(name, c, wd)
        for c in self.conns:
            self.sel.register(c.sock, selectors.EVENT_READ, c)

    def execute(self, s):
        s.turn += 1
        c = s.conn
        c.n += 1
        rid = "c%d-%d" % (c.k, c.n)
        s.rid, s.started = rid, False
        self.terms[rid] = 0
        self.rid_sess[rid] = s
        o = {"op": "execute", "id": rid, "session": s.name,
             "prompt": rng.choice(PROMPTS)}
        if s.turn == 1:
            o["workdir"] = s.workdir
        c.send(o)

    def on_line(self, c, o):
        rid = o.get("id")
        s = self.rid_sess.get(rid)
        if s is None:
            return
        typ = o.get("type")
        if typ == "session_start":
            s.started = True
            s.worker = o["data"]["worker_pid"]
            self.pgids.add(o["data"]["pgid"])
            self.workers.add(s.worker)
        elif typ in ("done", "error"):
            self.terms[rid] += 1
            if self.terms[rid] > 1:
                return
            self.ends[rid] = (typ, o["data"].get("code"))
            if rid != s.rid:
                return      # a late line of an earlier turn: counted above
            s.rid = None
            self.done_turns += 1
            self.maybe_kill()
            if s.turn < NTURNS:
                self.execute(s)

    def maybe_kill(self):
        while self.kill_at and self.done_turns >= self.kill_at[0]:
            self.kill_at.pop(0)
            busy = [s for s in self.sessions.values()
                    if s.rid is not None and s.started and s.worker]
            if not busy:
                continue
            s = rng.choice(busy)
            try:
                os.kill(s.worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # The turn in flight, and the next one if the master had not
            # yet seen the death when it came (the worker was between turns).
            s.killed_rids.add(s.rid)
            s.killed_rids.add("next")
            self.kills.append((s.name, s.worker, s.rid))

    def run(self):
        for s in self.sessions.values():
            self.execute(s)
        scale = time_scale()
        deadline = time.monotonic() + RUN_TIMEOUT_S * scale
        last = time.monotonic()
        while any(s.rid is not None or s.turn < NTURNS
                  for s in self.sessions.values()):
            now = time.monotonic()
            if now > deadline or now - last > SILENCE_S * scale:
                return False
            for c in self.conns:
                ev = selectors.EVENT_READ | (selectors.EVENT_WRITE
                                             if c.outbuf else 0)
                self.sel.modify(c.sock, ev, c)
            for key, mask in self.sel.select(1.0):
                c = key.data
                if mask & selectors.EVENT_WRITE and c.outbuf:
                    try:
                        n = c.sock.send(c.outbuf)
                        c.outbuf = c.outbuf[n:]
                    except BlockingIOError:
                        pass
                if mask & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        return False
                    last = time.monotonic()
                    c.inbuf += data
                    *lines, c.inbuf = c.inbuf.split(b"\n")
                    for raw in lines:
                        if raw:
                            self.on_line(c, json.loads(raw))
        # Late or doubled terminal lines come before these replies.
        for c in self.conns:
            c.sock.setblocking(True)
            c.sock.sendall(b'{"op":"sessions","id":"fin"}\n')
            buf = c.inbuf
            while b'"id":"fin"' not in buf:
                data = c.sock.recv(READ_CHUNK)
                if not data:
                    break
                buf += data
            for raw in buf.split(b"\n"):
                if raw and b'"id":"fin"' not in raw:
                    self.on_line(c, json.loads(raw))
        return True

    def close(self):
        for c in self.conns:
            self.sel.unregister(c.sock)
            c.sock.close()


def slow_client(d):
    """Sends a flood and never reads."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
    s.connect(d.sock)
    s.sendall(json.dumps({"op": "execute", "id": "slow", "session": "slow",
                          "prompt": "flood:50000000",
                          "workdir": os.path.join(d.work, "slow")}).encode()
              + b"\n")
    return s


def cut_off(s, timeout):
    """True once the daemon closed the slow client's connection."""
    s.settimeout(timeout)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not s.recv(1 << 20):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def main():
    conf = {"max_sessions": str(NSESS + 16), "spare_min": "4",
            "spare_max": "16", "client_outbuf_max": "1M",
            "client_pause_bytes": "256K",
            # A reader of the load descheduled for longer is not slow.
            "client_stall_timeout": "%ds" % int(scaled(2) + 0.999),
            "kill_grace": "300ms", "log_level": "info",
            "max_spawn_queue": str(NSESS + 16)}
    with Daemon(conf) as d:
        pid = d.proc.pid
        wait_for(lambda: len(d.workers()) >= 4, 20, "the spares")
        rss0 = rss_kb(pid)
        slow = slow_client(d)
        load = Load(d)
        t0 = time.monotonic()
        ok = load.run()
        el = time.monotonic() - t0
        turns = sum(1 for n in load.terms.values() if n)
        print("# %d turns in %.1fs: %.1f turns/s" % (turns, el, turns / el))
        t.ok(ok, "the run ended: no turn lost, no connection closed",
             "%d of %d turns ended; %s" % (turns, NSESS * NTURNS,
                                           d.logtail(10)))
        bad = ["%s: %d terminal lines" % (r, n)
               for r, n in load.terms.items() if n != 1]
        t.ok(not bad and len(load.terms) == NSESS * NTURNS,
             "each of %d executes got exactly one terminal line" %
             len(load.terms), "\n".join(bad[:20]))
        wrong = []
        killed_ended = {}
        for rid, (typ, code) in load.ends.items():
            s = load.rid_sess[rid]
            k = rid in s.killed_rids
            if not k and "next" in s.killed_rids and code == "worker_exited":
                k = True        # the turn right after a kill between turns
            end = "done" if typ == "done" else code
            if k:
                killed_ended[end] = killed_ended.get(end, 0) + 1
            if end != "done" and not (k and end == "worker_exited"):
                wrong.append("%s (%s): %s %s" % (rid, s.name, typ, code))
        print("# killed workers %s; their turns ended %s" %
              (load.kills, killed_ended))
        t.ok(not wrong and len(load.kills) >= min(NKILLS, 1),
             "turns on killed workers end done or worker_exited, all others "
             "done (%d kills)" % len(load.kills), "\n".join(wrong[:20]))
        # Wait for the daemon's word first: reading the socket now would
        # drain it and un-stall the client (a fast load run ends before
        # the stall timer has fired).
        try:
            wait_for(lambda: "does not read:" in open(d.log).read() or
                     "has not read" in open(d.log).read(), 60,
                     "the slow client's cut-off")
        except TimeoutError:
            pass
        cut = cut_off(slow, scaled(30))
        log = open(d.log).read()
        t.ok(cut and ("does not read:" in log or "has not read" in log),
             "the slow client was cut off (client_outbuf_max 1M, "
             "client_stall_timeout 2s)",
             "\n".join(l for l in log.splitlines() if ("slow" in l or
                       "read" in l) and "pausing its worker" not in l)[-3000:]
             + "\n%d pauses of the slow session's worker" %
             log.count("session slow: client does not read"))
        slow.close()
        rss1 = rss_kb(pid)
        print("# master VmRSS before %d kB, after %d kB" % (rss0, rss1))
        load.close()
        # Stop the sessions: nothing of theirs may be left.
        from hplib import Client
        c = Client(d.sock)
        for name in list(load.sessions) + ["slow"]:
            c.send("stop", session=name)
        n = 0
        while n < NSESS + 1:
            o = c.line()
            if o is None:
                break
            if o.get("type") in ("ok", "error") and o.get("id", "") and \
                    o["id"].startswith("r"):
                n += 1
        c.close()

        def left():
            out = set(procs_under(d.work))
            for g in load.pgids:
                out.update(procs_in_group(g))
            out.update(p for p in load.workers if proc_alive(p))
            return sorted(out)
        try:
            wait_for(lambda: not left(), GONE_TIMEOUT_S, "sessions' processes")
            t.ok(True, "no process left after stopping every session "
                 "(%d workers, %d groups)" % (len(load.workers),
                                               len(load.pgids)))
        except TimeoutError:
            t.ok(False, "no process left after stopping every session",
                 left()[:20])
        print("# master VmRSS after stopping every session %d kB" %
              rss_kb(pid))


try:
    main()
except Exception as e:
    import traceback
    t.ok(False, "load raised " + repr(e), traceback.format_exc())
t.done()
