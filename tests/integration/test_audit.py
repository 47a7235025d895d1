#!/usr/bin/env python3
"""The tool audit: every tool call, permission denial and firewall block
is a row of the store, read back by the audit op (an owner's own rows, an
administrator's all) and hotplexctl audit; rows older than audit_retention
are removed."""

import json
import os
import pwd
import re
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hplib import scaled, TAP, Daemon, BDIR, first  # noqa: E402

t = TAP()
# Harmless if it ever ran (false &&), refused by the bash rules at
# threshold 2 (as test_firewall).
DANGER_CMD = "false && sudo id"
FW_CONF = {"firewall": None, "firewall_threshold": "2"}
DAY_MS = 24 * 3600 * 1000


def audit(c, **kw):
    r = c.request("audit", **kw)
    return r["data"]["rows"] if r and r["type"] == "audit" else r


def one(rows, **want):
    got = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    return got[0] if len(got) == 1 else None


def test_rows():
    with Daemon(FW_CONF) as d:
        c = d.client()
        wd = os.path.join(d.work, "a1")
        t0 = int(time.time() * 1000)
        c.execute("a1", "tool:echo hi > out.txt", workdir=wd)
        c.execute("a1", "tool:false")
        c.execute("a1", "tool:" + DANGER_CMD)
        c.execute("a2", "tool:echo x", workdir=os.path.join(d.work, "a2"),
                  options={"disallowed_tools": ["Bash"]})
        blk = c.execute("a1", "please run rm -rf / --no-preserve-root now")
        t.eq(blk[-1]["data"].get("code"), "danger_blocked",
             "a prompt the firewall refuses")
        rows = audit(c)
        t.ok(isinstance(rows, list) and len(rows) == 5,
             "five rows: three calls of a1, one of a2, one block", rows)
        rows = rows if isinstance(rows, list) else []
        ok = one(rows, session="a1", kind="tool", error=False)
        t.ok(ok is not None and ok["tool"] == "Bash" and
             ok["decision"] == "allow" and ok["decided_by"] == "gate" and
             "echo hi > out.txt" in ok["excerpt"] and
             re.fullmatch("[0-9a-f]{64}", ok["digest"] or "") and
             isinstance(ok["duration_ms"], (int, float)) and
             ok["turn"] == 1 and ok["uid"] == os.getuid() and
             ok["time_ms"] >= t0 - 1000,
             "an allowed call: tool, decision and who, digest, excerpt, "
             "duration, turn, owner", ok)
        bad = one(rows, session="a1", kind="tool", error=True)
        t.ok(bad is not None and bad["turn"] == 2 and
             "Exit code 1" in (bad["detail"] or ""),
             "a failed call: error and its head", bad)
        fw = one(rows, session="a1", kind="denial")
        t.ok(fw is not None and fw["decision"] == "deny" and
             fw["decided_by"] == "firewall" and
             "priv.sudo" in (fw["detail"] or "") and
             "sudo id" in fw["excerpt"] and fw["turn"] == 3,
             "a call denied by a rule: the firewall decided", fw)
        pol = one(rows, session="a2", kind="denial")
        t.ok(pol is not None and pol["decided_by"] == "policy" and
             "not allowed" in (pol["detail"] or ""),
             "a call denied by the tool list: the policy decided", pol)
        blk = one(rows, kind="firewall")
        t.ok(blk is not None and blk["session"] == "a1" and
             blk["decision"] == "block" and blk["tool"] is None and
             "rm -rf" in blk["excerpt"] and "rule" in blk["detail"],
             "a prompt refused by the firewall", blk)
        t.eq([r["session"] for r in audit(c, session="a2")], ["a2"],
             "audit of one session")
        later = audit(c, since_ms=ok["time_ms"] + 1)
        t.ok(ok not in later and len(later) >= 1,
             "since_ms leaves the earlier rows out", later)
        page = audit(c, limit=2)
        rest = audit(c, after_id=page[-1]["id"])
        t.eq([r["id"] for r in page + rest], [r["id"] for r in rows],
             "limit and after_id page through the rows in order")
        r = c.request("audit", limit=0)
        t.eq(r["data"]["code"], "bad_request", "a bad limit is refused")

        # hotplexctl audit
        ctl = os.path.join(BDIR, "hotplexctl")
        p = subprocess.run([ctl, "-S", d.sock, "audit", "a1"],
                           capture_output=True, text=True, timeout=scaled(60))
        lines = p.stdout.splitlines()
        t.ok(p.returncode == 0 and len(lines) == 5 and
             "Bash" in p.stdout and "firewall" in p.stdout,
             "hotplexctl audit SESSION: a header and a line per row",
             (p.returncode, p.stdout, p.stderr))
        p = subprocess.run([ctl, "-S", d.sock, "--json", "audit",
                            "--since", "1970-01-01T00:00:00Z"],
                           capture_output=True, text=True, timeout=scaled(60))
        try:
            js = [json.loads(x) for x in p.stdout.splitlines()]
        except ValueError:
            js = None
        t.ok(p.returncode == 0 and js is not None and
             [x["id"] for x in js] == [r["id"] for r in rows],
             "hotplexctl --json audit --since TIME: one object per row",
             (p.stdout[:500], p.stderr))
        p = subprocess.run([ctl, "-S", d.sock, "audit", "--since", "soon"],
                           capture_output=True, text=True, timeout=scaled(60))
        t.ok(p.returncode != 0 and "since" in p.stderr,
             "hotplexctl audit refuses a bad --since", p.stderr)


