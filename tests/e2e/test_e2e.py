#!/usr/bin/env python3
"""End to end: hotplexd driving the real Claude CLI (pinned, from the npm
registry) against the mock Messages API on loopback."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import (api_timeout_ms, scaled, TAP, Daemon, BDIR, wait_for,
                   procs_in_group, first, proc_alive, give_tree)

t = TAP()
# HP_CLI: another CLI than the pinned one (the oldest supported, say).
CLI = os.path.abspath(os.environ.get("HP_CLI") or
                      os.path.join(BDIR, "cli", "claude"))
OFFLINE_ENV = ("PATH HOME LANG TMPDIR ANTHROPIC_BASE_URL ANTHROPIC_API_KEY "
               "CLAUDE_CONFIG_DIR CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC "
               "CLAUDE_CODE_MAX_RETRIES API_TIMEOUT_MS")


class Mock:
    """tests/e2e/mock_api.py on a free loopback port; dies with its stdin."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.log = os.path.join(tmp, "mock.log")
        pf = os.path.join(tmp, "mock.port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "mock_api.py"), "--port", "0",
             "--port-file", pf, "--log", self.log, "--stdin-eof-exit"],
            stdin=subprocess.PIPE)
        self.port = int(wait_for(lambda: open(pf).read().strip()
                                 if os.path.exists(pf) and
                                 open(pf).read().strip() else None,
                                 20, "the mock's port"))

    def env(self):
        """The offline environment of the real CLI (PROTOCOL.md section 7):
        only this mock on loopback, throwaway home, config and tmp."""
        env = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % self.port,
               "ANTHROPIC_API_KEY": "dummy",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
               "HOME": os.path.join(self.tmp, "home"),
               "CLAUDE_CONFIG_DIR": os.path.join(self.tmp, "config"),
               "TMPDIR": os.path.join(self.tmp, "tmp"),
               "CLAUDE_CODE_MAX_RETRIES": "1",
               "API_TIMEOUT_MS": api_timeout_ms()}
        for k in ("HOME", "CLAUDE_CONFIG_DIR", "TMPDIR"):
            os.makedirs(env[k], exist_ok=True)
        return env

    def requests(self):
        with open(self.log) as f:
            return [json.loads(l) for l in f if l.strip()]

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(scaled(10))


def usage_sum(reqs):
    keys = {"input": "input_tokens", "output": "output_tokens",
            "cache_read": "cache_read_input_tokens",
            "cache_write": "cache_creation_input_tokens"}
    return {k: sum(r["usage"][v] for r in reqs) for k, v in keys.items()}


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("e2e with the real CLI", CLI + " not installed (make deps)")
        t.done()
    tmp = tempfile.mkdtemp(prefix="hpe2e.")
    mock = Mock(tmp)
    env = mock.env()
    try:
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s"}, env=env) as d:
            run(d, mock)
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s"}, env=env) as d:
            kill_rounds(d, mock)
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


KILL_ROUNDS = int(os.environ.get("HP_KILL_ROUNDS", "8"))
KILL_AFTER_MAX_S = 0.06     # SIGKILL this long at most after done is read
DEATH_WAIT_S = 10           # the killed daemon's workers and CLIs are gone


