#!/usr/bin/env python3
"""End to end (issue 14): a session moves between two hosts sharing a
PostgreSQL store.  Two hotplexd (host_id a and b, their own sockets, state
dirs and CLI config homes) on one machine, one PostgreSQL of the test's own
(tests/integration/hppg.py), one shared workdir root, the real CLI (pinned)
against the mock Messages API, whose [[echo]] answer quotes every human
text the model was sent:

  turn 1 on A; turn 2 on B (A lets go, B resumes from the stored
  transcript, the model sees turn 1, A's attached client is told
  session_moved); turn 3 on A again (moved back); SIGKILL of A, the owner:
  turn 4 on B once A's lease runs out, resumed, and no turn ran twice;
  B's lease given a fence B does not hold while its turn 5 runs: that
  turn writes neither the session's row nor its transcript.

Before those: a session moved while the CLI runs a turn of its own (a
background task ended), and one whose CLI ran a subagent (Task): the
subagent's transcript files travel with the session's."""

import json
import os
import shutil
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import (TAP, Daemon, first, proc_alive, time_scale,  # noqa: E402
                   wait_for, DIR_SHARED)
import hppg  # noqa: E402
from test_e2e import CLI, OFFLINE_ENV, Mock  # noqa: E402

t = TAP()
SESSION = "mv"
LEASE_TIMEOUT_S = 3      # short: the kill case waits for it
MOVE_TIMEOUT_S = 20
DEATH_WAIT_S = 10
SLOW_MS = 3000           # turn 5's answer: time to change the lease meanwhile


def echo_saw(e, said):
    """Done, and the model was sent every text of said (the mock quotes
    them without their directives)."""
    return e[-1]["type"] == "done" and all(
        json.dumps(x.replace("[[echo]] ", "")) in
        e[-1]["data"].get("result", "") for x in said)


def host(name, url, shared, env):
    return Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                   "kill_grace": "2s", "store": url, "host_id": name,
                   "lease_timeout": "%ds" % LEASE_TIMEOUT_S,
                   "move_timeout": "%ds" % MOVE_TIMEOUT_S,
                   "workdir_root": shared}, env=env)


def where(d, name):
    """(state, host_id) of a session in d's list, or None."""
    for r in d.client().request("sessions")["data"]:
        if r["session"] == name:
            return r["state"], r.get("host_id")
    return None


BG = ('[[noteslow:%d]] [[tool:Bash:{"command":"sleep 1; echo bg-done",'
      '"description":"bg","run_in_background":true}]] in the background')
NOTE_SLOW_MS = 3000      # the CLI's own turn: two deltas of this, time for b to ask
TASK = ('[[tool:Task:{"description":"look","prompt":"Say sub hello.",'
        '"subagent_type":"general-purpose"}]] ask a subagent')


def own_turn_of(d, c, name, seq):
    """Follows session name on d from seq until the CLI's own turn ends
    (cli_turn); that line, or None."""
    f = d.client()
    f.request("attach", session=name, since_seq=seq)
    while True:
        o = f.line()
        if o is None or o.get("type") == "cli_turn":
            return o


def own_turn_move(a, b, mock, shared):
    """The CLI's own turn (turn 0: a background task ended) runs on A when
    B gets the session's next turn: A lets it end, its transcript is
    stored, and the model on B is sent it (fixture background_turn)."""
    name = "bgmv"
    e = a.client().execute(name, BG % NOTE_SLOW_MS,
                           workdir=os.path.join(shared, name))
    t.eq(e[-1]["type"], "done", "own turn: a turn on host a leaves a task "
         "in the background")
    note = wait_for(lambda: [q for q in mock.requests()
                             if q.get("directives") == ["slow"]],
                    DEATH_WAIT_S * 3, "the CLI's own turn at the model")[0]
    e = b.client().execute(name, "[[echo]] after its own turn")
    start = (first(e, "session_start") or {}).get("data", {})
    echo = [q for q in mock.requests()
            if q.get("human_text") == "[[echo]] after its own turn"]
    with open(a.log, errors="replace") as f:
        waited = ("session %s: the CLI's own turn runs" % name) in f.read()
    t.ok(e[-1]["type"] == "done" and start.get("resumed") and waited and
         len(echo) == 1 and echo[0]["n_messages"] >= note["n_messages"] + 2,
         "own turn: moved to host b while the CLI's own turn ran on a: a "
         "waited for it, b resumed and the model saw that turn (%s "
         "messages, %d at the notification)" %
         (echo and echo[0]["n_messages"], note["n_messages"]),
         (start, e[-1], waited, echo, log_lines(a, name)[-12:],
          log_lines(b, name)[-12:]))
    t.eq(len([q for q in mock.requests()
              if q.get("directives") == ["slow"]]), 1,
         "own turn: it ran once")


def subagent_files(d):
    """{file name: bytes} of the subagents' files in d's config dirs."""
    out = {}
    for top, dirs, names in os.walk(d.dir):     # .claude: glob skips it
        if os.path.basename(top) != "subagents":
            continue
        for n in names:
            if n.startswith("agent-"):
                with open(os.path.join(top, n), "rb") as f:
                    out[n] = f.read()
    return out


