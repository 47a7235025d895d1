#!/usr/bin/env python3
"""Conversations survive restarts: hotplexd keeps its session table in
the store (state_dir/hotplex.db, SQLite) and, after a SIGTERM or a SIGKILL,
resumes every conversation with --resume and keeps counting its stats.  A
turn's end is committed before its done line, so a client that saw done
finds it after any crash.  The sessions.json of earlier versions is
imported once; a file it cannot use (database or JSON) is renamed aside
and the daemon starts empty."""

import glob
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hplib import (METRICS_ANY, api_timeout_ms, scaled, TAP, Daemon, wait_for,
                   proc_alive, procs_in_group, first)

t = TAP()
if os.environ.get("HP_VALGRIND") and os.environ.get("HP_SAN"):
    t.skip("restart under valgrind", "sanitizer build (ASan and valgrind do "
           "not mix); the plain build runs it")
    t.done()

DEATH_WAIT_S = 10      # a dead master's workers and CLIs are gone by then
TOKEN_KEYS = ("input", "output", "cache_read", "cache_write")


def _store_schema():
    """STORE_SCHEMA of supervisor/store-sqlite.c: the build's."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(os.path.join(root, "supervisor", "store-sqlite.c")) as f:
        return int(re.search(r"#define\s+STORE_SCHEMA\s+(\d+)",
                             f.read()).group(1))


SCHEMA = _store_schema()


def db_path(d):
    return os.path.join(d.dir, "state", "hotplex.db")


def json_path(d):
    return os.path.join(d.dir, "state", "sessions.json")


def db_query(d, sql, args=()):
    """Rows of the live database (WAL: a reader never blocks the daemon),
    or None while there is none."""
    if not os.path.exists(db_path(d)):
        return None
    db = sqlite3.connect(db_path(d), timeout=scaled(30))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def state_session(d, name):
    """The session's row as a dict, JSON columns parsed, or None."""
    rows = db_query(d, "SELECT uid, name, workdir, cli_session_id, "
                    "has_conversation, ended, options, stats, last_turn "
                    "FROM sessions WHERE name = ?", (name,)) or []
    if len(rows) != 1:
        return None
    r = rows[0]
    return {"uid": r[0], "session": r[1], "workdir": r[2],
            "cli_session_id": r[3], "has_conversation": bool(r[4]),
            "ended": bool(r[5]), "options": json.loads(r[6]),
            "stats": json.loads(r[7]), "last_turn": json.loads(r[8])}


def saved_turns(d, name):
    return ((state_session(d, name) or {}).get("stats") or {}).get("turns")


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
             "SIGTERM: the store holds the session", saved)
        t.eq(db_query(d, "PRAGMA user_version"), [(SCHEMA,)],
             "the database says its schema version")
        t.eq(db_query(d, "PRAGMA journal_mode"), [("wal",)],
             "the database is in WAL mode")
        mode = os.stat(db_path(d)).st_mode
        t.eq(stat.S_IMODE(mode), 0o600, "hotplex.db is mode 0600")
        mode = os.stat(os.path.dirname(db_path(d))).st_mode
        t.eq(stat.S_IMODE(mode), 0o711, "the missing state_dir was created "
             "mode 0711 (searchable by worker_user)")
        t.eq(glob.glob(json_path(d) + "*"), [], "no sessions.json is written")
        d.start()
        check_resumed_third_turn(d, "r1", sid, tokens(st2), "SIGTERM")


CKPT_WAIT_S = 30      # two checkpoints apart (5 s) and their log line
CKPT_LINE = re.compile(r"store: checkpoint, (\d+) of (\d+) WAL frames")


def test_checkpoint_thread():
    """Checkpoints (an fdatasync of the WAL and the database each) run on
    a thread of the master's own, not on its loop, and do their work: the
    loop logs the last one's frames, all of the WAL copied back."""
    with Daemon({"log_level": "debug"}) as d:
        two_turns(d, "c1")
        task = "/proc/%d/task" % d.proc.pid
        names = []
        for tid in os.listdir(task):
            with open(os.path.join(task, tid, "comm")) as f:
                names.append(f.read().strip())
        t.ok("hotplexd-ckpt" in names, "the master has its checkpoint "
             "thread", names)

        def checkpointed():
            with open(d.log, errors="replace") as f:
                return [m for m in CKPT_LINE.findall(f.read())
                        if int(m[1]) > 0 and m[0] == m[1]]
        try:
            done = wait_for(checkpointed, CKPT_WAIT_S, "a checkpoint")
        except TimeoutError:
            done = None
        t.ok(done, "a checkpoint copied the whole WAL back", d.logtail())