def kill_rounds(d, mock):
    """SIGKILL of hotplexd at a random moment right after each done: every
    later turn resumes the conversation, the model sees every earlier turn,
    and turns are counted exactly."""
    rng = random.Random(os.environ.get("HP_SEED") or time.time())
    wd = os.path.join(d.work, "kill")     # made by the worker, the user's
    said, bad = [], []
    for i in range(1, KILL_ROUNDS + 1):
        c = d.client()
        text = "round %d: the word is w%d" % (i, i)
        e = c.execute("kill", "[[echo]] " + text, workdir=wd)
        start = (first(e, "session_start") or {}).get("data", {})
        st = (first(e, "session_stats") or {}).get("data", {})
        result = e[-1]["data"].get("result", "") if e[-1]["type"] == \
            "done" else ""
        said.append(text)
        if e[-1]["type"] != "done":
            bad.append((i, "ended", e[-1]))
        elif i > 1 and not start.get("resumed"):
            bad.append((i, "not resumed", start))
        elif not all(json.dumps(x) in result for x in said):
            bad.append((i, "the model missed a turn", result))
        elif st.get("turns") != i:
            bad.append((i, "turns", st.get("turns")))
        workers = d.workers()
        time.sleep(rng.uniform(0, KILL_AFTER_MAX_S))   # not a bound: when
        d.stop(signal.SIGKILL)
        try:
            wait_for(lambda: not any(proc_alive(p) for p in workers) and
                     not procs_in_group(start.get("pgid", -1)),
                     DEATH_WAIT_S, "the killed daemon's workers and CLI")
        except TimeoutError:
            bad.append((i, "survivors", workers))
        d.start()
        rows = d.client().request("sessions")["data"]
        if [r["turns"] for r in rows if r["session"] == "kill"] != [i]:
            bad.append((i, "after the restart", rows))
    t.eq(bad, [], "%d rounds of a turn and a SIGKILL 0-%d ms after its "
         "done: every turn done, resumed, the model saw every earlier turn, "
         "turns exact" % (KILL_ROUNDS, KILL_AFTER_MAX_S * 1000))
    c = d.client()
    e = c.execute("kill", "[[echo]] last")
    t.ok(e[-1]["type"] == "done" and all(json.dumps(x) in
         e[-1]["data"]["result"] for x in said) and
         (first(e, "session_stats") or {}).get("data", {}).get("turns") ==
         KILL_ROUNDS + 1, "after the last kill the conversation and the "
         "count go on", e[-1])
    said.append("last")
    # The CLI's transcript is the truth: a store that lost "has a
    # conversation" still resumes it.
    t.eq(d.stop(signal.SIGTERM), 0, "SIGTERM after the rounds")
    import sqlite3
    db = sqlite3.connect(os.path.join(d.dir, "state", "hotplex.db"))
    db.execute("UPDATE sessions SET has_conversation = 0")
    db.commit()
    db.close()
    d.start()
    c = d.client()
    e = c.execute("kill", "[[echo]] after the store forgot")
    start = (first(e, "session_start") or {}).get("data", {})
    t.ok(e[-1]["type"] == "done" and start.get("resumed") and
         all(json.dumps(x) in e[-1]["data"]["result"] for x in said),
         "the CLI's transcript in its config dir makes the turn resume "
         "when the store says no conversation", (start, e[-1]))
    # The audit of a real Write: allowed by the gate, the file it wrote.
    note = os.path.join(wd, "note.txt")
    e = c.execute("kill", "[[tool:Write:%s]] write the note" % json.dumps(
        {"file_path": note, "content": "hi\n"}))
    rows = c.request("audit", session="kill")["data"]["rows"]
    w = [r for r in rows if r["tool"] == "Write"]
    t.ok(e[-1]["type"] == "done" and os.path.exists(note) and len(w) == 1
         and w[0]["files"] == [note] and w[0]["decision"] == "allow" and
         w[0]["decided_by"] == "gate" and not w[0]["error"] and
         "note.txt" in w[0]["excerpt"],
         "audit: the real CLI's Write is a row with the file it wrote",
         (e[-1], w))
    c.request("stop", session="kill")


