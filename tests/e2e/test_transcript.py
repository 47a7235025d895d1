#!/usr/bin/env python3
"""End to end (issue 14, transcripts travel): hotplexd keeps the real CLI's
transcript in its store after each turn, and restores it into a session's
config dir that lost it before the next cold start resumes the
conversation.  The real CLI (pinned) against the mock Messages API: the
mock's [[echo]] answers with the human texts the model was sent, so a turn
after a wipe shows whether the earlier turns reached the model."""

import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import TAP, Daemon, BDIR, first, proc_alive, wait_for  # noqa: E402
from test_e2e import CLI, OFFLINE_ENV, Mock  # noqa: E402

t = TAP()
SESSION = "tx"
DEATH_WAIT_S = 10   # a killed daemon's workers are gone (parent-death signal)


def config_dir(d):
    """The session's CLI config dir: state_dir/home/<owner uid>/<name>/.claude
    (the test runs as root: the session's owner is uid 0)."""
    return os.path.join(d.dir, "state", "home", str(os.getuid()), SESSION,
                        ".claude")


def transcripts(d):
    """{relative path: file} of the session's CLI config dir."""
    out = {}
    root = config_dir(d)
    for dirpath, _, names in os.walk(os.path.join(root, "projects")):
        for n in names:
            if n.endswith(".jsonl"):
                p = os.path.join(dirpath, n)
                out[os.path.relpath(p, root)] = p
    return out


def stored(d):
    """{path: bytes} of the session's transcript in the store."""
    db = sqlite3.connect(os.path.join(d.dir, "state", "hotplex.db"))
    try:
        rows = db.execute("SELECT path, pos, data FROM transcripts WHERE "
                          "name = ? ORDER BY path, pos", (SESSION,))
        out = {}
        for path, pos, data in rows:
            have = out.setdefault(path, b"")
            if pos != len(have):
                raise AssertionError("piece at %d, have %d" % (pos, len(have)))
            out[path] = have + data
        return out
    finally:
        db.close()


def echo_saw(e, said):
    """The turn ended done and the model was sent every text of said (the
    mock quotes them without their directives)."""
    return e[-1]["type"] == "done" and all(
        json.dumps(x.replace("[[echo]] ", "")) in
        e[-1]["data"].get("result", "") for x in said)


def killed(d, sig):
    workers = d.workers()
    d.stop(sig)
    wait_for(lambda: not any(proc_alive(p) for p in workers), DEATH_WAIT_S,
             "the stopped daemon's workers")


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("transcripts with the real CLI", CLI + " not installed "
               "(make deps)")
        t.done()
    tmp = tempfile.mkdtemp(prefix="hptx.")
    mock = Mock(tmp)
    try:
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s"}, env=mock.env()) as d:
            run(d)
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


def run(d):
    c = d.client()
    wd = os.path.join(d.work, "tx")
    said = ["turn one: the word is alpha"]
    e = c.execute(SESSION, said[0], workdir=wd)
    t.eq(e[-1]["type"], "done", "turn 1 done")
    files = transcripts(d)
    t.ok(len(files) == 1, "the CLI keeps one transcript file", files)
    rel, path = next(iter(files.items())) if files else (None, None)
    st = stored(d)
    t.ok(rel in st and len(st[rel]) > 0 and
         open(path, "rb").read().startswith(st[rel]) and
         st[rel].endswith(b"\n"),
         "after turn 1 the store holds the transcript up to a whole line "
         "(its bytes are the file's)", (rel, list(st), len(st.get(rel, b""))))

    # A graceful stop: the CLI's last lines reach the store too.
    killed(d, signal.SIGTERM)
    size = os.path.getsize(path)
    t.eq(len(stored(d).get(rel, b"")), size, "after a graceful stop the "
         "store has the whole file (%d bytes)" % size)
    shutil.rmtree(config_dir(d))
    d.start()
    c = d.client()
    said.append("[[echo]] turn two")
    e = c.execute(SESSION, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("resumed") and echo_saw(e, said[:1]),
         "config dir wiped, daemon restarted: turn 2 resumes and the model "
         "sees turn 1", (start, e[-1]))
    t.ok(os.path.exists(path), "the transcript is back in the config dir")
    home = os.stat(os.path.dirname(config_dir(d)))
    t.ok(os.path.exists(path) and os.stat(path).st_uid == home.st_uid and
         os.stat(path).st_mode & 0o777 == 0o600,
         "restored as the session's user (uid %d), mode 0600" % home.st_uid)
    t.eq(len(start and stored(d).get(rel, b"") or b"") > size, True,
         "turn 2's lines appended to the stored transcript")

    # SIGKILL right after the done: what the store has then is what the
    # next host gets; the turn's end waited for it.
    killed(d, signal.SIGKILL)
    shutil.rmtree(config_dir(d))
    d.start()
    c = d.client()
    said.append("[[echo]] turn three")
    e = c.execute(SESSION, said[-1])
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(start.get("resumed") and echo_saw(e, said[:2]),
         "SIGKILL after turn 2, config dir wiped: turn 3 resumes and the "
         "model sees turns 1 and 2", (start, e[-1]))
    st = (first(e, "session_stats") or {}).get("data", {})
    t.eq(st.get("turns"), 3, "three turns counted")

    # A reset starts another conversation: the old transcript goes.
    t.eq(c.request("reset", session=SESSION)["type"], "ok", "reset")
    t.eq(stored(d), {}, "after a reset the store holds no transcript")
    c.request("stop", session=SESSION)


if __name__ == "__main__":
    main()
