#!/usr/bin/env python3
"""End to end (issue 16): approvals by the app and configure, with the real
pinned CLI against the mock Messages API: the CLI's own can_use_tool,
control_cancel_request, set_model and set_permission_mode."""

import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from hplib import TAP, Daemon, first, wait_for  # noqa: E402
from test_e2e import CLI, OFFLINE_ENV, Mock  # noqa: E402

t = TAP()
CLIENT = {"approvals": "client"}


def until(c, rid, typ):
    seen = []
    while True:
        o = c.line()
        if o is None or o.get("id") != rid:
            if o is None:
                return None, seen
            continue
        seen.append(o)
        if o["type"] == typ:
            return o, seen
        if o["type"] in ("done", "error"):
            return None, seen


def approvals(d):
    c = d.client()
    # The daemon makes the default workdir, owned by the session's user.
    rid = c.send("execute", session="ap", options=CLIENT,
                 prompt="[[bash:touch approved.txt]] make a file")
    pr, _ = until(c, rid, "permission_request")
    wd = [x["workdir"] for x in c.request("sessions")["data"]
          if x["session"] == "ap"][0]
    t.ok(pr is not None and pr["data"]["name"] == "Bash" and
         pr["data"]["input"]["command"] == "touch approved.txt",
         "real CLI: its can_use_tool becomes a permission_request", pr)
    r = c.request("permission", session="ap",
                  request_id=pr["data"]["request_id"], decision="allow")
    rest = c.events(rid)
    res = first(rest, "tool_result")
    t.ok(r["type"] == "ok" and rest[-1]["type"] == "done" and res and
         not res["data"]["is_error"] and
         os.path.exists(os.path.join(wd, "approved.txt")),
         "real CLI: allowed, the tool ran", rest[-2:])

    rid = c.send("execute", session="ap",
                 prompt="[[bash:touch refused.txt]] make another")
    pr, _ = until(c, rid, "permission_request")
    c.request("permission", session="ap",
              request_id=pr["data"]["request_id"], decision="deny",
              message="not this one")
    rest = c.events(rid)
    res = first(rest, "tool_result")
    pd = first(rest, "permission_denied")
    t.ok(rest[-1]["type"] == "done" and res and res["data"]["is_error"] and
         pd and pd["data"]["by"] == "client" and
         not os.path.exists(os.path.join(wd, "refused.txt")),
         "real CLI: denied with a message, the tool did not run",
         (res, pd))

    rid = c.send("execute", session="ap",
                 prompt="[[bash:touch never.txt]] and another")
    pr, _ = until(c, rid, "permission_request")
    i = c.send("interrupt", session="ap")
    rest = c.events(rid)
    pd = first(rest, "permission_denied")
    t.ok(rest[-1]["type"] == "done" and rest[-1]["data"]["interrupted"] and
         pd and pd["data"]["by"] == "interrupt" and
         not os.path.exists(os.path.join(wd, "never.txt")),
         "real CLI: an interrupt denies the waiting request and ends the "
         "turn interrupted", rest[-3:])
    t.eq(c.reply(i)["type"], "ok", "interrupt answered")
    e = c.execute("ap", "Say hello.")
    t.eq(e[-1]["type"], "done", "the session goes on after it")


def configure(d, mock):
    c = d.client()
    e = c.execute("cf", "Say hello.", options={"model": "claude-first"})
    t.eq(e[-1]["type"], "done", "a turn on the first model")
    r = c.request("configure", session="cf", model="claude-second",
                  permission_mode="plan")
    t.eq((r["type"], r.get("data")), ("ok", {"live": True}),
         "real CLI: set_model and set_permission_mode answered success")
    n = len(mock.requests())
    e = c.execute("cf", "Say hello again.")
    models = {q.get("model") for q in mock.requests()[n:]
              if q.get("path", "").startswith("/v1/messages") and
              "count_tokens" not in q.get("path", "")}
    t.ok(e[-1]["type"] == "done" and models == {"claude-second"},
         "real CLI: the next turn asks the API for the configured model",
         models)
    r = c.request("configure", session="cf", model="claude-third")
    t.eq(r.get("data"), {"live": True}, "configured again")
    c.request("reset", session="cf")
    n = len(mock.requests())
    e = c.execute("cf", "Say hello from a new CLI.")
    models = {q.get("model") for q in mock.requests()[n:]
              if "count_tokens" not in q.get("path", "")}
    t.ok(e[-1]["type"] == "done" and models == {"claude-third"},
         "real CLI: a new CLI starts on the configured model", models)


