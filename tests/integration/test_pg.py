#!/usr/bin/env python3
"""The shared store on PostgreSQL (store = postgresql://...): a server of
the test's own (hppg.py), hotplexd with tests/fake-claude.

One host: the schema is made once from an empty database, rows, a turn's
end committed before its done line, the audit, a restart that resumes,
a database of a newer schema left alone, the server paused and back
(/readyz and status say the store is unreachable, then ready again).  Two hosts (two hotplexd with
their own host_id, socket and state_dir, one database, one workdir root):
a session another host serves is refused; a host whose lease was taken
while a turn ran cannot write its end (fenced) and stops serving the
session; a host stopped (SIGSTOP) past its lease finds it gone when it
wakes; a host killed with SIGKILL loses its leases after lease_timeout
and another host takes the session and resumes the conversation.

Skipped, with the reason, where PostgreSQL cannot run."""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hplib
import hppg
from hplib import TAP, Daemon, wait_for, first, proc_alive, procs_in_group

t = TAP()
if os.environ.get("HP_VALGRIND") and os.environ.get("HP_SAN"):
    t.skip("shared store under valgrind", "sanitizer build (ASan and "
           "valgrind do not mix); the plain build runs it")
    t.done()



def _pg_schema():
    """PG_SCHEMA of supervisor/store-pg.c: the build's."""
    with open(os.path.join(os.path.dirname(os.path.dirname(HERE)),
                           "supervisor", "store-pg.c")) as f:
        return int(re.search(r"#define\s+PG_SCHEMA\s+(\d+)",
                             f.read()).group(1))


SCHEMA = _pg_schema()
SHORT_LEASE = "2s"           # the expiry case: a takeover within seconds
SHORT_LEASE_S = 2.0
LONG_LEASE = "1h"            # a host that never renews during the test
DEATH_WAIT_S = 10            # a dead master's workers and CLIs are gone


def shared_root():
    """One workdir root for every host, as a shared filesystem would be."""
    d = tempfile.mkdtemp(prefix="hppg-work.")
    os.chmod(d, hplib.DIR_SHARED)
    return d


@contextlib.contextmanager
def store_case(pg, db):
    """A case's database URL and its shared workdir root, removed after."""
    root = shared_root()
    try:
        yield pg.url(db), root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def host(pg_url, name, root, **conf):
    # No moves (move_timeout 0): a session another host holds is refused
    # at once, which these cases of fencing and expiry need; moving is
    # tests/e2e/test_hosts.py's.
    c = {"store": pg_url, "host_id": name, "workdir_root": root,
         "move_timeout": "0"}
    c.update(conf)
    return Daemon(c)


def row(pg, db, name):
    """The session's row: host_id, has_conversation, ended, turns."""
    r = pg.sql(db, "SELECT host_id, has_conversation, ended, "
               "(stats::json->>'turns')::int, cli_session_id FROM sessions "
               "WHERE name = '%s'" % name)
    if len(r) != 1:
        return None
    return {"host_id": r[0][0], "has_conversation": r[0][1] == "1",
            "ended": r[0][2] == "1", "turns": int(r[0][3] or 0),
            "cli_session_id": r[0][4]}


def lease(pg, db, name):
    """(host_id, fence, still valid) of the session's lease, or None."""
    r = pg.sql(db, "SELECT host_id, fence, expires > clock_timestamp() "
               "FROM leases WHERE name = '%s'" % name)
    return (r[0][0], int(r[0][1]), r[0][2] == "t") if len(r) == 1 else None


def start_of(evs):
    return (first(evs, "session_start") or {}).get("data", {})


def resume_arg(argv):
    return argv[argv.index("--resume") + 1] if "--resume" in argv else None


def log_has(d, text):
    with open(d.log, errors="replace") as f:
        return text in f.read()