def test_bash_files():
    """The files a Bash command changed in the workdir (inotify in the
    worker while the call is in flight) are in its row."""
    with Daemon({}) as d:
        c = d.client()
        wd = os.path.join(d.work, "bf")
        c.execute("bf", "tool:echo a > old.txt; echo b > gone.txt",
                  workdir=wd)
        c.execute("bf", "tool:mkdir sub && echo 1 > sub/one.txt && "
                  "echo 2 > two.txt && echo c >> old.txt && rm gone.txt && "
                  "echo t > tmp.txt && rm tmp.txt")
        c.execute("bf", "tool:echo x > nope.txt; exit 3")
        rows = audit(c, session="bf")
        t.ok(len(rows) == 3, "bash files: a row per call", rows)
        if len(rows) != 3:
            return
        j = lambda *p: os.path.join(wd, *p)  # noqa: E731
        t.eq(sorted(rows[0]["files"]), [j("gone.txt"), j("old.txt")],
             "bash files: the two files a command wrote")
        t.ok(sorted(rows[1]["files"]) ==
             [j("old.txt"), j("sub", "one.txt"), j("two.txt")] and
             rows[1]["files_deleted"] == [j("gone.txt")] and
             rows[1]["files_truncated"] is False,
             "bash files: created (also in a new directory), appended to "
             "and deleted; a file made and removed by the call is not "
             "listed", rows[1])
        t.ok(rows[2]["error"] is True and
             rows[2]["files"] == [j("nope.txt")],
             "bash files: a command that failed still shows what it wrote",
             rows[2])
        ctl = os.path.join(BDIR, "hotplexctl")
        p = subprocess.run([ctl, "-S", d.sock, "audit", "bf"],
                           capture_output=True, text=True, timeout=scaled(60))
        line = p.stdout.splitlines()[2] if p.stdout.count("\n") > 2 else ""
        t.ok(p.returncode == 0 and j("sub", "one.txt") in line and
             j("two.txt") in line and j("gone.txt") in line,
             "bash files: hotplexctl audit shows them", p.stdout)
        # Past the directory bound the row says it may be incomplete.
        c.execute("bf", "tool:mkdir many && cd many && "
                  "seq 1100 | xargs mkdir")
        c.execute("bf", "tool:echo y > last.txt")
        rows = audit(c, session="bf")
        t.ok(rows[-1]["files"] == [j("last.txt")] and
             rows[-1]["files_truncated"] is True,
             "bash files: over the directory bound, truncated is set",
             rows[-1])


