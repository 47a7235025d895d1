#!/usr/bin/env python3
"""Who may talk: SO_PEERCRED, socket group, allowed_uids/allowed_groups,
session ownership without an existence oracle, admin-only ops.  Runs
clients as real different uids (test users created with useradd when
root; skipped otherwise)."""

import grp
import json
import os
import pwd
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import TAP, Daemon, scaled, wait_for

t = TAP()
USERS = ("hptest-alice", "hptest-bob", "hptest-carol")
GROUP, ADMINS = "hptest-clients", "hptest-admins"

CLIENT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect_error": e.errno})); sys.exit(0)
f = s.makefile("rwb")
out = []
for i, r in enumerate(json.loads(sys.argv[2])):
    r["id"] = "q%d" % i
    f.write((json.dumps(r) + "\n").encode()); f.flush()
    while True:
        l = f.readline()
        if not l:
            out.append(None); break
        o = json.loads(l)
        if o.get("id") in (r["id"], None) and o["type"] in (
                "ok", "error", "done", "stats", "sessions", "hello"):
            out.append(o); break
print(json.dumps(out))
'''


def ensure_users():
    for g in (GROUP, ADMINS):
        try:
            grp.getgrnam(g)
        except KeyError:
            subprocess.run(["groupadd", "--system", g], check=True)
    for u in USERS:
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home",
                            "-s", "/usr/sbin/nologin", "-G", GROUP, u],
                           check=True)
    subprocess.run(["usermod", "-a", "-G", ADMINS, "hptest-carol"], check=True)


def as_user(user, sock, reqs):
    pw = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]

    def drop():
        os.setgroups(groups)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    # The system python: a per-user one under /root is not readable.
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
        else sys.executable
    r = subprocess.run([py, "-c", CLIENT, sock, json.dumps(reqs)],
                       preexec_fn=drop, capture_output=True, timeout=scaled(60),
                       cwd="/")
    return json.loads(r.stdout or b"null")


def code(r):
    return r["data"]["code"] if r and r.get("type") == "error" else \
        (r or {}).get("type")


def main():
    if os.geteuid() != 0:
        t.skip("peer authentication with real uids", "needs root for useradd")
        t.done()
    ensure_users()
    conf = {"socket_group": GROUP, "admin_group": ADMINS,
            "spare_min": "1"}
    with Daemon(conf) as d:
        os.chmod(d.dir, 0o755)
        os.chmod(d.work, 0o777)
        st = os.stat(d.sock)
        t.ok((st.st_mode & 0o777) == 0o660 and
             st.st_gid == grp.getgrnam(GROUP).gr_gid,
             "socket is 0660 with socket_group", oct(st.st_mode))
        a = as_user("hptest-alice", d.sock, [
            {"op": "hello", "proto": 1},
            {"op": "execute", "session": "alice1", "prompt": "stream:1"}])
        t.ok(a[0]["uid"] == pwd.getpwnam("hptest-alice").pw_uid and
             a[0]["admin"] is False, "hello reports the peer's uid", a[0])
        t.eq(code(a[1]), "done", "alice runs a turn in her session")
        alice = pwd.getpwnam("hptest-alice").pw_uid
        bob = pwd.getpwnam("hptest-bob").pw_uid
        b = as_user("hptest-bob", d.sock, [
            {"op": "stats", "session": "alice1"},
            {"op": "stop", "session": "alice1"},
            {"op": "interrupt", "session": "alice1"},
            {"op": "reset", "session": "alice1"},
            {"op": "attach", "session": "alice1"},
            {"op": "stats", "session": "nosuch"},
            {"op": "sessions"},
            {"op": "stats", "session": "alice1", "uid": alice},
            {"op": "execute", "session": "alice1", "prompt": "stream:1"},
            {"op": "sessions"},
            {"op": "reload"},
            {"op": "shutdown"}])
        for i, what in enumerate(("stats", "stop", "interrupt", "reset",
                                  "attach")):
            t.eq(code(b[i]), "not_found",
                 "bob: %s on alice's session is not_found" % what)
        t.eq(b[5]["data"]["message"].replace("nosuch", "X"),
             b[0]["data"]["message"].replace("alice1", "X"),
             "same answer as for a session that does not exist")
        t.eq(b[6]["data"], [], "bob lists no sessions of others")
        t.eq(code(b[7]), "forbidden", "bob may not name alice's uid")
        # Names are per uid: bob's alice1 is his own, run as bob.
        t.eq(code(b[8]), "done", "bob's own session named alice1 runs")
        mine = b[9]["data"] if b[9] else []
        t.ok(len(mine) == 1 and mine[0]["uid"] == bob and
             mine[0]["run_uid"] == bob, "bob sees only his alice1, run as "
             "bob", mine)
        t.eq(code(b[10]), "forbidden", "bob may not reload")
        t.eq(code(b[11]), "forbidden", "bob may not shut down")
        c = as_user("hptest-carol", d.sock, [
            {"op": "hello"}, {"op": "sessions"},
            {"op": "stats", "session": "alice1", "uid": alice},
            {"op": "stats", "session": "alice1"}])
        t.ok(c[0]["admin"] is True, "admin_group member is admin", c[0])
        t.ok(sorted((s["session"], s["uid"]) for s in c[1]["data"]) ==
             sorted([("alice1", alice), ("alice1", bob)]),
             "admin lists all sessions, with their uids", c[1])
        t.eq(code(c[2]), "stats", "admin reads others' stats with uid")
        t.eq(code(c[3]), "not_found", "admin without uid means its own")
    with Daemon(dict(conf, allowed_uids="hptest-alice")) as d:
        os.chmod(d.dir, 0o755)
        a = as_user("hptest-alice", d.sock, [{"op": "hello"}])
        b = as_user("hptest-bob", d.sock, [{"op": "hello"}])
        t.eq(code(a[0]), "hello", "allowed_uids: alice may talk")
        t.eq(code(b[0]), "forbidden", "allowed_uids: bob is refused")
    with Daemon(dict(conf, socket_group="")) as d:
        os.chmod(d.dir, 0o755)
        b = as_user("hptest-bob", d.sock, [{"op": "hello"}])
        t.ok(isinstance(b, dict) and b.get("connect_error") == 13,
             "without the socket group others cannot open the socket", b)
    with Daemon(dict(conf, max_clients="2")) as d:
        os.chmod(d.dir, 0o755)
        held = [d.client(), d.client()]
        for c in held:
            c.request("hello")      # both are served before alice comes
        a = as_user("hptest-alice", d.sock, [{"op": "hello"}])
        t.ok(code(a[0]) == "capacity" and "max_clients" in
             a[0]["data"]["message"],
             "max_clients: one client more is refused with capacity", a)
        r = d.client().request("hello")
        t.ok(r is not None and r["type"] == "hello" and r["admin"] is True,
             "max_clients: an administrator is still let in", r)
        for c in held:
            c.close()

        def alice_served():
            return code(as_user("hptest-alice", d.sock,
                                [{"op": "hello"}])[0]) == "hello"
        try:
            wait_for(alice_served, 10, "alice to be served")
            t.ok(True, "max_clients: served again once clients leave")
        except TimeoutError:
            t.ok(False, "max_clients: served again once clients leave",
                 d.logtail())
    t.done()


if __name__ == "__main__":
    main()