def test_one_host(pg):
    db = "one"
    with store_case(pg, db) as (url, root):
        with host(url, "solo", root) as d:
            c = d.client()
            c.request("sessions")   # served: the store was opened before
            t.ok(log_has(d, "created the schema (version %d)" % SCHEMA),
                 "an empty database gets the schema", d.logtail())
            t.eq(pg.sql(db, "SELECT version FROM schema_version"),
                 [[str(SCHEMA)]], "schema_version holds %d" % SCHEMA)
            rc, out = check_n(d)
            t.ok("hotplexd: store: server " in out and
                 "schema %d" % SCHEMA in out,
                 "hotplexd -n connects and names the schema", out)
            t.eq(sorted(r[0] for r in pg.sql(
                db, "SELECT tablename FROM pg_tables WHERE schemaname = "
                "'public'")),
                 ["audit", "leases", "schema_version", "sessions", "totals",
                  "transcripts"],
                 "SQLite's tables, and the leases")
            wd = os.path.join(root, "p1")
            seen = []
            for i in range(3):
                evs = c.execute("p1", "stream:1", workdir=wd)
                r = row(pg, db, "p1")
                seen.append((evs[-1]["type"], r and r["turns"]))
            t.eq(seen, [("done", 1), ("done", 2), ("done", 3)],
                 "after each done the store already counts that turn")
            r = row(pg, db, "p1")
            t.ok(r and r["host_id"] == "solo" and r["has_conversation"] and
                 not r["ended"],
                 "the row names its host and has the conversation", r)
            l1 = lease(pg, db, "p1")
            t.ok(l1 and l1[0] == "solo" and l1[2],
                 "the session's lease is this host's, valid", l1)
            evs = c.execute("p1", "tool:echo audited")
            rows = c.request("audit", session="p1")["data"]["rows"]
            t.ok(evs[-1]["type"] == "done" and len(rows) == 1 and
                 rows[0]["tool"] == "Bash" and rows[0]["kind"] == "tool" and
                 "echo audited" in rows[0]["excerpt"] and
                 rows[0]["turn"] == 4,
                 "a tool call is an audit row, read back by audit", rows)
            t.eq(pg.sql(db, "SELECT host_id FROM audit"), [["solo"]],
                 "the audit row names its host")
            sid = r["cli_session_id"]
            d.stop(signal.SIGKILL)
            d.start()
            n0 = len(d.cli_starts())
            c = d.client()
            evs = c.execute("p1", "stream:1")
            starts = d.cli_starts()[n0:]
            t.ok(evs[-1]["type"] == "done" and start_of(evs).get("resumed")
                 and len(starts) == 1 and
                 resume_arg(starts[0]["argv"]) == sid,
                 "after a SIGKILL and a start the conversation resumes",
                 (evs[-1], start_of(evs), [s["argv"] for s in starts]))
            t.eq(row(pg, db, "p1")["turns"], 5, "and counting goes on")
            t.eq(pg.sql(db, "SELECT count(*) FROM schema_version"), [["1"]],
                 "a second start does not make the schema again")
            t.eq(c.request("stop", session="p1")["type"], "ok", "stop")
            r, l2 = row(pg, db, "p1"), lease(pg, db, "p1")
            t.ok(r["ended"] and l2 and not l2[2],
                 "a stopped session: its row ended, its lease given back",
                 (r, l2))
        # Schema 1 (before the audit's overlapped column) is migrated in
        # place, once: the rows stay, new audit rows have the column.
        pg.sql(db, "ALTER TABLE audit DROP COLUMN overlapped; "
               "UPDATE schema_version SET version = 1")
        with host(url, "solo", root) as d:
            c = d.client()
            c.execute("m1", "tool:true", workdir=os.path.join(root, "m1"))
            t.ok(log_has(d, "migrated to schema %d" % SCHEMA) and
                 not log_has(d, "created the schema"),
                 "schema 1: migrated in place, and logged", d.logtail())
            t.ok(pg.sql(db, "SELECT version FROM schema_version") ==
                 [[str(SCHEMA)]] and row(pg, db, "p1")["turns"] == 5 and
                 pg.sql(db, "SELECT overlapped FROM audit WHERE session = "
                        "'m1'") == [["0"]],
                 "schema 1: its rows kept, a new audit row has overlapped",
                 pg.sql(db, "SELECT version FROM schema_version"))
        # A newer schema is another hotplexd's: never touched.
        pg.sql(db, "UPDATE schema_version SET version = 99")
        d = host(url, "solo", root)
        rc, out = check_n(d)
        t.ok(rc != 0 and "schema 99, newer than" in out,
             "hotplexd -n: the newer schema is an error", (rc, out))
        try:
            try:
                d.start()   # its socket may be up before the store's turn
            except RuntimeError:
                pass
            rc = d.proc.wait(hplib.REPLY_TIMEOUT_S * hplib.time_scale())
            t.ok(rc != 0 and log_has(d, "schema version 99 is newer than") and
                 log_has(d, "not starting"),
                 "a database of a newer schema: hotplexd says so and does "
                 "not start", (rc, d.logtail(5)))
        finally:
            d.stop()
        t.eq(pg.sql(db, "SELECT version FROM schema_version"), [["99"]],
             "... and leaves it as it was")
        d.cleanup()


def test_store_paused(pg):
    """The server stops answering (SIGSTOP): a turn still ends, without
    its commit, after the store's timeout; a new session is refused with
    store_unavailable; once the server answers again the host reconnects
    and the next turn's end is stored with every turn counted."""
    db = "down"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root) as d:
            c = d.client()
            e1 = c.execute("d1", "stream:1", workdir=os.path.join(root, "d1"))
            t.eq(e1[-1]["type"], "done", "a turn with the store up")
            pg.pause()
            try:
                e2 = c.execute("d1", "stream:1")
                t.ok(e2 and e2[-1]["type"] == "done" and
                     hplib.terminal_count(e2) == 1,
                     "store paused: the turn still ends, once", e2[-1:])
                t.ok(log_has(d, "no answer from"),
                     "... and the log says the store did not answer",
                     d.logtail(5))
                n = c.execute("d2", "stream:1",
                              workdir=os.path.join(root, "d2"))
                t.ok(n and n[-1]["type"] == "error" and
                     n[-1]["data"]["code"] == "store_unavailable",
                     "a new session is refused: store_unavailable", n[-1:])
            finally:
                pg.resume()
            wait_for(lambda: log_has(d, "connected again"),
                     hplib.REPLY_TIMEOUT_S, "the store to be reached again")
            e3 = c.execute("d1", "stream:1")
            r = row(pg, db, "d1")
            t.ok(e3[-1]["type"] == "done" and r["turns"] == 3,
                 "the store back: the next turn's end has all 3 turns",
                 (e3[-1], r))


