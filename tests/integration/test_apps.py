"""What applications drive (issue 16), with tests/fake-claude: queued
turns (execute with "queue": true) and approvals by the app (option
approvals "client", op permission)."""

import http.client
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hplib
from hplib import Daemon, TAP, terminal_count, wait_for

t = TAP()


def lines_until_terminal(c, rids):
    """Every line of the given requests until each has its terminal line
    (done or error; ok for other ops), in the order they came."""
    out = []
    left = set(rids)
    while left:
        o = c.line()
        if o is None:
            break
        if o.get("id") in rids:
            out.append(o)
            if o["type"] in ("done", "error", "ok"):
                left.discard(o["id"])
    return out


def of(lines, rid):
    return [o for o in lines if o.get("id") == rid]


def test_queue_order():
    with Daemon({"max_queued_turns": "2"}) as d:
        c = d.client()
        # One connection, requests in one go: the daemon reads them in
        # order, so A runs and B, C queue, whatever the timing.
        a = c.send("execute", session="q", prompt="stream:2")
        b = c.send("execute", session="q", prompt="echo second", queue=True)
        cc = c.send("execute", session="q", prompt="echo third", queue=True)
        x = c.send("execute", session="q", prompt="echo refused",
                   queue=True)
        y = c.send("execute", session="q", prompt="not queued")
        ls = lines_until_terminal(c, [a, b, cc, x, y])
        qb, qc = of(ls, b)[0], of(ls, cc)[0]
        t.eq((qb["type"], qb["data"], "seq" in qb), ("queued",
             {"position": 1}, False), "a queued execute is told its "
             "position, on a line without seq")
        t.eq((qc["type"], qc["data"]["position"]), ("queued", 2),
             "the second one is at position 2")
        ex, ey = of(ls, x), of(ls, y)
        t.ok(len(ex) == 1 and ex[0]["type"] == "error" and
             ex[0]["data"]["code"] == "session_busy" and
             "max_queued_turns" in ex[0]["data"]["message"],
             "past max_queued_turns: session_busy", ex)
        t.ok(len(ey) == 1 and ey[0]["data"]["code"] == "session_busy",
             "an execute without queue on a busy session: session_busy")
        order = [o["id"] for o in ls if o["type"] == "session_start"]
        t.eq(order, [a, b, cc], "queued turns run in order, after the "
             "running one")
        for rid in (a, b, cc):
            t.eq(terminal_count(of(ls, rid)), 1,
                 "one terminal line for %s" % rid)
        done_b = of(ls, b)[-1]
        t.ok(done_b["type"] == "done" and
             done_b["data"]["result"].startswith("echo second"),
             "the queued turn ran its own prompt", done_b)
        seqs = [o["seq"] for o in ls if "seq" in o]
        t.eq(seqs, list(range(1, len(seqs) + 1)),
             "the turns' lines are numbered without gaps across them")
        st = c.request("stats", session="q")
        t.eq(st["data"]["turns"], 3, "three turns counted")
        # A queued turn behind one that is starting (a new CLI).
        c.request("reset", session="q")
        a = c.send("execute", session="q", prompt="stream:1")
        b = c.send("execute", session="q", prompt="stream:1", queue=True)
        ls = lines_until_terminal(c, [a, b])
        t.eq([o["type"] for o in of(ls, b)][:2], ["queued", "session_start"],
             "a turn queued behind a cold start runs after it")
        t.ok(of(ls, a)[0]["data"]["cold"] and
             not of(ls, b)[1]["data"]["cold"], "... in the CLI started "
             "for the first one")
        bad = c.request("execute", session="q", prompt="x", queue="yes")
        t.eq(bad["data"]["code"], "bad_request", "queue must be a boolean")


def test_queue_cancel():
    with Daemon() as d:
        c = d.client()
        a = c.send("execute", session="k", prompt="stall")
        b = c.send("execute", session="k", prompt="b", queue=True)
        cc = c.send("execute", session="k", prompt="c", queue=True)
        c.reply(a)          # session_start: A runs
        s = [x for x in c.request("sessions")["data"]
             if x["session"] == "k"]
        t.eq(s[0]["queued"], 2, "sessions shows the queued turns")
        i = c.send("interrupt", session="k")
        ls = lines_until_terminal(c, [a, b, cc, i])
        for rid in (b, cc):
            e = of(ls, rid)
            t.ok(e[-1]["type"] == "error" and
                 e[-1]["data"]["code"] == "cancelled" and
                 "seq" not in e[-1] and terminal_count(e) == 1,
                 "interrupt cancels a queued turn (error cancelled)", e)
        ids = [o["id"] for o in ls]
        t.ok(ids.index(cc) < ids.index(i) and
             of(ls, a)[-1]["data"]["interrupted"],
             "... before its ok; the running turn is interrupted")
        t.eq([o["type"] for o in ls if o["id"] == a].count("session_start"),
             0, "(A's start was read before)")
        # stop
        a = c.send("execute", session="k", prompt="stall")
        b = c.send("execute", session="k", prompt="b", queue=True)
        c.reply(a)
        st = c.send("stop", session="k")
        ls = lines_until_terminal(c, [a, b])
        t.ok(of(ls, b)[-1]["data"]["code"] == "cancelled" and
             of(ls, a)[-1]["data"]["terminal_reason"] == "stopped",
             "stop cancels queued turns and ends the running one")
        t.eq(c.reply(st)["type"], "ok", "stop answers ok")


