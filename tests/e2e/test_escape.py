#!/usr/bin/env python3
"""The sandbox escape suite (issue 9): every attempt is a command the model
makes the real CLI run with its Bash tool (tests/e2e/mock_api.py's
[[bash:CMD]]), against hotplexd in its DEFAULT configuration with the
firewall off, so that only the sandbox stands in the way.  Three clients:
root (its sessions run as worker_user hotplex) and two unprivileged users
the test creates (hptest-esc-a, hptest-esc-b; left in place, as
test_auth.py's).  Each attempt must fail and leave the target untouched.
tests/sandbox/try-escape runs inside two sessions for the kernel probes
(ptrace, process_vm_readv, user namespaces, mount, raw sockets, io_uring,
keyctl, rlimits, setuid...), each of its lines a TAP line here.

Not root: the users cannot be made, the daemon cannot switch identity;
the suite says so and skips."""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import (TAP, Daemon, BDIR, scaled, wait_for,  # noqa: E402
                   proc_alive, try_escape_tap)
import test_e2e                                            # noqa: E402

t = TAP()
CLI = test_e2e.CLI
TRY_ESCAPE = os.path.join(BDIR, "tests", "sandbox", "try-escape")
GROUP = "hptest-esc"                 # may open the socket
USER_A, USER_B = "hptest-esc-a", "hptest-esc-b"
CLIENT_TIMEOUT_S = 300               # one client's whole list of requests
ESCAPES_MIN = 30                     # attempts, controls and skips aside
SUID_MODE = 0o4755
TE_EXIT = re.compile(r"^try-escape exit (\d+)$", re.M)

# Runs requests on one connection as whoever runs it; prints, per request,
# its reply, or for execute {"end": terminal, "start": session_start data,
# "out": the Bash tool's output}.
CLIENT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
out = []
for i, r in enumerate(json.loads(sys.argv[2])):
    r["id"] = "q%d" % i
    f.write((json.dumps(r) + "\n").encode()); f.flush()
    res = {"start": None, "out": None, "end": None}
    while True:
        l = f.readline()
        if not l:
            break
        o = json.loads(l)
        if o.get("id") != r["id"]:
            continue
        if o["type"] == "session_start":
            res["start"] = o["data"]
        elif o["type"] == "tool_result":
            res["out"] = o["data"].get("output")
        elif r["op"] != "execute" or o["type"] in ("done", "error"):
            res["end"] = o
            break
    out.append(res)