def test_store_lost(pg):
    """The store does not answer for longer than lease_timeout: the host
    cannot know whether another took its sessions, so it stops serving
    them; once the store answers again the next turn takes the session
    back and goes on counting."""
    db = "lost"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, lease_timeout=SHORT_LEASE) as d:
            c = d.client()
            e1 = c.execute("l1", "stream:1", workdir=os.path.join(root, "l1"))
            t.eq(e1[-1]["type"], "done", "a turn with the store up")
            fence = lease(pg, db, "l1")[1]
            pg.pause()
            try:
                wait_for(lambda: log_has(d, "could not renew the lease"),
                         hplib.REPLY_TIMEOUT_S, "the leases to be given up")
                t.ok(True, "no renewal for lease_timeout: the host gives "
                     "its sessions up")
                wait_for(lambda: log_has(d, "session l1 dormant"),
                         hplib.REPLY_TIMEOUT_S, "the CLI to stop")
                t.ok(True, "... and stops their CLIs")
            finally:
                pg.resume()
            wait_for(lambda: log_has(d, "connected again"),
                     hplib.REPLY_TIMEOUT_S, "the store to be reached again")
            e2 = c.execute("l1", "stream:1")
            l2, r = lease(pg, db, "l1"), row(pg, db, "l1")
            t.ok(e2[-1]["type"] == "done" and l2[1] > fence and
                 r["turns"] == 2,
                 "the store back: the next turn takes the lease again and "
                 "counts on", (e2[-1], l2, fence, r))


def http_get(port, path):
    h = http.client.HTTPConnection("127.0.0.1", port,
                                   timeout=hplib.scaled(hplib.REPLY_TIMEOUT_S))
    try:
        h.request("GET", path)
        r = h.getresponse()
        return r.status, r.read().decode()
    finally:
        h.close()