def test_queue_client_gone():
    """A queued turn whose client left still runs; its lines reach the
    followers."""
    with Daemon() as d:
        x, y, z = d.client(), d.client(), d.client()
        a = x.send("execute", session="g", prompt="delay:50 stream:4")
        x.reply(a)
        b = y.send("execute", session="g", prompt="echo from-y", queue=True,
                   id="y1")
        t.eq(y.reply(b)["type"], "queued", "queued from a second client")
        y.close()
        z.request("attach", session="g", since_seq=0)
        evs = x.events(a)
        t.eq(evs[-1]["type"], "done", "the running turn ends")
        got = []
        while True:
            o = z.line()
            if o is None:
                break
            if o.get("id") == b:
                got.append(o)
                if o["type"] in ("done", "error"):
                    break
        t.ok(got and got[-1]["type"] == "done" and
             got[-1]["data"]["result"].startswith("echo from-y"),
             "the queued turn of a client that left runs; a follower "
             "sees it", got[-3:])


def test_queue_shutdown():
    d = Daemon({"drain_timeout": "30s"})
    with d:
        c = d.client()
        a = c.send("execute", session="s", prompt="delay:100 stream:5")
        b = c.send("execute", session="s", prompt="b", queue=True)
        c.reply(a)
        d.proc.send_signal(signal.SIGTERM)
        ls = lines_until_terminal(c, [a, b])
        t.eq(of(ls, b)[-1]["data"]["code"], "shutting_down",
             "SIGTERM refuses queued turns (shutting_down)")
        t.eq(of(ls, a)[-1]["type"], "done",
             "... and lets the running one finish")
        t.eq(d.proc.wait(hplib.scaled(hplib.REPLY_TIMEOUT_S)), 0,
             "the daemon exits 0")


CLIENT = {"approvals": "client"}


def until(c, rid, typ):
    """Lines of rid up to the first of type typ (None if the turn ended
    first); the lines read are returned too."""
    seen = []
    while True:
        o = c.line()
        if o is None:
            return None, seen
        if o.get("id") != rid:
            continue
        seen.append(o)
        if o["type"] == typ:
            return o, seen
        if o["type"] in ("done", "error"):
            return None, seen


def state_of(c, sess):
    return [x["state"] for x in c.request("sessions")["data"]
            if x["session"] == sess][0]