def log_lines(d, text):
    with open(d.log, errors="replace") as f:
        return [x for x in f.read().splitlines() if text in x]


def subagents_move(a, b, mock, shared, pg):
    """A Task tool call: the real CLI writes the subagent's transcript
    beside the session's (<id>/subagents/agent-<id>.jsonl and
    .meta.json); stored with it, and written on the host the session
    moves to."""
    name = "sub"
    c = a.client()
    e = c.execute(name, TASK, workdir=os.path.join(shared, name))
    t.eq(e[-1]["type"], "done", "subagent: a Task turn on host a")
    # The subagent runs in the background; its end starts a CLI turn.
    own = own_turn_of(a, c, name, e[-1]["seq"])
    files = subagent_files(a)
    stored = pg.sql("hotplex", "SELECT path, sum(length(data)) FROM "
                    "transcripts WHERE name = '%s' AND path LIKE "
                    "'%%/subagents/agent-%%' GROUP BY path" % name)
    stored = {os.path.basename(p): int(n) for p, n in stored}
    t.ok(own is not None and any(k.endswith(".jsonl") for k in files) and
         stored and
         any(k.endswith(".meta.json") for k in files) and
         stored == {k: len(v) for k, v in files.items()},
         "subagent: its transcript and description, written by the CLI on "
         "host a, are in the store whole", (sorted(files), stored))
    e = b.client().execute(name, "[[echo]] after the subagent")
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(e[-1]["type"] == "done" and start.get("resumed") and
         subagent_files(b) == files,
         "subagent: moved to host b, the conversation resumed and its "
         "subagent's files are there, the same bytes",
         (start, e[-1], sorted(subagent_files(b))))


def store_miss_move(a, b, mock, shared, pg):
    """The store refuses a turn's transcript pieces (a constraint stands
    in for a store that failed the statement), then takes writes again:
    the next turn's pieces are out of step, the master tells the worker
    what the store has and the worker sends the rest again, so the turns
    of the gap travel when the session moves (before: they were lost)."""
    name = "miss"
    said = ["miss one: the word is beta", "[[echo]] miss two",
            "[[echo]] miss three"]
    ca = a.client()
    e = ca.execute(name, said[0], workdir=os.path.join(shared, name))
    pg.sql("hotplex", "ALTER TABLE transcripts ADD CONSTRAINT hp_test_miss "
           "CHECK (name <> '%s') NOT VALID" % name)
    try:
        e2 = ca.execute(name, said[1])
    finally:
        pg.sql("hotplex", "ALTER TABLE transcripts DROP CONSTRAINT "
               "hp_test_miss")
    e3 = ca.execute(name, said[2])
    t.ok(e[-1]["type"] == e2[-1]["type"] == e3[-1]["type"] == "done" and
         any("not saved" in x for x in log_lines(
             a, "session %s: transcript" % name)),
         "store miss: three turns on host a, the second's transcript "
         "refused by the store", (e[-1], e2[-1], e3[-1]))
    # The rest is sent again after turn 3's end: wait until it is in.
    again = wait_for(lambda: [x for x in log_lines(
        a, "session %s: transcript " % name) if "sends it again from" in x],
        DEATH_WAIT_S, "the master to ask for the rest again")
    have = again[-1].rsplit("from ", 1)[1].split()[0]
    wait_for(lambda: any(("bytes at %s" % have) in x for x in log_lines(
        a, "session %s: transcript " % name)), DEATH_WAIT_S,
        "the rest to be stored")
    said.append("[[echo]] miss four")
    e = b.client().execute(name, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("resumed") and echo_saw(e, said[:3]),
         "store miss: moved to host b, the model saw all three turns "
         "(the store caught up from %s bytes)" % have, (start, e[-1]))


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("two hosts with the real CLI", CLI + " not installed "
               "(make deps)")
        t.done()
    tmp = tempfile.mkdtemp(prefix="hphosts.")
    shared = os.path.join(tmp, "work")       # NFS, say: both hosts see it
    os.makedirs(shared)
    os.chmod(tmp, 0o711)
    os.chmod(shared, DIR_SHARED)
    mock = Mock(tmp)
    try:
        with hppg.Postgres() as pg:
            url = pg.url("hotplex")
            with host("a", url, shared, mock.env()) as a, \
                    host("b", url, shared, mock.env()) as b:
                own_turn_move(a, b, mock, shared)
                subagents_move(a, b, mock, shared, pg)
                store_miss_move(a, b, mock, shared, pg)
                run(a, b, mock, shared, pg)
    except hppg.Unavailable as e:
        t.skip("two hosts sharing a PostgreSQL store", str(e))
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


def human_turns(mock, text):
    return sum(1 for r in mock.requests()
               if r.get("human_text") == text and r.get("status") == 200)


def tx_bytes(pg):
    r = pg.sql("hotplex", "SELECT coalesce(sum(length(data)), 0) FROM "
               "transcripts WHERE name = '%s'" % SESSION)
    return int(r[0][0])