def test_readyz(pg):
    """The store unreachable: /readyz answers 503 naming the store, the
    status op says reconnecting and when it tries next; ready again once
    the store answers.  A short lease_timeout: its renewals (every third
    of it) are the statements that find the store gone."""
    db = "ready"
    root = shared_root()
    try:
        with host(pg.url(db), "hostA", root, lease_timeout="3s",
                  metrics_listen=hplib.METRICS_ANY) as d:
            port = d.metrics_port()
            c = d.client()
            wait_for(lambda: http_get(port, "/readyz")[0] == 200,
                     hplib.REPLY_TIMEOUT_S, "ready with the store up")
            st, body = http_get(port, "/readyz")
            t.ok(st == 200 and "ok store:" in body and "connected" in body,
                 "/readyz: 200, the store connected", body)
            pg.pause()
            try:
                wait_for(lambda: http_get(port, "/readyz")[0] == 503,
                         hplib.REPLY_TIMEOUT_S, "/readyz to say not ready")
                st, body = http_get(port, "/readyz")
                t.ok(st == 503 and "failed store:" in body and
                     "reconnecting, next try in" in body and
                     body.endswith("not ready\n"),
                     "store paused: /readyz 503 naming the store", body)
                r = c.request("status")
                so = r.get("data", {}).get("store", {})
                t.ok(r["type"] == "ok" and so.get("state") ==
                     "reconnecting" and "next try" in so.get("detail", "")
                     and r["data"].get("ready") is False,
                     "status: the store reconnecting, next try", r)
            finally:
                pg.resume()
            wait_for(lambda: http_get(port, "/readyz")[0] == 200,
                     hplib.REPLY_TIMEOUT_S, "ready once the store is back")
            r = c.request("status")
            t.ok(r.get("data", {}).get("store", {}).get("state") ==
                 "connected" and log_has(d, "connected again"),
                 "the store back: ready, status connected, logged", r)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_startup(pg):
    """A host started while the store does not answer (paused, then not
    running at all): it answers at once, a session op gets
    store_unavailable saying the host is starting and why, /readyz is 503
    (serving, store) and the log says what it waits for; once the server
    answers the host reads its table, listens on the hosts' channel and
    serves (before: it waited 5 s and exited, or exited at once)."""
    db = "startup"
    url = pg.url(db)
    root = shared_root()
    wd = os.path.join(root, "u1")
    d = host(url, "hostA", root, metrics_listen=hplib.METRICS_ANY)
    d.wait_serving = False
    try:
        pg.pause()
        try:
            d.start()
            port = d.metrics_port()
            c = d.client()
            r = c.request("open", session="u1", workdir=wd)
            msg = r.get("data", {}).get("message", "")
            t.ok(r["type"] == "error" and r["data"]["code"] ==
                 "store_unavailable" and "this host is starting" in msg and
                 "not open yet" in msg and "not connected yet" in msg,
                 "store paused at start: open refused, store_unavailable, "
                 "starting, the store not connected yet", r)
            st, body = http_get(port, "/readyz")
            t.ok(st == 503 and "failed serving: this host is starting" in
                 body and "failed store:" in body,
                 "... /readyz 503: serving and store", body)
            t.ok(c.request("status")["type"] == "ok" and
                 log_has(d, "no session served until"),
                 "... status answers; the log says what the host waits for",
                 d.logtail(5))
        finally:
            pg.resume()
        d.wait_served(0)
        r = c.request("open", session="u1", workdir=wd)
        e = c.execute("u1", "stream:1")
        # (A spare may still be on its way: /readyz waits for it too.)
        st, body = http_get(port, "/readyz")
        t.ok(r["type"] == "ok" and e[-1]["type"] == "done" and
             "ok serving: session table read" in body and
             "ok store:" in body,
             "the store answers: the host serves (open, a turn; /readyz "
             "serving and store ok)", (r, e[-1], body))
        n = d.log_count(hplib.SERVING_LINE)
        d.stop()
        pg.halt()
        try:
            d.start()
            port = d.metrics_port()
            c = d.client()
            e = c.execute("u1", "stream:1")
            t.ok(e[-1]["type"] == "error" and e[-1]["data"]["code"] ==
                 "store_unavailable" and "starting" in
                 e[-1]["data"]["message"] and http_get(port, "/readyz")[0]
                 == 503 and hplib.terminal_count(e) == 1,
                 "store not running at start: the host starts, execute "
                 "refused once with store_unavailable, /readyz 503", e)
        finally:
            pg.again()
        d.wait_served(n)
        e = c.execute("u1", "stream:1")
        t.ok(e[-1]["type"] == "done" and start_of(e).get("resumed") is True
             and row(pg, db, "u1")["turns"] == 2,
             "the server started: the session resumes, 2 turns stored",
             (e[-1], start_of(e)))
    finally:
        pg.resume()
        d.stop()
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_store_watch(pg):
    """The store's loss is seen without waiting for a statement, and the
    reconnection never blocks the master.  lease_timeout 1h: no renewal
    runs during the test, so only the probe and the socket watch can see
    it.  The server paused: /readyz says not ready once the idle probe
    goes unanswered; while a reconnection hangs on the paused server, the
    master answers (status says a try is running).  The server stopped:
    its closed socket is seen at once; a running session's turn still
    ends, a new session is refused; the server started again: the host
    reconnects by itself and the next turn is stored with every turn."""
    db = "watch"
    root = shared_root()
    port = []
    ready = lambda: http_get(port[0], "/readyz")[0] == 200
    try:
        with host(pg.url(db), "hostA", root, lease_timeout=LONG_LEASE,
                  metrics_listen=hplib.METRICS_ANY) as d:
            port.append(d.metrics_port())
            c = d.client()
            e1 = c.execute("w1", "stream:1", workdir=os.path.join(root, "w1"))
            t.eq(e1[-1]["type"], "done", "a turn with the store up")
            wait_for(ready, hplib.REPLY_TIMEOUT_S, "ready with the store up")
            pg.pause()
            try:
                t0 = time.monotonic()
                wait_for(lambda: not ready(), hplib.REPLY_TIMEOUT_S,
                         "/readyz to say not ready")
                t.ok(log_has(d, "probe: no answer from"),
                     "store paused, no statement running: the idle probe "
                     "finds it, /readyz 503 (after %.1f s)" %
                     (time.monotonic() - t0), d.logtail(5))
                n0 = open(d.log, errors="replace").read().count(
                    "connecting to")
                wait_for(lambda: open(d.log, errors="replace").read().count(
                    "connecting to") > n0, hplib.REPLY_TIMEOUT_S,
                    "a reconnection to start")
                r = c.request("status")
                so = r.get("data", {}).get("store", {})
                t.ok(r["type"] == "ok" and "one running for" in
                     so.get("detail", ""),
                     "a reconnection hangs on the paused server: the "
                     "master answers meanwhile", so)
            finally:
                pg.resume()
            wait_for(ready, hplib.REPLY_TIMEOUT_S, "ready again")
            t.ok(log_has(d, "connected again"), "the server answers again: "
                 "reconnected, ready", d.logtail(3))
            pg.halt()
            try:
                t0 = time.monotonic()
                wait_for(lambda: not ready(), hplib.REPLY_TIMEOUT_S,
                         "/readyz to say not ready")
                t.ok(log_has(d, "lost the connection to"),
                     "store stopped: the closed connection is seen, /readyz "
                     "503 (after %.2f s)" % (time.monotonic() - t0),
                     d.logtail(5))
                e2 = c.execute("w1", "stream:1")
                t.ok(e2 and e2[-1]["type"] == "done" and
                     hplib.terminal_count(e2) == 1,
                     "store stopped: a served session's turn still ends",
                     e2[-1:])
                n = c.execute("w2", "stream:1",
                              workdir=os.path.join(root, "w2"))
                t.ok(n and n[-1]["type"] == "error" and
                     n[-1]["data"]["code"] == "store_unavailable",
                     "... a new session is refused: store_unavailable",
                     n[-1:])
            finally:
                pg.again()
            wait_for(ready, hplib.REPLY_TIMEOUT_S, "ready again")
            e3 = c.execute("w1", "stream:1")
            r = row(pg, db, "w1")
            t.ok(e3[-1]["type"] == "done" and r["turns"] == 3,
                 "store started again: reconnected by itself, the next "
                 "turn's end has all 3 turns", (e3[-1], r))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_drain(pg):
    """hotplexctl drain on A: a running turn ends first, every session's
    CLI stops and its lease goes back (dormant); A refuses new sessions
    with draining; the session's next turn on B resumes the conversation;
    B (max_sessions 1) refuses to take a second one; undrain puts A back
    in service."""
    db = "drain"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, move_timeout="60s") as a, \
                host(url, "hostB", root, max_sessions="1") as b:
            ca, cb, cc = a.client(), b.client(), a.client()
            e1 = ca.execute("n1", "stream:1", workdir=os.path.join(root, "n1"))
            sid = start_of(e1).get("cli_session_id")
            t.eq(e1[-1]["type"], "done", "A: a turn of n1")
            rid = ca.send("execute", session="n2", prompt="toolsleep:1500",
                          workdir=os.path.join(root, "n2"))
            evs = []
            while not any(e["type"] == "session_start" for e in evs):
                o = ca.line()
                if o is None:
                    break
                evs.append(o)
            r = cc.request("drain")
            t.ok(r["type"] == "ok" and r["data"]["sessions"] == 2,
                 "drain: ok, two sessions let go", r)
            evs += ca.events(rid)
            t.ok(evs[-1]["type"] == "done" and hplib.terminal_count(evs) == 1,
                 "drain: the running turn ends first, once", evs[-1:])
            gone = lambda n: lease(pg, db, n) is None or not lease(pg, db, n)[2]
            wait_for(lambda: gone("n1") and gone("n2"),
                     hplib.REPLY_TIMEOUT_S, "A to give the leases back")
            t.ok(True, "drain: both leases given back")
            pgids = [x["pgid"] for x in a.cli_starts()]
            wait_for(lambda: all(not procs_in_group(g) for g in pgids),
                     DEATH_WAIT_S, "A's CLIs to stop")
            t.ok(log_has(a, "let go (drained)"), "drain: A's CLIs stopped, "
                 "the sessions let go (logged)", a.logtail(5))
            n = cc.execute("n3", "stream:1", workdir=os.path.join(root, "n3"))
            t.ok(n and n[-1]["type"] == "error" and
                 n[-1]["data"]["code"] == "draining",
                 "drained A refuses a new session: draining", n[-1:])
            n = cc.execute("n1", "stream:1")
            t.ok(n and n[-1]["type"] == "error" and
                 n[-1]["data"]["code"] == "draining",
                 "... and a turn of a session it served", n[-1:])
            n0 = len(b.cli_starts())
            eb = cb.execute("n1", "stream:1")
            starts = b.cli_starts()[n0:]
            t.ok(eb[-1]["type"] == "done" and
                 start_of(eb).get("resumed") is True and
                 len(starts) == 1 and resume_arg(starts[0]["argv"]) == sid,
                 "B: n1's next turn resumes the conversation (--resume " +
                 str(sid) + ")", (eb[-1], [s["argv"] for s in starts]))
            r = row(pg, db, "n1")
            t.ok(r["host_id"] == "hostB" and r["turns"] == 2,
                 "n1's row is B's, with both turns", r)
            n = cb.execute("n2", "stream:1")
            t.ok(n and n[-1]["type"] == "error" and
                 n[-1]["data"]["code"] == "capacity" and
                 "max_sessions (1)" in n[-1]["data"].get("message", ""),
                 "B at max_sessions 1: taking n2 from the store is refused "
                 "(capacity)", n[-1:])
            ls = cb.request("sessions")["data"]
            t.ok(sorted((x["session"], x["state"], x.get("host_id"))
                        for x in ls) ==
                 [("n1", "ready", "hostB"), ("n2", "dormant", "hostA")],
                 "B's sessions: its n1, and n2 that A served last, dormant",
                 ls)
            ls = cc.request("sessions")["data"]
            t.ok(sorted((x["session"], x["state"], x.get("host_id"))
                        for x in ls) ==
                 [("n1", "elsewhere", "hostB"), ("n2", "dormant", "hostA")],
                 "drained A's sessions: n1 elsewhere on hostB, n2 dormant",
                 ls)
            r = cc.request("undrain")
            t.ok(r["type"] == "ok" and r["data"]["was_draining"] is True,
                 "undrain: ok, A was drained", r)
            n = cc.execute("n2", "stream:1")
            t.ok(n and n[-1]["type"] == "done" and
                 start_of(n).get("resumed") is True,
                 "undrained A: n2's next turn resumes there", n[-1:])
            n = cc.execute("n3", "stream:1", workdir=os.path.join(root, "n3"))
            t.ok(n and n[-1]["type"] == "done",
                 "... and A takes a new session again", n[-1:])
            t.eq(cc.request("undrain")["data"]["was_draining"], False,
                 "undrain again: it was not drained")
            # hotplexctl prints what the ops answered.
            ctl = [os.path.join(hplib.B, "hotplexctl"), "-S", a.sock]
            out = [subprocess.run(ctl + args, capture_output=True, text=True,
                                  timeout=hplib.scaled(30)).stdout
                   for args in (["--json", "drain"], ["undrain"],
                                ["--json", "undrain"])]
            t.ok(json.loads(out[0]) == {"type": "ok",
                                        "data": {"sessions": 2}} and
                 out[1] == "was draining\n" and
                 json.loads(out[2])["data"] == {"was_draining": False},
                 "hotplexctl drain and undrain print the daemon's answers",
                 out)


