"""Test harness for hotplexd: a daemon on a private socket in a temp dir,
a protocol client, TAP output and /proc scans for left-over processes.

Python standard library only.  Every daemon a test starts is stopped by
the test (Daemon is a context manager), and its temp dir removed.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

B = os.environ.get("B", "build")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BDIR = os.path.join(ROOT, B) if not os.path.isabs(B) else B

CONNECT_TIMEOUT_S = 10.0     # the daemon binds before it forks anything
REPLY_TIMEOUT_S = 60.0       # no single reply may take longer
POLL_S = 0.02                # for conditions that have no event to wait on
SERVING_LINE = "state: serving sessions"   # a shared store's host is up
# A bound grows at most this much: only a bogus reading is cut.  10 was
# too low: two make check side by side with other work reached a load of
# 135 on 2 CPUs, where a CPU-bound step takes ~67 times as long.
SCALE_MAX = 100.0


def time_scale():
    """How much longer than on an idle machine things take now: bounds
    are multiplied by it (HP_TIME_SCALE, else the load per CPU, at least
    1), so that a loaded machine (another make check beside this one)
    gets more time instead of failures.  The larger of the 1- and 5-minute
    load averages: the 1-minute one drops in a lull between two suites
    beside us, just before their next burst."""
    v = os.environ.get("HP_TIME_SCALE")
    if v:
        return max(1.0, float(v))
    try:
        load = max(os.getloadavg()[:2]) / (os.cpu_count() or 1)
    except OSError:
        load = 1.0
    return min(SCALE_MAX, max(1.0, load))


def scaled(seconds):
    """A bound in seconds (a subprocess's or a socket's timeout) for the
    machine as loaded now."""
    return seconds * time_scale()


def api_timeout_ms(ms=10000):
    """API_TIMEOUT_MS for the real CLI against the local mock: its answer
    is immediate, but the CLI waiting for it may be descheduled."""
    return str(int(ms * time_scale()))


DIR_TRAVERSE = 0o711         # the test's dir: sessions pass through
DIR_SHARED = 0o1777          # workdir_root: each session makes its own
CLI_LOG_NAME = "fake-claude.log"   # in each session's config dir
FILE_SHARED = 0o666          # the fake CLI's log, appended by every uid
VALGRIND_RUNS = []           # (daemon dir, report) of daemons run under valgrind


def _die_with_us():
    """In a child: SIGTERM it when the test process dies, however it dies
    (a killed test must not leave a daemon behind)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TAP:
    """Prints TAP lines; the runner counts them."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what, detail=None):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, what))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, what))
            if detail is not None:
                for line in str(detail).splitlines()[:40]:
                    print("#   " + line)
        sys.stdout.flush()
        return cond

    def eq(self, got, want, what):
        return self.ok(got == want, what, "got  %r\nwant %r" % (got, want))

    def skip(self, what, why):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, what, why))

    def done(self):
        if VALGRIND_RUNS:
            bad = [r for r in VALGRIND_RUNS if r]
            self.ok(not bad, "valgrind: no errors or leaks in %d daemons and "
                    "their workers" % len(VALGRIND_RUNS), "\n".join(bad))
        print("1..%d" % self.n)
        sys.exit(1 if self.failed else 0)


def free_tcp_port():
    """A loopback TCP port nothing listens on now (for metrics_listen)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


WORKER_USER = "hotplex"      # root's sessions run as this user
DAEMON_USER = "hotplexd"     # the master drops to this user (privsep)


