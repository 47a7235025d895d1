#!/usr/bin/env python3
"""The CLI sandbox applied by hotplex-worker, configured from hotplexd.conf
(landlock, seccomp, worker_user): tools run by tests/fake-claude (tool:CMD)
and by the real CLI against tests/e2e/mock_api.py, seen from the inside.
As root the CLI runs as the user hotplex-sbx (created with useradd when
missing and left in place, as tests/sandbox/run.sh does).

The escape suite (test_escape) runs tests/sandbox/try-escape as a tool of a
real sandboxed session, with the daemon itself as the process outside, and
reports each of its probes as a TAP line of this suite."""

import ctypes
import os
import pwd
import re
import socket
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (api_timeout_ms, scaled, TAP, Daemon, ROOT, BDIR, wait_for,
                   proc_alive, procs_in_group, procs_under, terminal_count,
                   first, try_escape_tap)

t = TAP()

TEST_USER = "hotplex-sbx"
PROFILE = os.path.join(ROOT, "policy", "sandbox", "seccomp.profile")
CLI = os.path.join(BDIR, "cli", "claude")
MOCK = os.path.join(ROOT, "tests", "e2e", "mock_api.py")
SYS_LANDLOCK_CREATE_RULESET = 444       # the same on every architecture
LANDLOCK_CREATE_RULESET_VERSION = 1
DIR_TRAVERSE = 0o711                    # the worker user must pass through
DIR_OPEN = 0o777                        # DAC allows: only Landlock denies
MOCK_START_S = 20
TRY_ESCAPE = os.path.join(BDIR, "tests", "sandbox", "try-escape")
ESCAPE_NPROC = 128          # rlimit_nproc of the escape suite's CLI
ESCAPES_MIN = 30            # probes, controls and skips not counted
SUID_MODE = 0o4755
FILE_OPEN = 0o666           # DAC allows: only Landlock denies
LANDLOCK_SCOPE_ABI = 6      # signal and abstract-socket scopes
TE_EXIT = re.compile(r"^try-escape exit (\d+)$", re.M)


def landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    r = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None,
                     ctypes.c_size_t(0),
                     ctypes.c_uint(LANDLOCK_CREATE_RULESET_VERSION))
    return r if r > 0 else 0


def test_user():
    """The uid the CLI must run as, or None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(TEST_USER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", TEST_USER],
                       check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return pwd.getpwnam(TEST_USER).pw_uid


def give(path, uid):
    """A tree the test made goes to the session's user (root's sessions
    run as worker_user): it may then work in it."""
    if uid is None:
        return
    gid = pwd.getpwuid(uid).pw_gid
    for top, dirs, files in os.walk(path):
        for n in [top] + [os.path.join(top, x) for x in dirs + files]:
            os.lchown(n, uid, gid)


def tool(c, session, cmd, **fields):
    """Runs cmd as fake-claude's Bash tool; returns (events, output)."""
    evs = c.execute(session, "stream:1\ntool:" + cmd, **fields)
    res = first(evs, "tool_result")
    return evs, res["data"]["output"] if res else None


def sandboxed_daemon(tmp, uid, extra=None):
    conf = {"landlock": "required", "seccomp": os.path.join(tmp, "profile")}
    if uid is not None:
        conf["worker_user"] = TEST_USER
    conf.update(extra or {})
    d = Daemon(conf)
    # mkdtemp makes 0700 dirs: the worker user must reach its workdirs.
    os.chmod(d.dir, DIR_TRAVERSE)
    return d