def test_approvals():
    with Daemon() as d:
        c = d.client()
        # allow
        rid = c.send("execute", session="ap", prompt="tool:echo allowed-ran",
                     options=CLIENT)
        pr, _ = until(c, rid, "permission_request")
        t.ok(pr is not None and pr["data"]["name"] == "Bash" and
             pr["data"]["input"]["command"] == "echo allowed-ran" and
             pr["data"]["request_id"] and pr["data"]["tool_id"],
             "approvals client: a permission_request event with "
             "request_id, tool_id, name, input", pr)
        t.eq(state_of(c, "ap"), "waiting_approval",
             "sessions shows waiting_approval while it waits")
        req = pr["data"]["request_id"]
        t.eq(c.request("permission", session="ap", request_id=req,
                       decision="allow")["type"], "ok", "permission allow")
        rest = c.events(rid)
        res = hplib.first(rest, "tool_result")
        t.ok(res and not res["data"]["is_error"] and
             "allowed-ran" in res["data"]["output"] and
             rest[-1]["type"] == "done", "the allowed tool ran", rest[-3:])
        late = c.request("permission", session="ap", request_id=req,
                         decision="deny")
        t.eq(late["data"]["code"], "not_found",
             "a second answer gets not_found")
        t.eq(state_of(c, "ap"), "ready", "ready again after the turn")

        # deny with a message
        rid = c.send("execute", session="ap", prompt="tool:echo no")
        pr, _ = until(c, rid, "permission_request")
        c.request("permission", session="ap",
                  request_id=pr["data"]["request_id"], decision="deny",
                  message="not today")
        rest = c.events(rid)
        pd = hplib.first(rest, "permission_denied")
        t.ok(pd and pd["data"]["by"] == "client" and
             pd["data"]["reason"] == "not today" and
             hplib.first(rest, "tool_result")["data"]["is_error"],
             "deny: permission_denied by client with the message", pd)
        st = c.request("stats", session="ap")["data"]
        t.eq(st["permission_denials"], 1, "the denial is counted")

        # updated_input, and the daemon's rules on it
        rid = c.send("execute", session="ap", prompt="tool:echo original")
        pr, _ = until(c, rid, "permission_request")
        c.request("permission", session="ap",
                  request_id=pr["data"]["request_id"], decision="allow",
                  updated_input={"command": "echo rewritten"})
        rest = c.events(rid)
        out = hplib.first(rest, "tool_result")["data"]["output"]
        t.ok("rewritten" in out and "original" not in out,
             "allow with updated_input runs the app's input", out)

        # bad answers
        bad = c.request("permission", session="ap", request_id="x",
                        decision="maybe")
        t.eq(bad["data"]["code"], "bad_request", "decision must be allow "
             "or deny")
        t.eq(c.request("permission", session="ap", request_id="nosuch",
                       decision="allow")["data"]["code"], "not_found",
             "an unknown request_id: not_found")
        bad = c.request("execute", session="ap2", prompt="x",
                        options={"approvals": "app"})
        t.eq(bad["data"]["code"], "bad_request", "approvals is daemon or "
             "client")

        # two clients answer; the follower sees the request
        f = d.client()
        rid = c.send("execute", session="ap", prompt="tool:echo two")
        pr, _ = until(c, rid, "permission_request")
        f.request("attach", session="ap", since_seq=pr["seq"] - 1)
        fo = f.line()
        t.ok(fo["type"] == "permission_request" and
             fo["data"] == pr["data"], "a follower gets the "
             "permission_request")
        req = pr["data"]["request_id"]
        a1 = f.send("permission", session="ap", request_id=req,
                    decision="allow")
        a2 = c.send("permission", session="ap", request_id=req,
                    decision="deny")
        r1, r2 = f.reply(a1), c.reply(a2)
        t.ok(r1["type"] == "ok" and r2["data"]["code"] == "not_found",
             "two clients answer: the first wins, the other gets "
             "not_found", (r1, r2))
        rest = c.events(rid)
        t.ok(not hplib.first(rest, "tool_result")["data"]["is_error"],
             "... and the first answer (allow) holds")

        # the audit says the app decided, and which uid answered
        r = c.request("audit", session="ap")
        rows = r["data"]["rows"] if r["type"] == "audit" else []
        allowed = [x for x in rows if x["decision"] == "allow"]
        denied = [x for x in rows if x["decision"] == "deny"]
        me = "by uid %d" % os.getuid()
        t.ok(len(allowed) == 3 and all(
             x["decided_by"] == "app" and me in (x["detail"] or "")
             for x in allowed), "a call the app allowed is audited as "
             "decided_by app, with the answering uid", allowed)
        t.ok(len(denied) == 1 and denied[0]["decided_by"] == "app" and
             "not today" in denied[0]["detail"] and
             me in denied[0]["detail"], "... and one it denied too", denied)


def test_approval_timeout_interrupt():
    with Daemon({"approval_timeout": "300ms"}) as d:
        c = d.client()
        rid = c.send("execute", session="to", prompt="tool:echo late",
                     options=CLIENT)
        evs = c.events(rid)
        pd = hplib.first(evs, "permission_denied")
        t.ok(hplib.first(evs, "permission_request") and pd and
             pd["data"]["by"] == "timeout" and evs[-1]["type"] == "done",
             "unanswered for approval_timeout: denied by timeout", pd)
        # the option wins over the config key
        rid = c.send("execute", session="to2", prompt="tool:echo late",
                     options={"approvals": "client",
                              "approval_timeout_ms": 60000})
        pr, _ = until(c, rid, "permission_request")
        i = c.send("interrupt", session="to2")
        rest = c.events(rid)
        pd = hplib.first(rest, "permission_denied")
        t.ok(pd and pd["data"]["by"] == "interrupt" and
             rest[-1]["type"] == "done" and
             rest[-1]["data"]["interrupted"],
             "interrupt denies the waiting request and interrupts the "
             "turn (approval_timeout_ms kept it waiting)", rest[-3:])
        t.eq(c.reply(i)["type"], "ok", "interrupt ok")
        t.eq(c.request("permission", session="to2",
                       request_id=pr["data"]["request_id"],
                       decision="allow")["data"]["code"], "not_found",
             "an answer after the interrupt: not_found")
        # The CLI withdraws the question itself (SIGINT to it: as recorded,
        # control_cancel_request): permission_cancelled.
        rid = c.send("execute", session="to2", prompt="tool:echo cancel")
        pr, seen = until(c, rid, "permission_request")
        cli = [o for o in seen if o["type"] == "session_start"][0]
        os.kill(cli["data"]["cli_pid"], signal.SIGINT)
        rest = c.events(rid)
        pc = hplib.first(rest, "permission_cancelled")
        t.ok(pc and pc["data"]["request_id"] ==
             pr["data"]["request_id"] and pc["data"]["name"] == "Bash",
             "control_cancel_request: permission_cancelled", rest[-4:])
        t.eq(terminal_count(rest), 1, "one terminal line")
        t.eq(c.request("permission", session="to2",
                       request_id=pr["data"]["request_id"],
                       decision="allow")["data"]["code"], "not_found",
             "a withdrawn request: not_found")