def budget(d):
    """The gateway prices each API call: a turn whose first answer costs
    more than the budget is stopped while it waits for a permission that
    nobody gives."""
    c = d.client()
    rid = c.send("execute", session="bu",
                 options={"approvals": "client", "max_budget_usd": 1},
                 prompt="[[usage:100000]] [[bash:touch costly.txt]] go")
    evs = c.events(rid)
    wd = [x["workdir"] for x in c.request("sessions")["data"]
          if x["session"] == "bu"][0]
    t.ok(sum(1 for e in evs if e["type"] in ("done", "error")) == 1 and
         evs[-1]["type"] == "error" and
         evs[-1]["data"]["code"] == "budget_exceeded" and
         not os.path.exists(os.path.join(wd, "costly.txt")),
         "real CLI: an API answer of $2.50 against max_budget_usd $1 stops "
         "the turn (one terminal line, budget_exceeded)", evs[-3:])
    st = c.request("stats", session="bu")["data"]
    t.ok(st["cost_usd"] >= 2.5, "... its cost counted", st["cost_usd"])
    r = c.execute("bu", "Say hello.")
    t.eq(r[0]["data"]["code"], "budget_exceeded", "real CLI: later turns "
         "refused")


MCP_SERVER = os.path.join(HERE, "mcp_server.py")


def mcp(d, tmp):
    """A session's own stdio MCP server (option mcp_config), started by the
    real CLI from --mcp-config, as the session's user, in its sandbox."""
    c = d.client()
    # A directory anybody may write to: only the sandbox keeps it out.
    opendir = os.path.join(tmp, "open")
    os.mkdir(opendir)
    os.chmod(opendir, 0o777)
    os.chmod(tmp, 0o711)
    outside = os.path.join(opendir, "mcp-outside.txt")
    # The server's source goes in its arguments: the sandbox lets the
    # session read the system and its own dirs, not this tree.
    with open(MCP_SERVER) as f:
        src = f.read()
    cfg = {"mcpServers": {"hp": {"command": "python3",
                                 "args": ["-c", src, outside]}}}
    e = c.execute("mc", "[[tool:mcp__hp__whoami:{}]] who are you",
                  options={"mcp_config": cfg})
    res = first(e, "tool_result")
    row = [x for x in c.request("sessions")["data"]
           if x["session"] == "mc"][0]
    with open("/proc/%d/status" % row["cli_pid"]) as f:
        uid = [int(l.split()[1]) for l in f if l.startswith("Uid:")][0]
    out = res["data"]["output"] if res else ""
    t.ok(e[-1]["type"] == "done" and res and not res["data"]["is_error"] and
         ("mcp-uid=%d " % uid) in out and
         ("cwd=" + row["workdir"]) in out,
         "real CLI: the session's MCP server answers its tool call, as the "
         "session's user, in its workdir", (out, uid, e[-2:]))
    ll = c.request("status")["data"]["isolation"]["landlock"]
    if ll["mode"] != "off" and ll["abi"] > 0:
        t.ok("wrote-outside=no" in out and not os.path.exists(outside),
             "... confined: it cannot write to a world-writable directory "
             "outside the session", (out, ll))
    else:
        t.skip("MCP server confined by Landlock", "landlock: %r" % ll)
    bad = c.execute("mc2", "hi", options={"mcp_config": {"mcpServers": {
        "web": {"type": "http", "url": "http://example.com/"}}}})
    t.ok(bad[0]["type"] == "error" and
         bad[0]["data"]["code"] == "bad_request",
         "an http MCP server is refused (stdio only)", bad)


def mcp_refused(d):
    c = d.client()
    r = c.execute("mr", "hi", options={"mcp_config": {"mcpServers": {
        "hp": {"command": "python3", "args": [MCP_SERVER]}}}})
    t.ok(r[0]["type"] == "error" and r[0]["data"]["code"] == "bad_request"
         and "allow_session_mcp" in r[0]["data"]["message"],
         "mcp_config without allow_session_mcp: refused", r)


BG = ('[[noteslow:%d]] [[tool:Bash:{"command":"sleep 1; echo bg-done",'
      '"description":"bg","run_in_background":true}]] in the background')
NOTE_SLOW_MS = 3000     # the CLI's own turn lasts two deltas of this


