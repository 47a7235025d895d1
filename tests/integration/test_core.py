#!/usr/bin/env python3
"""Integration tests of hotplexd with tests/fake-claude: multi-turn, busy,
interrupt, timeouts, crashes, garbage, dying workers, bad requests.
After each case, no process of its sessions may be left."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (METRICS_ANY, scaled, TAP, BDIR, Daemon, Client, wait_for,
                   proc_alive, procs_in_group, terminal_count, first, rss_kb,
                   master_fds)

t = TAP()
if os.environ.get("HP_VALGRIND") and os.environ.get("HP_SAN"):
    t.skip("integration under valgrind", "sanitizer build (ASan and "
           "valgrind do not mix); the plain build runs it")
    t.done()


def no_leftovers(d, pgids, what):
    """Every process group a session used is gone."""
    def gone():
        return all(not procs_in_group(g) for g in pgids if g)
    try:
        wait_for(gone, 10, "process groups to die")
        t.ok(True, what + ": no process of the session left")
    except TimeoutError:
        t.ok(False, what + ": no process of the session left",
             [(g, procs_in_group(g)) for g in pgids])


def start_of(evs):
    s = first(evs, "session_start")
    return s["data"] if s else {}


def test_multi_turn():
    with Daemon() as d:
        c = d.client()
        e1 = c.execute("s1", "think stream:5", workdir=d.work + "/s1")
        e2 = c.execute("s1", "stream:3")
        t.eq(terminal_count(e1), 1, "turn 1: exactly one terminal line")
        t.eq(e1[-1]["type"], "done", "turn 1 ends done")
        t.ok(e1[-1]["data"]["ok"], "turn 1 ok")
        t.eq([e["type"] for e in e1 if e["type"] == "thinking"] != [], True,
             "turn 1 streams thinking")
        t.eq(sum(1 for e in e1 if e["type"] == "answer"), 5,
             "turn 1: 5 answer deltas, none repeated from the assistant line")
        s1, s2 = start_of(e1), start_of(e2)
        t.ok(s1.get("cold") is True and s2.get("cold") is False,
             "turn 1 cold, turn 2 warm", (s1, s2))
        t.eq(s1.get("cli_pid"), s2.get("cli_pid"), "same CLI on turn 2")
        seqs = [e["seq"] for e in e1 + e2]
        t.eq(seqs, list(range(1, len(seqs) + 1)), "seq increases by one")
        st = c.request("stats", session="s1")
        t.eq(st["data"]["turns"], 2, "stats: two turns")
        t.eq(st["data"]["tokens"]["total"],
             sum(st["data"]["tokens"][k] for k in
                 ("input", "output", "cache_read", "cache_write")),
             "stats: total tokens = sum")
        t.eq(st["data"]["last_turn"]["turns"], 1, "stats: last_turn")
        pg = s1.get("pgid")
        r = c.request("stop", session="s1")
        t.eq(r["type"], "ok", "stop ok")
        no_leftovers(d, [pg], "multi-turn")
        st = c.request("stats", session="s1")
        t.ok(st["type"] == "stats" and st["data"]["state"] == "ended" and
             st["data"]["turns"] == 2, "stats kept after stop", st)


def test_busy_and_interrupt():
    with Daemon() as d:
        a, b = d.client(), d.client()
        rid = a.send("execute", session="s1", prompt="stall",
                     workdir=d.work + "/s1")
        # session_start arrives once the turn is running.
        ev = a.line()
        t.eq(ev["type"], "session_start", "stalled turn started")
        r = b.execute("s1", "stream:1")
        t.ok(len(r) == 1 and r[0]["type"] == "error" and
             r[0]["data"]["code"] == "session_busy",
             "second execute gets session_busy at once", r)
        r = b.request("interrupt", session="s1")
        t.eq(r["type"], "ok", "interrupt accepted")
        evs = [ev] + a.events(rid)
        t.eq(terminal_count(evs), 1, "interrupted turn: one terminal line")
        t.ok(evs[-1]["type"] == "done" and
             evs[-1]["data"]["interrupted"] is True,
             "interrupted turn ends done interrupted:true", evs[-1])
        e2 = a.execute("s1", "stream:2")
        t.ok(e2[-1]["type"] == "done" and start_of(e2)["cli_pid"] ==
             ev["data"]["cli_pid"], "CLI alive after interrupt", e2[-1])
        pg = ev["data"]["pgid"]
    no_leftovers(None, [pg], "after daemon stop")


def test_timeout_ignoring_cli():
    with Daemon({"kill_grace": "300ms"}) as d:
        c = d.client()
        evs = c.execute("s1", "stall ignore-interrupt",
                        workdir=d.work + "/s1", options={"timeout_ms": 300})
        t.eq(terminal_count(evs), 1, "timeout: one terminal line")
        t.ok(evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "turn_timeout",
             "timeout: error turn_timeout", evs[-1])
        pg = start_of(evs)["pgid"]
        no_leftovers(d, [pg], "timeout")
        e2 = c.execute("s1", "stream:1")
        s = start_of(e2)
        t.ok(e2[-1]["type"] == "done" and s["cold"] and s["resumed"],
             "next turn resumes in a new CLI", (s, e2[-1]))
        argv = d.cli_starts()[-1]["argv"]
        t.ok("--resume" in argv, "resumed with --resume", argv)


def test_cli_crash():
    with Daemon() as d:
        c = d.client()
        evs = c.execute("s1", "stream:2 crash", workdir=d.work + "/s1")
        t.eq(terminal_count(evs), 1, "crash: one terminal line")
        err = evs[-1]
        t.ok(err["type"] == "error" and err["data"]["code"] == "cli_exited"
             and "status 3" in err["data"]["message"],
             "crash: error cli_exited with the exit status", err)
        no_leftovers(d, [start_of(evs)["pgid"]], "crash")
        e2 = c.execute("s1", "stream:1")
        t.ok(e2[-1]["type"] == "done" and start_of(e2)["resumed"],
             "after a crash the next turn resumes", e2[-1])


def test_garbage_and_huge_lines():
    with Daemon({"cli_line_max": "64K"}) as d:
        c = d.client()
        evs = c.execute("s1", "garbage hugeline:200000 stream:2",
                        workdir=d.work + "/s1")
        t.eq(terminal_count(evs), 1, "garbage: one terminal line")
        t.ok(evs[-1]["type"] == "done" and evs[-1]["data"]["ok"],
             "garbage and a huge line don't end the turn", evs[-1])
        drops = [e for e in evs if e["type"] == "system" and
                 e["data"].get("subtype") == "line_dropped"]
        t.ok(len(drops) >= 1 and max(x["data"].get("bytes", 0)
                                     for x in drops) >= 200000,
             "huge line reported as system/line_dropped", drops)
        e2 = c.execute("s1", "stream:1")
        t.ok(e2[-1]["type"] == "done" and start_of(e2)["cold"] is False,
             "CLI still serves after garbage", e2[-1])


def test_worker_killed():
    with Daemon() as d:
        c = d.client()
        rid = c.send("execute", session="s1", prompt="stall",
                     workdir=d.work + "/s1")
        ev = c.line()
        wpid, pg = ev["data"]["worker_pid"], ev["data"]["pgid"]
        fds = master_fds(c)
        os.kill(wpid, signal.SIGKILL)
        evs = [ev] + c.events(rid)
        t.eq(terminal_count(evs), 1, "worker killed: one terminal line")
        t.ok(evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "worker_exited",
             "worker killed: error worker_exited", evs[-1])
        no_leftovers(d, [pg], "worker killed")
        e2 = c.execute("s1", "stream:1")
        t.ok(e2[-1]["type"] == "done" and start_of(e2)["worker_pid"] != wpid,
             "a new worker serves the next turn", e2[-1])
        try:
            wait_for(lambda: master_fds(c) <= fds, 10, "fds")
            t.ok(True, "no fd leaked in the master")
        except TimeoutError:
            t.ok(False, "no fd leaked in the master",
                 (fds, master_fds(c)))


def test_bad_requests():
    with Daemon({"max_request_bytes": "4K"}) as d:
        c = d.client()
        c.send_raw(b"this is not json\n")
        r = c.line()
        t.ok(r["type"] == "error" and r["data"]["code"] == "bad_request",
             "non-JSON: bad_request", r)
        r = c.request("frobnicate")
        t.ok(r["type"] == "error" and r["data"]["code"] == "unknown_op",
             "unknown op: unknown_op", r)
        c.send_raw(b'{"op":"stats"}\n')
        r = c.line()
        t.ok(r["type"] == "error" and r["data"]["code"] == "bad_request",
             "missing id: bad_request", r)
        r = c.request("execute", session="bad session!", prompt="x")
        t.ok(r["data"]["code"] == "bad_request", "bad session id", r)
        r = c.request("execute", session="s1")
        t.ok(r["data"]["code"] == "bad_request", "missing prompt", r)
        for opt in ({"timeout_ms": 1e300}, {"max_turns": "3"},
                    {"allowed_tools": "Bash"}, {"model": 7},
                    {"model": "--dangerously-skip-permissions"}):
            r = c.request("execute", session="s9", prompt="x", options=opt)
            t.ok(r["type"] == "error" and r["data"]["code"] == "bad_request",
                 "bad options %s: bad_request" % json.dumps(opt), r)
        # Bytes a client's JSON parser would choke on are refused, and
        # never echoed back (an id of invalid UTF-8 used to come back).
        for raw, what in ((b'{"id":"\xff\xfe","op":"hello"}\n',
                           "an id of invalid UTF-8"),
                          (b'{"id":"a\x00b","op":"hello"}\n',
                           "a raw NUL in the id"),
                          (b'{"id":"n1","op":"stats","session":"a\x00b"}\n',
                           "a raw NUL in a string"),
                          (b'{"id":"n2","op":"stats","session":"a\\u0000b"}'
                           b'\n', "an escaped NUL in a string"),
                          (b'{"id":"n3","op":"stats","session":"a\x01b"}\n',
                           "a raw control character in a string")):
            c.send_raw(raw)
            line = c.f.readline()
            r = json.loads(line.decode("utf-8"))  # strict: valid UTF-8
            t.ok(r["type"] == "error" and r["data"]["code"] == "bad_request"
                 and r["id"] is None and b"\xff" not in line and
                 b"\x00" not in line and b"\x01" not in line,
                 "%s: bad_request, nothing of it echoed" % what, line)
        c.send_raw(b'{"id":"u1","op":"' + b"x" * 63 + b'\xc3\xa9"}\n')
        line = c.f.readline()
        r = json.loads(line.decode("utf-8"))
        t.ok(r["data"]["code"] == "unknown_op" and r["id"] == "u1",
             "an unknown op cut in a character: the reply is valid UTF-8",
             line)
        r = c.request("stats", session="nope")
        t.ok(r["data"]["code"] == "not_found", "unknown session: not_found", r)
        r = c.request("hello", proto=1, client="test")
        t.ok(r["type"] == "hello" and r["proto"] == 1,
             "connection survives bad lines", r)
        # Two sessions in flight on one connection.
        r1 = c.send("execute", session="a", prompt="delay:20 stream:3",
                    workdir=d.work + "/a")
        r2 = c.send("execute", session="b", prompt="stream:2",
                    workdir=d.work + "/b")
        ea, eb = c.events(r1), c.events(r2)
        t.ok(ea[-1]["type"] == "done" and eb[-1]["type"] == "done" and
             all(e["session"] == "a" for e in ea) and
             all(e["session"] == "b" for e in eb),
             "two executes in flight on one connection", (ea[-1], eb[-1]))
        c.send_raw(b'{"op":"hello","id":"x","pad":"' + b"x" * 8192 + b'"}\n')
        r = c.line()
        t.ok(r is not None and r["data"]["code"] == "too_large",
             "over max_request_bytes: too_large", r)
        t.ok(c.line() is None, "connection closed after too_large")
        c2 = d.client()
        t.eq(c2.request("hello")["type"], "hello", "daemon fine afterwards")


def test_cli_flags_and_env():
    env = {"CLAUDECODE": "1", "HP_SECRET_NOT_PASSED": "x"}
    with Daemon({"cli_env": "PATH HOME CLAUDECODE FAKE_CLAUDE_LOG"},
                env=env) as d:
        c = d.client()
        opts = {"model": "claude-test", "permission_mode": "acceptEdits",
                "allowed_tools": ["Bash", "Read"],
                "disallowed_tools": ["WebFetch"],
                "append_system_prompt": "be brief", "max_turns": 3}
        evs = c.execute("s1", "stream:1", workdir=d.work + "/s1",
                        options=opts)
        t.eq(evs[-1]["type"], "done", "execute with options")
        st = d.cli_starts()[-1]
        argv = st["argv"]
        t.ok("-p" not in argv and "--print" not in argv, "no -p", argv)
        for want in (["--input-format", "stream-json"],
                     ["--output-format", "stream-json"], ["--verbose"],
                     ["--include-partial-messages"], ["--model", "claude-test"],
                     ["--permission-mode", "acceptEdits"],
                     ["--allowedTools=Bash,Read"],
                     ["--disallowedTools=WebFetch"],
                     ["--append-system-prompt", "be brief"],
                     ["--max-turns", "3"]):
            i = argv.index(want[0]) if want[0] in argv else -1
            t.ok(i >= 0 and argv[i:i + len(want)] == want,
                 "CLI flag " + " ".join(want), argv)
        t.ok("--session-id" in argv, "first start uses --session-id", argv)
        t.ok("CLAUDECODE" not in st["env"], "CLAUDECODE never passed",
             st["env"])
        t.ok("HP_SECRET_NOT_PASSED" not in st["env"],
             "environment scrubbed to the allowlist", st["env"])
        t.eq(st["cwd"], os.path.realpath(d.work + "/s1"), "CLI runs in the workdir")
        t.ok(st["pgid"] == st["pid"] and st["sid"] == st["pid"],
             "CLI in its own session and process group", st)


def test_slash_commands():
    with Daemon() as d:
        c = d.client()
        e1 = c.execute("s1", "/clear slash", workdir=d.work + "/s1")
        e2 = c.execute("s1", "/clear slash", options={"slash_commands": True})
        r1, r2 = e1[-1]["data"].get("result", ""), e2[-1]["data"].get("result", "")
        t.ok("slash:no" in r1, "without slash_commands a leading / is "
             "not a slash command", r1)
        t.ok("slash:yes" in r2, "with slash_commands it is", r2)


def test_capacity_and_workdir():
    with Daemon({"max_sessions": "2"}) as d:
        c = d.client()
        for s in ("a", "b"):
            t.eq(c.execute(s, "stream:1")[-1]["type"], "done",
                 "session %s runs" % s)
        r = c.execute("c", "stream:1")
        t.ok(r[-1]["type"] == "error" and r[-1]["data"]["code"] == "capacity"
             and "max_sessions" in r[-1]["data"]["message"],
             "third session: capacity naming the limit", r[-1])
        c.request("stop", session="a")
        c.request("stop", session="b")
        outside = os.path.join(d.dir, "outside")
        os.makedirs(outside)
        os.symlink(outside, os.path.join(d.work, "link"))
        for wd, what in (("relative/dir", "relative"),
                         (d.work + "/x/../../outside", ".."),
                         (outside, "outside the root"),
                         (d.work + "/link/sub", "symlink escape")):
            r = c.execute("w", "stream:1", workdir=wd)
            t.ok(r[-1]["type"] == "error" and
                 r[-1]["data"]["code"] == "workdir_denied",
                 "workdir %s: workdir_denied" % what, r[-1])
        t.ok(not os.path.exists(os.path.join(outside, "sub")),
             "nothing created outside the root")
        r = c.execute("w", "stream:1", workdir=d.work + "/deep/er/dir")
        t.ok(r[-1]["type"] == "done" and os.path.isdir(d.work + "/deep/er/dir"),
             "missing workdir created under the root", r[-1])


def test_spares_open_reset_idle():
    # The default idle_timeout (30m): the session opened here must not go
    # idle between the open and the execute that checks it is warm (the
    # idle clock starts when the CLI is up, before open is answered).
    with Daemon({"spare_min": "2"}) as d:
        c = d.client()
        # Ready, not only started: a session that finds no ready spare
        # starts a worker of its own (slow workers under valgrind).
        wait_for(lambda: c.request("status")["data"]["spares_ready"] >= 2,
                 10, "two ready spares")
        spares = set(d.workers())
        r = c.request("open", session="o", workdir=d.work + "/o")
        t.eq(r["type"], "ok", "open answers ok once the CLI answers")
        ss = c.request("sessions")["data"]
        o = [s for s in ss if s["session"] == "o"][0]
        t.ok(o["worker_pid"] in spares, "open took a pre-forked spare",
             (o, spares))
        wait_for(lambda: len(d.workers()) >= 3, 10, "the pool refilled")
        t.ok(True, "pool refilled after a take")
        evs = c.execute("o", "stream:1")
        s = start_of(evs)
        t.ok(evs[-1]["type"] == "done" and s["cold"] is False,
             "execute after open is warm", s)
        first_id = s["cli_session_id"]
        t.eq(c.request("reset", session="o")["type"], "ok", "reset ok")
        evs = c.execute("o", "stream:1")
        s = start_of(evs)
        t.ok(evs[-1]["type"] == "done" and s["cli_session_id"] != first_id
             and s["cold"] and not s["resumed"],
             "after reset: a new conversation", s)
    # Idle: the CLI is stopped, the session goes dormant.
    with Daemon({"idle_timeout": "300ms"}) as d:
        c = d.client()
        evs = c.execute("o", "stream:1", workdir=d.work + "/o")
        s = start_of(evs)
        t.ok(evs[-1]["type"] == "done" and s["cold"],
             "a turn before going idle", evs[-1])
        pg = s["pgid"]
        wait_for(lambda: [x for x in c.request("sessions")["data"]
                          if x["session"] == "o"][0]["state"] == "dormant",
                 10, "idle stop")
        t.ok(True, "idle session goes dormant")
        no_leftovers(d, [pg], "idle")
        evs = c.execute("o", "stream:1")
        s = start_of(evs)
        t.ok(evs[-1]["type"] == "done" and s["cold"] and s["resumed"],
             "dormant session resumes", s)


def test_sigterm_drain():
    d = Daemon()
    d.start()
    c = d.client()
    rid = c.send("execute", session="s1", prompt="delay:50 stream:6",
                 workdir=d.work + "/s1")
    ev = c.line()
    d.proc.send_signal(signal.SIGTERM)
    evs = [ev] + c.events(rid)
    t.ok(evs[-1]["type"] == "done", "SIGTERM lets the running turn finish",
         evs[-1])
    try:
        rc = d.proc.wait(scaled(20))
    except Exception:
        rc = None
    t.eq(rc, 0, "hotplexd exits 0 after draining")
    no_leftovers(d, [ev["data"]["pgid"]], "drain")
    d.stop()
    d.cleanup()


def test_worker_cannot_start():
    with Daemon({"worker_path": "/nonexistent/hotplex-worker"}) as d:
        c = d.client()
        evs = c.execute("s1", "stream:1")
        t.ok(len(evs) == 1 and evs[0]["type"] == "error" and
             evs[0]["data"]["code"] == "spawn_failed",
             "no worker can start: spawn_failed, not a hang", evs)


def test_malformed_worker():
    # A header of our version with a type that does not exist, then it
    # waits.
    malformed_worker("#!/bin/sh\nprintf '\\000\\000\\000\\000\\377\\377"
                     "\\%03o\\000XXXXXXXX' >&3\nexec sleep 60\n" % MSG_VERSION,
                     "garbage")
    # A good hello that names another sender in its header.
    malformed_worker("#!/usr/bin/env python3\nimport os, struct, time\n"
                     "os.write(3, struct.pack('=IHBBII', 0, 1, %d, 0, 0, "
                     "os.getpid() + 1))\ntime.sleep(60)\n" % MSG_VERSION,
                     "another pid in its header")


def script_worker(d, name, script):
    """The daemon d (not started yet) runs script as its hotplex-worker."""
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o755)
    with open(d.conf_path, "a") as f:
        f.write("worker_path = %s\n" % path)


def malformed_worker(script, what):
    d = Daemon()
    script_worker(d, "bad-worker", script)
    d.start()
    try:
        c = d.client()
        evs = c.execute("s1", "stream:1")
        t.ok(len(evs) == 1 and evs[0]["type"] == "error" and
             evs[0]["data"]["code"] == "spawn_failed",
             "a worker sending %s is killed; the turn fails cleanly" % what,
             evs)
        t.ok(d.proc.poll() is None and
             c.request("hello")["type"] == "hello", "the master lives on")
        # The worker that sent garbage is killed and reaped before the
        # turn is failed; the pool may already have started another, killed
        # as the log is read and reaped a moment later.
        killed = [int(m) for m in re.findall(
            r"killing worker (\d+): malformed message", open(d.log).read())]
        try:
            wait_for(lambda: not any(proc_alive(p) for p in killed), 10,
                     "the killed workers to be reaped")
        except TimeoutError:
            pass
        t.ok(killed and not any(proc_alive(p) for p in killed),
             "the bad worker is gone (%s)" % what, killed)
    finally:
        d.stop()
        d.cleanup()


def _msg_version():
    """MSG_VERSION of common/msg.h: the tests speak the build's."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(os.path.join(root, "common", "msg.h")) as f:
        return int(re.search(r"#define\s+MSG_VERSION\s+(\d+)",
                             f.read()).group(1))