def test_sigkill():
    with Daemon() as d:
        s1, s2, st2 = two_turns(d, "k1")
        sid = s1["cli_session_id"]
        # Committed before done: no waiting.
        t.eq(saved_turns(d, "k1"), 2, "SIGKILL: the store shows turn 2 as "
             "soon as its done is read")
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


def test_committed_before_done():
    """Every reply a client reads is already in the store: turns, resets,
    stops; rows are per session, updated in place."""
    with Daemon() as d:
        c = d.client()
        c.execute("other", "stream:1", workdir=os.path.join(d.work, "other"))
        other = state_session(d, "other")
        seen = []
        for i in range(1, 6):
            e = c.execute("b1", "stream:1",
                          workdir=os.path.join(d.work, "b1"))
            seen.append((e[-1]["type"], saved_turns(d, "b1")))
        t.eq(seen, [("done", i) for i in range(1, 6)],
             "after each done the store already counts that turn")
        t.eq(state_session(d, "other"), other,
             "another session's row is left alone")
        burst = 20
        rids = [c.send("reset", session="b1") for _ in range(burst)]
        replies = [c.reply(r) for r in rids]
        sid = c.request("sessions")
        sid = [x for x in sid["data"] if x["session"] == "b1"][0][
            "cli_session_id"]
        row = state_session(d, "b1")
        t.ok(all(r and r["type"] == "ok" for r in replies) and
             row["cli_session_id"] == sid and not row["has_conversation"],
             "after a burst of %d resets the store has the last one's "
             "CLI session id, no conversation" % burst, (sid, row))
        t.eq(c.request("stop", session="b1")["type"], "ok", "b1 stopped")
        t.ok(state_session(d, "b1")["ended"],
             "the stop is in the store when its ok is read")
        t.eq(db_query(d, "SELECT count(*) FROM sessions"), [(2,)],
             "one row per session")


def make_db(path, version, tables=True):
    db = sqlite3.connect(path)
    if tables:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (42)")
    db.execute("PRAGMA user_version = %d" % version)
    db.commit()
    db.close()
    with open(path, "rb") as f:
        return f.read()


BAD_DBS = [
    ("not a database", lambda p: open(p, "wb").write(b"x" * 5000) and
     b"x" * 5000, "not a database"),
    ("a newer schema", lambda p: make_db(p, 999), "newer"),
    ("another program's database", lambda p: make_db(p, 0),
     "no hotplexd schema"),
]


def test_bad_dbs():
    d = Daemon()
    try:
        os.makedirs(os.path.dirname(db_path(d)))
        for what, make, word in BAD_DBS:
            data = make(db_path(d))
            with open(d.log, "ab") as f:
                mark = f.tell()
            before = set(glob.glob(db_path(d) + ".bad-*"))
            d.start()
            c = d.client()
            r = c.request("sessions")
            t.ok(r["type"] == "sessions" and r["data"] == [],
                 what + ": hotplexd starts with no sessions", r)
            with open(d.log, "rb") as f:
                log = f.read()[mark:].decode("utf-8", "replace")
            t.ok("renamed to" in log and word in log,
                 what + ": the reason is logged", d.logtail(10))
            aside = sorted(set(glob.glob(db_path(d) + ".bad-*")) - before)
            aside = [a for a in aside if not a.endswith(("-wal", "-shm"))]
            kept = open(aside[0], "rb").read() if len(aside) == 1 else None
            t.ok(kept == data, what + ": the file is renamed aside, intact",
                 aside)
            e = c.execute("n1", "stream:1", workdir=os.path.join(d.work,
                                                                 "n1"))
            t.ok(e[-1]["type"] == "done" and saved_turns(d, "n1") == 1,
                 what + ": new sessions are served and stored", e[-1])
            c.request("stop", session="n1")
            t.eq(d.stop(signal.SIGTERM), 0, what + ": clean exit")
            for f in glob.glob(db_path(d) + "*"):
                if ".bad-" not in f:
                    os.unlink(f)
    finally:
        d.stop()
        d.cleanup()


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
    """A sessions.json of an earlier version that cannot be imported."""
    d = Daemon()
    try:
        os.makedirs(os.path.dirname(json_path(d)))
        for what, data, word in BAD_FILES:
            with open(json_path(d), "wb") as f:
                f.write(data)
            with open(d.log, "ab") as f:
                mark = f.tell()
            before = set(glob.glob(json_path(d) + ".bad-*"))
            d.start()
            c = d.client()
            r = c.request("sessions")
            t.ok(r["type"] == "sessions" and r["data"] == [],
                 what + ": hotplexd starts with no sessions", r)
            with open(d.log, "rb") as f:
                log = f.read()[mark:].decode("utf-8", "replace")
            t.ok("renamed to" in log and word in log,
                 what + ": the reason is logged", d.logtail(10))
            aside = sorted(set(glob.glob(json_path(d) + ".bad-*")) - before)
            kept = open(aside[0], "rb").read() if len(aside) == 1 else None
            t.ok(kept == data, what + ": the file is renamed aside, intact",
                 aside)
            t.eq(d.stop(signal.SIGTERM), 0, what + ": clean exit")
    finally:
        d.stop()
        d.cleanup()