def test_across(pg):
    """stats and audit from any host cover every host: A serves a1, B
    serves b1 and forgot b2 (max_ended_sessions 0: its stats are in B's
    totals); an administrator's stats give the same sums on A and on B,
    and the audit on either has both hosts' rows, each naming its host."""
    db = "across"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root) as a, \
                host(url, "hostB", root, max_ended_sessions="0") as b:
            ca, cb = a.client(), b.client()
            for cmd in ("stream:1 cost:0.25", "cost:0 tool:echo from-a"):
                ca.execute("a1", cmd, workdir=os.path.join(root, "a1"))
            cb.execute("b1", "cost:0.5 tool:echo from-b",
                       workdir=os.path.join(root, "b1"))
            e = cb.execute("b2", "stream:1 cost:1",
                           workdir=os.path.join(root, "b2"))
            t.eq(e[-1]["type"], "done", "turns on A (a1) and B (b1, b2)")
            t.eq(cb.request("stop", session="b2")["type"], "ok",
                 "B: b2 stopped and forgotten (max_ended_sessions 0)")
            wait_for(lambda: row(pg, db, "b2") is None,
                     hplib.REPLY_TIMEOUT_S, "b2's row to go")
            keys = ("turns", "cost_usd", "tool_calls", "sessions", "partial")
            sa = ca.request("stats")["data"]
            sb = cb.request("stats")["data"]
            pick = lambda d: {k: (round(d[k], 6) if isinstance(d.get(k), float)
                                  else d.get(k)) for k in keys}
            want = {"turns": 4, "cost_usd": 1.75, "tool_calls": 2,
                    "sessions": 2, "partial": False}
            t.ok(pick(sa) == want, "stats on A: every host's sessions and "
                 "B's forgotten one", (pick(sa), want))
            t.ok(pick(sb) == pick(sa), "stats on B: the same sums",
                 (pick(sb), pick(sa)))
            t.ok(sa.get("host_id") == "hostA" and
                 sb.get("host_id") == "hostB",
                 "... each naming the host that answered",
                 (sa.get("host_id"), sb.get("host_id")))
            for c, who in ((ca, "A"), (cb, "B")):
                rows = c.request("audit")["data"]["rows"]
                got = sorted((x["session"], x.get("host_id"),
                              x["excerpt"].split("from-")[-1][:1])
                             for x in rows if x["kind"] == "tool")
                t.ok(got == [("a1", "hostA", "a"), ("b1", "hostB", "b")],
                     "audit on %s: both hosts' tool calls, each with its "
                     "host_id" % who, rows)


