#!/usr/bin/env python3
"""Operating hotplexd: log_file and log_format = json (master and worker
lines, reopened on SIGUSR1), every start-up line in the same place when
detached, -p pidfile, -h and --version, hotplexd -n findings."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (METRICS_ANY, TAP, BDIR, Daemon, wait_for, proc_alive,
                   terminal_count, first)

t = TAP()
HOTPLEXD = os.path.join(BDIR, "hotplexd")
WAIT_S = 30 * float(os.environ.get("HP_SLOW", "1"))


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def test_log_file_json():
    d = Daemon({"log_file": None, "log_format": "json"})
    logf = os.path.join(d.dir, "hp.log")
    with open(d.conf_path, "a") as f:
        f.write("log_file = %s\n" % logf)
    with d:
        c = d.client()
        evs = c.execute("s1", "hello")
        t.eq(terminal_count(evs), 1, "json log: a turn ran")
        lines = read_lines(logf)
        objs = []
        bad = []
        for l in lines:
            try:
                objs.append(json.loads(l))
            except ValueError:
                bad.append(l)
        t.ok(lines and not bad, "json log: every line of log_file is a "
             "JSON object", bad[:5] or "no lines")
        keys = {"time", "level", "process", "message"}
        t.ok(objs and all(keys <= set(o) for o in objs),
             "json log: every object has time, level, process, message",
             [o for o in objs if not keys <= set(o)][:3])
        t.ok(any(o["process"] == "master" and "started" in o["message"]
                 for o in objs), "json log: the master's start-up line is "
             "in the file", lines[:5])
        t.ok(any(o["process"] == "worker" and o.get("session") == "s1"
                 for o in objs), "json log: worker lines name their session",
             lines[-10:])
        with open(d.log) as f:
            stderr = f.read()
        t.ok("master" not in stderr, "json log: nothing of the master on "
             "stderr", stderr[-500:])

        # Rotation: the file moved away, SIGUSR1 opens a new one.
        os.rename(logf, logf + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        try:
            wait_for(lambda: any("reopened" in l for l in read_lines(logf)),
                     WAIT_S, "the reopened log")
            t.ok(True, "SIGUSR1: a new log_file is opened and written")
        except TimeoutError:
            t.ok(False, "SIGUSR1: a new log_file is opened and written",
                 read_lines(logf))
        os.rename(logf, logf + ".2")
        d.proc.send_signal(signal.SIGHUP)
        try:
            wait_for(lambda: any("reloaded" in l for l in read_lines(logf)),
                     WAIT_S, "the log reopened by the reload")
            t.ok(True, "SIGHUP: log_file is reopened too")
        except TimeoutError:
            t.ok(False, "SIGHUP: log_file is reopened too", read_lines(logf))


def test_detached():
    """Without -f: detaches, writes its pid file, logs every start-up
    line to log_file (text, dated), prints nothing on the terminal."""
    d = Daemon()
    logf = os.path.join(d.dir, "hp.log")
    pidf = os.path.join(d.dir, "hotplexd.pid")
    with open(d.conf_path, "a") as f:
        f.write("log_file = %s\n" % logf)
    pid = None
    try:
        r = subprocess.run([HOTPLEXD, "-c", d.conf_path, "-p", pidf],
                           capture_output=True, text=True, env=d.env,
                           timeout=WAIT_S)
        wait_for(lambda: os.path.exists(pidf), WAIT_S, "the pid file")
        logged = "\n".join(read_lines(logf))
        t.ok(r.returncode == 0 and r.stdout == "" and
             all(l.startswith("hotplexd: ") and l[10:] in logged
                 for l in r.stderr.splitlines()),
             "detached: exits 0; the terminal sees only warnings, which "
             "are in log_file too", (r.returncode, r.stdout, r.stderr))
        with open(pidf) as f:
            pid = int(f.read())
        t.ok(proc_alive(pid), "detached: the pid file names the daemon")
        wait_for(lambda: any("started" in l for l in read_lines(logf)),
                 WAIT_S, "the started line")
        lines = read_lines(logf)
        t.ok(lines and all(l[:4].isdigit() and l[4] == "-" for l in lines),
             "detached: every line in log_file, dated", lines[:5])
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not proc_alive(pid), WAIT_S, "the daemon to exit")
        t.ok(not os.path.exists(pidf), "detached: the pid file is removed "
             "at exit")
        pid = None
    except TimeoutError as e:
        t.ok(False, "detached: " + str(e), read_lines(logf))
    finally:
        # Whatever failed, the detached daemon does not outlive the test.
        if pid is None:
            try:
                with open(pidf) as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                pass
        if pid is not None and proc_alive(pid):
            os.kill(pid, signal.SIGKILL)
        d.cleanup()


def test_options():
    r = subprocess.run([HOTPLEXD, "-h"], capture_output=True, text=True)
    t.ok(r.returncode == 0 and "usage: hotplexd" in r.stdout and
         "-n" in r.stdout, "hotplexd -h prints the options and exits 0",
         (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([HOTPLEXD, "--help"], capture_output=True, text=True)
    t.ok(r.returncode == 0 and "usage: hotplexd" in r.stdout,
         "hotplexd --help", r.returncode)
    r = subprocess.run([HOTPLEXD, "--version"], capture_output=True,
                       text=True)
    t.ok(r.returncode == 0 and r.stdout.startswith("hotplexd "),
         "hotplexd --version", (r.returncode, r.stdout))
    r = subprocess.run([HOTPLEXD, "--bogus"], capture_output=True, text=True)
    t.ok(r.returncode == 2 and "usage" in r.stderr, "an unknown option: 2",
         (r.returncode, r.stderr))
    ctl = os.path.join(BDIR, "hotplexctl")
    for argv, want in ((["exec", "hi"], "hotplexctl: exec: -s SESSION is "
                        "required"),
                       (["stop"], "hotplexctl: stop: SESSION is required"),
                       (["open", "-s", "x"], "hotplexctl: open: -w WORKDIR "
                        "is required")):
        r = subprocess.run([ctl] + argv, capture_output=True, text=True)
        t.ok(r.returncode == 2 and r.stderr.strip() == want,
             "hotplexctl %s: names what is missing" % " ".join(argv),
             (r.returncode, r.stderr))


def test_check():
    """hotplexd -n: the worker and the CLI found, or said missing."""
    d = Daemon({"cli_path": os.path.join(BDIR, "no-such-cli")})
    try:
        r = subprocess.run([HOTPLEXD, "-n", "-c", d.conf_path],
                           capture_output=True, text=True, env=d.env,
                           timeout=WAIT_S)
        worker = d.valgrind and os.path.join(d.dir, "worker-vg") or \
            os.path.join(BDIR, "hotplex-worker")
        t.ok(r.returncode == 1 and "no-such-cli: No such file" in r.stderr
             and "worker %s OK" % worker in r.stdout,
             "hotplexd -n: a missing CLI fails, naming it",
             (r.returncode, r.stdout, r.stderr))
        fake = os.path.join(d.dir, "fake-cli")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho \"fake-cli 9.9 ($*)\"\n")
        os.chmod(fake, 0o755)
        with open(d.conf_path, "a") as f:
            f.write("worker_path = %s\n" % os.path.join(d.dir, "nope"))
            f.write("cli_path = %s\n" % fake)
        env = dict(d.env, ANTHROPIC_API_KEY="sk-test-not-shown",
                   ANTHROPIC_BASE_URL="http://127.0.0.1:1")
        r = subprocess.run([HOTPLEXD, "-n", "-c", d.conf_path],
                           capture_output=True, text=True, env=env,
                           timeout=WAIT_S)
        t.ok(r.returncode == 1 and "worker %s: No such file" %
             os.path.join(d.dir, "nope") in r.stderr,
             "hotplexd -n: a missing worker fails, naming it",
             (r.returncode, r.stdout, r.stderr))
        t.ok("cli_path %s: fake-cli 9.9 (--version)" % fake in r.stdout,
             "hotplexd -n: prints what cli_path --version said", r.stdout)
        t.ok("ANTHROPIC_API_KEY is set" in r.stdout and
             "sk-test-not-shown" not in r.stdout + r.stderr and
             "ANTHROPIC_BASE_URL=http://127.0.0.1:1" in r.stdout,
             "hotplexd -n: names the model API settings, never the key",
             r.stdout)
    finally:
        d.cleanup()


def test_stop_ends_conversation():
    """After stop, the next execute on the name starts a new conversation
    (resumed false, a new CLI session id, no --resume); the session's
    statistics keep the old conversation's turns."""
    with Daemon() as d:
        c = d.client()
        e1 = c.execute("conv", "one")
        e2 = c.execute("conv", "two")
        s1 = first(e1, "session_start")["data"]
        s2 = first(e2, "session_start")["data"]
        t.ok(terminal_count(e1) == 1 and s2["cold"] is False and
             s2["cli_session_id"] == s1["cli_session_id"],
             "stop: two turns on one CLI", (s1, s2))
        t.eq(c.request("stop", session="conv")["type"], "ok", "stop: ok")
        e3 = c.execute("conv", "three")
        s3 = (first(e3, "session_start") or {}).get("data", {})
        t.ok(s3.get("cold") is True and s3.get("resumed") is False and
             s3.get("cli_session_id") and
             s3["cli_session_id"] != s1["cli_session_id"],
             "stop: the next execute starts a new conversation", (s1, s3))
        starts = d.cli_starts()
        t.ok(len(starts) == 2 and "--resume" not in starts[1]["argv"],
             "stop: the new CLI is not resumed", starts[-1:])
        st = c.request("stats", session="conv")["data"]
        t.eq(st.get("turns"), 3, "stop: the statistics keep the old "
             "conversation's turns")
        e4 = c.execute("conv", "four")
        s4 = first(e4, "session_start")["data"]
        t.ok(s4["cold"] is False and terminal_count(e4) == 1 and
             s4["cli_session_id"] == s3.get("cli_session_id"),
             "stop: the new conversation goes on on its CLI", s4)