def run(d, mock):
    c = d.client()
    wd = os.path.join(d.work, "e2e")
    os.makedirs(wd)
    for f in ("alpha.txt", "beta.c"):
        open(os.path.join(wd, f), "w").close()
    give_tree(wd)

    n0 = len(mock.requests())
    e1 = c.execute("e2e", "[[think]] [[bash:ls]] list the files here",
                   workdir=wd)
    reqs1 = mock.requests()[n0:]
    types = [e["type"] for e in e1]
    t.eq(types[-1], "done", "turn 1 ends done")
    t.ok(e1[-1]["data"]["ok"] and not e1[-1]["data"]["is_error"],
         "turn 1 ok", e1[-1])
    # Order: thinking before the first answer, tool_use, its result, the
    # final answer, stats, done.
    def idx(typ, start=0):
        for i in range(start, len(types)):
            if types[i] == typ:
                return i
        return -1
    i_start, i_think = idx("session_start"), idx("thinking")
    i_ans, i_use = idx("answer"), idx("tool_use")
    i_res = idx("tool_result")
    i_ans2 = idx("answer", i_res + 1 if i_res >= 0 else len(types))
    i_stats = idx("session_stats")
    t.ok(0 == i_start < i_think < i_ans < i_use < i_res < i_ans2 < i_stats <
         len(types) - 1, "turn 1 events in order: session_start, thinking, "
         "answer, tool_use, tool_result, answer, session_stats, done", types)
    use, res = e1[i_use]["data"], e1[i_res]["data"]
    t.ok(use["name"] == "Bash" and use["input"].get("command") == "ls",
         "tool_use Bash ls", use)
    t.ok(res["tool_id"] == use["tool_id"] and not res["is_error"] and
         "alpha.txt" in res["output"] and "beta.c" in res["output"],
         "tool_result carries the real ls output", res)
    final = "".join(e["data"]["text"] for e in e1[i_ans2:i_stats]
                    if e["type"] == "answer")
    t.ok("alpha.txt" in final and final in e1[-1]["data"]["result"],
         "final answer streamed and equal to done.result",
         (final, e1[-1]["data"]["result"]))
    st1 = e1[i_stats]["data"]["last_turn"]
    want = usage_sum(reqs1)
    t.eq({k: st1["tokens"][k] for k in want}, want,
         "turn 1 tokens equal what the mock reported (%d API calls)" %
         len(reqs1))
    t.eq(st1["tokens"]["total"], sum(want.values()), "total = sum")
    t.ok(st1["cost_usd"] > 0 and st1["tool_calls"] == 1 and
         st1["tools"][0]["name"] == "Bash", "cost and tools accounted", st1)
    s1 = first(e1, "session_start")["data"]
    t.ok(s1["cold"] is True, "turn 1 is cold", s1)

    n1 = len(mock.requests())
    e2 = c.execute("e2e", "Say hello.")
    reqs2 = mock.requests()[n1:]
    s2 = first(e2, "session_start")["data"]
    t.eq(e2[-1]["type"], "done", "turn 2 ends done")
    t.eq(s2["cli_pid"], s1["cli_pid"], "turn 2 runs on the same CLI process")
    t.ok(s2["cold"] is False, "turn 2 is warm", s2)
    st = first(e2, "session_stats")["data"]
    want2 = usage_sum(reqs2)
    t.eq({k: st["last_turn"]["tokens"][k] for k in want2}, want2,
         "turn 2 tokens equal what the mock reported")
    t.eq({k: st["tokens"][k] for k in want2},
         {k: want[k] + want2[k] for k in want2}, "session tokens add up")
    t.ok(abs(st["cost_usd"] - (st1["cost_usd"] + st["last_turn"]["cost_usd"]))
         < 1e-9 and st["last_turn"]["cost_usd"] > 0,
         "cost per turn although the CLI's total is cumulative", st)

    # A tool call that writes: the CLI asks (can_use_tool, we pass
    # --permission-prompt-tool stdio) and hotplexd answers allow.
    e2w = c.execute("e2e", "[[bash:touch made-by-tool.txt]] make a file")
    res = first(e2w, "tool_result")
    t.ok(e2w[-1]["type"] == "done" and res and not res["data"]["is_error"]
         and os.path.exists(os.path.join(wd, "made-by-tool.txt")),
         "a writing Bash call is asked for and allowed", res)
    # The files a real Bash call wrote are in its audit row (the worker
    # watches the workdir from the CLI's question to the tool's result).
    e2b = c.execute("e2e", "[[bash:echo 1 > two-a.txt && echo 2 > "
                    "two-b.txt]] write two files")
    two = [os.path.join(wd, "two-a.txt"), os.path.join(wd, "two-b.txt")]
    rows = c.request("audit", session="e2e")["data"]["rows"]
    row = [r for r in rows if "two-a.txt" in (r["excerpt"] or "")]
    t.ok(e2b[-1]["type"] == "done" and len(row) == 1 and
         row[0]["tool"] == "Bash" and sorted(row[0]["files"]) == two and
         row[0]["files_truncated"] is False,
         "audit: the files a real Bash call wrote are in its row", row)
    p = subprocess.run([os.path.join(BDIR, "hotplexctl"), "-S", d.sock,
                        "audit", "e2e"], capture_output=True, text=True,
                       timeout=scaled(60))
    t.ok(p.returncode == 0 and any(two[0] in x and two[1] in x
                                   for x in p.stdout.splitlines()),
         "hotplexctl audit shows both files of the Bash call", p.stdout)

    # Interrupt a stalled turn; the CLI stays.
    rid = c.send("execute", session="e2e", prompt="[[stall]] never finish")
    ev = c.line()
    wait_for(lambda: any(r.get("directives") and "stall" in
                         json.dumps(r["directives"]) for r in
                         mock.requests()[n1 + len(reqs2):]),
             30, "the stalled request to reach the mock")
    t.eq(c.request("interrupt", session="e2e")["type"], "ok", "interrupt ok")
    e3 = [ev] + c.events(rid)
    t.ok(e3[-1]["type"] == "done" and e3[-1]["data"]["interrupted"],
         "interrupted turn ends done interrupted:true", e3[-1])
    e4 = c.execute("e2e", "Still there?")
    t.ok(e4[-1]["type"] == "done" and
         first(e4, "session_start")["data"]["cli_pid"] == s1["cli_pid"],
         "the CLI survives the interrupt", e4[-1])

    # A prompt that starts with '/' reaches the model as text.
    n5 = len(mock.requests())
    e5 = c.execute("e2e", "/cost is what I want to know about")
    reqs5 = mock.requests()[n5:]
    t.ok(e5[-1]["type"] == "done" and len(reqs5) == 1 and
         "/cost is what" in reqs5[0]["human_text"],
         "a leading / is delivered as a prompt, not run", reqs5)

    # Stop ends the conversation: the next turn starts a new one, in a new
    # CLI that does not resume (hotplex-protocol(7), stop).
    pg = s1["pgid"]
    t.eq(c.request("stop", session="e2e")["type"], "ok", "stop ok")
    # The group was killed before stop answered; its members may take a
    # moment to be gone from /proc.
    try:
        wait_for(lambda: not procs_in_group(pg), 10, "the CLI's group")
    except TimeoutError:
        pass
    t.ok(not procs_in_group(pg), "no process of the CLI left after stop",
         procs_in_group(pg))
    n6 = len(mock.requests())
    e6 = c.execute("e2e", "[[echo]] what did I say before?")
    reqs6 = mock.requests()[n6:]
    s6 = first(e6, "session_start")["data"]
    t.ok(e6[-1]["type"] == "done" and s6["cold"] and not s6["resumed"] and
         s6["cli_session_id"] != s1["cli_session_id"],
         "after stop the next turn starts a new conversation", s6)
    res6 = e6[-1]["data"].get("result", "")
    t.ok(len(reqs6) == 1 and "what did I say before?" in res6 and
         "list the files here" not in res6 and "Say hello." not in res6,
         "the model sees none of the stopped conversation's turns", res6)
    c.request("stop", session="e2e")


if __name__ == "__main__":
    main()
