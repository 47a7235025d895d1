#!/usr/bin/env python3
"""End to end, the real CLI behind the gateway (issue 10): the mock model
API receives the operator's key, while inside the session (through the
model's Bash tool) neither the environment, /proc/*/environ,
/proc/*/cmdline nor the files under the session's HOME, config dir,
TMPDIR and workdir hold it; a TCP connection to another loopback port or
to the mock directly fails, and so does a UDP datagram, while the gateway
answers, and egress_allow's CONNECT proxy tunnels to a listed pair only;
the turn completes, and the next one too."""

import json
import os
import re
import shutil
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)
from hplib import scaled, TAP, Daemon, first
from test_e2e import Mock, CLI, OFFLINE_ENV

t = TAP()
KEY = "sk-ant-api03-operator-" + os.urandom(16).hex()
PROBE_TIMEOUT_S = 10          # the probe's connects and proxy answer (scaled)

# Runs inside the session.  It holds the key reversed, so that neither
# this file nor the command line of the process that reads it holds it.
CHECK = r'''
import glob, json, os, socket
K = %(rkey)r[::-1].encode()
res = {}
res["env"] = any(K in ("%%s=%%s" %% kv).encode() for kv in os.environ.items())
hits, n = [], 0
for p in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        b = open(p, "rb").read()
    except OSError:
        continue
    n += 1
    if K in b:
        hits.append(p)
res["proc_hits"], res["proc_read"] = hits, n
hits, n = [], 0
roots = {os.environ.get(v) for v in ("HOME", "CLAUDE_CONFIG_DIR", "TMPDIR")}
for root in [r for r in roots | {os.getcwd()} if r]:
    for dp, dns, fns in os.walk(root):
        for f in fns:
            try:
                b = open(os.path.join(dp, f), "rb").read()
            except OSError:
                continue
            n += 1
            if K in b:
                hits.append(os.path.join(dp, f))
res["file_hits"], res["files_read"] = hits, n
def tcp(port):
    s = socket.socket()
    s.settimeout(%(bound)d)
    try:
        s.connect(("127.0.0.1", port))
        return "connected"
    except OSError as e:
        return "failed:%%d" %% e.errno
    finally:
        s.close()
gw = int(os.environ["ANTHROPIC_BASE_URL"].rsplit(":", 1)[1])
res["gateway"] = tcp(gw)
res["other"] = tcp(%(other)d)
res["mock"] = tcp(%(mock)d)
for fam, host, name in ((socket.AF_INET, "127.0.0.1", "udp"),
                        (socket.AF_INET6, "::1", "udp6")):
    try:
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.sendto(b"leak", (host, %(udp)d))
        res[name] = "sent"
    except OSError as e:
        res[name] = "failed:%%d" %% e.errno
def via_proxy(target):
    px = os.environ.get("HTTPS_PROXY", "")
    if not px:
        return "no proxy"
    s = socket.create_connection(("127.0.0.1", int(px.rsplit(":", 1)[1])),
                                 timeout=%(bound)d)
    s.sendall(b"CONNECT %%s HTTP/1.1\r\n\r\n" %% target.encode())
    head = s.recv(200).split(b"\r\n")[0].decode()
    s.close()
    return head
res["proxy_allowed"] = via_proxy("127.0.0.1:%(allowed)d")
res["proxy_other"] = via_proxy("127.0.0.1:%(other)d")
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).bind(("127.0.0.1", 0))
    res["bind"] = "bound"
except OSError as e:
    res["bind"] = "failed:%%d" %% e.errno
print("RESULT " + json.dumps(res))
'''


def main():
    if not os.access(CLI, os.X_OK):
        t.skip("e2e egress with the real CLI", CLI + " not installed")
        t.done()
    tmp = tempfile.mkdtemp(prefix="hpegress.")
    mock = Mock(tmp)
    env = mock.env()
    env["ANTHROPIC_API_KEY"] = KEY
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(4)
    other.setblocking(False)
    allowed = socket.socket()
    allowed.bind(("127.0.0.1", 0))
    allowed.listen(4)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        with Daemon({"cli_path": CLI, "cli_env": OFFLINE_ENV,
                     "kill_grace": "2s", "egress_allow": "127.0.0.1:%d" %
                     allowed.getsockname()[1]}, env=env) as d:
            run(d, mock, other, udp, allowed)
    finally:
        other.close()
        allowed.close()
        udp.close()
        mock.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


