#!/usr/bin/env python3
"""Warm-turn latency through hotplexd against a direct pipe to the same CLI
and the same mock model, measured side by side (alternating turns) in one
run; cold first turn; time for a new session to get its worker.
Reports; never fails on a slow machine."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from hplib import Daemon, BDIR, first  # noqa: E402

TURNS = int(os.environ.get("BENCH_TURNS", "50"))
COLD = int(os.environ.get("BENCH_COLD", "5"))
NEW_SESSIONS = int(os.environ.get("BENCH_SESSIONS", "20"))
PROMPT = "Say hi."
FLAGS = ["--input-format", "stream-json", "--output-format", "stream-json",
         "--verbose", "--include-partial-messages"]


class Pipe:
    """The CLI on a direct pipe, as an application would drive it."""

    def __init__(self, cli, cwd, env, extra=()):
        self.p = subprocess.Popen([cli] + FLAGS + list(extra), cwd=cwd,
                                  env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.out = self.p.stdout          # buffered: whole reads, not bytes

    def turn(self, text):
        t0 = time.perf_counter()
        self.p.stdin.write((json.dumps({"type": "user", "message": {
            "role": "user", "content": text}}) + "\n").encode())
        self.p.stdin.flush()
        while True:
            line = self.out.readline()
            if not line:
                raise RuntimeError("CLI exited")
            if line.startswith(b'{"type":"result"'):
                return time.perf_counter() - t0

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)


def hp_turn_lean(c, session, text):
    """A warm turn read as the direct pipe is read: raw lines, no JSON
    parsing, until the terminal line (both sides do the same work)."""
    t0 = time.perf_counter()
    c.send("execute", session=session, prompt=text)
    while True:
        line = c.f.readline()
        if not line:
            raise RuntimeError("hotplexd closed the connection")
        if b'"type":"done"' in line:
            return time.perf_counter() - t0
        if b'"type":"error"' in line:
            raise RuntimeError("turn failed: %r" % line)


def hp_turn(c, session, text, **kw):
    t0 = time.perf_counter()
    evs = c.execute(session, text, **kw)
    dt = time.perf_counter() - t0
    if evs[-1]["type"] != "done":
        raise RuntimeError("turn failed: %r" % evs[-1])
    return dt, evs


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ms(x):
    return "%8.2f" % (x * 1000)


def row(name, xs):
    print("| %-34s | %s | %s | %s | %4d |" % (name, ms(statistics.median(xs)),
          ms(pct(xs, 99)), ms(min(xs)), len(xs)))


def bench(label, cli, env, conf_env, tmp):
    work = tempfile.mkdtemp(prefix="bench.", dir=tmp)
    conf = {"cli_path": cli, "cli_env": conf_env, "spare_min": "2",
            "idle_timeout": "1h"}
    # The same daemon without the model-API gateway (and so without the
    # egress rules that need it): what the gateway costs a warm turn.
    with Daemon(conf, env=env) as d, \
            Daemon(dict(conf, tool_gate="off"), env=env) as d2, \
            Daemon(dict(conf, gateway="off", egress="off"), env=env) as d3:
        c, c2, c3 = d.client(), d2.client(), d3.client()
        wd = os.path.join(d.work, "bench")
        # A direct pipe as the Agent SDK starts the CLI (the fastest), and
        # one with the flags the worker adds for its tool gate.
        import uuid
        pipe = Pipe(cli, work, env)
        gated = Pipe(cli, work, env, ["--permission-prompt-tool", "stdio",
                                      "--session-id", str(uuid.uuid4())])
        pipe.turn(PROMPT)                        # all warm
        gated.turn(PROMPT)
        hp_turn(c, "bench", PROMPT, workdir=wd)
        hp_turn(c2, "bench", PROMPT, workdir=os.path.join(d2.work, "bench"))
        hp_turn(c3, "bench", PROMPT, workdir=os.path.join(d3.work, "bench"))
        direct, direct_g, hotplex, hotplex_ng = [], [], [], []
        hotplex_nogw = []
        for i in range(TURNS):                   # alternate: same conditions
            direct.append(pipe.turn(PROMPT))
            hotplex.append(hp_turn_lean(c, "bench", PROMPT))
            direct_g.append(gated.turn(PROMPT))
            hotplex_ng.append(hp_turn_lean(c2, "bench", PROMPT))
            hotplex_nogw.append(hp_turn_lean(c3, "bench", PROMPT))
        pipe.close()
        gated.close()

        cold_direct, cold_hp, assign, ready = [], [], [], []
        for i in range(COLD):
            t0 = time.perf_counter()
            p = Pipe(cli, work, env)
            p.turn(PROMPT)
            cold_direct.append(time.perf_counter() - t0)
            p.close()
            dt, evs = hp_turn(c, "cold%d" % i, PROMPT)
            cold_hp.append(dt)
            c.request("stop", session="cold%d" % i)
        # assign_us of cold turns: from execute to a worker holding the session
        for i in range(NEW_SESSIONS):
            dt, evs = hp_turn(c, "as%d" % i, PROMPT)
            s = first(evs, "session_start")["data"]
            assign.append(s["assign_us"] / 1e6)
            ready.append(s["ready_us"] / 1e6)
            c.request("stop", session="as%d" % i)

    print()
    print("### %s" % label)
    print()
    print("| %-34s | %8s | %8s | %8s | %4s |" % ("measure", "median", "p99",
                                                 "min", "n"))
    print("|%s|%s|%s|%s|%s|" % ("-" * 36, "-" * 10, "-" * 10, "-" * 10, "-" * 6))
    row("warm turn, direct pipe (ms)", direct)
    row("warm turn, hotplexd, tool_gate off", hotplex_ng)
    row("warm turn, direct + gate flags (ms)", direct_g)
    row("warm turn, hotplexd (default)", hotplex)
    row("warm turn, hotplexd, gateway off", hotplex_nogw)
    row("cold first turn, direct (ms)", cold_direct)
    row("cold first turn, hotplexd (ms)", cold_hp)
    row("new session: worker assigned (ms)", assign)
    row("new session: CLI up, turn sent (ms)", ready)
    md, mh = statistics.median(direct), statistics.median(hotplex)
    mng, mg = statistics.median(hotplex_ng), statistics.median(direct_g)
    print()
    print("warm median ratio, tool_gate off vs the fastest direct pipe: %.3f "
          "(%+.2f ms); p99 ratio %.3f" % (mng / md, (mng - md) * 1000,
                                        pct(hotplex_ng, 99) / pct(direct, 99)))
    print("warm median ratio, default vs a direct pipe with the same flags: "
          "%.3f (%+.2f ms)" % (mh / mg, (mh - mg) * 1000))
    print("warm median ratio, default vs the fastest direct pipe: %.3f "
          "(%+.2f ms)" % (mh / md, (mh - md) * 1000))
    mo = statistics.median(hotplex_nogw)
    print("warm median, default (through the gateway) vs gateway off: %.3f "
          "(%+.2f ms; target < 1 ms)" % (mh / mo, (mh - mo) * 1000))
    print("cold/warm (hotplexd): %.1fx" % (statistics.median(cold_hp) / mh))
    sys.stdout.flush()


def main():
    tmp = tempfile.mkdtemp(prefix="hpbench.")
    try:
        # 1. Pure overhead: the instant fake CLI.
        fake = os.path.join(BDIR, "fake-claude")
        env = dict(os.environ)
        bench("fake-claude (instant CLI): daemon overhead", fake, env,
              "PATH HOME", tmp)
        # 2. The real CLI against the mock model on loopback.
        cli = os.path.join(BDIR, "cli", "claude")
        if not os.access(cli, os.X_OK):
            print("real CLI not installed: skipped")
            return
        from test_e2e import Mock  # noqa: E402
        mock = Mock(tmp)
        import uuid  # noqa: F401
        env = dict(os.environ)
        env.update(mock.env())
        try:
            bench("real Claude CLI %s + mock Messages API" %
                  open(os.path.join(os.path.dirname(HERE), "e2e",
                                    "CLI_VERSION")).read().strip(),
                  cli, env, "PATH HOME TMPDIR ANTHROPIC_BASE_URL "
                  "ANTHROPIC_API_KEY CLAUDE_CONFIG_DIR "
                  "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", tmp)
        finally:
            mock.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