def test_migrate():
    """A sessions.json of an earlier version is imported once."""
    d = Daemon()
    try:
        os.makedirs(os.path.dirname(json_path(d)))
        wd = os.path.join(d.work, "m1")
        sid = "0b6c3c2e-7d4a-4a55-9c1e-3f0f7e1d2a11"
        stats = {"turns": 2, "errors": 1, "cost_usd": 0.5,
                 "tokens": {"input": 10, "output": 20, "cache_read": 0,
                            "cache_write": 0}}
        old = {"version": 1, "saved": 1, "ended_total": {"turns": 7},
               "sessions": [{"session": "m1", "uid": os.getuid(),
                             "workdir": wd, "cli_session_id": sid,
                             "has_conversation": True, "ended": False,
                             "options": {"model": "x"}, "stats": stats,
                             "last_turn": {"turns": 1}}]}
        with open(json_path(d), "w") as f:
            json.dump(old, f)
        d.start()
        c = d.client()
        rows = c.request("sessions")["data"]
        t.ok(len(rows) == 1 and rows[0]["session"] == "m1" and
             rows[0]["turns"] == 2 and rows[0]["cli_session_id"] == sid,
             "migrate: the session of sessions.json is back", rows)
        row = state_session(d, "m1")
        t.ok(row is not None and row["stats"]["turns"] == 2 and
             row["has_conversation"] and row["options"] == {"model": "x"} and
             row["workdir"] == wd, "migrate: it is in the store", row)
        t.ok(not os.path.exists(json_path(d)) and
             os.path.exists(json_path(d) + ".migrated"),
             "migrate: sessions.json is renamed sessions.json.migrated",
             glob.glob(json_path(d) + "*"))
        st = c.request("stats")["data"]
        t.eq(st["turns"], 9, "migrate: the ended sessions' totals come too")
        t.eq(d.stop(signal.SIGTERM), 0, "migrate: clean exit")
        d.start()
        rows = d.client().request("sessions")["data"]
        t.eq([(r["session"], r["turns"]) for r in rows], [("m1", 2)],
             "migrate: once; after a restart the store alone has it")
    finally:
        d.stop()
        d.cleanup()


IN_USE_CLI = """#!/bin/sh
# The real CLI's answer to --session-id of a conversation it has (recorded:
# "Error: Session ID <id> is already in use." on stderr, exit status 1),
# while %(mark)s exists; else the fake CLI.
prev=
for a; do
    if [ "$prev" = --session-id ] && [ -e %(mark)s ]; then
        echo "Error: Session ID $a is already in use." >&2
        exit 1
    fi
    prev=$a
done
exec %(fake)s "$@"
"""