def test_fake_claude(tmp, uid):
    outside = os.path.join(tmp, "open")
    os.makedirs(outside)
    os.chmod(outside, DIR_OPEN)
    d = sandboxed_daemon(tmp, uid)
    # The CLI can only write in its workdir: the fork-escape pids go there.
    d.env["FAKE_CLAUDE_PIDFILE"] = "pids"
    with d:
        c = d.client()
        wd1, wd2 = d.work + "/s1", d.work + "/s2"
        evs, out = tool(c, "s2", "echo s2secret > secret.txt && cat "
                        "secret.txt", workdir=wd2)
        t.ok(evs[-1]["type"] == "done" and out is not None and
             "s2secret" in out, "sandboxed session s2 runs a tool",
             (evs[-1], out, d.logtail()))

        evs, out = tool(c, "s1", "echo hello > inside.txt && cat inside.txt",
                        workdir=wd1)
        t.ok(evs[-1]["type"] == "done" and out is not None and
             "hello" in out, "write in the workdir works", (out, evs[-1]))
        f = os.path.join(wd1, "inside.txt")
        if uid is not None:
            t.eq(os.stat(f).st_uid if os.path.exists(f) else None, uid,
                 "the file belongs to worker_user")
        else:
            t.skip("the file belongs to worker_user", "not root")

        target = os.path.join(outside, "escape.txt")
        _, out = tool(c, "s1", "echo x > %s; echo rc=$?" % target)
        t.ok(not os.path.exists(target) and out is not None and
             "rc=0" not in out, "write outside the workdir fails", out)

        _, out = tool(c, "s1", "cat %s/secret.txt; echo rc=$?" % wd2)
        t.ok(out is not None and "s2secret" not in out and "rc=0" not in out,
             "reading another session's workdir fails", out)

        _, out = tool(c, "s1", "ls /root; echo rc=$?")
        t.ok(out is not None and "rc=0" not in out,
             "listing /root fails", out)

        _, out = tool(c, "s1", "id -u; echo sbx=$IS_SANDBOX; "
                      "echo tmp=$TMPDIR; tr '\\0' ' ' < /proc/$PPID/cmdline")
        out = out or ""
        if uid is not None:
            t.eq(out.splitlines()[0] if out else None, str(uid),
                 "id -u shows the worker_user uid")
        else:
            t.skip("id -u shows the worker_user uid", "not root")
        t.ok("sbx=1" in out, "IS_SANDBOX=1 in the CLI environment", out)
        tmpdir = os.path.join(d.dir, "state", "tmp", "s.%d.s1" % os.getuid())
        t.ok("tmp=" + tmpdir in out, "TMPDIR is the session's own", out)
        t.ok("--settings" in out and '"enabled":false' in out,
             "the CLI gets --settings sandbox.enabled=false", out)
        st = os.stat(tmpdir)
        t.ok(st.st_mode & 0o777 == 0o700 and
             (uid is None or st.st_uid == uid),
             "TMPDIR mode 0700, owned by the CLI's uid", oct(st.st_mode))

        _, out = tool(c, "s1", "echo t > $TMPDIR/f && cat $TMPDIR/f")
        t.ok(out is not None and out.strip() == "t", "TMPDIR is writable",
             out)
        # A tree with a link out of it, which its removal must not follow.
        keep = os.path.join(outside, "keep")
        open(keep, "w").write("k")
        _, out = tool(c, "s1", "mkdir -p $TMPDIR/a/b && echo x > "
                      "$TMPDIR/a/b/c && ln -s %s $TMPDIR/a/out && "
                      "echo made" % outside)
        t.ok(out is not None and "made" in out, "a tree made in TMPDIR", out)

        # The confined worker still kills a tool that left the CLI's
        # process group, once the session stops.
        evs = c.execute("s1", "stream:1 fork-escape")
        t.eq(evs[-1]["type"], "done", "fork-escape turn done")
        pg = first(evs, "session_start")["data"]["pgid"]
        pids = [int(x) for x in open(os.path.join(wd1, "pids")).read().split()]
        r = c.request("stop", session="s1")
        t.eq(r["type"], "ok", "stop of the sandboxed session ok")
        # The spawner removes it once the worker is gone, after the reply.
        try:
            wait_for(lambda: not os.path.exists(tmpdir), 10,
                     "the stopped session's TMPDIR to go")
        except TimeoutError:
            pass
        t.ok(not os.path.exists(tmpdir) and os.path.exists(keep),
             "the stopped session's TMPDIR is removed, its link not "
             "followed", (os.path.exists(tmpdir), d.logtail()))
        try:
            wait_for(lambda: not procs_in_group(pg) and
                     not any(proc_alive(p) for p in pids), 10,
                     "the session's processes to die")
            t.ok(True, "confined worker killed the CLI and escaped tools")
        except TimeoutError:
            t.ok(False, "confined worker killed the CLI and escaped tools",
                 (procs_in_group(pg), [p for p in pids if proc_alive(p)],
                  d.logtail()))
        log = open(d.log, errors="replace").read()
        t.ok("killing left-over process" in log and "pidfd" not in log,
             "the confined worker killed the escaped tools itself",
             d.logtail())
        c.request("stop", session="s2")