def answer(evs):
    d = [e for e in evs if e["type"] == "done"]
    return d[0]["data"]["result"] if d else None


def argv_opt(d, flag):
    argv = d.cli_starts()[-1]["argv"]
    return argv[argv.index(flag) + 1] if flag in argv else None


MCP = {"mcpServers": {"hp": {"command": "python3",
                              "args": ["-c", "print(1)"],
                              "env": {"HP_X": "1"}}}}


def test_mcp_config():
    with Daemon() as d:
        c = d.client()
        r = c.request("open", session="m0", options={"mcp_config": MCP})
        t.ok(r["type"] == "error" and r["data"]["code"] == "bad_request" and
             "allow_session_mcp" in r["data"]["message"],
             "mcp_config needs allow_session_mcp (off by default)", r)
    with Daemon({"allow_session_mcp": "yes"}) as d:
        c = d.client()
        for bad, what in (
                ({"hp": {}}, "not under mcpServers"),
                ({"mcpServers": {"hp": {"args": []}}}, "no command"),
                ({"mcpServers": {"hp": {"type": "http",
                                        "url": "http://x/"}}}, "http"),
                ({"mcpServers": {"a b": {"command": "x"}}}, "a bad name"),
                ({"mcpServers": {"hp": {"command": "x", "args": [1]}}},
                 "args not strings"),
                ({"mcpServers": {"s%d" % i: {"command": "x"}
                                 for i in range(17)}}, "17 servers")):
            r = c.request("open", session="m1", options={"mcp_config": bad})
            t.eq(r["data"].get("code"), "bad_request",
                 "mcp_config refused: " + what)
        t.eq(c.request("open", session="m2",
                       options={"mcp_config": MCP})["type"], "ok",
             "open with mcp_config")
        argv = d.cli_starts()[-1]["argv"]
        path = [a.split("=", 1)[1] for a in argv
                if a.startswith("--mcp-config=")]
        t.ok(len(path) == 1 and "--strict-mcp-config" in argv,
             "the CLI gets --mcp-config=FILE and --strict-mcp-config", argv)
        if path:
            st = os.stat(path[0])
            with open(path[0]) as f:
                got = json.load(f)
            t.ok(got == MCP and st.st_mode & 0o777 == 0o600 and
                 path[0].startswith(d.dir),
                 "... a private file in the session's config dir holding "
                 "the servers", (path[0], oct(st.st_mode), got))