def test_own_move(pg):
    """A move while a turn the CLI began by itself runs (fake CLI bgturn:
    it lasts until the CLI's next control request, which never comes
    here): A waits for it, as for a client's turn, until move_timeout,
    then stops the CLI (whose last transcript lines its worker saves) and
    only then lets the session go; B's turn resumes it."""
    db = "own"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, move_timeout="2s") as a, \
                host(url, "hostB", root, move_timeout="60s") as b:
            ca, fa = a.client(), a.client()
            e = ca.execute("o1", "bgturn hello", workdir=os.path.join(root,
                                                                      "o1"))
            fa.request("attach", session="o1", since_seq=e[-1]["seq"])
            o = fa.line()
            t.ok(e[-1]["type"] == "done" and o is not None and
                 o.get("origin") == "cli",
                 "A: a turn, then one the CLI began by itself", o)
            eb = b.client().execute("o1", "stream:1")
            t.ok(eb[-1]["type"] == "done" and
                 start_of(eb).get("resumed") is True,
                 "B: the session moved and resumed", eb[-1])
            with open(a.log, errors="replace") as f:
                log = f.read()
            i = log.find("the CLI's own turn runs; waiting")
            j = log.find("still runs after move_timeout", max(i, 0))
            k = log.find("let go to host hostB", max(j, 0))
            t.ok(0 <= i < j < k, "A waited for the CLI's own turn "
                 "(move_timeout), then let the session go", a.logtail(8))
            moved = None
            while moved is None:
                x = fa.line()
                if x is None or x.get("type") == "session_moved":
                    moved = x or {}
            t.eq(moved.get("data", {}).get("host"), "hostB",
                 "A's follower is told session_moved to hostB")


def test_notify_stall(pg):
    """B's connection for the hosts' channel stops answering (its server
    process SIGSTOPped; the store's answers): B's request for a session A
    holds queues the ask and waits, and B goes on answering meanwhile;
    once that connection answers again the ask goes out, A lets go and
    B's request runs."""
    db = "stall"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, move_timeout="60s") as a, \
                host(url, "hostB", root, move_timeout="60s") as b:
            e = a.client().execute("q1", "stream:1",
                                   workdir=os.path.join(root, "q1"))
            chan = lambda: pg.sql(db, "SELECT pid FROM pg_stat_activity "
                                  "WHERE application_name = "
                                  "'hotplexd notify hostB'")
            # Listening (a loaded start may have had to connect again).
            try:
                wait_for(lambda: log_has(b, "listening on") and chan(),
                         hplib.REPLY_TIMEOUT_S, "B's channel")
            except TimeoutError:
                pass
            r = chan()
            t.ok(e[-1]["type"] == "done" and len(r) == 1,
                 "A: a turn; B's channel connection is named in "
                 "pg_stat_activity", (r, b.logtail(10)))
            if len(r) != 1:
                return
            pid = int(r[0][0])
            cb, cs = b.client(), b.client()
            os.kill(pid, signal.SIGSTOP)
            try:
                rid = cb.send("execute", session="q1", prompt="stream:1")
                wait_for(lambda: log_has(b, "asked it to let go"),
                         hplib.REPLY_TIMEOUT_S, "B to ask A")
                st = cs.request("status")
                t.ok(st["type"] == "ok" and not log_has(a, "asks for "
                                                        "session q1"),
                     "B's channel stalled: the ask waits, B answers "
                     "meanwhile", st["type"])
            finally:
                os.kill(pid, signal.SIGCONT)
            evs = cb.events(rid)
            t.ok(evs[-1]["type"] == "done" and
                 start_of(evs).get("resumed") is True and
                 log_has(a, "host hostB asks for session q1"),
                 "the channel back: the ask goes out, A lets go, B's turn "
                 "resumes the session", evs[-1])


def test_valgrind(pg):
    """Run by the valgrind-pg suite (HP_VALGRIND=1): the shared store, a
    move and the hosts' channel under valgrind.  A turn on A, the session
    moved to B, the server stopped and started (both hosts reconnect,
    store and channel), a turn on B again; t.done() checks the reports."""
    db = "vg"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, move_timeout="60s") as a, \
                host(url, "hostB", root, move_timeout="60s") as b:
            e = a.client().execute("v1", "stream:1",
                                   workdir=os.path.join(root, "v1"))
            cb = b.client()
            e2 = cb.execute("v1", "stream:1")
            t.ok(e[-1]["type"] == "done" and e2[-1]["type"] == "done" and
                 start_of(e2).get("resumed") is True,
                 "valgrind: a turn on A, the session moved to B", e2[-1])
            na = a.log_count("notify: host hostA listening")
            nb = b.log_count("notify: host hostB listening")
            pg.halt()
            pg.again()
            wait_for(lambda: a.log_count("notify: host hostA listening") >
                     na and b.log_count("notify: host hostB listening") > nb
                     and log_has(b, "store: connected again"),
                     hplib.REPLY_TIMEOUT_S, "both hosts back on the store")
            e3 = cb.execute("v1", "stream:1")
            t.ok(e3[-1]["type"] == "done" and row(pg, db, "v1")["turns"] == 3,
                 "valgrind: the store restarted, both hosts reconnected, "
                 "B's next turn stored (3 turns)", e3[-1])