print(json.dumps(out))
'''


def ensure_users():
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    for u in (USER_A, USER_B):
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home",
                            "-s", "/usr/sbin/nologin", "-G", GROUP, u],
                           check=True)


def run_as(user, sock, reqs):
    """The requests on one connection, as user (None: as we are)."""
    pre = None
    if user is not None:
        pw = pwd.getpwnam(user)
        groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]

        def pre():
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
        else sys.executable
    r = subprocess.run([py, "-c", CLIENT, sock, json.dumps(reqs)],
                       preexec_fn=pre, capture_output=True,
                       timeout=scaled(CLIENT_TIMEOUT_S), cwd="/")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return [{"end": None, "out": None, "start": None,
                 "stderr": r.stderr.decode(errors="replace")[-2000:]}
                for _ in reqs]


def bash(session, cmd, **kw):
    return dict({"op": "execute", "session": session,
                 "prompt": "[[bash:%s]] run it" % cmd}, **kw)


def out_of(res):
    return (res or {}).get("out") or ""


def end_type(res):
    e = (res or {}).get("end") or {}
    return e.get("data", {}).get("code") if e.get("type") == "error" \
        else e.get("type")


def failed(res, secret=None):
    """The command ran as a tool and failed (rc=N, N != 0), no secret."""
    out = out_of(res)
    m = re.search(r"rc=(\d+)", out)
    return end_type(res) == "done" and m is not None and m.group(1) != "0" \
        and (secret is None or secret not in out)


def try_escape(d, who, user, session, wd, other, decoy):
    """try-escape in the session's workdir, run by its Bash tool."""
    uid = pwd.getpwnam(user).pw_uid if user else \
        pwd.getpwnam("hotplex").pw_uid
    te = os.path.join(wd, "try-escape")
    shutil.copy(TRY_ESCAPE, te)
    os.chown(te, uid, -1)
    with open(os.path.join(wd, "hello"), "w") as f:     # its control
        f.write("hello\n")
    os.chown(os.path.join(wd, "hello"), uid, -1)
    suid = os.path.join(wd, "suid-try-escape")
    shutil.copy(TRY_ESCAPE, suid)
    os.chmod(suid, SUID_MODE)           # root's: no_new_privs must hold
    env = {"TE_OTHER": other, "TE_OUTSIDE": d.outside,
           "TE_SSHKEY": d.key, "TE_SUID": suid,
           "SANDBOX_DECOY_PID": str(decoy),
           "SANDBOX_DECOY_SOCK": d.decoy_name,
           "ASAN_OPTIONS": "detect_leaks=0"}
    cmd = "%s ./try-escape 2>&1; echo try-escape exit $?" % " ".join(
        "%s=%s" % kv for kv in sorted(env.items()))
    res = run_as(user, d.sock, [bash(session, cmd)])[0]
    out = out_of(res)
    t.ok(end_type(res) == "done" and out,
         "[%s] try-escape ran as a Bash tool of the real CLI" % who,
         (res, d.logtail()))
    escapes, seen, plan = try_escape_tap(t, who, out)
    t.ok(plan is not None and seen == plan,
         "[%s] every try-escape probe reported (%d of %s)" % (who, seen,
                                                             plan),
         out[-2000:])
    m = TE_EXIT.search(out)
    t.ok(m is not None and m.group(1) == "0",
         "[%s] try-escape exit 0" % who, out[-2000:])
    return escapes


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("escape suite with the real CLI", CLI + " not installed "
               "(make deps)")
        t.done()
    if os.geteuid() != 0 or not os.access(TRY_ESCAPE, os.X_OK):
        t.skip("escape suite", "needs root (users are created, sessions "
               "switch identity) and " + TRY_ESCAPE)
        t.done()
    ensure_users()
    tmp = tempfile.mkdtemp(prefix="hpesc.")
    mock = test_e2e.Mock(tmp)
    # An abstract socket outside every session (try-escape connects).
    decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    decoy_name = "hotplex-esc-decoy-%d" % os.getpid()
    decoy.bind("\0" + decoy_name)
    decoy.listen(1)
    try:
        # The default configuration, but for the firewall: the sandbox
        # alone must hold.  (hplib turns Landlock off for fake-claude's
        # log; None leaves the key out: the default, best_effort.)
        with Daemon({"cli_path": CLI, "cli_env": test_e2e.OFFLINE_ENV,
                     "firewall": "off", "landlock": None,
                     "socket_group": GROUP, "kill_grace": "2s"},
                    env=mock.env()) as d:
            d.decoy_name = decoy_name
            run(d)
    finally:
        decoy.close()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


def run(d):
    uid_a = pwd.getpwnam(USER_A).pw_uid
    uid_b = pwd.getpwnam(USER_B).pw_uid
    hotplex = pwd.getpwnam("hotplex").pw_uid
    state = os.path.join(d.dir, "state")
    daemon = d.proc.pid
    wd_a1, wd_a2 = d.work + "/a1", d.work + "/a2"
    wd_b1, wd_r1 = d.work + "/b1", d.work + "/r1"
    wd_r2 = d.work + "/r2"
    sock_probe = ("python3 -c 'import socket; s = socket.socket(socket."
                  "AF_UNIX); s.connect(\"%s\")'; echo rc=$?" % d.sock)
    # Outside every session: a directory anyone may read, a "key".
    d.outside = os.path.join(d.dir, "outside")
    os.makedirs(d.outside)
    os.chmod(d.outside, 0o777)
    with open(os.path.join(d.outside, "file"), "w") as f:
        f.write("file\n")
    os.chmod(os.path.join(d.outside, "file"), 0o666)
    d.key = os.path.join(d.outside, "id_ed25519")
    with open(d.key, "w") as f:
        f.write("-----BEGIN OPENSSH PRIVATE KEY----- fake\n")
    os.chmod(d.key, 0o644)

    # A: a secret in its workdir; its session a1 stays up.  A second
    # session a2 of A's.  Root's session r1 (as hotplex), B's b1.
    a = run_as(USER_A, d.sock, [
        bash("a1", "echo asecret > secret; id -u; echo rc=$?",
             workdir=wd_a1),
        bash("a2", "id -u; echo rc=$?", workdir=wd_a2)])
    t.ok(end_type(a[0]) == "done" and ("%d" % uid_a) in out_of(a[0]),
         "A's session a1 runs as A and writes its secret", (a, d.logtail()))
    t.ok(end_type(a[1]) == "done" and ("%d" % uid_a) in out_of(a[1]),
         "A's second session a2 runs as A", a[1])
    a1_cli = ((a[0] or {}).get("start") or {}).get("cli_pid")
    rr = run_as(None, d.sock, [
        bash("r1", "id -u; echo rc=$?", workdir=wd_r1),
        bash("r2", "echo rsecret > secret; echo rc=$?", workdir=wd_r2),
        bash("r1", sock_probe)])
    r = rr[0]
    t.ok(end_type(r) == "done" and out_of(r).split()[:1] == [str(hotplex)],
         "root's session runs as worker_user hotplex, not root", r)
    home_a1 = os.path.join(state, "home", str(uid_a), "a1")
    st = os.stat(home_a1)
    t.ok(st.st_uid == uid_a and st.st_mode & 0o777 == 0o700,
         "a1's HOME is A's, mode 0700", oct(st.st_mode))

    t.ok(failed(rr[2]), "escape: root's session connects to the daemon's "
         "socket: refused", rr[2])

    # B against A and the daemon, with the Bash tool.  B may use the
    # socket (socket_group), but its sessions do not get that group.
    b = run_as(USER_B, d.sock, [
        bash("b1", "id -u; echo rc=$?", workdir=wd_b1),
        bash("b1", "cat %s/secret; echo rc=$?" % wd_a1),
        bash("b1", "echo pwn > %s/pwn; echo rc=$?" % wd_a1),
        bash("b1", "ls %s; echo rc=$?" % home_a1),
        bash("b1", "cat %s/hotplex.db > /dev/null; echo rc=$?" % state),
        bash("b1", "echo x >> %s/hotplex.db; echo rc=$?" % state),
        bash("b1", "ls %s; echo rc=$?" % state),
        bash("b1", sock_probe),
        bash("b1", "kill -TERM %d; echo rc=$?" % daemon),
        bash("b1", "kill -KILL %s; echo rc=$?" % a1_cli),
        bash("b1", "setsid sleep 300 >/dev/null 2>&1 </dev/null & "
             "echo left=$!; echo rc=1"),
        # The protocol: A's workdir, A's session name, A's uid.
        {"op": "execute", "session": "b2", "prompt": "hi",
         "workdir": wd_a1 + "/sub"},
        {"op": "stats", "session": "a1"},
        {"op": "stats", "session": "a1", "uid": uid_a},
        bash("a1", "id -u; pwd; echo rc=$?"),
        {"op": "sessions"}])
    t.ok(end_type(b[0]) == "done" and out_of(b[0]).split()[:1] ==
         [str(uid_b)], "B's session runs as B", b[0])
    checks = [
        (1, "B reads A's workdir", "asecret"),
        (2, "B writes into A's workdir", None),
        (3, "B lists A's session HOME (transcripts, settings)", None),
        (4, "B reads the daemon's store", None),
        (5, "B appends to the daemon's store", None),
        (6, "B lists the daemon's state_dir", None),
        (7, "B connects to the daemon's socket from a tool", None),
        (8, "B signals the daemon", None),
        (9, "B kills A's CLI", None),
    ]
    for i, what, secret in checks:
        t.ok(failed(b[i], secret), "escape: %s: refused" % what, b[i])
    t.ok(not os.path.exists(wd_a1 + "/pwn"), "A's workdir has no pwn file")
    t.ok(d.proc.poll() is None, "the daemon is alive")
    t.ok(a1_cli is not None and proc_alive(a1_cli), "A's CLI is alive",
         a1_cli)
    m = re.search(r"left=(\d+)", out_of(b[10]))
    left = int(m.group(1)) if m else None
    t.eq(end_type(b[11]), "workdir_denied",
         "escape: B opens a session in A's workdir: workdir_denied")
    t.ok(not os.path.exists(wd_a1 + "/sub"), "nothing made in A's workdir")
    t.eq(end_type(b[12]), "not_found",
         "escape: B asks for A's session by name: not_found")
    t.eq(end_type(b[13]), "forbidden",
         "escape: B names A's uid: forbidden")
    out = out_of(b[14])
    t.ok(end_type(b[14]) == "done" and out.split()[:1] == [str(uid_b)] and
         wd_a1 not in out,
         "escape: B reusing the name a1 gets a session of its own, as B, "
         "not A's", b[14])
    mine = ((b[15] or {}).get("end") or {}).get("data") or []
    t.ok(sorted((s["session"], s["uid"]) for s in mine) ==
         [("a1", uid_b), ("b1", uid_b)],
         "escape: B's sessions list shows only B's (A's a1 unseen)", mine)

    # A's second session against the first (same uid: Landlock's work).
    a = run_as(USER_A, d.sock, [
        bash("a2", "ls %s/.claude/projects; cat %s/.claude/projects/*/*; "
             "echo rc=$?" % (home_a1, home_a1)),
        bash("a2", "echo '{\"hooks\":{}}' > %s/.claude/settings.json; "
             "echo rc=$?" % home_a1),
        bash("a2", "cat %s/secret; echo rc=$?" % wd_a1),
        bash("a2", "kill -KILL %s; echo rc=$?" % a1_cli)])
    t.ok(failed(a[0], "asecret"), "escape: another session's transcripts "
         "(same user): refused", a[0])
    t.ok(failed(a[1]) and not os.path.exists(
        os.path.join(home_a1, ".claude", "settings.json")),
        "escape: another session's settings (same user): refused", a[1])
    t.ok(failed(a[2], "asecret"), "escape: another session's workdir (same "
         "user): refused", a[2])
    t.ok(failed(a[3]) and proc_alive(a1_cli),
         "escape: killing another session's CLI (same user): refused", a[3])

    # The kernel probes: as A (the other session is a1, same uid) and as
    # root's session (hotplex; the other is A's), the daemon outside.
    n = try_escape(d, "a2", USER_A, "a2", wd_a2, wd_a1, daemon)
    n += try_escape(d, "r1", None, "r1", wd_r1, wd_r2, daemon)
    n += sum(1 for c in checks) + 7
    t.ok(n >= ESCAPES_MIN, "%d escapes attempted (>= %d)" % (n, ESCAPES_MIN))

    # Leaving a process behind: B stops its session; nothing of it stays.
    t.ok(left is not None, "B's tool left a process (setsid sleep)",
         out_of(b[10]))
    run_as(USER_B, d.sock, [{"op": "stop", "session": "b1"}])
    try:
        wait_for(lambda: left is None or not proc_alive(left), 20,
                 "the left-over process to die")
        t.ok(left is not None, "escape: a process left behind dies with "
             "the session")
    except TimeoutError:
        t.ok(False, "escape: a process left behind dies with the session",
             left)
        os.kill(left, signal.SIGKILL)
    t.ok(d.proc.poll() is None, "the daemon is alive at the end",
         d.logtail())
    st = run_as(USER_A, d.sock, [{"op": "stats", "session": "a1"}])[0]
    t.ok(((st.get("end") or {}).get("data") or {}).get("turns") == 1,
         "A's a1 was touched by nobody (one turn)", st)


main()