MSG_VERSION = _msg_version()


def _msg_type(name):
    """A message type's number in common/msg.h's enum (MSG_HELLO = 1)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(os.path.join(root, "common", "msg.h")) as f:
        body = re.search(r"enum msg_type \{(.*?)\};", f.read(), re.S).group(1)
    names = re.findall(r"^\s*(MSG_[A-Z_]+)", body, re.M)
    return names.index(name) + 1


MSG_OPENED = _msg_type("MSG_OPENED")
MSG_HELLO = 1
WORKER_EXIT_VERSION = 77  # worker/worker.h


def msg_header(version, mtype=MSG_HELLO, length=0):
    """A master<->worker header: len, type, version, flags, turn, pid."""
    return struct.pack("=IHBBII", length, mtype, version, 0, 0, os.getpid())


def test_worker_other_version():
    """A worker of another build says hello in its version: the master
    says so, answers with its own, and spawns no more until a session asks
    (no crash loop); the session fails spawn_failed."""
    d = Daemon()
    seen = os.path.join(d.dir, "old-worker.seen")
    script_worker(d, "old-worker", """#!/usr/bin/env python3
import os, struct, sys
fd = 3
os.write(fd, struct.pack("=IHBBII", 0, 1, 99, 0, 0, os.getpid()))
h = b""
while len(h) < 16:
    b = os.read(fd, 16 - len(h))
    if not b:
        break
    h += b