def tracer_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return None


def test_escape(tmp, uid, abi):
    """try-escape inside a real session: the daemon is the process outside
    (ptrace, kill, /proc/PID/mem...), another session's workdir and a home
    with a key are the files outside.  The binary goes into the session's
    workdir: Landlock grants the workdir read/write/execute (LL_RW), and a
    setuid-root copy there shows no_new_privs at work."""
    if not os.access(TRY_ESCAPE, os.X_OK):
        t.ok(False, "try-escape is built", TRY_ESCAPE + " missing "
             "(make %s)" % os.path.relpath(TRY_ESCAPE, ROOT))
        return
    home = os.path.join(tmp, "home")
    key = os.path.join(home, ".ssh", "id_ed25519")
    outside = os.path.join(tmp, "outside")
    os.makedirs(os.path.dirname(key))
    os.makedirs(outside)
    os.chmod(outside, DIR_OPEN)
    with open(key, "w") as f:
        f.write("-----BEGIN OPENSSH PRIVATE KEY----- fake\n")
    with open(os.path.join(outside, "file"), "w") as f:
        f.write("file\n")
    for f in (key, os.path.join(outside, "file")):
        os.chmod(f, FILE_OPEN)
    # An abstract socket outside the sandbox (the daemon has none).
    decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    decoy_name = "hotplex-te-decoy-%d" % os.getpid()
    decoy.bind("\0" + decoy_name)
    decoy.listen(1)
    d = sandboxed_daemon(tmp, uid, {"seccomp": PROFILE,
                                    "firewall_rules": "",
                                    "rlimit_nproc": str(ESCAPE_NPROC)})
    # The CLI can only write in its workdir.
    try:
        with d:
            run_escape(d, uid, abi, key, outside, decoy_name)
    finally:
        decoy.close()


