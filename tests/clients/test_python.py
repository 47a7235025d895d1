"""The Python client package (client/python) against a real hotplexd with
tests/fake-claude: installed offline with pip, its README examples run as
written, then every operation through Client and AsyncClient."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import hplib  # noqa: E402
from hplib import Daemon, TAP  # noqa: E402

PKG = os.path.join(hplib.ROOT, "client", "python")
INSTALL_TIMEOUT_S = 300     # pip on a loaded machine
EXAMPLE_TIMEOUT_S = 120

t = TAP()


def install():
    """pip install ./client/python into a private directory, with no
    package index: returns that directory, or None (and a skip) when this
    Python has no pip."""
    target = tempfile.mkdtemp(prefix="hppy.")
    if subprocess.run([sys.executable, "-m", "pip", "--version"],
                      stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        t.skip("pip install ./client/python works offline",
               "no pip for %s" % sys.executable)
        sys.path.insert(0, PKG)
        return target
    build = tempfile.mkdtemp(prefix="hppy-src.")
    try:
        # A copy, so that pip leaves nothing in the tree.
        src = os.path.join(build, "python")
        shutil.copytree(PKG, src)
        p = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "--no-index", "--no-cache-dir",
                            "--disable-pip-version-check",
                            "--target", target, src],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=hplib.scaled(INSTALL_TIMEOUT_S))
    finally:
        shutil.rmtree(build, ignore_errors=True)
    t.ok(p.returncode == 0 and
         os.path.exists(os.path.join(target, "hotplex", "_sync.py")),
         "pip install --no-index ./client/python installs the package",
         p.stdout.decode(errors="replace"))
    sys.path.insert(0, target)
    return target


def readme_examples():
    with open(os.path.join(PKG, "README.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_readme(d, target):
    ex = readme_examples()
    t.eq(len(ex), 2, "README has a sync and an asyncio example")
    env = dict(os.environ, HOTPLEX_SOCKET=d.sock, PYTHONPATH=target)
    outs = []
    for code in ex:
        p = subprocess.run([sys.executable, "-c", code], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=hplib.scaled(EXAMPLE_TIMEOUT_S))
        outs.append((p.returncode, p.stdout.decode(errors="replace")))
    rc, out = outs[0]
    t.ok(rc == 0 and "fake-claude turn 1." in out and
         "1 turn(s), $" in out and "refused: not_found" in out,
         "README example (Client) runs as written", out)
    rc, out = outs[1]
    t.ok(rc == 0 and "fake-claude turn 2." in out,
         "README example (AsyncClient) runs as written", out)


def test_sync(d):
    from hotplex import Client, HotplexError
    wd = os.path.join(d.work, "s1")
    with Client(d.sock) as c:
        h = c.hello()
        t.eq((h["type"], h["proto"]), ("hello", 1), "hello")
        evs = list(c.execute("s1", "stream:4", workdir=wd,
                             model="claude-fake"))
        types = [e.type for e in evs]
        t.ok(types[0] == "session_start" and types[-1] == "done" and
             types.count("answer") == 4, "execute yields the turn's events "
             "ending with done", types)
        seqs = [e.seq for e in evs]
        t.eq(seqs, list(range(1, len(evs) + 1)), "events carry seq")
        t.ok(evs[-1].data["ok"] and evs[-1].session == "s1",
             "done event: .data and .session")
        start = d.cli_starts()[-1]["argv"]
        t.ok("--model" in start and
             start[start.index("--model") + 1] == "claude-fake",
             "options reach the CLI (model)", start)

        st = c.stats("s1")
        t.eq(st["turns"], 1, "stats(session)")
        t.ok(any(s["session"] == "s1" for s in c.sessions()), "sessions()")
        t.ok(c.stats()["sessions"] >= 1, "stats() totals")
        v = c.policy_check("echo hi", target="bash")
        t.ok(isinstance(v, dict) and v.get("blocked") is False,
             "policy_check", v)

        try:
            list(c.execute("s2", "hi", workdir="/etc"))
            t.ok(False, "an error line raises HotplexError")
        except HotplexError as e:
            t.ok(e.code == "workdir_denied" and "/etc" in e.message,
                 "an error line raises HotplexError with .code and "
                 ".message", repr(e))
        try:
            c.stop("nosuch")
            t.ok(False, "a refused op raises HotplexError")
        except HotplexError as e:
            t.eq(e.code, "not_found", "a refused op raises HotplexError")
        try:
            c.request("nosuchop")
            t.ok(False, "request() of an unknown op")
        except HotplexError as e:
            t.eq(e.code, "unknown_op", "request() sends any op")

        # Interrupt on the same connection while the turn streams.
        it = c.execute("s1", "stall")
        first = next(it)
        t.eq(first.type, "session_start", "a stalled turn starts")
        t.eq(c.interrupt("s1"), {"interrupting": True},
             "interrupt() while the turn's events are unread")
        rest = list(it)
        t.ok(rest and rest[-1].type == "done" and
             rest[-1].data["interrupted"], "the interrupted turn ends "
             "with done, interrupted", [e.type for e in rest])

        # Queued turns: the queued event has no seq, then the turn runs.
        it1 = c.execute("s1", "delay:20 stream:3")
        it2 = c.execute("s1", "echo queued", queue=True)
        first = list(it1)
        second = list(it2)
        t.ok(second[0].type == "queued" and second[0].seq is None and
             second[0].data == {"position": 1} and
             second[-1].type == "done" and
             second[-1].data["result"].startswith("echo queued") and
             second[1].seq == first[-1].seq + 1,
             "execute(queue=True): queued, then the turn",
             [(e.type, e.seq) for e in second])

        # A reader that leaves a turn early: the connection stays usable.
        it = c.execute("s1", "stream:5")
        next(it)
        it.close()
        t.eq(c.stats("s1")["session"], "s1",
             "a turn left unread does not block later replies")
        c.open("s3", workdir=os.path.join(d.work, "s3"))
        t.eq([s["state"] for s in c.sessions() if s["session"] == "s3"],
             ["ready"], "open() leaves the session ready")
        c.reset("s3")
        c.stop("s3", reason="test")
        t.eq([s["state"] for s in c.sessions() if s["session"] == "s3"],
             ["ended"], "reset() and stop()")


def test_permissions(d):
    from hotplex import Client
    with Client(d.sock) as c, Client(d.sock) as other:
        asked = []

        def allow(req):
            asked.append(req)
            return "allow"
        evs = list(c.execute("pp", "tool:echo py-allowed", approvals="client",
                             on_permission=allow))
        res = [e for e in evs if e.type == "tool_result"]
        t.ok(len(asked) == 1 and asked[0].name == "Bash" and
             asked[0].input["command"] == "echo py-allowed" and
             asked[0].request_id and res and
             "py-allowed" in res[0].data["output"],
             "on_permission: allow (request_id, name, input)", asked)
        t.ok(any(e.type == "permission_request" for e in evs),
             "the permission_request event is yielded too")
        evs = list(c.execute("pp", "tool:echo no", on_permission=lambda r: {
            "decision": "deny", "message": "py says no"}))
        pd = [e for e in evs if e.type == "permission_denied"]
        t.ok(pd and pd[0].data["by"] == "client" and
             pd[0].data["reason"] == "py says no",
             "on_permission: a dict denies with a message")

        def both(req):
            # Another client answers first; our own answer then loses.
            other.permission(req.session, req.request_id, "allow",
                             updated_input={"command": "echo by-other"})
            return "deny"
        evs = list(c.execute("pp", "tool:echo mine", on_permission=both))
        res = [e for e in evs if e.type == "tool_result"]
        t.ok(res and "by-other" in res[0].data["output"] and
             not [e for e in evs if e.type == "permission_denied"],
             "two clients answer: the first wins, the later one is "
             "ignored (not_found)")
        evs = list(c.execute("pt", "tool:echo t", approvals="client",
                             approval_timeout_ms=200,
                             on_permission=lambda r: None))
        pd = [e for e in evs if e.type == "permission_denied"]
        t.ok(pd and pd[0].data["by"] == "timeout",
             "on_permission returning None: denied by timeout")


def test_configure_budget(d):
    from hotplex import Client, HotplexError
    with Client(d.sock) as c:
        list(c.execute("pc", "hi", max_budget_usd=0.01))
        t.eq(c.configure("pc", model="py-model"), {"live": True},
             "configure() on a running CLI")
        ans = [e for e in c.execute("pc", "settings cost:0.02")
               if e.type == "done"][0].data["result"]
        t.ok(ans.startswith("model:py-model "), "configure() reached the "
             "CLI", ans)
        try:
            list(c.execute("pc", "hi"))
            t.ok(False, "budget_exceeded raises")
        except HotplexError as e:
            t.eq(e.code, "budget_exceeded", "a spent budget raises "
                 "HotplexError budget_exceeded")
        c.configure("pc", max_budget_usd=1)
        t.eq(list(c.execute("pc", "hi"))[-1].type, "done",
             "configure(max_budget_usd=...) lets it run again")


def test_attach(d):
    from hotplex import Client
    with Client(d.sock) as a, Client(d.sock) as b:
        list(a.execute("at", "stream:2"))
        seen = b.attach("at", since_seq=0)
        t.ok(seen.info["session"] == "at" and seen.info["seq"] >= 1,
             "attach() returns its answer as .info", seen.info)
        replay = []
        for ev in seen:
            replay.append(ev)
            if ev.type == "done":
                break
        t.eq(replay[0].seq, 1, "attach replays from since_seq")
        mine = list(a.execute("at", "stream:3"))
        live = []
        for ev in seen:
            live.append(ev)
            if ev.type == "done":
                break
        t.eq([(e.seq, e.type) for e in live],
             [(e.seq, e.type) for e in mine],
             "an attached client sees another client's turn live")
        b.detach("at")
        t.eq(list(seen), [], "detach() ends the attachment")


def test_async(d):
    from hotplex import AsyncClient, HotplexError

    async def main():
        async with AsyncClient(d.sock) as c:
            evs = [e async for e in c.execute(
                "as1", "stream:3", workdir=os.path.join(d.work, "as1"))]
            t.ok(evs[-1].type == "done" and
                 [e.seq for e in evs] == list(range(1, len(evs) + 1)),
                 "AsyncClient: execute yields events ending with done")
            # Two turns of two sessions at once on one connection.
            async def run(sess, prompt):
                return [e async for e in c.execute(sess, prompt)]
            r = await asyncio.gather(run("as2", "delay:5 stream:4"),
                                     run("as3", "delay:5 stream:4"),
                                     c.sessions())
            t.ok(all(x[-1].type == "done" and x[0].session == s
                     for x, s in ((r[0], "as2"), (r[1], "as3"))),
                 "AsyncClient: concurrent turns on one connection")
            it = c.execute("as1", "stall")
            first = await it.__anext__()
            t.eq(first.type, "session_start", "AsyncClient: stalled turn")
            t.eq(await c.interrupt("as1"), {"interrupting": True},
                 "AsyncClient: interrupt while a turn streams")
            rest = [e async for e in it]
            t.ok(rest[-1].type == "done" and rest[-1].data["interrupted"],
                 "AsyncClient: the interrupted turn ends with done")
            try:
                await c.stop("nosuch")
                t.ok(False, "AsyncClient: errors raise")
            except HotplexError as e:
                t.eq(e.code, "not_found", "AsyncClient: errors raise "
                     "HotplexError")
            att = await c.attach("as2")
            got = []
            async for e in att:
                got.append(e)
                if e.type == "done":
                    break
            t.ok(got and got[0].seq == 1 and got[-1].type == "done",
                 "AsyncClient: attach replays a session")
            await c.detach("as2")
            t.eq([e async for e in att], [],
                 "AsyncClient: detach ends the attachment")
            t.eq((await c.stats("as1"))["turns"], 2, "AsyncClient: stats")

            async def ok(req):
                await asyncio.sleep(0)
                return {"decision": "allow",
                        "updated_input": {"command": "echo async-ok"}}
            evs = [e async for e in c.execute(
                "as4", "tool:echo x", approvals="client", on_permission=ok)]
            res = [e for e in evs if e.type == "tool_result"]
            t.ok(res and "async-ok" in res[0].data["output"],
                 "AsyncClient: a coroutine on_permission answers")

    asyncio.run(main())


def test_daemon_gone():
    """hotplexd killed mid-turn: the turn raises ConnectionLost (sync and
    async), and nothing of the daemon is left."""
    from hotplex import AsyncClient, Client, ConnectionLost
    with Daemon() as d:
        c = Client(d.sock)
        a = AsyncClient(d.sock)
        it = c.execute("g1", "stall")
        t.eq(next(it).type, "session_start", "a turn stalls")
        workers = d.workers()

        async def async_part():
            await a.connect()
            ait = a.execute("g2", "stall")
            first = await ait.__anext__()
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            try:
                async for _ in ait:
                    pass
                return first, None
            except ConnectionLost as e:
                return first, e
            finally:
                await a.close()

        first, err = asyncio.run(async_part())
        t.ok(first.type == "session_start" and err is not None and
             err.code == "disconnected",
             "AsyncClient: a daemon gone mid-turn raises ConnectionLost")
        try:
            for _ in it:
                pass
            t.ok(False, "Client: a daemon gone mid-turn raises")
        except ConnectionLost as e:
            t.eq(e.code, "disconnected", "Client: a daemon gone mid-turn "
                 "raises ConnectionLost")
        c.close()
        hplib.wait_for(lambda: not any(hplib.proc_alive(p)
                                       for p in workers),
                       hplib.REPLY_TIMEOUT_S, "the workers to exit")


def main():
    target = install()
    try:
        with Daemon() as d:
            test_readme(d, target)
            test_sync(d)
            test_permissions(d)
            test_configure_budget(d)
            test_attach(d)
            test_async(d)
        test_daemon_gone()
    finally:
        shutil.rmtree(target, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