def test_already_in_use():
    """A store that lost "has a conversation" (as a crash at the wrong
    moment did): the CLI's "already in use" is not the turn's failure,
    the turn runs in a CLI started with --resume."""
    from hplib import BDIR
    tmp = tempfile.mkdtemp(prefix="hpinuse.")
    os.chmod(tmp, 0o711)    # the session's user runs the wrapper in it
    mark = os.path.join(tmp, "in-use")
    wrap = os.path.join(tmp, "cli")
    # Beside the wrapper: Landlock lets the CLI run what is in its dir.
    fake = os.path.join(tmp, "fake-claude")
    shutil.copy2(os.path.join(BDIR, "fake-claude"), fake)
    with open(wrap, "w") as f:
        f.write(IN_USE_CLI % {"mark": mark, "fake": fake})
    os.chmod(wrap, 0o755)
    d = Daemon(cli=wrap)
    try:
        d.start()
        c = d.client()
        e1 = c.execute("u1", "stream:1", workdir=os.path.join(d.work, "u1"))
        sid = start_of(e1).get("cli_session_id")
        t.eq(d.stop(signal.SIGTERM), 0, "in use: clean exit after turn 1")
        db = sqlite3.connect(db_path(d))
        db.execute("UPDATE sessions SET has_conversation = 0")
        db.commit()
        db.close()
        open(mark, "w").close()
        d.start()
        c = d.client()
        n0 = len(d.cli_starts())
        e2 = c.execute("u1", "stream:1")
        starts = d.cli_starts()[n0:]
        st = stats_of(e2)
        t.ok(e2[-1]["type"] == "done" and not [x for x in e2
                                               if x["type"] == "error"],
             "in use: the turn ends done, no error line", e2[-1])
        t.ok(len(starts) == 1 and resume_arg(starts[0]["argv"]) == sid,
             "in use: it ran in a CLI started with --resume " + str(sid),
             [x["argv"] for x in starts])
        t.ok(st.get("turns") == 2 and st.get("errors") == 0,
             "in use: 2 turns, no error counted", st)
        t.ok(state_session(d, "u1")["has_conversation"],
             "in use: the store knows the conversation now")
    finally:
        d.stop()
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def http_metrics(port):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(30))
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_accounting():
    """Every execute that reached a worker counts in turns, a failed one in
    errors too, whatever ended it (the CLI's death, the worker's); a prompt
    the firewall refused counts in danger_blocks; after a SIGKILL and a
    restart the metrics equal the stats."""
    with Daemon({"metrics_listen": METRICS_ANY,
                 "firewall": None}) as d:
        c = d.client()
        wd = os.path.join(d.work, "a1")
        ok = c.execute("a1", "stream:1", workdir=wd)
        crash = c.execute("a1", "crash")
        rid = c.send("execute", session="a1", prompt="stall")
        evs = []
        while True:             # the worker is killed once the turn runs
            o = c.line()
            evs.append(o)
            if o is None or o["type"] in ("session_start", "done", "error"):
                break
        start = (evs[-1] or {}).get("data", {})
        if start.get("worker_pid"):
            os.kill(start["worker_pid"], signal.SIGKILL)
        evs += c.events(rid)
        blocked = c.execute("a1", "please run rm -rf / --no-preserve-root "
                            "now")
        rid = c.send("execute", session="a1", prompt="stall")
        while True:             # stopped once the turn runs
            o = c.line()
            if o is None or o["type"] in ("session_start", "done", "error"):
                break
        d.client().request("stop", session="a1")
        stopped = c.events(rid)
        codes = [ok[-1]["type"], crash[-1]["data"].get("code"),
                 evs[-1]["data"].get("code"), blocked[-1]["data"].get("code"),
                 (stopped[-1:] or [{}])[0].get("data", {}).get(
                     "terminal_reason")]
        t.eq(codes, ["done", "cli_exited", "worker_exited", "danger_blocked",
                     "stopped"], "accounting: a done, a CLI death, a worker "
             "death, a block, a stop")
        st = c.request("stats", session="a1")["data"]
        t.ok(st["turns"] == 4 and st["errors"] == 2 and
             st["danger_blocks"] == 1, "accounting: 4 turns reached a "
             "worker, 2 failed, 1 prompt blocked", st)
        t.eq(saved_turns(d, "a1"), 4, "accounting: the store has the 4")
        d.stop(signal.SIGKILL)
        d.start()
        st = d.client().request("stats")["data"]
        m = http_metrics(d.metrics_port())
        t.eq((m.get("hotplex_turns_total"), m.get("hotplex_turn_errors_total"),
              m.get("hotplex_danger_blocks_total")),
             (st["turns"], st["errors"], st["danger_blocks"]),
             "accounting: after a SIGKILL and a restart the metrics equal "
             "the stats")
        t.eq((st["turns"], st["errors"], st["danger_blocks"]), (4, 2, 1),
             "accounting: and the stats are those before the kill")


STORM_SESSIONS = 12
STORM_DONES = 120           # SIGKILL once clients have read this many