def run_escape(d, uid, abi, key, outside, decoy_name):
    c = d.client()
    wd1, wd2 = d.work + "/esc1", d.work + "/esc2"
    daemon = d.proc.pid

    # The other session: a secret in its workdir, its CLI stays up.
    evs, out = tool(c, "esc2", "echo secret > secret && cat secret",
                    workdir=wd2)
    t.ok(evs[-1]["type"] == "done" and out is not None and "secret" in out,
         "escape: the other session wrote its secret", (evs[-1:], out,
                                                       d.logtail()))
    peer = (first(evs, "session_start") or {}).get("data", {}).get("pgid")

    os.makedirs(wd1)
    te = os.path.join(wd1, "try-escape")
    shutil.copy(TRY_ESCAPE, te)
    with open(os.path.join(wd1, "hello"), "w") as f:
        f.write("hello\n")
    give(wd1, uid)
    env = {"TE_OTHER": wd2, "TE_SSHKEY": key, "TE_OUTSIDE": outside,
           "SANDBOX_DECOY_PID": str(daemon),
           "SANDBOX_DECOY_SOCK": decoy_name,
           # LeakSanitizer needs ptrace, which the profile denies.
           "ASAN_OPTIONS": "detect_leaks=0"}
    if uid is not None:
        suid = os.path.join(wd1, "suid-try-escape")
        shutil.copy(TRY_ESCAPE, suid)
        os.chmod(suid, SUID_MODE)
        env["TE_SUID"] = suid
        env["TE_NPROC"] = str(ESCAPE_NPROC)
    else:
        # Never privileged: the bounding set is ours, inert (no_new_privs).
        env["TE_BND_KEPT"] = "1"
    cmd = "%s %s 2>&1; echo try-escape exit $?" % (
        " ".join("%s=%s" % kv for kv in sorted(env.items())), te)
    evs = c.execute("esc1", "stream:1\ntool:" + cmd, workdir=wd1)
    res = first(evs, "tool_result")
    data = res["data"] if res else {}
    out = data.get("output") or ""
    t.ok(evs[-1]["type"] == "done" and res is not None and
         not data.get("is_error") and not data.get("truncated"),
         "escape: try-escape ran as a tool, output whole",
         (evs[-1:], {k: v for k, v in data.items() if k != "output"},
          out[-2000:], d.logtail()))
    escapes, seen, plan = try_escape_tap(t, "escape", out)
    t.ok(plan is not None and seen == plan,
         "escape: every probe reported (%d of %s)" % (seen, plan),
         out[-2000:])
    t.ok(escapes >= ESCAPES_MIN, "escape: %d escapes attempted (>= %d)" %
         (escapes, ESCAPES_MIN), out[-2000:])
    m = TE_EXIT.search(out)
    t.ok(m is not None and m.group(1) == "0", "escape: try-escape exit 0",
         out[-2000:])
    ids = out.splitlines()[0] if out else ""
    if uid is not None:
        t.ok(("uid %d" % uid) in ids, "escape: probes ran as worker_user",
             ids)

    # Real signals, not kill(pid, 0): a success would show.
    _, out = tool(c, "esc1", "kill -KILL %d; echo rc=$?" % daemon)
    if uid is None and abi < LANDLOCK_SCOPE_ABI:
        t.skip("escape: SIGKILL to the daemon", "same uid and Landlock "
               "ABI < %d: no signal scope" % LANDLOCK_SCOPE_ABI)
    else:
        t.ok(out is not None and "rc=0" not in out and
             "Operation not permitted" in out,
             "escape: SIGKILL to the daemon: EPERM", out)
    if abi < LANDLOCK_SCOPE_ABI or not peer:
        t.skip("escape: SIGKILL to the other session's CLI (same uid)",
               "no peer CLI" if not peer else "Landlock ABI < %d: no "
               "signal scope" % LANDLOCK_SCOPE_ABI)
    else:
        _, out = tool(c, "esc1", "kill -KILL %d; echo rc=$?" % peer)
        t.ok(out is not None and "rc=0" not in out and
             "Operation not permitted" in out and proc_alive(peer),
             "escape: SIGKILL to the other session's CLI (same uid): EPERM",
             out)

    # Same uid, other Landlock domain: its /proc files are out of reach.
    if not peer:
        t.skip("escape: reading the other session's CLI environment",
               "no peer CLI")
    else:
        _, out = tool(c, "esc1", "cat /proc/%d/environ; echo rc=$?" % peer)
        t.ok(out is not None and "rc=0" not in out and "PATH=" not in out
             and "Permission denied" in out,
             "escape: reading the other session's CLI environment fails",
             out)

    # Afterwards: the daemon is fine, and nothing of the session is left.
    t.ok(d.proc.poll() is None and tracer_of(daemon) == 0,
         "escape: the daemon is alive and not traced", d.logtail())
    ss = c.request("sessions")
    t.ok(ss is not None and ss["type"] == "sessions",
         "escape: the daemon still answers", ss)
    mine = [s for s in (ss or {}).get("data", []) if s["session"] == "esc1"]
    worker = mine[0]["worker_pid"] if mine else 0
    pg = (first(evs, "session_start") or {}).get("data", {}).get("pgid")
    r = c.request("stop", session="esc1")
    t.eq(r and r["type"], "ok", "escape: stop of the session ok")

    def gone():
        return not procs_in_group(pg) and not procs_under(wd1, exe=True) and \
            not (worker and proc_alive(worker))
    try:
        wait_for(gone, 10, "the escape session's processes to die")
        t.ok(pg is not None, "escape: no process of the session left "
             "(group, workdir, worker)", pg)
    except TimeoutError:
        t.ok(False, "escape: no process of the session left (group, "
             "workdir, worker)", (procs_in_group(pg),
                                  procs_under(wd1, exe=True),
                                  worker and proc_alive(worker)))
    st = c.request("stats", session="esc1")
    t.ok(st is not None and st["data"].get("state") == "ended",
         "escape: the session ended", st)
    c.request("stop", session="esc2")
    try:
        wait_for(lambda: not procs_in_group(peer) and
                 not procs_under(wd2, exe=True), 10,
                 "the other session to end")
        t.ok(peer is not None, "escape: the other session's CLI stopped")
    except TimeoutError:
        t.ok(False, "escape: the other session's CLI stopped",
             procs_in_group(peer))
    t.ok(d.proc.poll() is None, "escape: the daemon is alive at the end",
         d.logtail())


