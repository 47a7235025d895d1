#!/usr/bin/env python3
"""The CLI sandbox applied by hotplex-worker, configured from hotplexd.conf
(landlock, seccomp, worker_user): tools run by tests/fake-claude (tool:CMD)
and by the real CLI against tests/e2e/mock_api.py, seen from the inside.
As root the CLI runs as the user hotplex-sbx (created with useradd when
missing and left in place, as tests/sandbox/run.sh does)."""

import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (TAP, Daemon, ROOT, BDIR, wait_for, proc_alive,
                   procs_in_group, terminal_count, first)

t = TAP()

TEST_USER = "hotplex-sbx"
PROFILE = os.path.join(ROOT, "policy", "seccomp.profile")
CLI = os.path.join(BDIR, "cli", "claude")
MOCK = os.path.join(ROOT, "tests", "e2e", "mock_api.py")
SYS_LANDLOCK_CREATE_RULESET = 444       # the same on every architecture
LANDLOCK_CREATE_RULESET_VERSION = 1
DIR_TRAVERSE = 0o711                    # the worker user must pass through
DIR_OPEN = 0o777                        # DAC allows: only Landlock denies
MOCK_START_S = 20


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
    d.env["FAKE_CLAUDE_LOG"] = "fake-claude.log"
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
        tmpdir = os.path.join(d.dir, "state", "tmp", "s.s1")
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

        # The confined worker still kills a tool that left the CLI's
        # process group, once the session stops.
        evs = c.execute("s1", "stream:1 fork-escape")
        t.eq(evs[-1]["type"], "done", "fork-escape turn done")
        pg = first(evs, "session_start")["data"]["pgid"]
        pids = [int(x) for x in open(os.path.join(wd1, "pids")).read().split()]
        r = c.request("stop", session="s1")
        t.eq(r["type"], "ok", "stop of the sandboxed session ok")
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


def test_bad_profile(tmp, uid):
    prof = os.path.join(tmp, "profile")
    d = sandboxed_daemon(tmp, uid, {"landlock": "off"})
    d.env["FAKE_CLAUDE_LOG"] = "fake-claude.log"
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
    with Daemon() as d:
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
        self.proc.wait(10)


def test_real_cli(tmp, uid):
    what = "real CLI under the sandbox: Bash ls turn"
    if not os.access(CLI, os.X_OK):
        t.skip(what, CLI + " not installed (make deps)")
        return
    mock = Mock(tmp)
    env = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % mock.port,
           "ANTHROPIC_API_KEY": "dummy",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "CLAUDE_CODE_MAX_RETRIES": "1", "API_TIMEOUT_MS": "10000"}
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
            evs = c.execute("e2e", "[[bash:ls]] list the files here",
                            workdir=wd)
            t.ok(evs and evs[-1]["type"] == "done" and
                 evs[-1]["data"]["ok"], what, (evs[-1:], d.logtail()))
            res = first(evs, "tool_result")
            t.ok(res is not None and not res["data"]["is_error"] and
                 "alpha.txt" in res["data"]["output"],
                 "real CLI: ls output in the tool_result", res)
            cdir = os.path.join(d.dir, "state", "claude",
                                str(uid if uid is not None else os.getuid()))
            found = [f for _, _, fs in os.walk(os.path.join(cdir, "projects"))
                     for f in fs if f.endswith(".jsonl")]
            t.ok(found, "real CLI: session written to the per-uid config "
                 "dir", cdir)
            c.request("stop", session="e2e")
    finally:
        mock.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="hpsbx.")
    try:
        os.chmod(tmp, DIR_TRAVERSE)
        shutil.copy(PROFILE, os.path.join(tmp, "profile"))
        uid = test_user()
        if uid is None:
            t.skip("worker_user", "not root: the CLI keeps our uid")
        test_sandbox_off()
        test_check_rejects_bad_profile(tmp)
        if landlock_abi() == 0:
            t.skip("sandboxed sessions", "the kernel has no Landlock")
        else:
            test_fake_claude(tmp, uid)
            test_real_cli(tmp, uid)
        test_bad_profile(tmp, uid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