def run(d, mock, other, udp, allowed):
    c = d.client()
    wd = os.path.join(d.work, "egress")
    os.makedirs(wd)
    with open(os.path.join(wd, "check.py"), "w") as f:
        f.write(CHECK % {"rkey": KEY[::-1], "other": other.getsockname()[1],
                         "mock": mock.port, "udp": udp.getsockname()[1],
                         "allowed": allowed.getsockname()[1],
                         "bound": int(scaled(PROBE_TIMEOUT_S))})
    e1 = c.execute("eg", "[[bash:python3 check.py]] look around", workdir=wd)
    t.ok(e1[-1]["type"] == "done" and e1[-1]["data"]["ok"],
         "turn 1 (with the probe) completes", e1[-1])
    res = first(e1, "tool_result")
    m = re.search(r"RESULT (\{.*\})", res["data"]["output"] if res else "")
    t.ok(m is not None, "the probe ran in the session", res)
    r = json.loads(m.group(1)) if m else {}
    t.ok(r.get("env") is False, "the key is not in the session's environment")
    t.ok(r.get("proc_hits") == [] and r.get("proc_read", 0) >= 2,
         "nor in any /proc/*/environ or /proc/*/cmdline it can read "
         "(%s read)" % r.get("proc_read"), r.get("proc_hits"))
    t.ok(r.get("file_hits") == [] and r.get("files_read", 0) >= 1,
         "nor in the files under its HOME, config dir, TMPDIR and workdir "
         "(%s read)" % r.get("files_read"), r.get("file_hits"))
    t.eq(r.get("gateway"), "connected", "the gateway is reachable")
    t.ok(str(r.get("other", "")).startswith("failed:"),
         "a connection to another loopback port fails", r.get("other"))
    t.ok(str(r.get("mock", "")).startswith("failed:"),
         "a connection to the model API directly fails", r.get("mock"))
    t.ok(str(r.get("udp", "")).startswith("failed:") and
         str(r.get("udp6", "")).startswith("failed:"),
         "UDP datagrams fail", (r.get("udp"), r.get("udp6")))
    t.ok(str(r.get("bind", "")).startswith("failed:"),
         "binding a TCP port fails", r.get("bind"))
    t.ok(str(r.get("proxy_allowed", "")).startswith("HTTP/1.1 200"),
         "egress_allow: CONNECT through the gateway to a listed pair works "
         "from inside", r.get("proxy_allowed"))
    t.ok(" 403" in str(r.get("proxy_other", "")),
         "egress_allow: any other pair is refused", r.get("proxy_other"))
    try:
        other.accept()
        accepted = True
    except BlockingIOError:
        accepted = False
    try:
        udp.recv(16)
        got = True
    except BlockingIOError:
        got = False
    t.ok(not accepted and not got,
         "nothing arrived on the other port or the UDP socket")

    e2 = c.execute("eg", "Say hello.")
    t.ok(e2[-1]["type"] == "done" and e2[-1]["data"]["ok"] and
         first(e2, "session_start")["data"]["cli_pid"] ==
         first(e1, "session_start")["data"]["cli_pid"],
         "the next turn completes on the same CLI", e2[-1])

    reqs = [q for q in mock.requests() if q["path"].startswith("/v1/")]
    t.ok(reqs and all(q.get("api_key") == KEY for q in reqs),
         "the mock received the operator's key on all %d requests" %
         len(reqs), [q.get("api_key", "")[:12] for q in reqs])
    g = c.request("stats", session="eg")["data"]["gateway"]
    t.ok(g["requests"] == len(reqs) and g["tokens"]["output"] ==
         sum(q["usage"]["output_tokens"] for q in reqs if q["usage"]),
         "the gateway's record matches what the mock answered", g)
    # Outside the sandbox, as root: the daemon's processes hold no key in
    # their environment either.
    log = open(d.log).read()
    gw = re.search(r"gateway (\d+) on http", log)
    for what, pid in (("the master", d.proc.pid),
                      ("the gateway", int(gw.group(1)) if gw else 0)):
        try:
            env = open("/proc/%d/environ" % pid, "rb").read()
        except OSError as e:
            env = repr(e).encode()
        t.ok(pid and KEY.encode() not in env,
             "%s's environment holds no key" % what)
    c.request("stop", session="eg")


if __name__ == "__main__":
    main()
