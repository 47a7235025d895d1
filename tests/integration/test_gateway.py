#!/usr/bin/env python3
"""The model-API gateway against a local TLS upstream with a test CA made
here (openssl CLI): the key swap, streaming as it arrives, a response cut
mid-stream, a hanging upstream, a 429 with retry-after, the token of a
stopped session, paths the CLI never uses, and a table of bad inputs
(oversized headers and bodies, slow clients, garbage).  The test plays the
CLI: it takes a live session's token and the gateway's URL from the
environment of that session's (fake) CLI."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hplib import (METRICS_ANY, scaled, TAP, Daemon, wait_for, proc_alive,
                   cli_environ, REPLY_TIMEOUT_S)
import re
import signal

t = TAP()
KEY = "sk-ant-operator-" + os.urandom(12).hex()
GW_TIMEOUT_S = 2            # gateway_timeout: a hanging upstream
CLIENT_TIMEOUT_S = 1        # gateway_client_timeout: a slow client


def make_ca(d):
    """A CA and a server certificate for localhost, signed by it."""
    def run(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "2", "-subj", "/CN=hotplex test CA")
    run("openssl", "req", *ec, "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem",
        "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days",
        "2", "-extfile", "san.cnf")
    # Another CA, that the gateway must not trust.
    run("openssl", "req", "-x509", *ec, "-keyout", "other.key", "-out",
        "other.pem", "-days", "2", "-subj", "/CN=not trusted")


def sse(event, data):
    return ("event: %s\ndata: %s\n\n" % (event, json.dumps(data))).encode()


START = sse("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant",
    "model": "claude-test-1", "content": [], "usage": {
        "input_tokens": 11, "output_tokens": 1,
        "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}}})
REST = (sse("content_block_start", {"type": "content_block_start",
                                    "index": 0, "content_block": {
                                        "type": "text", "text": ""}}) +
        sse("content_block_delta", {"type": "content_block_delta",
                                    "index": 0, "delta": {
                                        "type": "text_delta",
                                        "text": "hello"}}) +
        sse("content_block_stop", {"type": "content_block_stop",
                                   "index": 0}) +
        sse("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}) +
        sse("message_stop", {"type": "message_stop"}))


class Upstream:
    """The model API, over TLS, doing what each request's "mode" says."""

    def __init__(self, d):
        self.seen = []          # (path, x-api-key, authorization, body)
        self.peers = []         # the gateway's port, per request
        self.heads = []         # the same, per HEAD (preconnect)
        self.gate = threading.Event()
        self.stop = threading.Event()
        up = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def chunk(self, b):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
                self.wfile.flush()

            def do_HEAD(self):
                up.heads.append(self.client_address[1])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self):
                try:
                    self.answer()
                except (OSError, ssl.SSLError):
                    self.close_connection = True   # the gateway left

            def answer(self):
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                up.peers.append(self.client_address[1])
                up.seen.append((self.path, self.headers.get("x-api-key"),
                                self.headers.get("authorization"), body))
                try:
                    mode = json.loads(body).get("mode", "ok")
                except ValueError:
                    mode = "ok"
                if mode == "hang":
                    up.stop.wait(REPLY_TIMEOUT_S)
                    self.close_connection = True
                    return
                if mode == "429":
                    b = b'{"type":"error","error":{"type":"rate_limit_error"}}'
                    self.send_response(429)
                    self.send_header("retry-after", "7")
                    self.send_header("anthropic-ratelimit-requests-remaining",
                                     "0")
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(b)))
                    self.end_headers()
                    self.wfile.write(b)
                    return
                if mode == "json":
                    b = json.dumps({"id": "msg_2", "type": "message",
                                    "model": "claude-test-2", "content": [],
                                    "usage": {"input_tokens": 2,
                                              "output_tokens": 4}}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(b)))
                    self.end_headers()
                    self.wfile.write(b)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("anthropic-ratelimit-tokens-remaining",
                                 "12345")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.chunk(START)
                if mode == "cut":
                    # Half a stream, then the connection goes.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if mode == "gate":
                    up.gate.wait(REPLY_TIMEOUT_S)
                self.chunk(REST)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "srv.pem"),
                            os.path.join(d, "srv.key"))
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.gate.set()
        self.srv.shutdown()
        self.srv.server_close()