def test_storm():
    """SIGKILL during a storm of writes (many sessions turning at once):
    the database passes integrity_check and every turn a client saw done
    is in it."""
    import threading
    with Daemon({"max_sessions": "64", "spare_max": "16"}) as d:
        seen = {}
        lock = threading.Lock()
        enough = threading.Event()

        def storm(name):
            c = d.client()
            wd = os.path.join(d.work, name)
            while True:
                try:
                    e = c.execute(name, "stream:1", workdir=wd)
                except (OSError, ValueError):
                    return      # the socket closed under us
                if not e or e[-1]["type"] != "done":
                    return      # the daemon died under us
                with lock:
                    seen[name] = seen.get(name, 0) + 1
                    if sum(seen.values()) >= STORM_DONES:
                        enough.set()

        threads = [threading.Thread(target=storm, args=("st%d" % i,),
                                    daemon=True)
                   for i in range(STORM_SESSIONS)]
        for th in threads:
            th.start()
        enough.wait(scaled(300))
        os.kill(d.proc.pid, signal.SIGKILL)     # turns in flight
        for th in threads:
            th.join(scaled(60))
        d.stop(signal.SIGKILL)
        with lock:
            saw = dict(seen)
        t.ok(sum(saw.values()) >= STORM_DONES,
             "storm: %d turns done over %d sessions before the SIGKILL" %
             (sum(saw.values()), len(saw)))
        t.eq(db_query(d, "PRAGMA integrity_check"), [("ok",)],
             "storm: the database passes integrity_check")
        stored = {n: saved_turns(d, n) or 0 for n in saw}
        t.ok(all(saw[n] <= stored[n] <= saw[n] + 1 for n in saw),
             "storm: every turn a client saw done is stored (and at most "
             "the one in flight more)",
             {n: (saw[n], stored[n]) for n in saw if stored[n] != saw[n]})
        d.start()
        rows = {r["session"]: r["turns"] for r in
                d.client().request("sessions")["data"]}
        t.ok(all(rows.get(n, 0) >= saw[n] for n in saw),
             "storm: and the restarted daemon has them", (rows, saw))


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
        # As before a restart, a new turn brings it back, in a new
        # conversation (stop ended the old one), its stats going on.
        e3 = c.execute("e1", "stream:1")
        s3 = start_of(e3)
        t.ok(e3[-1]["type"] == "done" and s3.get("resumed") is False and
             s3.get("cli_session_id") != start_of(ee)["cli_session_id"] and
             stats_of(e3).get("turns") == 3,
             "an ended session comes back on a turn, in a new conversation",
             (s3, e3[-1]))


V1_SESSIONS = ("CREATE TABLE sessions (uid INTEGER NOT NULL, name TEXT NOT "
               "NULL, workdir TEXT NOT NULL, cli_session_id TEXT NOT NULL, "
               "has_conversation INTEGER NOT NULL, ended INTEGER NOT NULL, "
               "options TEXT NOT NULL, stats TEXT NOT NULL, last_turn TEXT "
               "NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (uid, "
               "name))")


def test_schema_v1():
    """A database of schema 1 (before run_uid, the transcripts and the
    audit's overlapped) is migrated in place: its sessions stay and
    resume."""
    with Daemon() as d:
        s1, s2, st2 = two_turns(d, "v1")
        sid = s1["cli_session_id"]
        t.eq(d.stop(signal.SIGTERM), 0, "schema 1: clean exit")
        db = sqlite3.connect(db_path(d))
        db.executescript("ALTER TABLE sessions RENAME TO s2; " + V1_SESSIONS +
                         "; INSERT INTO sessions SELECT uid, name, workdir, "
                         "cli_session_id, has_conversation, ended, options, "
                         "stats, last_turn, updated_ms FROM s2; DROP TABLE "
                         "s2; DROP TABLE IF EXISTS transcripts; "
                         "ALTER TABLE audit DROP COLUMN overlapped; "
                         "PRAGMA user_version = 1;")
        db.commit()
        db.close()
        with open(d.log, "ab") as f:
            mark = f.tell()
        d.start()
        # A reply means the store was opened (before the loop runs).
        t.eq(d.client().request("sessions")["type"], "sessions",
             "schema 1: the daemon answers")
        t.eq(db_query(d, "PRAGMA user_version"), [(SCHEMA,)],
             "schema 1: migrated to schema %d" % SCHEMA)
        t.eq(db_query(d, "SELECT count(*) FROM pragma_table_info('audit') "
                      "WHERE name = 'overlapped'"), [(1,)],
             "schema 1: the audit has the overlapped column")
        with open(d.log, "rb") as f:
            log = f.read()[mark:].decode("utf-8", "replace")
        t.ok("migrated to schema %d" % SCHEMA in log and "renamed" not in log,
             "schema 1: migrated in place, and logged", log[-2000:])
        check_resumed_third_turn(d, "v1", sid, tokens(st2), "schema 1")