def test_configure():
    with Daemon({"allowed_permission_modes": "default plan acceptEdits "
                 "bypassPermissions"}) as d:
        c = d.client()
        evs = c.execute("cf", "settings", options={"model": "m1"})
        t.ok(answer(evs).startswith("model:m1 "),
             "the CLI starts with the session's model", answer(evs))
        r = c.request("configure", session="cf", model="m2",
                      permission_mode="plan")
        t.eq((r["type"], r.get("data")), ("ok", {"live": True}),
             "configure on a running CLI: ok, live")
        evs = c.execute("cf", "settings")
        t.ok(answer(evs).startswith("model:m2 mode:plan"),
             "set_model and set_permission_mode reached the CLI",
             answer(evs))
        # During a turn: the CLI answers control requests while it works.
        rid = c.send("execute", session="cf", prompt="stall")
        c.reply(rid)
        r = c.request("configure", session="cf", model="m3")
        t.eq(r.get("data"), {"live": True}, "configure while a turn runs")
        c.request("interrupt", session="cf")
        c.events(rid)
        # Kept across CLIs and daemon restarts.
        c.request("reset", session="cf")
        c.execute("cf", "hi")
        t.eq((argv_opt(d, "--model"), argv_opt(d, "--permission-mode")),
             ("m3", "plan"), "a new CLI gets the configured settings")
        d.stop()
        d.start()
        c = d.client()
        r = c.request("configure", session="cf", permission_mode="default")
        t.eq(r.get("data"), {"live": False},
             "configure on a session without a CLI: kept, not live")
        evs = c.execute("cf", "settings")
        t.ok(answer(evs).startswith("model:m3 mode:default"),
             "after a daemon restart the CLI runs the configured settings",
             answer(evs))
        bad = c.request("configure", session="cf")
        t.eq(bad["data"]["code"], "bad_request", "configure needs a setting")
        bad = c.request("configure", session="cf", model="-x")
        t.eq(bad["data"]["code"], "bad_request", "a model starting with -")
        bad = c.request("configure", session="nosuch", model="m")
        t.eq(bad["data"]["code"], "not_found", "configure of no session")
    with Daemon() as d:
        c = d.client()
        c.execute("cm", "hi")
        bad = c.request("configure", session="cm",
                        permission_mode="bypassPermissions")
        t.ok(bad["data"]["code"] == "bad_request" and
             "allowed_permission_modes" in bad["data"]["message"],
             "by default bypassPermissions is not allowed", bad)
        bad = c.request("execute", session="cm2", prompt="x",
                        options={"permission_mode": "bypassPermissions"})
        t.eq(bad["data"]["code"], "bad_request", "... in options neither")
        t.eq(c.request("configure", session="cm",
                       permission_mode="acceptEdits")["type"], "ok",
             "acceptEdits is")


def test_budget():
    with Daemon({"max_budget_ceiling_usd": "5"}) as d:
        c = d.client()
        evs = c.execute("b", "cost:0.02", options={"max_budget_usd": 0.01})
        t.eq(evs[-1]["type"], "done", "the turn that crosses the budget ends")
        r = c.execute("b", "hi")
        t.ok(len(r) == 1 and r[0]["data"]["code"] == "budget_exceeded" and
             "seq" not in r[0], "a session past max_budget_usd refuses "
             "turns (budget_exceeded)", r)
        r = c.execute("b", "hi", queue=True)
        t.eq(r[0]["data"]["code"], "budget_exceeded", "... queued ones too")
        t.eq(c.request("configure", session="b",
                       max_budget_usd=1)["data"], {"live": False},
             "configure raises max_budget_usd")
        t.eq(c.execute("b", "hi")[-1]["type"], "done", "turns run again")
        bad = c.request("configure", session="b", max_budget_usd=10)
        t.eq(bad["data"]["code"], "bad_request",
             "max_budget_usd above max_budget_ceiling_usd is refused")
    with Daemon({"max_budget_usd": "0.01"}) as d:
        c = d.client()
        c.execute("b", "cost:0.02")
        t.eq(c.execute("b", "hi")[0]["data"]["code"], "budget_exceeded",
             "the config's max_budget_usd is the default")