def check_n(d):
    """hotplexd -n on the daemon's configuration: (status, output)."""
    r = subprocess.run([os.path.join(hplib.BDIR, "hotplexd"), "-n", "-c",
                        d.conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=d.env, cwd=d.dir,
                       timeout=hplib.REPLY_TIMEOUT_S * hplib.time_scale())
    return r.returncode, r.stdout.decode(errors="replace")


def until(c, rid, typ):
    """Lines of rid up to the first of type typ (None: it ended first)."""
    seen = []
    while True:
        o = c.line()
        if o is None:
            return None, seen
        if o.get("id") != rid:
            continue
        seen.append(o)
        if o["type"] == typ:
            return o, seen
        if o["type"] in ("done", "error"):
            return None, seen


def test_fencing(pg):
    """A holds the session with a lease it never renews in the test; the
    lease runs out while A's turn waits for an approval (as if A had been
    stopped); B takes the session and runs a turn; A's turn end is then
    refused by the fence, its client gets lease_lost, B's row stands."""
    db = "fence"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, lease_timeout=LONG_LEASE) as a, \
                host(url, "hostB", root) as b:
            ca, cb = a.client(), b.client()
            wd = os.path.join(root, "f1")
            e1 = ca.execute("f1", "stream:1", workdir=wd,
                            options={"approvals": "client"})
            t.eq(e1[-1]["type"], "done", "A: turn 1")
            eb = cb.execute("f1", "stream:1")
            t.ok(eb[-1]["type"] == "error" and
                 eb[-1]["data"]["code"] == "session_elsewhere" and
                 "hostA" in eb[-1]["data"]["message"] and "seq" not in eb[-1],
                 "B: a session A serves is refused, naming A", eb[-1])
            t.eq(len(eb), 1, "... in one line")
            at = cb.request("attach", session="f1")
            t.ok(at["type"] == "error" and
                 at["data"]["code"] == "session_elsewhere",
                 "B: an attach too", at)
            # One new session asked of both hosts at once: one serves it.
            ra = ca.send("execute", session="c1", prompt="stream:1",
                         workdir=os.path.join(root, "c1"))
            rb = cb.send("execute", session="c1", prompt="stream:1",
                         workdir=os.path.join(root, "c1"))
            ea, eb2 = ca.events(ra), cb.events(rb)
            ends = sorted([ea[-1]["type"] if ea[-1]["type"] == "done" else
                           ea[-1]["data"]["code"],
                           eb2[-1]["type"] if eb2[-1]["type"] == "done" else
                           eb2[-1]["data"]["code"]])
            t.eq(ends, ["done", "session_elsewhere"],
                 "a new session on A and B at once: one runs it, the other "
                 "answers session_elsewhere")
            fence_a = lease(pg, db, "f1")[1]
            rid = ca.send("execute", session="f1", prompt="tool:echo late")
            pr, _ = until(ca, rid, "permission_request")
            t.ok(pr is not None, "A: turn 2 waits for its approval", pr)
            # A's lease runs out (A stopped, cut off: it cannot tell).
            pg.sql(db, "UPDATE leases SET expires = clock_timestamp() - "
                   "interval '1 second' WHERE name = 'f1'")
            eb = cb.execute("f1", "stream:1")
            lb = lease(pg, db, "f1")
            t.ok(eb[-1]["type"] == "done" and lb[0] == "hostB" and
                 lb[1] > fence_a,
                 "B takes the expired lease (a higher fence) and runs a "
                 "turn", (eb[-1], lb, fence_a))
            rb = row(pg, db, "f1")
            t.ok(rb["host_id"] == "hostB" and rb["turns"] == 2,
                 "the row is B's: A's turn 1 and B's", rb)
            t.eq(ca.request("permission", session="f1",
                            request_id=pr["data"]["request_id"],
                            decision="allow")["type"], "ok",
                 "A: the approval comes")
            rest = ca.events(rid)
            t.ok(rest and rest[-1]["type"] == "error" and
                 rest[-1]["data"]["code"] == "lease_lost" and
                 hplib.terminal_count(rest) == 1,
                 "A: the turn's end is refused; its client gets lease_lost, "
                 "once", rest[-3:])
            t.eq(row(pg, db, "f1"), rb, "B's row is as B left it")
            t.ok(log_has(a, "lease (fence %d) lost" % fence_a),
                 "A's log says the lease was lost", a.logtail())
            ea = ca.execute("f1", "stream:1")
            t.ok(ea[-1]["type"] == "error" and
                 ea[-1]["data"]["code"] == "session_elsewhere" and
                 "hostB" in ea[-1]["data"]["message"],
                 "A: the session is B's now", ea[-1])
            wait_for(lambda: log_has(a, "session f1 dormant"),
                     hplib.REPLY_TIMEOUT_S, "A to stop its CLI")
            t.ok(True, "A stopped the session's CLI")
            eb = cb.execute("f1", "stream:1")
            t.ok(eb[-1]["type"] == "done" and
                 row(pg, db, "f1")["turns"] == 3,
                 "B goes on serving it", eb[-1])