def open_session(d, c, name, want_env=False):
    wd = os.path.join(d.work, name)
    os.makedirs(wd, exist_ok=True)
    r = c.request("open", session=name, workdir=wd)
    assert r["type"] == "ok", r
    s = [x for x in c.request("sessions")["data"] if x["session"] == name][0]
    env = cli_environ(s["cli_pid"])
    if want_env:
        return env
    url = env[b"ANTHROPIC_BASE_URL"].decode()
    return url.rsplit(":", 1)[1], env[b"ANTHROPIC_API_KEY"].decode()


class Echo:
    """A TCP service that egress_allow lists: echoes one line back."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(8)
        self.port = self.s.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            with c:
                c.settimeout(REPLY_TIMEOUT_S)
                try:
                    c.sendall(c.recv(100))
                except OSError:
                    pass


def test_connect_proxy(d, c, echo):
    env = open_session(d, c, "p", want_env=True)
    proxy = env.get(b"HTTPS_PROXY", b"").decode()
    t.ok(proxy.startswith("http://127.0.0.1:") and
         env.get(b"https_proxy", b"").decode() == proxy and
         b"127.0.0.1" in env.get(b"NO_PROXY", b""),
         "with egress_allow the CLI gets HTTPS_PROXY (and NO_PROXY for the "
         "gateway)", proxy)
    pport = int(proxy.rsplit(":", 1)[1])

    def connect(target):
        s = socket.create_connection(("127.0.0.1", pport), timeout=scaled(10))
        s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" %
                  (target.encode(), target.encode()))
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(1)
            if not b:
                break
            head += b
        return s, head

    s, head = connect("127.0.0.1:%d" % echo.port)
    ok = head.startswith(b"HTTP/1.1 200")
    if ok:
        s.sendall(b"ping\n")
        ok = s.recv(100) == b"ping\n"
    s.close()
    t.ok(ok, "CONNECT to a listed host:port tunnels", head)
    for target, want in (("127.0.0.1:%d" % (echo.port + 1), b" 403 "),
                         ("localhost:%d" % echo.port, b" 403 "),
                         ("example.com:443", b" 403 "),
                         ("no-port", b" 400 ")):
        s, head = connect(target)
        s.close()
        t.ok(want in head.split(b"\r\n")[0], "CONNECT %s: %s" %
             (target, want.decode().strip()), head)
    out = raw(pport, b"GET http://example.com/ HTTP/1.1\r\n\r\n")
    t.ok(b" 405 " in out.split(b"\r\n")[0], "a plain proxy request: 405",
         out[:80])
    out = raw(pport, b"CONNECT " + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")
    t.ok(b" 431 " in out.split(b"\r\n")[0] or out == b"",
         "an oversized CONNECT head is refused", out[:80])


def test_metrics(mport):
    h = http.client.HTTPConnection("127.0.0.1", mport, timeout=scaled(10))
    h.request("GET", "/metrics")
    page = h.getresponse().read().decode()
    def val(name):
        for l in page.splitlines():
            if l.startswith(name + " "):
                return float(l.split()[1])
        return None
    t.ok(val("hotplex_api_requests_total") and
         val("hotplex_api_rate_limited_total") == 1 and
         val('hotplex_api_tokens_total{kind="input"}') and
         val('hotplex_api_ratelimit{header="tokens-remaining"}') == 12345,
         "the gateway's account in /metrics", page[-1500:])


def post(port, token, body, path="/v1/messages?beta=true", headers=None):
    h = http.client.HTTPConnection("127.0.0.1", int(port),
                                   timeout=REPLY_TIMEOUT_S)
    hd = {"content-type": "application/json", "anthropic-version":
          "2023-06-01"}
    if token is not None:
        hd["x-api-key"] = token
    hd.update(headers or {})
    h.request("POST", path, body=json.dumps(body), headers=hd)
    return h, h.getresponse()


def stats(c, name):
    return c.request("stats", session=name)["data"]["gateway"]


def test_gateway(d, up, c):
    port, tok = open_session(d, c, "a")
    t.ok(tok.startswith("hpx-") and KEY not in tok, "the CLI holds a token, "
         "not the key", tok[:8])
    env = cli_environ([x for x in c.request("sessions")["data"]
                   if x["session"] == "a"][0]["cli_pid"])
    t.ok(all(KEY.encode() not in v for v in env.values()) and
         str(up.port).encode() not in env[b"ANTHROPIC_BASE_URL"],
         "neither the key nor the upstream in the CLI's environment")

    # A whole stream; the key swapped in, the token never forwarded.
    h, r = post(port, tok, {"mode": "ok", "stream": True})
    body = r.read()
    t.ok(r.status == 200 and START in body and REST in body,
         "a stream goes through whole", (r.status, body[:200]))
    p, xkey, auth, fwd = up.seen[-1]
    t.ok(xkey == KEY and auth is None and tok.encode() not in fwd and
         p == "/v1/messages?beta=true",
         "upstream gets the operator's key, the path and query, no token",
         (p, xkey, auth))
    g = wait_for(lambda: (lambda s: s if s["requests"] == 1 else None)(
        stats(c, "a")), 10, "the record")
    t.ok(g["tokens"] == {"input": 11, "output": 7, "cache_read": 5,
                         "cache_write": 3} and g["last_status"] == 200 and
         g["ratelimit"].get("anthropic-ratelimit-tokens-remaining") ==
         "12345", "usage and rate-limit headers recorded per session", g)

    # The upstream connection is kept: no TLS handshake per request.
    h, r = post(port, tok, {"mode": "ok", "stream": True})
    r.read()
    t.ok(len(up.peers) >= 2 and up.peers[-1] == up.peers[-2],
         "the next request reuses the upstream connection", up.peers)
    wait_for(lambda: stats(c, "a")["requests"] == 2, 10, "the record")
    # Streaming: the first event arrives before upstream sends the rest.
    h, r = post(port, tok, {"mode": "gate", "stream": True})
    first = r.read1(65536)
    while len(first) < len(START):
        first += r.read1(65536)
    t.ok(first == START and not up.gate.is_set(),
         "the first event is relayed as it arrives (no buffering)")
    up.gate.set()
    t.ok(r.read() == REST, "then the rest")
    up.gate.clear()

    # Not streamed: usage from the JSON body.
    h, r = post(port, tok, {"mode": "json"})
    t.ok(r.status == 200 and b"claude-test-2" in r.read(),
         "a JSON answer goes through")
    g = wait_for(lambda: (lambda s: s if s["requests"] == 4 else None)(
        stats(c, "a")), 10, "the record")
    t.eq(g["tokens"]["output"], 7 + 7 + 7 + 4,
         "usage of JSON answers counted")

    # Cut mid-stream: the CLI's connection is cut too (never a clean end).
    h, r = post(port, tok, {"mode": "cut", "stream": True})
    try:
        r.read()
        cut = False
    except http.client.IncompleteRead as e:
        cut = START in e.partial
    t.ok(cut, "a response cut upstream is cut for the CLI, after what came")
    g = wait_for(lambda: (lambda s: s if s["requests"] == 5 else None)(
        stats(c, "a")), 10, "the record")
    t.ok(g["errors"] == 1, "the cut request counts as an error", g)

    # 429 with retry-after: passed through, counted, logged.
    h, r = post(port, tok, {"mode": "429", "stream": True})
    r.read()
    t.ok(r.status == 429 and r.getheader("retry-after") == "7",
         "429 and retry-after reach the CLI", (r.status, r.getheaders()))
    g = wait_for(lambda: (lambda s: s if s["requests"] == 6 else None)(
        stats(c, "a")), 10, "the record")
    t.ok(g["rate_limited"] == 1 and
         g["ratelimit"].get("retry-after") == "7", "429 recorded", g)
    t.ok(wait_for(lambda: "upstream 429, retry-after 7" in
                  open(d.log).read(), 10, "the 429 log line"),
         "the 429 is logged")

    # A hanging upstream: 504 after gateway_timeout.
    t0 = time.monotonic()
    h, r = post(port, tok, {"mode": "hang", "stream": True})
    r.read()
    t.ok(r.status == 504 and time.monotonic() - t0 >= GW_TIMEOUT_S - 0.5,
         "a hanging upstream: 504 after gateway_timeout", r.status)

    # Paths the CLI never uses, and other methods, are never forwarded.
    n = len(up.seen)
    for path in ("/v1/complete", "/v1/models", "/v1/messages/batches",
                 "/../v1/messages", "/v1/messagesX"):
        h, r = post(port, tok, {"mode": "ok"}, path=path)
        r.read()
        t.ok(r.status == 404, "%s: 404" % path, r.status)
    h = http.client.HTTPConnection("127.0.0.1", int(port), timeout=scaled(10))
    h.request("GET", "/v1/models", headers={"x-api-key": tok})
    r = h.getresponse()
    r.read()
    t.ok(r.status in (404, 405, 501), "GET: refused", r.status)
    h.request("HEAD", "/")
    r = h.getresponse()
    r.read()
    t.ok(r.status == 200, "HEAD / (the CLI's preconnect) answered here")
    t.eq(len(up.seen), n, "none of them reached upstream")
    # The preconnect opens an upstream connection that the next turn uses
    # (when none is kept already: make sure of it with a cut).
    h, r = post(port, tok, {"mode": "cut", "stream": True})
    try:
        r.read()
    except http.client.IncompleteRead:
        pass
    nh = len(up.heads)
    h = http.client.HTTPConnection("127.0.0.1", int(port), timeout=scaled(10))
    h.request("HEAD", "/")
    h.getresponse().read()
    # The first request takes the preconnect's connection, done or not.
    h, r = post(port, tok, {"mode": "ok", "stream": True})
    r.read()
    t.ok(len(up.heads) == nh + 1 and up.peers[-1] == up.heads[-1],
         "the CLI's preconnect warms the "
         "upstream connection its first request uses", (up.heads,
                                                          up.peers[-3:]))
    n = len(up.seen)

    # Tokens: none, a made-up one, the key itself, then a stopped session's.
    for what, tk in (("no token", None), ("a made-up token",
                     "hpx-" + "0" * 64), ("the key itself", KEY)):
        h, r = post(port, tk, {"mode": "ok"})
        r.read()
        t.ok(r.status == 401, "%s: 401" % what, r.status)
    h, r = post(port, None, {"mode": "ok"},
                headers={"authorization": "Bearer " + tok})
    r.read()
    t.ok(r.status == 200, "the token as a Bearer works too", r.status)
    t.eq(c.request("stop", session="a")["type"], "ok", "stop")
    h, r = post(port, tok, {"mode": "ok"})
    r.read()
    t.ok(r.status == 401, "the token of a stopped session: 401", r.status)
    t.eq(len(up.seen), n + 1, "refused requests never reached upstream")

    # Two sessions at once: each stream is its own.
    port_b, tok_b = open_session(d, c, "b")
    port_c, tok_c = open_session(d, c, "c")
    t.ok(tok_b != tok_c, "sessions get different tokens")
    h1, r1 = post(port_b, tok_b, {"mode": "gate", "stream": True})
    h2, r2 = post(port_c, tok_c, {"mode": "ok", "stream": True})
    b2 = r2.read()
    up.gate.set()
    b1 = r1.read()
    t.ok(b1 == START + REST and b2 == START + REST,
         "two concurrent streams arrive whole and unmixed")
    up.gate.clear()
    wait_for(lambda: stats(c, "b")["requests"] == 1 and
             stats(c, "c")["requests"] == 1, 10, "both records")
    admin = c.request("stats")["data"]["gateway"]
    t.ok(admin["requests"] >= 12 and admin["rate_limited"] == 1,
         "the account's totals in an administrator's stats", admin)
    return port_b, tok_b


def raw(port, data, read=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", int(port)),
                                 timeout=scaled(timeout))
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass            # refused before the end: read the answer
        if not read:
            return s
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
        return out
    finally:
        if read:
            s.close()


def test_bad_input(d, up, c, port, tok):
    def alive():
        h, r = post(port, tok, {"mode": "ok", "stream": True})
        return r.status == 200 and r.read() == START + REST

    hdr = ("POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n" %
           tok).encode()
    table = [
        ("oversized headers", hdr + b"x-big: " + b"a" * 200000 + b"\r\n\r\n",
         (b"431", b"400", b"")),
        ("many headers", hdr + b"".join(b"x-h%d: v\r\n" % i
                                         for i in range(20000)) + b"\r\n",
         (b"431", b"400", b"")),
        ("oversized body (declared)", hdr +
         b"content-length: 999999999\r\n\r\n{}", (b"413", b"")),
        ("oversized body (chunked)", hdr +
         b"transfer-encoding: chunked\r\n\r\n" +
         (b"10000\r\n" + b"a" * 0x10000 + b"\r\n") * 80, (b"413", b"")),
        ("garbage request line", b"\x00\xff garbage\r\n\r\n",
         (b"400", b"")),
        ("HTTP/0.9", b"GET /\r\n", (b"400", b"")),
        ("bad content-length", hdr + b"content-length: -5\r\n\r\n",
         (b"400", b"")),
        ("CONNECT on the API port", b"CONNECT example.com:443 HTTP/1.1"
         b"\r\n\r\n", (b"405", b"501", b"400", b"")),
    ]
    n = len(up.seen)
    for what, data, want in table:
        out = raw(port, data)
        status = out.split(b" ", 2)[1] if out.startswith(b"HTTP/") else b""
        t.ok(status in want and alive(), "%s: %s, the gateway lives on" %
             (what, status.decode() or "closed"), out[:120])
    t.eq(len(up.seen), n + len(table), "none of them reached upstream "
         "(only the liveness checks did)")

    # A slow client (half a request, then nothing) is dropped after
    # gateway_client_timeout, and others are served meanwhile.
    slow = [raw(port, hdr[:20], read=False, timeout=30)  # raw() scales
            for _ in range(8)]
    t.ok(alive(), "served while slow clients hang on")
    for s in slow:
        s.settimeout(scaled(CLIENT_TIMEOUT_S * 20))
        try:
            gone = s.recv(1) == b"" or True
        except ConnectionResetError:
            gone = True
        except socket.timeout:
            gone = False
        s.close()
        if not gone:
            break
    t.ok(gone, "slow clients are dropped after gateway_client_timeout")
    # A client that goes away mid-stream: the upstream request ends too.
    s = raw(port, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " +
            tok.encode() + b"\r\ncontent-length: 30\r\n\r\n" +
            b'{"mode":"gate","stream":true}\n', read=False)
    wait_for(lambda: up.seen and b"gate" in up.seen[-1][3], 10,
             "the gated request upstream")
    s.close()
    up.gate.set()
    t.ok(alive(), "a CLI gone mid-stream harms nothing")
    up.gate.clear()
    # A SIGTERM to everything (a service manager stopping the daemon) must
    # not take the gateway from the turns that drain.
    os.kill(gateway_pid(d), signal.SIGTERM)
    t.ok(alive(), "the gateway ignores SIGTERM: it ends with the master")


class ConnectProxy:
    """An HTTP CONNECT proxy, as an operator's HTTPS_PROXY would be."""

    def __init__(self):
        self.seen = []
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(8)
        self.port = self.s.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(1)
            if not b:
                return c.close()
            head += b
        target = head.split(b" ")[1].decode()
        self.seen.append(target)
        host, port = target.rsplit(":", 1)
        u = socket.create_connection((host, int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        pump(u, c)


def test_upstream_proxy(tmp):
    """HTTPS_PROXY in the daemon's environment carries the upstream."""
    up = Upstream(tmp)
    px = ConnectProxy()
    try:
        with Daemon({"api_upstream": "https://localhost:%d" % up.port},
                    env={"ANTHROPIC_API_KEY": KEY, "HTTPS_PROXY":
                         "http://127.0.0.1:%d" % px.port,
                         "SSL_CERT_FILE": os.path.join(tmp, "ca.pem")}) as d:
            c = d.client()
            port, tok = open_session(d, c, "x")
            env = open_session(d, c, "x", want_env=True)
            for i in range(2):
                h, r = post(port, tok, {"mode": "ok", "stream": True})
                body = r.read()
            t.ok(r.status == 200 and body == START + REST and
                 px.seen == ["localhost:%d" % up.port] and
                 up.seen and up.seen[-1][1] == KEY,
                 "the upstream through HTTPS_PROXY (CONNECT, TLS inside; one "
                 "tunnel kept for both requests)",
                 (r.status, px.seen))
            t.ok(b"HTTPS_PROXY" not in b"".join(env.keys()),
                 "the daemon's HTTPS_PROXY is not the sessions'")
    finally:
        up.close()
        px.s.close()


def gateway_pid(d):
    m = re.search(r"gateway (\d+) on http", open(d.log).read())
    return int(m.group(1))


def test_untrusted_upstream(tmp):
    """An upstream whose certificate no trusted CA signed: 502."""
    up = Upstream(tmp)
    try:
        with Daemon({"api_upstream": "https://localhost:%d" % up.port},
                    env={"ANTHROPIC_API_KEY": KEY, "SSL_CERT_FILE":
                         os.path.join(tmp, "other.pem")}) as d:
            c = d.client()
            port, tok = open_session(d, c, "u")
            h, r = post(port, tok, {"mode": "ok", "stream": True})
            r.read()
            t.ok(r.status == 502 and not up.seen,
                 "an upstream with an untrusted certificate: 502", r.status)
    finally:
        up.close()


def test_options(tmp):
    """gateway = off hands the CLI the key (unsafe, logged); it needs
    egress = off; egress = required starts where Landlock has TCP rules."""
    conf = os.path.join(tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("gateway = off\n")
    r = subprocess.run([os.path.join(os.environ.get("B", "build"),
                        "hotplexd"), "-n", "-c", conf],
                       capture_output=True, text=True)
    t.ok(r.returncode != 0 and "egress" in r.stderr,
         "gateway = off without egress = off is refused", r.stderr)
    with Daemon({"gateway": "off", "egress": "off",
                 "cli_env": "PATH HOME ANTHROPIC_API_KEY"},
                env={"ANTHROPIC_API_KEY": KEY}) as d:
        env = open_session(d, d.client(), "off", want_env=True)
        t.ok(env.get(b"ANTHROPIC_API_KEY") == KEY.encode() and
             "gateway = off" in open(d.log).read() and "unsafe" in
             open(d.log).read(), "gateway = off: the CLI gets the key, and "
             "the log says it is unsafe")
    with Daemon({"egress": "required"}, env={"ANTHROPIC_API_KEY": KEY}) as d:
        t.ok("egress: sessions connect only to the gateway" in
             open(d.log).read(), "egress = required starts on this kernel "
             "and says what it enforces")


def main():
    tmp = tempfile.mkdtemp(prefix="hpgw.")
    make_ca(tmp)
    up = Upstream(tmp)
    echo = Echo()
    try:
        with Daemon({"api_upstream": "https://localhost:%d/" % up.port,
                     "gateway_timeout": "%ds" % GW_TIMEOUT_S,
                     "gateway_client_timeout": "%ds" % CLIENT_TIMEOUT_S,
                     "gateway_max_body": "1M",
                     "gateway_max_headers": "16K",
                     "egress_allow": "127.0.0.1:%d" % echo.port,
                     "metrics_listen": METRICS_ANY},
                    env={"ANTHROPIC_API_KEY": KEY,
                         "SSL_CERT_FILE": os.path.join(tmp, "ca.pem")}) as d:
            c = d.client()
            for fn in (test_gateway, test_bad_input, test_metrics,
                       test_connect_proxy):
                try:
                    if fn is test_gateway:
                        port, tok = fn(d, up, c)
                    elif fn is test_metrics:
                        fn(d.metrics_port())
                    elif fn is test_connect_proxy:
                        fn(d, c, echo)
                    else:
                        fn(d, up, c, port, tok)
                except Exception as e:
                    import traceback
                    t.ok(False, fn.__name__ + " raised " + repr(e),
                         traceback.format_exc())
            with open("/proc/%d/environ" % d.proc.pid, "rb") as f:
                t.ok(KEY.encode() not in f.read(),
                     "the key is wiped from the master's environment")
            t.ok(KEY.encode() not in open(d.log, "rb").read(),
                 "the key is never logged")
            gpid = gateway_pid(d)
        # The daemon has exited (Daemon's exit waited for it): it reaped
        # the gateway first, so not even a zombie of it is left.
        t.ok(not os.path.exists("/proc/%d" % gpid),
             "the gateway is gone before the daemon exits")
    finally:
        up.close()
        echo.s.close()
    try:
        test_upstream_proxy(tmp)
    except Exception as e:
        import traceback
        t.ok(False, "test_upstream_proxy raised " + repr(e),
             traceback.format_exc())
    try:
        test_options(tmp)
    except Exception as e:
        import traceback
        t.ok(False, "test_options raised " + repr(e), traceback.format_exc())
    try:
        test_untrusted_upstream(tmp)
    except Exception as e:
        import traceback
        t.ok(False, "test_untrusted_upstream raised " + repr(e),
             traceback.format_exc())
    subprocess.run(["rm", "-rf", tmp])
    t.done()


main()
