#!/usr/bin/env python3
"""Conversations survive restarts: hotplexd keeps its session table in
state_dir/sessions.json and, after a SIGTERM or a SIGKILL, resumes every
conversation with --resume and keeps counting its stats.  A state file it
cannot use is renamed aside and the daemon starts empty."""

import glob
import json
import os
import shutil
import signal
import stat
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hplib import (TAP, Daemon, wait_for, proc_alive, procs_in_group,
                   first)

t = TAP()
if os.environ.get("HP_VALGRIND") and os.environ.get("HP_SAN"):
    t.skip("restart under valgrind", "sanitizer build (ASan and valgrind do "
           "not mix); the plain build runs it")
    t.done()

STATE_WAIT_S = 10      # a saved change shows in the file well before this
DEATH_WAIT_S = 10      # a dead master's workers and CLIs are gone by then
TOKEN_KEYS = ("input", "output", "cache_read", "cache_write")


def state_path(d):
    return os.path.join(d.dir, "state", "sessions.json")


def state_file(d):
    """The parsed state file, or None while there is none (or half of one:
    it is renamed into place whole, so that would be a bug)."""
    try:
        with open(state_path(d)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def state_session(d, name):
    st = state_file(d)
    for s in (st or {}).get("sessions", []):
        if s.get("session") == name:
            return s
    return None


def wait_state_turns(d, name, turns):
    """The state file is the observable event of a saved turn."""
    return wait_for(lambda: (state_session(d, name) or {}).get(
        "stats", {}).get("turns") == turns and state_session(d, name),
        STATE_WAIT_S, "the state file to show %d turns of %s" % (turns, name))


def start_of(evs):
    s = first(evs, "session_start")
    return s["data"] if s else {}


def stats_of(evs):
    s = first(evs, "session_stats")
    return s["data"] if s else {}


def tokens(st):
    return {k: st.get("tokens", {}).get(k) for k in TOKEN_KEYS}


def resume_arg(argv):
    return argv[argv.index("--resume") + 1] if "--resume" in argv else None


def all_gone(pids, pgids):
    return (all(not proc_alive(p) for p in pids) and
            all(not procs_in_group(g) for g in pgids))


def check_resumed_third_turn(d, name, sid, before, what):
    c = d.client()
    r = c.request("sessions")
    row = [x for x in r["data"] if x["session"] == name] if \
        r["type"] == "sessions" else []
    t.ok(len(row) == 1 and row[0]["state"] == "dormant" and
         row[0]["turns"] == 2 and row[0]["cli_session_id"] == sid,
         what + ": the session is back, dormant, with its 2 turns", r)
    n0 = len(d.cli_starts())
    e3 = c.execute(name, "stream:1")
    s3 = start_of(e3)
    t.ok(e3[-1]["type"] == "done" and e3[-1]["data"]["ok"],
         what + ": turn 3 ends done", e3[-1])
    t.ok(s3.get("cold") is True and s3.get("resumed") is True and
         s3.get("cli_session_id") == sid,
         what + ": turn 3 starts a CLI that resumes the conversation", s3)
    starts = d.cli_starts()[n0:]
    t.ok(len(starts) == 1 and resume_arg(starts[0]["argv"]) == sid,
         what + ": the CLI was started with --resume " + sid,
         [s["argv"] for s in starts])
    st = stats_of(e3)
    last = st.get("last_turn", {})
    t.eq(st.get("turns"), 3, what + ": stats count 3 turns")
    t.eq(tokens(st), {k: before[k] + last["tokens"][k] for k in TOKEN_KEYS},
         what + ": tokens continue from the persisted ones")
    t.ok(st.get("cost_usd", 0) > last.get("cost_usd", 0) > 0,
         what + ": cost continues too", st)
    return s3


def two_turns(d, name):
    c = d.client()
    e1 = c.execute(name, "stream:2", workdir=os.path.join(d.work, name))
    e2 = c.execute(name, "stream:2")
    s1 = start_of(e1)
    ok = (e1[-1]["type"] == "done" and e2[-1]["type"] == "done" and
          s1.get("cold") is True and s1.get("resumed") is False)
    t.ok(ok, "two turns before the restart", (e1[-1], e2[-1], s1))
    return s1, start_of(e2), stats_of(e2)


def test_sigterm():
    with Daemon() as d:
        s1, s2, st2 = two_turns(d, "r1")
        sid = s1["cli_session_id"]
        rc = d.stop(signal.SIGTERM)
        t.eq(rc, 0, "SIGTERM: hotplexd exits 0")
        saved = state_session(d, "r1")
        t.ok(saved is not None and saved["cli_session_id"] == sid and
             saved["has_conversation"] is True and saved["ended"] is False
             and saved["stats"]["turns"] == 2 and
             saved["last_turn"]["turns"] == 1 and
             saved["workdir"] == os.path.join(d.work, "r1") and
             saved["uid"] == os.getuid(),
             "SIGTERM: sessions.json holds the session", saved)
        t.eq(state_file(d).get("version"), 1, "the file says its version")
        mode = os.stat(state_path(d)).st_mode
        t.eq(stat.S_IMODE(mode), 0o600, "sessions.json is mode 0600")
        mode = os.stat(os.path.dirname(state_path(d))).st_mode
        t.eq(stat.S_IMODE(mode), 0o711, "the missing state_dir was created "
             "mode 0711 (searchable by worker_user)")
        t.eq(glob.glob(state_path(d) + ".tmp"), [],
             "no temp file is left beside it")
        d.start()
        check_resumed_third_turn(d, "r1", sid, tokens(st2), "SIGTERM")


def test_sigkill():
    with Daemon() as d:
        s1, s2, st2 = two_turns(d, "k1")
        sid = s1["cli_session_id"]
        try:
            wait_state_turns(d, "k1", 2)
            t.ok(True, "SIGKILL: the state file shows turn 2")
        except TimeoutError as e:
            t.ok(False, "SIGKILL: the state file shows turn 2",
                 (e, state_file(d)))
        workers = d.workers()
        pgid = s2["pgid"]
        t.ok(s2["worker_pid"] in workers and procs_in_group(pgid),
             "the session's worker and CLI run before the kill",
             (s2, workers))
        d.stop(signal.SIGKILL)
        try:
            wait_for(lambda: all_gone(workers, [pgid]), DEATH_WAIT_S,
                     "the killed daemon's workers and CLI to die")
            t.ok(True, "SIGKILL: no worker or CLI of the killed daemon "
                 "survives")
        except TimeoutError:
            t.ok(False, "SIGKILL: no worker or CLI of the killed daemon "
                 "survives", ([p for p in workers if proc_alive(p)],
                              procs_in_group(pgid)))
        d.start()
        check_resumed_third_turn(d, "k1", sid, tokens(st2), "SIGKILL")


def test_coalesced():
    """A burst of changes is one write, not one per change."""
    with Daemon() as d:
        c = d.client()
        e = c.execute("b1", "stream:1", workdir=os.path.join(d.work, "b1"))
        c.request("stop", session="b1")
        wait_for(lambda: (state_session(d, "b1") or {}).get("ended"),
                 STATE_WAIT_S, "the stop to be saved")
        with open(d.log, "rb") as f:
            mark = len(f.read())
        burst = 20
        rids = [c.send("reset", session="b1") for _ in range(burst)]
        replies = [c.reply(r) for r in rids]
        t.ok(e[-1]["type"] == "done" and
             all(r and r["type"] == "ok" for r in replies),
             "a burst of %d resets is answered" % burst, replies[-1])
        r = c.request("sessions")
        sid = r["data"][0]["cli_session_id"]
        try:
            wait_for(lambda: (state_session(d, "b1") or {}).get(
                "cli_session_id") == sid, STATE_WAIT_S,
                "the last reset to be saved")
            t.ok(True, "the file shows the last reset's CLI session id")
        except TimeoutError:
            t.ok(False, "the file shows the last reset's CLI session id",
                 (sid, state_session(d, "b1")))
        def saves():
            with open(d.log, "rb") as f:
                return f.read()[mark:].count(b"state: saved")
        # The file is renamed into place before the line is logged.
        try:
            wait_for(saves, STATE_WAIT_S, "the save to be logged")
        except TimeoutError:
            pass
        saves = saves()
        # The burst may straddle one timer: two writes at most.
        t.ok(1 <= saves <= 2, "%d changes made %d writes" % (burst, saves))
        t.eq(state_session(d, "b1")["has_conversation"], False,
             "a reset session has no conversation to resume")


BAD_FILES = [
    ("not JSON", b"{\"version\": 1, \"sessions\": [", "not JSON"),
    ("wrong shape", b"[1, 2, 3]", "version"),
    ("a session without a workdir",
     json.dumps({"version": 1, "sessions": [
         {"session": "x", "uid": 0, "cli_session_id": "abc",
          "has_conversation": True, "ended": False, "options": {},
          "stats": {}, "last_turn": {}}]}).encode(), "session x"),
    ("a newer version", json.dumps({"version": 999, "sessions": [],
                                    "future": True}).encode(), "newer"),
]


def test_bad_files():
    d = Daemon()
    try:
        os.makedirs(os.path.dirname(state_path(d)))
        for what, data, word in BAD_FILES:
            with open(state_path(d), "wb") as f:
                f.write(data)
            with open(d.log, "ab") as f:
                mark = f.tell()
            before = set(glob.glob(state_path(d) + ".bad-*"))
            d.start()
            c = d.client()
            r = c.request("sessions")
            t.ok(r["type"] == "sessions" and r["data"] == [],
                 what + ": hotplexd starts with no sessions", r)
            with open(d.log, "rb") as f:
                log = f.read()[mark:].decode("utf-8", "replace")
            t.ok("renamed to" in log and word in log,
                 what + ": the reason is logged", d.logtail(10))
            aside = sorted(set(glob.glob(state_path(d) + ".bad-*")) - before)
            kept = open(aside[0], "rb").read() if len(aside) == 1 else None
            t.ok(kept == data, what + ": the file is renamed aside, intact",
                 aside)
            e = c.execute("n1", "stream:1")
            t.ok(e[-1]["type"] == "done", what + ": new sessions are served",
                 e[-1])
            try:
                wait_state_turns(d, "n1", 1)
                t.ok(True, what + ": a new sessions.json is written")
            except TimeoutError:
                t.ok(False, what + ": a new sessions.json is written",
                     state_file(d))
            c.request("stop", session="n1")
            t.eq(d.stop(signal.SIGTERM), 0, what + ": clean exit")
            os.unlink(state_path(d))
    finally:
        d.stop()
        d.cleanup()


def test_ended_stay_ended():
    with Daemon() as d:
        c = d.client()
        ee = c.execute("e1", "stream:1", workdir=os.path.join(d.work, "e1"))
        c.execute("e1", "stream:1")
        c.execute("d1", "stream:1", workdir=os.path.join(d.work, "d1"))
        t.eq(c.request("stop", session="e1")["type"], "ok", "e1 stopped")
        before = c.request("stats", session="e1")["data"]
        t.eq(d.stop(signal.SIGTERM), 0, "SIGTERM: exit 0")
        d.start()
        c = d.client()
        rows = {x["session"]: x for x in c.request("sessions")["data"]}
        t.ok(rows.get("e1", {}).get("state") == "ended" and
             rows.get("d1", {}).get("state") == "dormant",
             "after a restart the ended session is ended, the other "
             "dormant", rows)
        st = c.request("stats", session="e1")["data"]
        t.ok(st["state"] == "ended" and st["turns"] == 2 and
             tokens(st) == tokens(before) and
             st["last_turn"] == before["last_turn"] and
             st["cli_session_id"] == before["cli_session_id"],
             "an ended session keeps its stats and last_turn", (st, before))
        # As before a restart, a new turn brings it back, resumed.
        e3 = c.execute("e1", "stream:1")
        s3 = start_of(e3)
        t.ok(e3[-1]["type"] == "done" and s3.get("resumed") is True and
             s3.get("cli_session_id") == start_of(ee)["cli_session_id"] and
             stats_of(e3).get("turns") == 3,
             "an ended session comes back on a turn, resumed", (s3, e3[-1]))


def test_real_cli():
    """The real CLI against the mock API: after a SIGKILL the model sees
    the earlier turns."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
    import test_e2e
    if not os.access(test_e2e.CLI, os.X_OK):
        t.skip("restart with the real CLI", test_e2e.CLI +
               " not installed (make deps)")
        return
    tmp = tempfile.mkdtemp(prefix="hprestart.")
    mock = test_e2e.Mock(tmp)
    env = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % mock.port,
           "ANTHROPIC_API_KEY": "dummy",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "HOME": os.path.join(tmp, "home"),
           "CLAUDE_CONFIG_DIR": os.path.join(tmp, "config"),
           "TMPDIR": os.path.join(tmp, "tmp"),
           "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": "10000"}
    for k in ("HOME", "CLAUDE_CONFIG_DIR", "TMPDIR"):
        os.makedirs(env[k])
    try:
        with Daemon({"cli_path": test_e2e.CLI, "cli_env": test_e2e.OFFLINE_ENV,
                     "kill_grace": "2s"}, env=env) as d:
            real_cli_run(d, mock)
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def real_cli_run(d, mock):
    c = d.client()
    wd = os.path.join(d.work, "real")
    os.makedirs(wd)
    e1 = c.execute("real", "My favourite colour is teal.", workdir=wd)
    e2 = c.execute("real", "Say hello.")
    s1, s2 = start_of(e1), start_of(e2)
    t.ok(e1[-1]["type"] == "done" and e2[-1]["type"] == "done" and
         s2.get("cli_pid") == s1.get("cli_pid"),
         "real CLI: two turns on one CLI", (e1[-1], e2[-1]))
    try:
        wait_state_turns(d, "real", 2)
        t.ok(True, "real CLI: the state file shows turn 2")
    except TimeoutError:
        t.ok(False, "real CLI: the state file shows turn 2", state_file(d))
    workers = d.workers()
    d.stop(signal.SIGKILL)
    try:
        wait_for(lambda: all_gone(workers, [s2["pgid"]]), DEATH_WAIT_S,
                 "the killed daemon's workers and CLI to die")
        t.ok(True, "real CLI: nothing of the killed daemon survives")
    except TimeoutError:
        t.ok(False, "real CLI: nothing of the killed daemon survives",
             ([p for p in workers if proc_alive(p)],
              procs_in_group(s2["pgid"])))
    d.start()
    c = d.client()
    n0 = len(mock.requests())
    e3 = c.execute("real", "[[echo]] what did I say before?")
    reqs = mock.requests()[n0:]
    s3 = start_of(e3)
    t.ok(e3[-1]["type"] == "done" and s3.get("resumed") is True and
         s3.get("cli_session_id") == s1.get("cli_session_id"),
         "real CLI: after the restart turn 3 resumes the conversation", s3)
    result = e3[-1]["data"].get("result", "")
    t.ok(len(reqs) == 1 and "favourite colour is teal" in result and
         "Say hello." in result,
         "real CLI: the model sees the turns from before the kill", result)
    t.eq(stats_of(e3).get("turns"), 3, "real CLI: stats count 3 turns")
    c.request("stop", session="real")


def main():
    test_sigterm()
    test_sigkill()
    test_coalesced()
    test_ended_stay_ended()
    test_bad_files()
    test_real_cli()
    t.done()


if __name__ == "__main__":
    main()