class Upstream:
    """A plain-HTTP model API for the gateway (api_upstream): each POST
    answers a whole message whose usage, and anthropic-ratelimit-*
    headers, the request's body names (the test plays the CLI)."""

    def __init__(self):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                req = json.loads(self.rfile.read(n) or b"{}")
                b = json.dumps({"id": "msg_up", "type": "message",
                                "role": "assistant",
                                "model": req.get("model", "claude-opus-4-8"),
                                "content": [], "stop_reason": "end_turn",
                                "usage": req.get("usage", {})}).encode()
                self.send_response(req.get("status", 200))
                for k, v in req.get("headers", {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def conf(self, more=None):
        c = {"api_upstream": "http://127.0.0.1:%d" % self.port}
        c.update(more or {})
        return c

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


UP_ENV = {"ANTHROPIC_API_KEY": "sk-test-upstream"}


def api_call(c, sess, body):
    """One API call through the gateway with the session's token, as its
    CLI would make it."""
    row = [x for x in c.request("sessions")["data"]
           if x["session"] == sess][0]
    env = hplib.cli_environ(row["cli_pid"])
    port = int(env[b"ANTHROPIC_BASE_URL"].decode().rsplit(":", 1)[1])
    h = http.client.HTTPConnection("127.0.0.1", port,
                                   timeout=hplib.scaled(hplib.REPLY_TIMEOUT_S))
    h.request("POST", "/v1/messages?beta=true", body=json.dumps(body),
              headers={"content-type": "application/json",
                       "x-api-key": env[b"ANTHROPIC_API_KEY"].decode(),
                       "anthropic-version": "2023-06-01"})
    r = h.getresponse()
    r.read()
    h.close()
    return r.status


# 100,000 output tokens of the default model: $2.50.
BIG = {"usage": {"input_tokens": 10, "output_tokens": 100000}}


def recorded(c, sess, n):
    """Waits until the master has the gateway's record of n API calls of
    sess: the client's answer and the record race."""
    wait_for(lambda: c.request("stats", session=sess)["data"]["gateway"][
        "requests"] >= n, 30, "the gateway's record")


def stalled_turn(c, sess, **options):
    """A turn that runs until interrupted (the fake CLI stalls), once its
    session_start is read: the turn is on the CLI."""
    rid = c.send("execute", session=sess, prompt="stall", options=options)
    st, _ = until(c, rid, "session_start")
    assert st is not None
    return rid


def test_budget_stops_turn(up):
    with Daemon(up.conf({"max_ended_sessions": "0"}), env=UP_ENV) as d:
        c = d.client()
        rid = stalled_turn(c, "bs", max_budget_usd=1)
        t.eq(api_call(c, "bs", BIG), 200, "an API call through the gateway")
        evs = c.events(rid)
        t.ok(terminal_count(evs) == 1 and evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "budget_exceeded",
             "an API call that takes a session past max_budget_usd stops "
             "its running turn: one terminal line, error budget_exceeded",
             evs[-3:])
        st = c.request("stats", session="bs")["data"]
        t.ok(st["cost_usd"] >= 2.5 and st["errors"] == 1,
             "the gateway's price of the calls is the turn's cost "
             "(the interrupted CLI reports less)", st)
        r = c.execute("bs", "hi")
        t.eq(r[0]["data"]["code"], "budget_exceeded",
             "later turns are refused")
        # under the budget: the turn goes on
        rid = stalled_turn(c, "bs2", max_budget_usd=10)
        api_call(c, "bs2", BIG)
        recorded(c, "bs2", 1)
        c.request("interrupt", session="bs2")
        evs = c.events(rid)
        t.ok(evs[-1]["type"] == "done" and terminal_count(evs) == 1,
             "a call under the budget does not stop the turn", evs[-2:])
    with Daemon(up.conf({"uid_budget_usd": "4",
                         "max_ended_sessions": "0"}), env=UP_ENV) as d:
        c = d.client()
        rid = stalled_turn(c, "u1")
        api_call(c, "u1", BIG)
        recorded(c, "u1", 1)
        c.request("interrupt", session="u1")
        t.eq(c.events(rid)[-1]["type"], "done", "uid_budget_usd: $2.50 of "
             "$4 is under it")
        rid = stalled_turn(c, "u2")
        api_call(c, "u2", BIG)
        evs = c.events(rid)
        t.ok(evs[-1]["type"] == "error" and
             evs[-1]["data"]["code"] == "budget_exceeded" and
             terminal_count(evs) == 1,
             "a turn that takes the uid's sessions past uid_budget_usd "
             "stops (budget_exceeded)", evs[-2:])
        r = c.execute("u3", "hi")
        t.ok(r[0]["data"]["code"] == "budget_exceeded" and
             "uid_budget_usd" in r[0]["data"]["message"],
             "a new session of that uid is refused", r)
        # stopped sessions leave the table (max_ended_sessions 0): their
        # cost stays with the uid, in the store too
        for x in ("u1", "u2", "u3"):
            c.request("stop", session=x)
        left = [x["session"] for x in c.request("sessions")["data"]]
        t.eq(left, [], "(the stopped sessions are forgotten)")
        r = c.execute("u4", "hi")
        t.eq(r[0]["data"]["code"], "budget_exceeded",
             "forgotten sessions still count")
        d.stop()
        d.start()
        c = d.client()
        r = c.execute("u5", "hi")
        t.eq(r[0]["data"]["code"], "budget_exceeded",
             "... after a restart too (the store keeps the uid's total)")


def rl_headers(remaining, reset_s=60):
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                          time.gmtime(time.time() + reset_s))
    return {"anthropic-ratelimit-requests-limit": "100",
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset}


def test_rate_limit_admission(up):
    with Daemon(up.conf({"rate_limit_admission": "on",
                         "rate_limit_threshold": "80"}), env=UP_ENV) as d:
        c = d.client()
        rid = stalled_turn(c, "r1")
        api_call(c, "r1", {"headers": rl_headers(10)})
        while True:
            ev, _ = until(c, rid, "system")
            if ev is None or ev["data"]["subtype"] == "rate_limit":
                break
        t.ok(ev is not None and ev["data"]["subtype"] == "rate_limit" and
             ev["data"]["source"] == "gateway" and
             ev["data"]["status"] == "allowed_warning" and
             abs(ev["data"]["utilization"] - 0.9) < 1e-9 and
             ev["data"]["rateLimitType"] == "requests" and
             0 < ev["data"]["retry_after_ms"] <= 60000,
             "an answer with 90% of a limit used (threshold 80): system "
             "rate_limit from the gateway", ev)
        c.request("interrupt", session="r1")
        c.events(rid)
        r = c.execute("r2", "hi")
        t.ok(len(r) == 1 and r[0]["type"] == "error" and
             r[0]["data"]["code"] == "rate_limited" and
             0 < r[0]["data"]["retry_after_ms"] <= 60000,
             "rate_limit_admission: a new turn is refused at once "
             "(rate_limited, retry_after_ms)", r)
        st = c.request("status")["data"]["rate_limit"]
        t.ok(st["over"] and st["rateLimitType"] == "requests",
             "status shows the account over", st)
        row = [x for x in c.request("sessions")["data"]
               if x["session"] == "r1"][0]
        t.ok(row["rate_limits"] == 1 and
             row["rate_limit"]["source"] == "gateway",
             "sessions counts the gateway's event", row)
        # an answer under the threshold: turns run again
        api_call(c, "r1", {"headers": rl_headers(50)})
        wait_for(lambda: not c.request("status")["data"]["rate_limit"][
            "over"], 10, "the gateway's record")
        t.eq(c.execute("r2", "hi")[-1]["type"], "done",
             "under the threshold again: the turn runs")
        # a 429 with retry-after
        api_call(c, "r1", {"status": 429, "headers": {"retry-after": "30"}})
        wait_for(lambda: c.request("status")["data"]["rate_limit"]["over"],
                 10, "the gateway's record")
        r = c.execute("r2", "hi")
        t.ok(r[0]["data"]["code"] == "rate_limited" and
             0 < r[0]["data"]["retry_after_ms"] <= 30000,
             "after a 429: refused for its retry-after", r)
    with Daemon(up.conf(), env=UP_ENV) as d:
        c = d.client()
        c.execute("r3", "hi")
        api_call(c, "r3", {"status": 429, "headers": {"retry-after": "30"}})
        wait_for(lambda: c.request("status")["data"]["rate_limit"]["over"],
                 10, "the gateway's record")
        t.eq(c.execute("r3", "hi")[-1]["type"], "done",
             "rate_limit_admission off (the default): turns still run")


def test_own_turn():
    """A turn the CLI starts by itself (fake CLI bgturn: it lasts until the
    host's next control request): an execute meanwhile waits for it and
    gets its own answer; followers see it; it counts; an interrupt ends a
    waiting execute at once."""
    with Daemon() as d:
        c, fo = d.client(), d.client()
        e = c.execute("ow", "bgturn hello one")
        t.eq(e[-1]["type"], "done", "a turn after which the CLI starts "
             "one of its own")
        fo.request("attach", session="ow", since_seq=e[-1]["seq"])
        o = fo.line()
        t.ok(o is not None and o.get("origin") == "cli" and
             o["id"] is None, "followers get the CLI's own turn, marked "
             "origin cli", o)
        rid = c.send("execute", session="ow", prompt="echo hello two")
        wait_for(lambda: "waits for the CLI's own turn" in
                 open(d.log).read(), 30, "the execute to wait")
        t.eq(c.request("configure", session="ow", model="m2")["type"], "ok",
             "(a control request ends the fake CLI's own turn)")
        evs = c.events(rid)
        t.ok(evs[-1]["type"] == "done" and
             evs[-1]["data"]["result"].startswith("echo hello two ") and
             terminal_count(evs) == 1
             and not any(x.get("origin") for x in evs),
             "an execute during the CLI's own turn waits for it and gets "
             "its own answer, none of that turn's lines", evs[-1])
        own = [o]
        while own[-1] is not None and own[-1]["type"] != "cli_turn":
            own.append(fo.line())
        end = own[-1] or {}
        t.ok(end.get("type") == "cli_turn" and end.get("origin") == "cli" and
             end["data"]["origin"]["kind"] == "task-notification" and
             "stats" in end["data"], "... it ends with cli_turn "
             "{origin, stats}", end)
        t.eq(c.request("stats", session="ow")["data"]["turns"], 3,
             "the CLI's own turn counts in the session's stats")
        # an interrupt ends a waiting execute at once
        c.execute("ow", "bgturn again")
        while True:
            o = fo.line()
            if o is None or o.get("origin") == "cli":
                break
        rid = c.send("execute", session="ow", prompt="never sent")
        wait_for(lambda: open(d.log).read().count(
            "waits for the CLI's own turn") == 2, 30, "the execute to wait")
        c.request("interrupt", session="ow")
        evs = c.events(rid)
        t.ok(evs[-1]["type"] == "done" and evs[-1]["data"]["interrupted"]
             and terminal_count(evs) == 1, "an interrupt ends the waiting "
             "execute (done, interrupted)", evs[-1])
        c.request("configure", session="ow", model="m3")
        r = c.execute("ow", "echo in step")[-1]["data"]["result"]
        t.ok(r.startswith("echo in step "), "the next turn is in step", r)


def ctl(d, args, stdin=b""):
    """hotplexctl with no controlling terminal (--approve then reads its
    answers from standard input)."""
    import subprocess
    p = subprocess.run([os.path.join(hplib.BDIR, "hotplexctl"), "-S",
                        d.sock] + args, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, start_new_session=True,
                       timeout=hplib.scaled(hplib.REPLY_TIMEOUT_S))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_hotplexctl():
    with Daemon() as d:
        rc, out, err = ctl(d, ["exec", "--approve", "-s", "hc",
                               "tool:echo via-ctl"], b"y\n")
        t.ok(rc == 0 and "? Bash: echo via-ctl" in out and
             "< ok" in out and "allow Bash? [y/n]" in err,
             "hotplexctl exec --approve: asked, y runs the tool",
             out + err)
        rc, out, err = ctl(d, ["exec", "--approve", "-s", "hc",
                               "tool:echo no"], b"maybe\nn\n")
        t.ok("! denied Bash (client): denied at the terminal" in out and
             err.count("allow Bash? [y/n]") == 2,
             "... n denies it (asked again after a bad answer)", out + err)
        rc, out, err = ctl(d, ["configure", "-m", "ctl-model",
                               "--permission-mode", "plan", "hc"])
        t.ok(rc == 0 and "the running CLI changed" in out,
             "hotplexctl configure", out + err)
        rc, out, err = ctl(d, ["exec", "-s", "hc", "settings"])
        t.ok(out.startswith("model:ctl-model mode:plan"),
             "... the CLI took it", out)
        rc, out, err = ctl(d, ["configure", "--budget", "0.5", "hc"])
        t.ok(rc == 0, "hotplexctl configure --budget", err)
        rc, out, err = ctl(d, ["permission", "hc", "nosuch", "allow"])
        t.ok(rc == 1 and "not_found" in err,
             "hotplexctl permission of no request: not_found", err)
        # permission answers a request of another client's turn
        c = d.client()
        rid = c.send("execute", session="hc2", prompt="tool:echo other",
                     options=CLIENT)
        pr, _ = until(c, rid, "permission_request")
        rc, out, err = ctl(d, ["permission", "-m", "no thanks", "hc2",
                               pr["data"]["request_id"], "deny"])
        rest = c.events(rid)
        pd = hplib.first(rest, "permission_denied")
        t.ok(rc == 0 and pd and pd["data"]["reason"] == "no thanks",
             "hotplexctl permission answers a request", (out, err, pd))


def test_rate_limits():
    import urllib.request
    with Daemon({"metrics_listen": hplib.METRICS_ANY}) as d:
        port = d.metrics_port()
        c = d.client()
        evs = c.execute("rl", "ratelimit")
        rl = [e for e in evs if e["type"] == "system" and
              e["data"]["subtype"] == "rate_limit"]
        t.ok(len(rl) == 1 and rl[0]["data"]["source"] == "api_retry" and
             rl[0]["data"]["status"] == "retrying" and
             rl[0]["data"]["error_status"] == 429 and
             evs[-1]["type"] == "done",
             "an API retry of a 429: system rate_limit event", rl)
        row = [x for x in c.request("sessions")["data"]
               if x["session"] == "rl"][0]
        t.ok(row["rate_limits"] == 1 and
             row["rate_limit"]["error_status"] == 429,
             "sessions shows rate_limits and the last one", row)
        st = c.request("stats", session="rl")["data"]
        t.eq(st["rate_limits"], 1, "stats counts them")
        page = urllib.request.urlopen(
            "http://127.0.0.1:%d/metrics" % port,
            timeout=hplib.scaled(hplib.REPLY_TIMEOUT_S)).read()
        t.ok(b"hotplex_rate_limit_events_total 1" in page,
             "metrics: hotplex_rate_limit_events_total", page[-300:])


def main():
    up = Upstream()
    try:
        test_budget_stops_turn(up)
        test_rate_limit_admission(up)
    finally:
        up.close()
    test_rate_limits()
    test_mcp_config()
    test_own_turn()
    test_hotplexctl()
    test_configure()
    test_budget()
    test_approvals()
    test_approval_timeout_interrupt()
    test_queue_order()
    test_queue_cancel()
    test_queue_client_gone()
    test_queue_shutdown()
    t.done()


if __name__ == "__main__":
    main()