with open(%r, "a") as f:
    f.write("%%d\\n" %% (h[6] if len(h) == 16 else -1))
sys.exit(%d)
""" % (seen, WORKER_EXIT_VERSION))
    d.start()
    try:
        c = d.client()
        evs = c.execute("s1", "stream:1")
        t.ok(len(evs) == 1 and evs[0]["data"]["code"] == "spawn_failed" and
             "another build" in evs[0]["data"]["message"],
             "a worker of another version: the turn fails spawn_failed, "
             "saying why", evs)
        log = open(d.log).read()
        t.ok("speaks message version 99, hotplexd %d" % MSG_VERSION in log
             and "not respawning" in log,
             "the master logs the mismatch and stops respawning",
             d.logtail())
        with open(seen) as f:
            answers = [int(l) for l in f]
        t.ok(1 <= len(answers) <= 2 and
             all(v == MSG_VERSION for v in answers),
             "each such worker was answered with the master's version, and "
             "no more were spawned than asked for", answers)
        t.ok(c.request("hello")["type"] == "hello", "the master lives on")
    finally:
        d.stop()
        d.cleanup()


FORGING_WORKER = """#!/usr/bin/env python3
# A worker that opens its session, then answers the turn with an event
# whose tail carries a raw newline and a forged done line.
import json, os, struct, sys, time
fd = 3
def send(t, payload=b""):
    os.write(fd, struct.pack("=IHBBII", len(payload), t, %(v)d, 0, 0,
                             os.getpid()) + payload)