def test_overlapped():
    """Two Bash calls in flight at once (fake-claude's twice: two
    tool_use blocks in one message, run one after the other): inotify does
    not say who wrote, so each row lists both calls' files, and says so;
    a call alone does not."""
    with Daemon({}) as d:
        c = d.client()
        wd = os.path.join(d.work, "ov")
        c.execute("ov", "tool:echo a > alone.txt", workdir=wd)
        evs = c.execute("ov", "twice tool:echo x >> both.txt; "
                        "mktemp n.XXXXXX")
        res = [e["data"] for e in evs if e["type"] == "tool_result"]
        t.ok(len(res) == 2 and all(r.get("overlapped") is True
                                   for r in res),
             "overlapped: both tool_results say so", res)
        rows = audit(c, session="ov")
        t.ok(len(rows) == 3, "overlapped: a row per call", rows)
        if len(rows) != 3:
            return
        t.ok(rows[0].get("overlapped") is False and
             rows[0]["files"] == [os.path.join(wd, "alone.txt")],
             "overlapped: a call alone is not marked", rows[0])
        # The first ends before the second runs: its own two files; the
        # second was in flight all along: its own and the first's file.
        f1, f2 = (set(r["files"]) for r in rows[1:])
        t.ok(all(r.get("overlapped") is True for r in rows[1:]) and
             len(f1) == 2 and len(f2) == 3 and f1 < f2 and
             os.path.join(wd, "both.txt") in f1,
             "overlapped: both rows are marked; the second lists the "
             "first's file too", rows[1:])
        ctl = os.path.join(BDIR, "hotplexctl")
        p = subprocess.run([ctl, "-S", d.sock, "audit", "ov"],
                           capture_output=True, text=True,
                           timeout=scaled(60))
        lines = [x for x in p.stdout.splitlines() if "ov" in x.split()[1:2]]
        t.ok(p.returncode == 0 and len(lines) == 3 and
             "(overlapped another Bash call)" not in lines[0] and
             all("(overlapped another Bash call)" in x for x in lines[1:]),
             "overlapped: hotplexctl audit says which rows", p.stdout)
        db = sqlite3.connect(os.path.join(d.dir, "state", "hotplex.db"))
        try:
            got = db.execute("SELECT overlapped FROM audit WHERE session = "
                             "'ov' ORDER BY id").fetchall()
        finally:
            db.close()
        t.eq(got, [(0,), (1,), (1,)], "overlapped: a column of the store")


def test_access():
    if os.geteuid() != 0:
        t.skip("audit access by uid", "needs root for useradd")
        return
    import test_auth
    test_auth.CLIENT = test_auth.CLIENT.replace('"hello")', '"hello", "audit")')
    test_auth.ensure_users()
    conf = dict(FW_CONF, socket_group=test_auth.GROUP,
                admin_group=test_auth.ADMINS)
    with Daemon(conf) as d:
        os.chmod(d.dir, 0o755)
        os.chmod(d.work, 0o777)
        a = test_auth.as_user("hptest-alice", d.sock, [
            {"op": "execute", "session": "al", "prompt": "tool:echo a"},
            {"op": "audit"}])
        alice = pwd.getpwnam("hptest-alice").pw_uid
        rows = (a[1] or {}).get("data", {}).get("rows", [])
        t.ok(len(rows) == 1 and rows[0]["uid"] == alice and
             rows[0]["session"] == "al", "the owner sees her row", a)
        b = test_auth.as_user("hptest-bob", d.sock, [
            {"op": "execute", "session": "bo", "prompt": "tool:echo b"},
            {"op": "audit"}, {"op": "audit", "session": "al"}])
        rows = (b[1] or {}).get("data", {}).get("rows", [])
        t.ok([r["session"] for r in rows] == ["bo"] and
             (b[2] or {}).get("data", {}).get("rows") == [],
             "another user's rows are invisible, also by name", b)
        c = test_auth.as_user("hptest-carol", d.sock, [{"op": "audit"}])
        rows = (c[0] or {}).get("data", {}).get("rows", [])
        t.eq(sorted(r["session"] for r in rows), ["al", "bo"],
             "an administrator sees every owner's rows")


def test_retention():
    with Daemon({"audit_retention": "1d"}) as d:
        c = d.client()
        c.execute("r1", "tool:echo old", workdir=os.path.join(d.work, "r1"))
        c.execute("r1", "tool:echo new")
        t.eq(len(audit(c)), 2, "retention: two rows")
        t.eq(d.stop(signal.SIGTERM), 0, "retention: clean exit")
        db = sqlite3.connect(os.path.join(d.dir, "state", "hotplex.db"))
        db.execute("UPDATE audit SET time_ms = time_ms - 2 * ? "
                   "WHERE turn = 1", (DAY_MS,))
        db.commit()
        db.close()
        d.start()
        rows = audit(d.client())
        t.ok([r["turn"] for r in rows] == [2],
             "retention: a row older than audit_retention is removed, a "
             "newer one kept", rows)


def main():
    test_rows()
    test_bash_files()
    test_overlapped()
    test_access()
    test_retention()
    t.done()


if __name__ == "__main__":
    main()