def test_bad_profile(tmp, uid):
    prof = os.path.join(tmp, "profile")
    d = sandboxed_daemon(tmp, uid, {"landlock": "off"})
    with d:
        # Broken after start-up (hotplexd checks it when it starts).
        with open(prof, "w") as f:
            f.write("default allow\nno_such_syscall errno:EPERM\n")
        c = d.client()
        evs = c.execute("b1", "stream:1", workdir=d.work + "/b1")
        t.ok(terminal_count(evs) == 1 and evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "spawn_failed",
             "bad seccomp profile: execute answers spawn_failed", evs)
        msg = evs[-1]["data"].get("message", "") if evs else ""
        t.ok(prof in msg and "no_such_syscall" in msg,
             "the message says what is wrong", msg)
        evs = c.execute("b1", "stream:1", workdir=d.work + "/b1")
        t.ok(evs and evs[-1]["type"] == "error",
             "the daemon still answers after a failed spawn", evs)
    shutil.copy(PROFILE, prof)


def test_check_rejects_bad_profile(tmp):
    conf = os.path.join(tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("socket = %s/s.sock\nworkdir_root = %s/w\n"
                "seccomp = %s/no-such-profile\n" % (tmp, tmp, tmp))
    r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c", conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t.ok(r.returncode != 0 and b"no-such-profile" in r.stderr,
         "hotplexd -n rejects a missing seccomp profile",
         (r.returncode, r.stdout, r.stderr))


def test_sandbox_off():
    with Daemon({"landlock": "off", "seccomp": "off"}) as d:
        c = d.client()
        evs = c.execute("o1", "stream:1", workdir=d.work + "/o1")
        starts = d.cli_starts()
        t.ok(evs[-1]["type"] == "done" and starts and
             "--settings" not in starts[-1]["argv"] and
             "IS_SANDBOX" not in starts[-1]["env"],
             "sandbox off: no --settings, no IS_SANDBOX", starts)


class Mock:
    """tests/e2e/mock_api.py on a free loopback port; dies with its stdin."""

    def __init__(self, tmp):
        pf = os.path.join(tmp, "mock.port")
        self.proc = subprocess.Popen(
            [sys.executable, MOCK, "--port", "0", "--port-file", pf,
             "--log", os.path.join(tmp, "mock.log"), "--stdin-eof-exit"],
            stdin=subprocess.PIPE)

        def port():
            if os.path.exists(pf):
                return open(pf).read().strip() or None
            return None
        self.port = int(wait_for(port, MOCK_START_S, "the mock's port"))

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(scaled(10))


def test_real_cli(tmp, uid):
    what = "real CLI under the sandbox: Bash ls turn"
    if not os.access(CLI, os.X_OK):
        t.skip(what, CLI + " not installed (make deps)")
        return
    mock = Mock(tmp)
    env = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % mock.port,
           "ANTHROPIC_API_KEY": "dummy",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": api_timeout_ms()}
    try:
        d = sandboxed_daemon(tmp, uid, {
            "cli_path": CLI, "kill_grace": "2s",
            "cli_env": "PATH LANG ANTHROPIC_BASE_URL ANTHROPIC_API_KEY "
                       "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC "
                       "CLAUDE_CODE_MAX_RETRIES API_TIMEOUT_MS"})
        d.env.update(env)
        with d:
            c = d.client()
            wd = os.path.join(d.work, "e2e")
            os.makedirs(wd)
            for f in ("alpha.txt", "beta.c"):
                open(os.path.join(wd, f), "w").close()
            give(wd, uid)
            evs = c.execute("e2e", "[[bash:ls]] list the files here",
                            workdir=wd)
            t.ok(evs and evs[-1]["type"] == "done" and
                 evs[-1]["data"]["ok"], what, (evs[-1:], d.logtail()))
            res = first(evs, "tool_result")
            t.ok(res is not None and not res["data"]["is_error"] and
                 "alpha.txt" in res["data"]["output"],
                 "real CLI: ls output in the tool_result", res)
            # The session's own HOME/.claude, keyed by its owner's uid.
            cdir = os.path.join(d.dir, "state", "home", str(os.getuid()),
                                "e2e", ".claude")
            found = [f for _, _, fs in os.walk(os.path.join(cdir, "projects"))
                     for f in fs if f.endswith(".jsonl")]
            t.ok(found, "real CLI: session written to the session's own "
                 "config dir", cdir)
            c.request("stop", session="e2e")
    finally:
        mock.stop()