def run(a, b, mock, shared, pg):
    wd = os.path.join(shared, SESSION)
    said = ["turn one: the word is alpha"]
    ca = a.client()
    e = ca.execute(SESSION, said[0], workdir=wd)
    t.eq(e[-1]["type"], "done", "turn 1 on host a: done")
    st1 = (first(e, "session_start") or {}).get("data", {})
    old_a = [st1.get("worker_pid", 0), st1.get("cli_pid", 0)]

    # A client of A follows the session: it must hear that it moved.
    fa = a.client()
    t.eq(fa.request("attach", session=SESSION)["type"], "ok",
         "a client attached to the session on host a")

    said.append("[[echo]] turn two")
    e = b.client().execute(SESSION, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("cold") and start.get("resumed") and
         echo_saw(e, said[:1]),
         "turn 2 on host b: the session moved, resumed, the model saw "
         "turn 1", (start, e[-1]))
    moved = None
    while moved is None:
        o = fa.line()
        if o is None or o.get("type") == "session_moved":
            moved = o or {}
    t.eq(moved.get("data", {}).get("host"), "b",
         "host a's attached client is told session_moved to host b")
    t.ok(where(a, SESSION) == ("elsewhere", "b") and
         where(b, SESSION)[1] == "b" and where(b, SESSION)[0] != "elsewhere",
         "the session is host b's now: host a lists it elsewhere on b",
         (where(a, SESSION), where(b, SESSION)))
    # A gave the lease back before its CLI exited: that worker and CLI
    # stop in the background, and what they say on the way out (the CLI's
    # exit-time transcript lines) is dropped, not taken for a violation.
    wait_for(lambda: not any(proc_alive(p) for p in old_a), DEATH_WAIT_S,
             "host a's worker and CLI of the moved session")
    with open(a.log, errors="replace") as f:
        bad = [x for x in f.read().splitlines()
               if "without a session" in x or "killing worker" in x]
    t.ok(all(p > 0 for p in old_a) and not bad,
         "host a's worker and CLI for the session stopped after the move, "
         "their last words dropped quietly", (old_a, bad))
    t.ok(0 < start.get("move_us", 0) <= start.get("ready_us", 0),
         "move cost: %d us waiting for host a, %d us from the request on b "
         "to the turn sent to its new CLI (whose cold start follows)" %
         (start.get("move_us", -1), start.get("ready_us", -1)))

    said.append("[[echo]] turn three")
    e = a.client().execute(SESSION, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("resumed") and echo_saw(e, said[:2]),
         "turn 3 on host a: moved back, the model saw turns 1 and 2",
         (start, e[-1]))
    st = (first(e, "session_stats") or {}).get("data", {})
    t.eq(st.get("turns"), 3, "three turns counted across the hosts")

    # The owner dies: its lease runs out and b takes the session over.
    workers = a.workers()
    a.stop(signal.SIGKILL)
    wait_for(lambda: not any(proc_alive(p) for p in workers), DEATH_WAIT_S,
             "the killed host's workers")
    said.append("[[echo]] turn four")
    e = b.client().execute(SESSION, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("resumed") and echo_saw(e, said[:3]),
         "host a killed: turn 4 on host b once a's lease ran out, resumed, "
         "the model saw turns 1-3", (start, e[-1]))
    # 2 s past the lease on an idle machine, more when loaded; always
    # below move_timeout, which is what the check tells apart.
    took_max = min(LEASE_TIMEOUT_S + 2 * time_scale(), MOVE_TIMEOUT_S)
    t.ok(0 < start.get("move_us", 0) < took_max * 1e6,
         "the takeover waited for the dead host's lease to run out, not for "
         "move_timeout (%d us)" % start.get("move_us", -1))
    t.eq([human_turns(mock, x) for x in said], [1, 1, 1, 1],
         "every turn ran once")

    # b's lease taken again under b's own name (another epoch: a fence b
    # does not hold) while b's turn 5 runs: its end writes neither the
    # transcript (the store matches the fence, not only the host) nor
    # the row.
    have = tx_bytes(pg)
    cb = b.client()
    rid = cb.send("execute", session=SESSION,
                  prompt="turn five [[slow:%d]]" % SLOW_MS)
    wait_for(lambda: any("turn five" in r.get("human_text", "")
                         for r in mock.requests()), DEATH_WAIT_S,
             "turn 5 at the model")
    pg.sql("hotplex", "UPDATE leases SET fence = fence + 1 WHERE name = "
           "'%s'" % SESSION)
    e = cb.events(rid)
    t.ok(e[-1]["type"] == "error" and
         e[-1]["data"]["code"] == "lease_lost" and have > 0 and
         tx_bytes(pg) == have,
         "a fence host b does not hold, taken during its turn: the turn "
         "ends lease_lost and the stored transcript is untouched (%d "
         "bytes)" % have, (e[-1], have, tx_bytes(pg)))
    a.start()       # for the context manager's stop
    b.client().request("stop", session=SESSION)


if __name__ == "__main__":
    main()