def ensure_worker_user():
    """Root's sessions run as worker_user, the master as daemon_user: as
    root, create the system users when they are missing (as tests/deps.sh
    does; a package purge removes them)."""
    if os.geteuid() != 0:
        return
    import pwd
    for u in (WORKER_USER, DAEMON_USER):
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell",
                            "/usr/sbin/nologin", u],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def session_ids():
    """(uid, gid) that this process's sessions run as: root's as
    worker_user, anyone else's as themselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    import pwd
    ensure_worker_user()
    pw = pwd.getpwnam(WORKER_USER)
    return pw.pw_uid, pw.pw_gid


def give_tree(path):
    """Hands a tree the test made to the user its sessions run as, so that
    the session may work in it (the kernel decides, as for a user's own
    directory)."""
    uid, gid = session_ids()
    for top, dirs, files in os.walk(path):
        for n in [top] + [os.path.join(top, x) for x in dirs + files]:
            os.lchown(n, uid, gid)


def wait_for(cond, timeout, what):
    """Polls cond() until true; for states that have no event of their own.
    The bound follows the load during the wait (the largest factor seen):
    one taken only at the start is too short when a suite beside us
    starts its burst in the middle."""
    start = time.monotonic()
    scale = time_scale()
    while time.monotonic() < start + timeout * scale:
        v = cond()
        if v:
            return v
        time.sleep(POLL_S)         # the poll interval: not a bound
        scale = max(scale, time_scale())
    raise TimeoutError("timed out waiting for " + what)


def cli_environ(pid):
    """A session's CLI's environment, {name: value} in bytes.  Its pid is
    known (session_start, an open's answer) once the worker has seen the
    exec begin, which can be before the kernel has laid out the new image:
    until then /proc/PID/environ reads empty (seen under load: the test
    read it and found no ANTHROPIC_BASE_URL).  So this waits for it to
    fill, a state with no event of its own."""
    def read():
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read()
    raw = wait_for(read, REPLY_TIMEOUT_S, "the CLI's environment")
    return dict(kv.split(b"=", 1) for kv in raw.split(b"\0") if b"=" in kv)


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()
        return st[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _proc_stats():
    """(pid, state, ppid, pgid, sid) of every process, from /proc."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        yield int(d), st[0], int(st[1]), int(st[2]), int(st[3])


def procs_in_group(pgid):
    """Live pids whose process group or session is pgid."""
    return [p for p, state, ppid, pg, sid in _proc_stats()
            if state != "Z" and pgid in (pg, sid)]


SPAWNER_COMM = "hotplex-spawner"   # the spawner's name in /proc
METRICS_BOUND = re.compile(r"metrics: listening on [^ ]*:(\d+)")
METRICS_ANY = "127.0.0.1:0"        # metrics_listen: the kernel picks


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def children_of(pid):
    return [p for p, state, ppid, pg, sid in _proc_stats()
            if state != "Z" and ppid == pid]


def procs_under(path, exe=False):
    """Live pids whose cwd lies under path (tools, CLIs, escapees); with
    exe, also those whose executable does (one that left its directory)."""
    out = []
    links = ("cwd", "exe") if exe else ("cwd",)
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        for link in links:
            try:
                target = os.readlink("/proc/%s/%s" % (p, link))
            except OSError:
                continue
            if (target == path or target.startswith(path + "/")) and \
                    proc_alive(int(p)):
                out.append(int(p))
                break
    return out


TRY_ESCAPE_LINE = re.compile(r"^(not )?ok \d+ - (.*?)(?: # SKIP (.*))?$")
TRY_ESCAPE_PLAN = re.compile(r"^1\.\.(\d+)$")


def try_escape_tap(t, label, out):
    """Reports tests/sandbox/try-escape's TAP lines through t, each named
    [label]; returns (probes run as escapes, lines seen, its plan)."""
    plan, seen, escapes = None, 0, 0
    for line in out.splitlines():
        m = TRY_ESCAPE_PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = TRY_ESCAPE_LINE.match(line)
        if not m:
            continue
        seen += 1
        bad, what, why = m.group(1), m.group(2), m.group(3)
        if why is not None:
            t.skip("[%s] %s" % (label, what), why)
            continue
        t.ok(not bad, "[%s] %s" % (label, what))
        if not what.startswith("control:"):
            escapes += 1
    return escapes, seen, plan


def rss_kb(pid):
    """VmRSS of a process, in KiB (-1 if unknown)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def master_fds(c):
    """The master's descriptors net of its workers' channels and its
    clients' connections (one each), from one status reply through client
    c.  The daemon counts all three in one step of its loop; counting fds
    in /proc and workers from outside raced with spawns (a worker forked
    before the master holds its channel) and with connections."""
    s = c.request("status")["data"]
    if s.get("fds", -1) < 0:
        raise RuntimeError("status has no descriptor count: %r" % s)
    return s["fds"] - s["workers"] - s["clients"]


class Client:
    """One connection to hotplexd; requests get ids r1, r2, ..."""

    def __init__(self, path, timeout=REPLY_TIMEOUT_S):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.timeout = timeout
        self.sock.settimeout(timeout * time_scale())
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")
        self.n = 0
        self.backlog = []

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()

    def send_raw(self, data):
        self.f.write(data)
        self.f.flush()

    def send(self, op, **fields):
        self.n += 1
        rid = fields.pop("id", "r%d" % self.n)
        o = {"op": op, "id": rid}
        o.update(fields)
        self.send_raw((json.dumps(o) + "\n").encode())
        return rid

    def line(self):
        if self.backlog:
            return self.backlog.pop(0)
        # The load now, not when the connection was made.
        self.sock.settimeout(self.timeout * time_scale())
        try:
            raw = self.f.readline()
        except ConnectionResetError:
            raw = b""
        if not raw:
            return None
        return self.decode(raw)

    def decode(self, raw):
        """One reply line as a dict; subclasses may skip or count."""
        return json.loads(raw)

    def reply(self, rid):
        """Lines until the first one for rid (others kept for later)."""
        kept = []
        while True:
            o = self.line()
            if o is None:
                self.backlog = kept + self.backlog
                return None
            if o.get("id") == rid:
                self.backlog = kept + self.backlog
                return o
            kept.append(o)

    def request(self, op, **fields):
        return self.reply(self.send(op, **fields))

    def events(self, rid):
        """All lines of an execute until its terminal line (inclusive)."""
        out = []
        kept = []
        while True:
            o = self.line()
            if o is None:
                self.backlog = kept + self.backlog
                return out
            if o.get("id") != rid:
                kept.append(o)
                continue
            out.append(o)
            if o["type"] in ("done", "error"):
                self.backlog = kept + self.backlog
                return out

    def execute(self, session, prompt, **fields):
        return self.events(self.send("execute", session=session,
                                     prompt=prompt, **fields))


def terminal_count(evs):
    return sum(1 for e in evs if e["type"] in ("done", "error"))


def first(evs, typ):
    for e in evs:
        if e["type"] == typ:
            return e
    return None


class Daemon:
    """hotplexd on a private socket in a temp dir."""

    def __init__(self, conf=None, env=None, cli=None):
        ensure_worker_user()
        self.dir = tempfile.mkdtemp(prefix="hptest.")
        self.sock = os.path.join(self.dir, "hotplexd.sock")
        self.work = os.path.join(self.dir, "work")
        self.log = os.path.join(self.dir, "hotplexd.log")
        self.cli_log = os.path.join(self.dir, "fake-claude.log")
        os.makedirs(self.work)
        # Sessions run as their creator (root's as worker_user hotplex):
        # they pass through the dir, make their workdirs in work/ (sticky,
        # as /tmp) and append to the fake CLI's log.
        os.chmod(self.dir, DIR_TRAVERSE)
        os.chmod(self.work, DIR_SHARED)
        os.close(os.open(self.cli_log, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.cli_log, FILE_SHARED)
        c = {
            "socket": self.sock,
            "workdir_root": self.work,
            "state_dir": os.path.join(self.dir, "state"),
            "cli_path": cli or os.path.join(BDIR, "fake-claude"),
            "spare_min": "1",
            "spare_max": "4",
            "kill_grace": "500ms",
            "log_level": "debug",
            # The firewall (on by default) is tested on its own
            # (test_firewall.py); a test gives None to leave a key out.
            "firewall": "off",
            "cli_env": "PATH HOME LANG FAKE_CLAUDE_LOG FAKE_CLAUDE_PIDFILE "
                       "FAKE_CLAUDE_START",
            # RLIMIT_NPROC counts every task of the session's uid on the
            # machine, and root's sessions all run as worker_user: another
            # daemon's 2,000 sessions beside us (bench_scale) took the
            # default 4,096 and our CLI's fork failed (flake round 2).
            # The limit itself is tested where the suite owns the uid
            # (test_sandbox's escape run, tests/sandbox).
            "rlimit_nproc": "0",
        }
        self.valgrind = bool(os.environ.get("HP_VALGRIND"))
        if self.valgrind:
            # Valgrind knows neither seccomp(2) nor Landlock's calls (it
            # warns and fails them); this run is about memory, the
            # sandbox suites test the confinement.
            c["seccomp"] = "off"
            c["landlock"] = "off"
            # A worker compiles the rules under valgrind before it is
            # ready: at a load of 60 that can pass the default minute.
            c.setdefault("worker_start_timeout", "10m")
            # Its own descriptors lie under the hard limit: it refuses
            # a lower one.
            c["rlimit_nofile"] = "0"
        if self.valgrind and "worker_path" not in (conf or {}):
            # Workers too run under valgrind, through a wrapper.  They log
            # into vg/, which they can write once they are the session's
            # user (their forked CLI child logs there before its exec).
            vg = os.path.join(self.dir, "vg")
            os.mkdir(vg)
            os.chmod(vg, DIR_SHARED)
            wrap = os.path.join(self.dir, "worker-vg")
            with open(wrap, "w") as f:
                f.write("#!/bin/sh\nexec valgrind -q --vgdb=no --leak-check=full --show-possibly-lost=no "
                        "--errors-for-leak-kinds=definite --error-exitcode=99 "
                        "--log-file=%s/vg-worker.%%p %s \"$@\"\n" %
                        (vg, os.path.join(BDIR, "hotplex-worker")))
            os.chmod(wrap, 0o755)
            c["worker_path"] = wrap
        c.update(conf or {})
        self.conf_path = os.path.join(self.dir, "hotplexd.conf")
        with open(self.conf_path, "w") as f:
            for k, v in c.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))
        self.state = c["state_dir"]
        # A shared store is connected to from the loop: the socket is up
        # before the sessions are served.  start() waits for that line
        # unless a test wants to see the host starting.
        self.wait_serving = str(c.get("store") or "").startswith("postgres")
        self.env = dict(os.environ)
        # Relative: each fake-claude logs in its session's config dir,
        # which Landlock (on by default) lets it write; cli_starts()
        # merges the logs.  A test may still give an absolute path.
        self.env["FAKE_CLAUDE_LOG"] = CLI_LOG_NAME
        self.env.update(env or {})
        self.proc = None
        self.clients = []
        self.starts = 0

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            # No daemon and no temp dir outlive a start that failed.
            self.stop(signal.SIGKILL)
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()

    def cleanup(self):
        if self.valgrind:
            VALGRIND_RUNS.append(self.valgrind_errors())
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.starts += 1
        self.logf = open(self.log, "ab")
        argv = [os.path.join(BDIR, "hotplexd"), "-f", "-c", self.conf_path]
        if self.valgrind:
            # --vgdb=no: its pipes, made in /tmp as root, could not be
            # removed by the master once it is daemon_user.
            argv = ["valgrind", "-q", "--vgdb=no", "--leak-check=full",
                    "--show-possibly-lost=no",
                    "--errors-for-leak-kinds=definite",
                    "--error-exitcode=99",
                    "--log-file=%s/vg-master.%%p" % self.dir] + argv
        served = self.log_count(SERVING_LINE)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf,
                                     env=self.env, preexec_fn=_die_with_us)
        wait_for(self._connectable, CONNECT_TIMEOUT_S, "the socket")
        if self.wait_serving:
            self.wait_served(served)
        return self

    def log_count(self, text):
        """How many times text is in the daemon's log so far."""
        try:
            with open(self.log, errors="replace") as f:
                return f.read().count(text)
        except OSError:
            return 0

    def wait_served(self, before):
        """Until the log says sessions are served (one more line than
        before): a shared store open and the hosts' channel listening."""
        def served():
            if self.proc.poll() is not None:
                raise RuntimeError("hotplexd exited with %d:\n%s" %
                                   (self.proc.returncode, self.logtail()))
            return self.log_count(SERVING_LINE) > before
        wait_for(served, REPLY_TIMEOUT_S, "sessions to be served")

    def _connectable(self):
        if self.proc.poll() is not None:
            raise RuntimeError("hotplexd exited with %d:\n%s" %
                               (self.proc.returncode, self.logtail()))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def metrics_port(self):
        """The port metrics_listen = 127.0.0.1:0 got at the last start (from
        its log line: a port picked by the test and bound later by the
        daemon could be taken meanwhile by a suite beside this one)."""
        def bound():
            with open(self.log, errors="replace") as f:
                ports = METRICS_BOUND.findall(f.read())
            return int(ports[-1]) if len(ports) >= self.starts else None
        return wait_for(bound, CONNECT_TIMEOUT_S, "the metrics port")

    def client(self):
        c = Client(self.sock)
        self.clients.append(c)
        return c

    def spawner(self):
        """The daemon's spawner (its privileged child), or None."""
        for p in children_of(self.proc.pid):
            if proc_comm(p) == SPAWNER_COMM:
                return p
        return None

    def workers(self):
        """Live workers: the spawner's children (it kills any other)."""
        sp = self.spawner()
        if sp is None:
            return []
        return children_of(sp)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon; returns its exit status.  Past timeout
        (scaled) it is killed, which a test of the status sees."""
        timeout = scaled(timeout)
        for c in self.clients:
            try:
                c.close()
            except OSError:
                pass
        self.clients = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def valgrind_errors(self):
        """Valgrind reports of the master and workers ('' when clean)."""
        out = []
        vg = os.path.join(self.dir, "vg")
        logs = [os.path.join(self.dir, n) for n in os.listdir(self.dir)]
        if os.path.isdir(vg):
            logs += [os.path.join(vg, n) for n in os.listdir(vg)]
        for p in sorted(logs):
            n = os.path.basename(p)
            if n.startswith("vg-"):
                with open(p) as f:
                    # "--PID--" lines are valgrind's own remarks (a syscall
                    # it has no wrapper for, such as Landlock's); errors and
                    # leaks are "==PID==" lines.
                    txt = "\n".join(l for l in f.read().splitlines()
                                    if not re.match(r"--\d+-- ", l)).strip()
                if txt:
                    out.append("%s:\n%s" % (n, txt))
        return "\n".join(out)

    def logtail(self, n=30):
        try:
            with open(self.log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(
                    "utf-8", "replace")
        except OSError:
            return ""

    def cli_logs(self):
        """The fake CLI's logs: its sessions' config dirs, and cli_log."""
        return glob.glob(os.path.join(self.state, "home", "*", "*",
                                      ".claude", CLI_LOG_NAME)) + \
            [self.cli_log]

    def cli_starts(self):
        """One dict per fake-claude start (argv, env names, pids...), in
        the order they started."""
        out = []
        for path in self.cli_logs():
            try:
                with open(path) as f:
                    out += [json.loads(l) for l in f if l.strip()]
            except FileNotFoundError:
                pass
        return sorted(out, key=lambda x: x.get("mono_ns", 0))