DYN_RANGE = (70100, 70199)


def test_dynamic_uids():
    """session_user = dynamic: a restored session runs as the uid it had,
    and no new session takes it meanwhile."""
    if os.geteuid() != 0:
        t.skip("dynamic uids across restarts", "needs root")
        return
    conf = {"session_user": "dynamic",
            "dynamic_uids": "%d-%d" % DYN_RANGE}
    with Daemon(conf) as d:
        os.chmod(d.work, 0o777)
        c = d.client()
        uids = {}
        for n in ("d1", "d2", "d3"):
            e = c.execute(n, "stream:1", workdir=os.path.join(d.work, n))
            uids[n] = (d.cli_starts()[-1] or {}).get("uid")
            t.ok(e[-1]["type"] == "done", "dynamic: %s turn 1 done" % n,
                 e[-1])
        t.eq(sorted(uids.values()), list(range(DYN_RANGE[0],
                                              DYN_RANGE[0] + 3)),
             "dynamic: three sessions, three uids of the range")
        t.eq(c.request("stop", session="d1")["type"], "ok",
             "dynamic: d1 stopped (its uid is free)")
        rows = db_query(d, "SELECT name, run_uid FROM sessions")
        t.eq(sorted(rows), sorted(uids.items()),
             "dynamic: the store keeps each session's uid")
        d.stop(signal.SIGKILL)
        d.start()
        c = d.client()
        # d3 first: without its stored uid it would get d1's (the lowest).
        n0 = len(d.cli_starts())
        e = c.execute("d3", "stream:1")
        st = d.cli_starts()[n0:]
        t.ok(e[-1]["type"] == "done" and start_of(e).get("resumed") and
             len(st) == 1 and st[0]["uid"] == uids["d3"],
             "dynamic: after a SIGKILL d3 runs as its uid again and resumes",
             (e[-1], st, uids))
        e = c.execute("d4", "stream:1", workdir=os.path.join(d.work, "d4"))
        st = d.cli_starts()[-1]
        t.ok(e[-1]["type"] == "done" and st["uid"] == uids["d1"],
             "dynamic: a new session takes the freed uid, not d2's, which "
             "has not run since the restart", (e[-1], st, uids))
        n0 = len(d.cli_starts())
        e = c.execute("d2", "stream:1")
        st = d.cli_starts()[n0:]
        t.ok(e[-1]["type"] == "done" and start_of(e).get("resumed") and
             len(st) == 1 and st[0]["uid"] == uids["d2"],
             "dynamic: d2 too runs as its uid again", (e[-1], st))
        r = c.request("sessions")
        t.eq(sorted((x["session"], x.get("run_uid")) for x in r["data"]
                    if x["state"] != "ended"),
             [("d2", uids["d2"]), ("d3", uids["d3"]), ("d4", uids["d1"])],
             "dynamic: sessions shows each run_uid")


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
           "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": api_timeout_ms()}
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
    # Made by the session's own user (root's run as worker_user).
    wd = os.path.join(d.work, "real")
    e1 = c.execute("real", "My favourite colour is teal.", workdir=wd)
    e2 = c.execute("real", "Say hello.")
    s1, s2 = start_of(e1), start_of(e2)
    t.ok(e1[-1]["type"] == "done" and e2[-1]["type"] == "done" and
         s2.get("cli_pid") == s1.get("cli_pid"),
         "real CLI: two turns on one CLI", (e1[-1], e2[-1]))
    t.eq(saved_turns(d, "real"), 2, "real CLI: the store shows turn 2")
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
    test_checkpoint_thread()
    test_committed_before_done()
    test_already_in_use()
    test_accounting()
    test_storm()
    test_ended_stay_ended()
    test_bad_dbs()
    test_bad_files()
    test_migrate()
    test_schema_v1()
    test_dynamic_uids()
    test_real_cli()
    t.done()


if __name__ == "__main__":
    main()