def http_get(port, path):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        h.request("GET", path)
        r = h.getresponse()
        return r.status, r.read().decode()
    finally:
        h.close()


def ctl(d, *argv):
    return subprocess.run([os.path.join(BDIR, "hotplexctl"), "-S", d.sock]
                          + list(argv), capture_output=True, text=True,
                          timeout=WAIT_S)


def test_health_and_status():
    with Daemon({"metrics_listen": METRICS_ANY}) as d:
        port = d.metrics_port()
        c = d.client()
        t.eq(terminal_count(c.execute("h1", "hi")), 1, "health: a turn ran")
        st, body = http_get(port, "/healthz")
        t.ok(st == 200 and body == "ok\n", "/healthz: 200 ok", (st, body))
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, WAIT_S,
                 "a spare worker")
        st, body = http_get(port, "/readyz")
        t.ok(st == 200 and "ok spares:" in body and "ok store:" in body and
             "ok gateway: gateway" in body and body.endswith("\nok\n"),
             "/readyz: 200 with each check", body)
        r = c.request("status")
        data = r.get("data", {})
        t.ok(r["type"] == "ok" and data.get("version") and
             data.get("sessions", {}).get("ready") == 1 and
             data.get("ready") is True and "workers" in data and
             "isolation" in data and "rules" in data,
             "status op: version, sessions by state, workers, isolation, "
             "rules, ready", r)
        out = ctl(d, "status")
        t.ok(out.returncode == 0 and "ready       yes" in out.stdout and
             "ready 1" in out.stdout and "isolation" in out.stdout,
             "hotplexctl status: one screen", out.stdout + out.stderr)
        # The store directory gone: not ready, and said why.
        shutil.rmtree(os.path.join(d.dir, "state"))
        st, body = http_get(port, "/readyz")
        t.ok(st == 503 and "failed store:" in body and
             body.endswith("not ready\n"),
             "/readyz: 503 when state_dir is not writable", (st, body))
        out = ctl(d, "status")
        t.ok("ready       no" in out.stdout and "FAILED" in out.stdout,
             "hotplexctl status: says what is not ready", out.stdout)
        t.eq(http_get(port, "/healthz")[0], 200, "/healthz: still alive")
    # No worker can start: no spare, not ready.
    with Daemon({"metrics_listen": "127.0.0.1:%d" % port,
                 "worker_path": "/bin/false"}) as d:
        st, body = http_get(port, "/readyz")
        t.ok(st == 503 and "failed spares: 0 spare workers ready" in body,
             "/readyz: 503 without a spare worker", (st, body))


for fn in (test_health_and_status, test_stop_ends_conversation, test_options, test_check, test_log_file_json, test_detached):
    try:
        fn()
    except Exception as e:  # a crashed case is a failure, not an abort
        import traceback
        t.ok(False, fn.__name__ + " raised " + repr(e), traceback.format_exc())
t.done()