REPORT_LAYERS = ("identity:", "master:", "seccomp:", "landlock:",
                 "rlimits:", "privileges:", "firewall:",
                 "missing on this kernel:")


def test_report(tmp):
    """The isolation report: hotplexd -n and the start print a line per
    layer; an off layer is UNSAFE; hello and sessions carry the summary."""
    conf = os.path.join(tmp, "report.conf")
    open(conf, "w").close()             # the defaults
    r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c", conf],
                       capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if "isolation: " in l]
    t.ok([l.split("isolation: ", 1)[1].split(" ")[0] for l in lines[:7]] ==
         [x.split(" ")[0] for x in REPORT_LAYERS[:7]] and
         lines[-1].split("isolation: ", 1)[1].startswith(REPORT_LAYERS[7]),
         "hotplexd -n: one isolation line per layer", r.stdout)
    t.ok(any("seccomp: built-in profile" in l for l in lines) and
         any(re.search(r"landlock: best_effort, ABI \d+", l) or
             "no Landlock" in l for l in lines) and
         any("rlimits: nofile 4096, nproc 4096" in l for l in lines),
         "hotplexd -n: the defaults are seccomp on, Landlock best_effort, "
         "rlimits set", lines)
    with Daemon({"seccomp": "off", "landlock": "off"}) as d:
        log = open(d.log, errors="replace").read()
        t.ok("isolation: seccomp: OFF" in log and "UNSAFE" in log and
             "isolation: landlock: OFF" in log,
             "an off layer is logged as UNSAFE at start", d.logtail())
    d = Daemon({"landlock": None})
    # Under Landlock the fake CLI can write its log only in its workdir.
    with d:
        c = d.client()
        h = c.request("hello")
        iso = (h or {}).get("isolation") or {}
        t.ok(iso.get("seccomp") == "builtin" and
             iso.get("landlock", {}).get("mode") == "best_effort" and
             iso.get("rlimits", {}).get("nofile") == 4096 and
             iso.get("identity") in ("creator", "daemon"),
             "hello tells the isolation in force", h)
        evs = c.execute("rep", "stream:1", workdir=d.work + "/rep")
        ss = c.request("sessions")["data"]
        me = [x for x in ss if x["session"] == "rep"]
        t.ok(evs[-1]["type"] == "done" and me and
             me[0].get("isolation", {}).get("seccomp") == "builtin" and
             "run_uid" in me[0], "sessions tells each session's identity "
             "and isolation", me)
    if landlock_abi() >= LANDLOCK_SCOPE_ABI:
        t.skip("landlock = required stops the daemon on a kernel without "
               "it", "this kernel has Landlock ABI %d" % landlock_abi())
    else:
        open(conf, "w").write("landlock = required\n")
        r = subprocess.run([os.path.join(BDIR, "hotplexd"), "-n", "-c",
                            conf], capture_output=True, text=True)
        t.ok(r.returncode != 0 and "landlock = required" in r.stderr,
             "landlock = required stops the daemon on this kernel",
             r.stderr)


def main():
    tmp = tempfile.mkdtemp(prefix="hpsbx.")
    try:
        os.chmod(tmp, DIR_TRAVERSE)
        shutil.copy(PROFILE, os.path.join(tmp, "profile"))
        uid = test_user()
        if uid is None:
            t.skip("worker_user", "not root: the CLI keeps our uid")
        test_sandbox_off()
        test_report(tmp)
        test_check_rejects_bad_profile(tmp)
        abi = landlock_abi()
        if abi == 0:
            t.skip("sandboxed sessions", "the kernel has no Landlock")
        else:
            test_fake_claude(tmp, uid)
            test_escape(tmp, uid, abi)
            test_real_cli(tmp, uid)
        test_bad_profile(tmp, uid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