def test_paused(pg):
    """A is stopped (SIGSTOP) while a turn waits for its approval, past its
    lease; B takes the session.  When A wakes it finds the lease gone: the
    turn ends lease_lost and B's row stands."""
    db = "paused"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, lease_timeout=SHORT_LEASE) as a, \
                host(url, "hostB", root, lease_timeout=SHORT_LEASE) as b:
            ca, cb = a.client(), b.client()
            e1 = ca.execute("z1", "stream:1", workdir=os.path.join(root, "z1"),
                            options={"approvals": "client"})
            rid = ca.send("execute", session="z1", prompt="tool:echo late")
            pr, _ = until(ca, rid, "permission_request")
            t.ok(e1[-1]["type"] == "done" and pr is not None,
                 "A: a turn, then one waiting for its approval", e1[-1])
            os.kill(a.proc.pid, signal.SIGSTOP)
            try:
                wait_for(lambda: not lease(pg, db, "z1")[2],
                         SHORT_LEASE_S * 5, "A's lease to run out")
                eb = cb.execute("z1", "stream:1")
                t.ok(eb[-1]["type"] == "done" and
                     lease(pg, db, "z1")[0] == "hostB",
                     "B takes the session of the stopped host", eb[-1])
                # Read by A when it wakes, after its overdue renewal.
                ca.send("permission", session="z1",
                        request_id=pr["data"]["request_id"], decision="allow")
            finally:
                os.kill(a.proc.pid, signal.SIGCONT)
            rest = ca.events(rid)
            t.ok(rest and rest[-1]["type"] == "error" and
                 rest[-1]["data"]["code"] == "lease_lost" and
                 hplib.terminal_count(rest) == 1,
                 "A wakes: its turn ends lease_lost, once", rest[-3:])
            r = row(pg, db, "z1")
            t.ok(r["host_id"] == "hostB" and r["turns"] == 2,
                 "B's row stands", r)


def test_expiry(pg):
    """A serves a session and is killed (SIGKILL); its lease runs out after
    lease_timeout and B takes the session, resuming the conversation."""
    db = "expiry"
    with store_case(pg, db) as (url, root):
        with host(url, "hostA", root, lease_timeout=SHORT_LEASE) as a, \
                host(url, "hostB", root, lease_timeout=SHORT_LEASE) as b:
            ca = a.client()
            wd = os.path.join(root, "x1")
            e1 = ca.execute("x1", "stream:1", workdir=wd)
            e2 = ca.execute("x1", "stream:1")
            sid = start_of(e1).get("cli_session_id")
            t.ok(e1[-1]["type"] == "done" and e2[-1]["type"] == "done",
                 "A: two turns")
            pids = a.workers()
            pgids = [s["pgid"] for s in a.cli_starts()]
            a.stop(signal.SIGKILL)
            cb = b.client()
            eb = cb.execute("x1", "stream:1")
            valid = lease(pg, db, "x1")[2]
            if valid:
                t.ok(eb[-1]["type"] == "error" and
                     eb[-1]["data"]["code"] == "session_elsewhere",
                     "B: refused while A's lease runs", eb[-1])
            else:
                t.skip("B: refused while A's lease runs",
                       "the lease ran out before B asked (loaded machine)")
            wait_for(lambda: not lease(pg, db, "x1")[2],
                     SHORT_LEASE_S * 5, "A's lease to run out")
            n0 = len(b.cli_starts())
            eb = cb.execute("x1", "stream:1")
            starts = b.cli_starts()[n0:]
            t.ok(eb[-1]["type"] == "done" and
                 start_of(eb).get("resumed") is True and
                 len(starts) == 1 and resume_arg(starts[0]["argv"]) == sid,
                 "B: after lease_timeout the session is B's, its "
                 "conversation resumed (--resume " + str(sid) + ")",
                 (eb[-1], start_of(eb), [s["argv"] for s in starts]))
            st = cb.request("stats", session="x1")["data"]
            t.eq(st.get("turns"), 3, "B: the stats go on from A's 2 turns")
            r = row(pg, db, "x1")
            t.ok(r["host_id"] == "hostB" and r["turns"] == 3,
                 "the row is B's", r)
            wait_for(lambda: all(not proc_alive(p) for p in pids) and
                     all(not procs_in_group(g) for g in pgids),
                     DEATH_WAIT_S, "A's workers and CLIs to go")
            t.ok(True, "nothing of the killed host A survives")


def main():
    try:
        pg = hppg.Postgres()
        pg.start()
    except hppg.Unavailable as e:
        t.skip("PostgreSQL store", str(e).splitlines()[0])
        t.done()
    # HP_PG_CASES=across,drain: only those cases (while working on them).
    only = [x for x in os.environ.get("HP_PG_CASES", "").split(",") if x]
    cases = (test_one_host, test_startup, test_store_paused,
             test_store_lost, test_readyz, test_store_watch, test_drain, test_across, test_own_move,
             test_notify_stall, test_fencing, test_paused, test_expiry)
    # Only when named: the valgrind-pg suite's (tests/integration/valgrind.mk).
    named = (test_valgrind,)
    try:
        for case in cases + named:
            if (not only and case in cases) or \
                    case.__name__[len("test_"):] in only:
                case(pg)
    finally:
        pg.stop()
    t.done()


if __name__ == "__main__":
    main()
