"""A PostgreSQL server of the test's own, for the shared store
(store = postgresql://...): Debian's postgresql package, a cluster made by
initdb in a temp dir, served on a private Unix socket (no TCP), run as the
postgres user (PostgreSQL refuses root) or as the test's user when it is
not root.  The server is the test's child, dies with it (parent-death
signal) and is stopped and removed by the test (Postgres is a context
manager).

    with hppg.Postgres() as pg:          # raises hppg.Unavailable
        url = pg.url("hotplex")          # a fresh database
        pg.sql("hotplex", "SELECT 1")    # rows as lists of strings

Python standard library only; used by the integration and e2e suites.
"""

import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import hplib

PG_USER = "postgres"         # Debian's package makes this system user
READY_TIMEOUT_S = 60.0       # initdb, then the server's first start
READY_LINE = "database system is ready to accept connections"
PORT = 5432                  # only names the socket file: no TCP
DIR_MODE = 0o711             # the socket is reached through it (hotplexd's
                             # master runs as daemon_user); the cluster's
                             # own data/ is 0700
PR_SET_PDEATHSIG = 1

# Loaded before any fork: the child, no longer root, may not read the
# modules (root's Python may live under a private home).
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_us():
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass        # it exited meanwhile


class Unavailable(Exception):
    """PostgreSQL cannot run here (not installed, cannot start): a test
    skips with this message."""


def bindir():
    """The newest server's bin directory, or None."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: [int(x) for x in
                                 d.split("/")[-2].split(".") if x.isdigit()])
    for d in reversed(dirs):
        if os.access(os.path.join(d, "postgres"), os.X_OK) and \
                os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return None


def _as_user(uid, gid):
    """Popen arguments: run as the server's user, and die with the test
    (subprocess changes the uid before preexec_fn runs: the parent-death
    signal, which a change of uid clears, is set after it)."""
    kw = {"preexec_fn": _die_with_us}
    if os.geteuid() == 0:
        kw.update(user=uid, group=gid, extra_groups=[])
    return kw


class Postgres:
    """One server: a cluster in a temp dir, its socket in the same dir."""

    def __init__(self, fsync=False):
        self.bin = bindir()
        self.fsync = fsync
        self.dir = None
        self.proc = None
        self.logf = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _ids(self):
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise Unavailable("no %s user (install the postgresql "
                              "package)" % PG_USER)
        return pw.pw_uid, pw.pw_gid

    def start(self):
        if self.bin is None:
            raise Unavailable("no /usr/lib/postgresql/*/bin/postgres "
                              "(install the postgresql package)")
        uid, gid = self._ids()
        self.dir = tempfile.mkdtemp(prefix="hppg.")
        os.chmod(self.dir, DIR_MODE)
        os.chown(self.dir, uid, gid)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        r = subprocess.run([os.path.join(self.bin, "initdb"), "-D",
                            self.data, "-A", "trust", "-U", PG_USER,
                            "-E", "UTF8", "--locale=C", "--no-sync"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=self.dir, **_as_user(uid, gid),
                           timeout=READY_TIMEOUT_S * hplib.time_scale())
        if r.returncode != 0:
            raise Unavailable("initdb failed: %s" %
                              r.stdout.decode(errors="replace")[-400:])
        self.logf = open(self.log, "ab")
        self._run(uid, gid)
        return self

    def _run(self, uid, gid):
        """The server on the cluster, up to its ready line (one more in
        the log than before)."""
        with open(self.log, errors="replace") as f:
            before = f.read().count(READY_LINE)
        argv = [os.path.join(self.bin, "postgres"), "-D", self.data,
                "-k", self.dir, "-p", str(PORT),
                "-c", "listen_addresses=",
                "-c", "logging_collector=off",
                "-c", "max_connections=50"]
        if not self.fsync:
            # The tests' data need not survive a power loss.
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf,
                                     cwd=self.dir, **_as_user(uid, gid))
        try:
            hplib.wait_for(lambda: self._ready(before), READY_TIMEOUT_S,
                           "PostgreSQL")
        except TimeoutError:
            raise Unavailable("PostgreSQL did not start:\n" + self.logtail())

    def _ready(self, before):
        if self.proc.poll() is not None:
            raise Unavailable("postgres exited with %d:\n%s" %
                              (self.proc.returncode, self.logtail()))
        try:
            with open(self.log, errors="replace") as f:
                return f.read().count(READY_LINE) > before
        except FileNotFoundError:
            return False

    def halt(self):
        """Fast shutdown (SIGINT): the server closes every connection and
        exits; the cluster stays for again()."""
        self.resume()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(READY_TIMEOUT_S * hplib.time_scale())

    def again(self):
        """The halted server started again on the same cluster."""
        self._run(*self._ids())

    def logtail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def url(self, db, create=True):
        """A libpq URL of database db on this server (made if asked)."""
        if create:
            self.sql("postgres", 'CREATE DATABASE "%s"' % db)
        return "postgresql:///%s?host=%s&port=%d&user=%s" % (
            db, self.dir, PORT, PG_USER)

    def sql(self, db, query, check=True):
        """Runs query with psql; its rows as lists of strings."""
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q",
                            "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.dir, "-p", str(PORT), "-U", PG_USER,
                            "-d", db, "-c", query],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=READY_TIMEOUT_S * hplib.time_scale())
        if check and r.returncode != 0:
            raise RuntimeError("psql %r: %s" % (query, r.stderr.decode(
                errors="replace")))
        out = r.stdout.decode(errors="replace")
        return [l.split("\t") for l in out.splitlines() if l != ""]

    def _server_pids(self):
        """The postmaster first, then its children (each backend makes its
        own session: a process group signal would miss them)."""
        return [self.proc.pid] + hplib.children_of(self.proc.pid)

    def pause(self):
        """SIGSTOP to the server and its backends: the store stops
        answering, its connections stay open.  The postmaster first: it
        forks no backend while the others are stopped."""
        for p in self._server_pids():
            _signal(p, signal.SIGSTOP)

    def resume(self):
        for p in reversed(self._server_pids()):
            _signal(p, signal.SIGCONT)

    def stop(self):
        """Fast shutdown (SIGINT), then the temp dir goes."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.resume()
                    self.proc.send_signal(signal.SIGINT)
                    self.proc.wait(READY_TIMEOUT_S * hplib.time_scale())
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.logf is not None:
            self.logf.close()
            self.logf = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