def own_turn(d, mock):
    """The CLI starts a turn of its own when a background task ends
    (fixture background_turn): a client's execute sent meanwhile waits for
    it and gets its own answer, never the CLI's."""
    c = d.client()
    e = c.execute("bg", BG % NOTE_SLOW_MS)
    t.ok(e[-1]["type"] == "done" and "running in background" in
         (e[-1]["data"]["result"] or ""),
         "real CLI: a turn that leaves a task in the background", e[-1])
    # A follower sees the CLI's own turn.
    fo = d.client()
    fo.request("attach", session="bg", since_seq=e[-1]["seq"])
    # The CLI's own turn has begun when the mock sees its request.
    wait_for(lambda: any(q.get("directives") == ["slow"]
                         for q in mock.requests()), 60,
             "the CLI's own turn (the notification's request)")
    e = c.execute("bg", "Say hello.")
    evs = [x for x in e if x["type"] == "answer"]
    t.ok(e[-1]["type"] == "done" and
         e[-1]["data"]["result"] == "Mock answer to: Say hello." and
         not any("Noted" in json.dumps(x) for x in e),
         "real CLI: an execute during the CLI's own turn gets its own "
         "answer, none of the CLI's turn", (e[-1], len(evs)))
    with open(d.log) as f:
        t.ok("waits for the CLI's own turn" in f.read(),
             "... it waited for the CLI's own turn to end")
    own = []          # the follower's lines of the CLI's own turn
    while True:
        o = fo.line()
        if o is None:
            break
        if o.get("origin") == "cli":
            own.append(o)
        if o["type"] == "cli_turn":
            break
    t.ok(own and own[-1]["type"] == "cli_turn" and
         all(o.get("origin") == "cli" and o["id"] is None for o in own) and
         own[-1]["data"]["origin"]["kind"] == "task-notification" and
         "Noted" in (own[-1]["data"].get("result") or "") and
         any(o["type"] == "answer" for o in own),
         "real CLI: the followers get the CLI's own turn, marked origin "
         "cli, ending with cli_turn {origin, result, stats}",
         [(o["type"], o.get("origin")) for o in own][-5:])
    st = c.request("stats", session="bg")["data"]
    t.eq(st["turns"], 3, "its turn counts in the session's stats (two "
         "executes and the CLI's own)")
    e = c.execute("bg", "Say bye.")
    t.eq(e[-1]["data"].get("result"), "Mock answer to: Say bye.",
         "real CLI: the next turn is in step")


def rate_limit(d):
    """The gateway reads the API's anthropic-ratelimit-* headers of the
    real CLI's requests (the CLI itself writes no rate_limit_event with an
    API key, even when they say rejected: FINDINGS.md)."""
    c = d.client()
    e = c.execute("rl", "[[ratelimit:allowed_warning:0.9]] hi")
    t.eq(e[-1]["type"], "done", "real CLI: a turn whose answer shows the "
         "account at 90% of a limit ends")
    # The gateway's record and the CLI's result race: wait for the state.
    wait_for(lambda: c.request("status")["data"]["rate_limit"]["over"], 30,
             "the gateway's record")
    row = [x for x in c.request("sessions")["data"]
           if x["session"] == "rl"][0]
    rl = row.get("rate_limit") or {}
    t.ok(row["rate_limits"] >= 1 and rl.get("source") == "gateway" and
         abs(rl.get("utilization", 0) - 0.9) < 1e-6 and
         rl.get("rateLimitType") == "requests",
         "real CLI: the gateway's rate_limit (threshold 80) is the "
         "session's last", row)
    r = c.execute("rl", "hi again")
    t.ok(len(r) == 1 and r[0]["data"].get("code") == "rate_limited" and
         0 < r[0]["data"]["retry_after_ms"] <= 3600 * 1000,
         "real CLI: rate_limit_admission refuses the next turn at once "
         "(rate_limited, retry_after_ms until the reset)", r)


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("e2e apps with the real CLI", CLI + " not installed")
        t.done()
    tmp = tempfile.mkdtemp(prefix="hpe2eapps.")
    mock = Mock(tmp)
    env = mock.env()
    try:
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s"}, env=env) as d:
            approvals(d)
            configure(d, mock)
            budget(d)
            mcp_refused(d)
            own_turn(d, mock)
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s", "allow_session_mcp": "yes",
                     "landlock": "best_effort",
                     "rate_limit_admission": "on",
                     "rate_limit_threshold": "80"},
                    env=env) as d:
            mcp(d, tmp)
            rate_limit(d)       # last: the account stays over for an hour
    finally:
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