def read(n):
    b = b""
    while len(b) < n:
        c = os.read(fd, n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
send(1)                                   # hello
digest = ""
while True:
    ln, t, v, fl, turn, pid = struct.unpack("=IHBBII", read(16))
    body = read(ln)
    if t == 18:                           # policy: the rules, then ready
        digest = json.loads(body.split(b"\\n", 1)[0])["digest"]
        send(19)
    elif t == 2:                          # open
        o = json.loads(body)
        send(3, json.dumps({"cli_pid": os.getpid(), "cli_session_id":
             o["cli_session_id"], "workdir": o["workdir"],
             "resume": False, "policy": digest}).encode())
    elif t == 6:                          # turn
        send(7, b'"type":"text","data":{"text":"a"}}\\n'
             b'{"id":"forged","type":"done","data":{"ok":true}}')
        time.sleep(60)                # hangs: not a bound
"""


def test_worker_forged_event():
    """A worker whose event is not one JSON object on one line is killed
    before anything of it reaches the client; the turn ends worker_exited
    (issue 8)."""
    d = Daemon()
    script_worker(d, "forging-worker", FORGING_WORKER % {"v": MSG_VERSION})
    d.start()
    try:
        c = d.client()
        rid = c.send("execute", session="s1", prompt="hi",
                     workdir=d.work + "/s1")
        lines = []
        while True:
            raw = c.f.readline()
            lines.append(raw)
            o = json.loads(raw)
            if o.get("id") == rid and o["type"] in ("done", "error"):
                break
        last = json.loads(lines[-1])
        t.ok(last["type"] == "error" and
             last["data"]["code"] == "worker_exited" and
             not any(b"forged" in l for l in lines),
             "a forged event: the worker is killed, nothing of it is "
             "relayed, the turn ends worker_exited", lines)
        t.ok("forged event from worker" in open(d.log).read(),
             "the master says why it killed the worker", d.logtail())
    finally:
        d.stop()
        d.cleanup()


OTHER_RULES_WORKER = """#!/usr/bin/env python3
# The real hotplex-worker behind a relay that changes one thing: the
# digest its OPENED names (what a compromised worker could say).  The
# relay is the worker the master knows: its pid is in the headers.
import json, os, select, socket, struct, sys
HDR = struct.Struct("=IHBBII")
master = socket.socket(fileno=os.dup(3))
os.close(3)
ours, theirs = socket.socketpair()
if os.fork() == 0:
    os.dup2(theirs.fileno(), 3)
    os.execv(%(real)r, [%(real)r] + sys.argv[1:])
theirs.close()
buf = {master: b"", ours: b""}
while True:
    for s in select.select([master, ours], [], [])[0]:
        data = s.recv(1 << 16)
        if not data:
            sys.exit(0)
        buf[s] += data
        while len(buf[s]) >= HDR.size:
            n, typ, ver, fl, turn, pid = HDR.unpack_from(buf[s])
            if len(buf[s]) < HDR.size + n:
                break
            body = buf[s][HDR.size:HDR.size + n]
            buf[s] = buf[s][HDR.size + n:]
            if s is ours:
                pid = os.getpid()
                if typ == %(opened)d:
                    o = json.loads(body)
                    o["policy"] = "0" * 64
                    body = json.dumps(o).encode()
            (master if s is ours else ours).sendall(
                HDR.pack(len(body), typ, ver, fl, turn, pid) + body)
"""


def test_worker_other_rules():
    """A worker whose OPENED names another rule set than the one its session
    screens prompts with is killed; the execute ends with exactly one
    terminal line, worker_exited (issue 8).  The real worker runs behind a
    relay that rewrites only that digest."""
    d = Daemon()
    script_worker(d, "other-rules-worker", OTHER_RULES_WORKER % {
        "real": os.path.join(BDIR, "hotplex-worker"), "opened": MSG_OPENED})
    d.start()
    try:
        c = d.client()
        evs = c.execute("s1", "stream:1", workdir=d.work + "/s1")
        t.ok(terminal_count(evs) == 1 and evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "worker_exited",
             "a worker naming other rules: the execute ends worker_exited, "
             "one terminal line", evs)
        killed = re.findall(r"killing worker (\d+): other rules",
                            open(d.log).read())
        t.ok(killed, "the master kills it and says why", d.logtail())
        t.ok(c.request("hello")["type"] == "hello", "the master lives on")
        # The real worker behind it and its CLI (its group) go with it.
        clis = [int(p) for p in re.findall(r"CLI (\d+) started in",
                                           open(d.log).read())]
        t.ok(clis, "the real worker started its CLI", d.logtail())
        no_leftovers(d, clis, "a worker naming other rules")
    finally:
        d.stop()
        d.cleanup()


def test_worker_told_other_version():
    """The real worker, told by a master of another version: it says so
    and exits with its own status (WORKER_EXIT_VERSION)."""
    a, b = socket.socketpair()
    n = b.fileno()
    p = subprocess.Popen(["sh", "-c", 'exec "$0" -f 3<&%d %d<&-' % (n, n),
                          os.path.join(BDIR, "hotplex-worker")],
                         pass_fds=(n,), stderr=subprocess.PIPE)
    b.close()
    try:
        a.settimeout(scaled(30))
        h = b""
        while len(h) < 16:
            chunk = a.recv(16 - len(h))
            if not chunk:
                break
            h += chunk
        t.ok(len(h) == 16 and struct.unpack("=IHBBII", h)[1:3] ==
             (MSG_HELLO, MSG_VERSION), "the worker says hello in its "
             "version", h)
        a.sendall(msg_header(99))
        err = p.communicate(timeout=scaled(30))[1].decode("utf-8", "replace")
        t.ok(p.returncode == WORKER_EXIT_VERSION and
             "speaks message version 99" in err,
             "a master of another version: the worker says so and exits %d"
             % WORKER_EXIT_VERSION, (p.returncode, err))
    finally:
        a.close()
        if p.poll() is None:
            p.kill()
            p.wait()


def test_ctl_attach_detach_reload_shutdown():
    """hotplexctl attach follows a session's turn to its end (replay, then
    live), --since skips what was seen, detach, reload and shutdown map
    onto the ops; every command through libhotplex."""
    with Daemon() as d:
        ctl = [os.path.join(BDIR, "hotplexctl"), "-S", d.sock]
        c = d.client()
        rid = c.send("execute", session="s1", prompt="delay:40 stream:8",
                     workdir=d.work + "/s1")
        start = c.line()        # the turn runs
        p = subprocess.run(ctl + ["--json", "attach", "s1"],
                           capture_output=True, text=True,
                           timeout=scaled(120))
        evs = [start] + c.events(rid)
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        seqs = [l["seq"] for l in lines]
        t.ok(p.returncode == 0 and lines and lines[-1]["type"] == "done" and
             lines[-1]["id"] == rid and seqs == sorted(set(seqs)) and
             set(e["seq"] for e in evs) <= set(seqs),
             "hotplexctl attach: the turn's lines in order, to its done",
             (p.returncode, seqs, p.stderr))
        p = subprocess.run(ctl + ["attach", "s1"], capture_output=True,
                           text=True, timeout=scaled(120))
        answer = "".join(e["data"]["text"] for e in evs
                         if e["type"] == "answer")
        t.ok(p.returncode == 0 and answer and answer in p.stdout,
             "hotplexctl attach, no turn running: the last turn replayed "
             "as text, then it exits", (p.returncode, p.stdout, answer))
        mid = evs[len(evs) // 2]["seq"]
        p = subprocess.run(ctl + ["--json", "attach", "--since", str(mid),
                                  "s1"], capture_output=True, text=True,
                           timeout=scaled(120))
        got = [json.loads(l)["seq"] for l in p.stdout.splitlines()]
        t.ok(p.returncode == 0 and got ==
             [e["seq"] for e in evs if e["seq"] > mid],
             "hotplexctl attach --since: only the lines after it", got)
        p = subprocess.run(ctl + ["detach", "s1"], capture_output=True,
                           text=True, timeout=scaled(60))
        t.eq(p.returncode, 0, "hotplexctl detach")
        p = subprocess.run(ctl + ["attach", "nope"], capture_output=True,
                           text=True, timeout=scaled(60))
        t.ok(p.returncode == 1 and "not_found" in p.stderr,
             "hotplexctl attach of an unknown session fails", p.stderr)
        p = subprocess.run(ctl + ["reload"], capture_output=True, text=True,
                           timeout=scaled(60))
        t.ok(p.returncode == 0 and "reloaded" in open(d.log).read(),
             "hotplexctl reload", (p.returncode, p.stderr, d.logtail()))
        p = subprocess.run(ctl + ["shutdown"], capture_output=True,
                           text=True, timeout=scaled(60))
        t.eq(p.returncode, 0, "hotplexctl shutdown answers ok")
        t.eq(d.proc.wait(timeout=scaled(60)), 0, "... and the daemon exits 0")


def test_follower_of_forgotten_session():
    """A client still attached to a session that is forgotten (ended, then
    past max_ended_sessions) goes away: the daemon goes on serving.  The
    session leaves its followers' lists as it is freed (under valgrind a
    stale entry is a use after free when the client goes)."""
    with Daemon({"max_ended_sessions": "1"}) as d:
        a = d.client()
        evs = a.execute("f1", "stream:1", workdir=d.work + "/f1")
        r = a.request("attach", session="f1")
        b = d.client()
        ok = evs[-1]["type"] == "done" and r["type"] == "ok"
        for n in ("f1", "f2"):
            if n == "f2":
                b.execute(n, "stream:1", workdir=d.work + "/" + n)
            ok = ok and b.request("stop", session=n)["type"] == "ok"
        names = [x["session"] for x in b.request("sessions")["data"]]
        t.ok(ok and "f1" not in names and "f2" in names,
             "follower of a forgotten session: the session is gone", names)
        a.close()
        evs = b.execute("f3", "stream:1", workdir=d.work + "/f3")
        t.ok(evs and evs[-1]["type"] == "done" and d.proc.poll() is None,
             "follower of a forgotten session: its client leaves, the "
             "daemon serves on", evs[-1:])


def test_attach_replay():
    with Daemon({"event_ring_bytes": "64K"}) as d:
        a = d.client()
        rid = a.send("execute", session="s1", prompt="delay:40 stream:12",
                     workdir=d.work + "/s1")
        seen = [a.line(), a.line(), a.line()]
        a.close()                     # the client goes away mid-turn
        b = d.client()
        r = b.request("attach", session="s1", since_seq=seen[-1]["seq"])
        t.ok(r["type"] == "ok" and "lost" not in r["data"],
             "attach after a lost connection: ok, nothing lost", r)
        rest = b.events(rid)
        seqs = [e["seq"] for e in seen + rest]
        t.eq(seqs, list(range(1, len(seqs) + 1)),
             "replay then live: every seq once, in order")
        t.ok(rest and rest[-1]["type"] == "done" and
             terminal_count(rest) == 1,
             "the reattached client gets the turn's terminal line", rest[-1:])
        # A follower sees the next turn live, under the execute's id.
        rid2 = b.send("execute", session="s1", prompt="stream:2")
        evs = b.events(rid2)
        t.eq(terminal_count(evs), 1, "no line twice for a follower that "
             "runs the turn itself")
        c = d.client()
        r = c.request("attach", session="s1", since_seq=0)
        t.ok(r["type"] == "ok" and r["data"]["seq"] == evs[-1]["seq"],
             "attach reports the session's last seq", r)
        r = c.request("attach", session="nope", id="c-nope")
        t.eq(r["data"]["code"], "not_found", "attach to an unknown session")
        # Ended: its ring is freed; attach gets the stats and the end.
        r = c.request("stop", session="s1")
        t.eq(r["type"], "ok", "stop ends the session")
        e = d.client()
        r = e.request("attach", session="s1", since_seq=0)
        st = r.get("data", {}).get("stats", {})
        t.ok(r["type"] == "ok" and r["data"].get("ended") is True and
             r["data"]["state"] == "ended" and st.get("turns") == 2 and
             r["data"]["seq"] == evs[-1]["seq"],
             "attach to an ended session: its stats and the end", r)
        rid3 = e.send("sessions")
        nxt = e.line()
        t.ok(nxt is not None and nxt.get("id") == rid3,
             "attach to an ended session replays no old line", nxt)
    with Daemon({"event_ring_bytes": "2K"}) as d:
        a = d.client()
        a.execute("s1", "stream:60", workdir=d.work + "/s1")
        r = a.request("attach", session="s1", since_seq=0)
        t.ok(r["type"] == "ok" and r["data"].get("lost", [0])[0] == 1 and
             r["data"]["lost"][1] > 1, "a small ring says which seqs were "
             "lost", r)


def test_crash_loop_and_queue():
    d = Daemon({"spare_min": "2", "max_spawn_queue": "1"})
    # Dies at once, every time.
    script_worker(d, "dying-worker", "#!/bin/sh\nexit 3\n")
    d.start()
    try:
        wait_for(lambda: "pre-forking stopped" in open(d.log).read(), 30,
                 "the crash-loop breaker")
        log = open(d.log).read()
        t.ok(log.count("pre-forking stopped") == 1 and
             "respawning in 100 ms" in log and "respawning in 200 ms" in log,
             "workers dying at start: exponential back-off, then pre-forking "
             "stops, logged once")
        starts = log.count("spawned worker")

        def settled():
            # Spawns are asked ahead (spare_min): one asked before the
            # breaker may still be answered, and die, after it.
            lg = open(d.log).read()
            return (lg.count("spawned worker") ==
                    lg.count("died before it was ready"))
        wait_for(settled, 30, "the workers asked before the breaker")
        n1 = open(d.log).read().count("spawned worker")
        c = d.client()
        t.ok(d.proc.poll() is None and c.request("hello")["type"] == "hello",
             "the master lives on")
        t.ok(n1 <= starts + 1 and
             open(d.log).read().count("spawned worker") == n1,
             "no more pre-forking while stopped (but the spawn already "
             "asked)", (starts, n1))
    finally:
        d.stop()
        d.cleanup()
    d = Daemon({"spare_min": "0", "max_spawn_queue": "1"})
    # Never says hello.
    script_worker(d, "mute-worker", "#!/bin/sh\nexec sleep 60\n")
    with d:
        c = d.client()
        c.send("execute", session="q1", prompt="stream:1")
        r = c.execute("q2", "stream:1")
        t.ok(r[-1]["type"] == "error" and r[-1]["data"]["code"] ==
             "capacity" and "max_spawn_queue" in r[-1]["data"]["message"],
             "a full spawn queue answers capacity naming the limit", r[-1])
        t.ok(not [s for s in c.request("sessions")["data"]
                  if s["session"] == "q2"],
             "the refused session leaves no trace")


def test_slow_client():
    # The stall timeout is the yardstick: the other session's turn must end
    # while the slow client is still connected, i.e. before the master cuts
    # it off.  Valgrind slows the fast turn, so it gets a longer yardstick;
    # so does a loaded machine (a fixed 4 s is a flake beside another
    # make check).
    stall = int(scaled(20 if os.environ.get("HP_VALGRIND") else 4) + 0.999)
    with Daemon({"client_pause_bytes": "256K",
                 "client_stall_timeout": "%ds" % stall}) as d:
        slow = d.client()
        rid = slow.send("execute", session="flood", prompt="flood:8000000",
                        workdir=d.work + "/flood")
        first_line = slow.line()       # the turn started; now stop reading
        wpid = first_line["data"]["worker_pid"]
        fast = d.client()
        evs = fast.execute("other", "stream:3", workdir=d.work + "/other")
        cut = "has not read for" in open(d.log).read()
        t.ok(evs[-1]["type"] == "done" and not cut,
             "another session is not slowed by the slow client "
             "(its turn ended before the slow one was cut off)", cut)
        rss_m, rss_w = rss_kb(d.proc.pid), rss_kb(wpid)
        if d.valgrind:
            t.skip("memory bounded while the client does not read",
                   "valgrind inflates RSS")
        else:
            t.ok(rss_m < 64 * 1024 and rss_w < 64 * 1024,
                 "memory stays bounded while the client does not read "
                 "(master %d KiB, worker %d KiB)" % (rss_m, rss_w))
        wait_for(lambda: "has not read for" in open(d.log).read(),
                 stall * 5, "the stall timeout")
        t.ok(True, "the slow client is cut off with a logged reason")
        wait_for(lambda: [x for x in fast.request("sessions")["data"]
                          if x["session"] == "flood"][0]["state"] == "ready",
                 60, "the flood turn to end without its client")
        st = fast.request("stats", session="flood")["data"]
        t.ok(st["turns"] == 1 and st["errors"] == 0,
             "the session and its turn went on to the end", st)


def test_kill_between_turns():
    with Daemon() as d:
        c = d.client()
        ok = 0
        for i in range(10):
            evs = c.execute("s1", "stream:1", workdir=d.work + "/s1")
            pid = [e for e in evs if e["type"] == "session_start"][0][
                "data"]["cli_pid"]
            os.kill(pid, signal.SIGKILL)      # then at once the next turn
            evs = c.execute("s1", "stream:1")
            ok += evs[-1]["type"] == "done" and terminal_count(evs) == 1
        t.eq(ok, 10, "a CLI killed between turns: the next turn still runs "
             "(in a new CLI when the old one never saw it)")


def test_sigterm_idle_is_prompt():
    import time
    with Daemon({"drain_timeout": "60s"}) as d:
        c = d.client()
        evs = c.execute("s1", "stream:1")
        pg = start_of(evs)["pgid"]
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(scaled(30))
        t.ok(rc == 0 and time.monotonic() - t0 < scaled(10),
             "SIGTERM with only idle sessions exits at once, status 0",
             (rc, time.monotonic() - t0))
        no_leftovers(d, [pg], "sigterm idle")


def test_revive_respects_capacity():
    with Daemon({"max_sessions": "1"}) as d:
        c = d.client()
        c.execute("a", "stream:1")
        c.request("stop", session="a")
        c.execute("b", "stream:1")
        r = c.execute("a", "stream:1")
        t.ok(r[-1]["type"] == "error" and r[-1]["data"]["code"] == "capacity",
             "reviving an ended session counts against max_sessions", r[-1])


def http_get(port, method="GET", path="/metrics"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        c.close()


def metric(body, sample):
    """The value of one sample line, "name{labels} value"; None if absent."""
    for line in body.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_metrics():
    with Daemon({"metrics_listen": METRICS_ANY}) as d:
        port = d.metrics_port()
        st, ct, body = http_get(port)
        t.ok(st == 200 and ct.startswith("text/plain") and
             metric(body, "hotplex_turns_total") == 0,
             "metrics: 200, text/plain, no turn yet", (st, ct, body[:300]))
        c = d.client()
        c.execute("m1", "stream:3", workdir=d.work + "/m1")
        c.execute("m1", "stream:2")
        total = c.request("stats")["data"]
        st, ct, body = http_get(port)
        t.eq(metric(body, "hotplex_turns_total"), 2, "metrics: two turns")
        t.ok(total["tokens"]["output"] > 0 and
             metric(body, 'hotplex_tokens_total{kind="output"}') ==
             total["tokens"]["output"],
             "metrics: output tokens as the stats op counts them",
             (total["tokens"], body))
        t.eq(metric(body, 'hotplex_sessions{state="ready"}'), 1,
             "metrics: one session ready")
        t.ok((metric(body, "hotplex_workers") or 0) >= 1 and
             metric(body, "hotplex_clients") == 1,
             "metrics: workers and clients", body)
        names = set(l.split()[2] for l in body.splitlines()
                    if l.startswith("# TYPE "))
        samples = [l for l in body.splitlines() if not l.startswith("#")]
        t.ok(samples and all(re.match(r"^[a-z_]+(\{[a-z_]+=\"[a-z_]+\"\})? "
                                      r"[0-9.]+$", l) and
                             l.split("{")[0].split()[0] in names
                             for l in samples),
             "metrics: every sample is typed and well formed", body)
        st, _, body = http_get(port, "HEAD")
        t.ok(st == 200 and body == "", "metrics: HEAD, no body", st)
        st, _, _ = http_get(port, path="/other")
        t.eq(st, 404, "metrics: another path is 404")
        st, _, _ = http_get(port, "POST")
        t.ok(st in (405, 501), "metrics: POST is refused", st)
        c.request("stop", session="m1")
    s = socket.socket()
    t.ok(s.connect_ex(("127.0.0.1", port)) != 0,
         "metrics: the port is closed with the daemon")
    s.close()

    # A bad address is a configuration error; a taken port stops the start.
    bad = Daemon({"metrics_listen": "localhost"})
    r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c",
                        bad.conf_path], capture_output=True, text=True)
    t.ok(r.returncode == 1 and "metrics_listen" in r.stderr,
         "metrics: hotplexd -n refuses metrics_listen = localhost",
         (r.returncode, r.stderr))
    shutil.rmtree(bad.dir, ignore_errors=True)
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        with Daemon({"metrics_listen": "127.0.0.1:%d" %
                     held.getsockname()[1]}):
            t.ok(False, "metrics: a taken port stops the start")
    except RuntimeError as e:
        t.ok("exited with 1" in str(e) and "metrics_listen" in str(e),
             "metrics: a taken port stops the start", str(e)[-500:])
    finally:
        held.close()


ONLY = os.environ.get("HP_ONLY", "").split()   # cases to run (debugging)
for fn in (test_worker_cannot_start, test_malformed_worker,
           test_worker_other_version, test_worker_told_other_version,
           test_worker_forged_event, test_worker_other_rules,
           test_ctl_attach_detach_reload_shutdown,
           test_attach_replay, test_follower_of_forgotten_session,
           test_crash_loop_and_queue, test_slow_client,
           test_kill_between_turns, test_sigterm_idle_is_prompt,
           test_revive_respects_capacity, test_multi_turn, test_busy_and_interrupt, test_timeout_ignoring_cli,
           test_cli_crash, test_garbage_and_huge_lines, test_worker_killed,
           test_bad_requests, test_cli_flags_and_env, test_slash_commands,
           test_capacity_and_workdir, test_spares_open_reset_idle,
           test_sigterm_drain, test_metrics):
    if ONLY and fn.__name__ not in ONLY:
        continue
    try:
        fn()
    except Exception as e:  # a crashed case is a failure, not an abort
        import traceback
        t.ok(False, fn.__name__ + " raised " + repr(e), traceback.format_exc())
t.done()
