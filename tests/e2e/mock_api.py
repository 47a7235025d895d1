#!/usr/bin/env python3
"""Mock of the Anthropic Messages API for offline tests of the Claude CLI.

    mock_api.py [--port N | --unix PATH] [--port-file FILE] [--log FILE]
                [--stdin-eof-exit]

Endpoints: HEAD / (200), POST /v1/messages[?beta=true] (SSE with
"stream":true, else one JSON message), POST /v1/messages/count_tokens.

What the model answers is chosen by directives in the most recent human
text of the request: the last text block of the user messages, skipping
tool_result blocks and <system-reminder> blocks:

    (none)              a short deterministic text answer
    [[think]]           a thinking block (with signature) before the text
    [[bash:CMD]]        text + tool_use Bash {command: CMD, description}
    [[tool:NAME:JSON]]  text + tool_use NAME with input JSON (an object)
    [[slow:MS]]         sleep MS milliseconds before each SSE delta
    [[stall]]           send message_start and the first
                        content_block_start, then hold the stream open
                        until the client goes away (or the mock stops)
    [[break]]           send message_start, then close the connection
                        (the CLI re-sends the request without "stream")
    [[error:CODE]]      HTTP error CODE with an Anthropic error body
    [[error:CODE:N]]    the same for the first N requests with this text,
                        then a normal answer
    [[echo]]            text: number of messages and the human texts seen
    [[long:N]]          text of exactly N bytes
    [[usage:N]]         output_tokens N in every answer to this text
                        (a costly turn, for budgets)
    [[ratelimit:S:U]]   rate-limit headers: unified status S (allowed,
                        allowed_warning, rejected) at utilization U
                        (0..1), and requests-limit/remaining/reset to match
    [[noteslow:MS]]     the answer to a background task's notification
                        (a turn the CLI starts by itself, below) is sent
                        as with [[slow:MS]]

When the request's last message is the CLI's notification of a background
task's end (a <task-notification> in a <system-reminder>: a turn the CLI
starts by itself), the answer is "Noted: the background task is STATUS."
and of the directives only noteslow applies.
When the request's last message carries tool_result blocks, the answer is
a final text ("The tool finished|failed. First line of its output: X")
quoting the first line of the (first) tool output; of the directives only
error, stall, break, slow and usage still apply.

Usage numbers are a function of the request alone (message count and
human text); the final ones go in message_delta (and in the JSON answer).
Every request is appended to --log as one JSON line: {path, stream,
api_key, n_messages, human_text, directives, usage, blocks, status}
(api_key: the x-api-key header; status: HTTP code, "stall" or "break";
usage null for errors).
"""

import argparse
import hashlib
import json
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

MAX_BODY = 64 * 1024 * 1024      # refuse request bodies above this
MAX_LONG = 16 * 1024 * 1024      # bound of [[long:N]]
MAX_SLOW_MS = 60 * 1000          # bound of [[slow:MS]]
DELTA_BYTES = 24                 # text per delta (several deltas per block)
LONG_DELTA_BYTES = 4096          # text per delta for [[long:N]]
JSON_DELTA_BYTES = 16            # partial_json per input_json_delta
STALL_POLL_S = 0.2               # how often a stalled stream checks the peer
HUMAN_TEXT_LOG_MAX = 4096        # human_text bytes kept in a log line

REMINDER_RE = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
DIRECTIVE_RE = re.compile(r"\[\[(think|bash|tool|slow|stall|break|error|"
                          r"echo|long|usage|noteslow|ratelimit)(?::|\]\])")

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error",
    403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}

STATUS_PHRASES = {529: "Overloaded"}   # missing from http.server

stopping = threading.Event()
log_lock = threading.Lock()
log_file = None
error_counts = {}                # (code, human text) -> errors answered
error_lock = threading.Lock()


def digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def strip_reminders(text):
    """text without <system-reminder> blocks; kept verbatim if it has none,
    so tests see exactly what the model was sent."""
    out = REMINDER_RE.sub("", text)
    return out.strip() if out != text else text


def human_texts_of(msg):
    """The human-written texts of a message, one per text block (the CLI
    merges consecutive user messages into one with several blocks)."""
    if msg.get("role") != "user":
        return []
    content = msg.get("content")
    if isinstance(content, str):
        texts = [strip_reminders(content)]
    elif isinstance(content, list):
        texts = [strip_reminders(b.get("text", "")) for b in content
                 if isinstance(b, dict) and b.get("type") == "text"]
    else:
        texts = []
    return [t for t in texts if t]


def tool_result_of(msg):
    """(first line of output, is_error) of the first tool_result in msg."""
    if msg.get("role") != "user" or not isinstance(msg.get("content"), list):
        return None
    for b in msg["content"]:
        if not isinstance(b, dict) or b.get("type") != "tool_result":
            continue
        c = b.get("content", "")
        if isinstance(c, list):
            c = "\n".join(x.get("text", "") for x in c
                          if isinstance(x, dict) and x.get("type") == "text")
        first = str(c).strip().split("\n", 1)[0] if str(c).strip() else ""
        return first, bool(b.get("is_error"))
    return None


TASK_NOTE_RE = re.compile(r"<task-notification>.*?<status>([^<]*)</status>",
                          re.S)


def task_notification_of(msg):
    """The status of a background task's notification, when msg is the
    one the CLI sends to start a turn of its own (a user message whose
    text is a <system-reminder> holding <task-notification>); else None."""
    if not isinstance(msg, dict) or msg.get("role") != "user":
        return None
    content = msg.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) \
        else content if isinstance(content, list) else []
    for b in blocks:
        if isinstance(b, dict) and b.get("type") == "text":
            m = TASK_NOTE_RE.search(b.get("text", ""))
            if m:
                return m.group(1).strip()
    return None


def parse_directives(text, spans=None):
    """List of (name, arg) in order of appearance; arg is str or None (for
    tool: (NAME, object)).  Appends each directive's (start, end) to spans."""
    out = []
    pos = 0
    while True:
        m = DIRECTIVE_RE.search(text, pos)
        if not m:
            return out
        name = m.group(1)
        if m.group(0).endswith("]]"):
            out.append((name, None))
            pos = m.end()
            if spans is not None:
                spans.append((m.start(), pos))
            continue
        start = m.end()
        if name == "tool":
            # NAME:JSON where JSON is decoded so it may contain "]]".
            colon = text.find(":", start)
            if colon < 0:
                pos = start
                continue
            try:
                obj, end = json.JSONDecoder().raw_decode(text, colon + 1)
            except ValueError:
                pos = start
                continue
            if not text.startswith("]]", end):
                pos = start
                continue
            out.append((name, (text[start:colon], obj)))
            pos = end + 2
            if spans is not None:
                spans.append((m.start(), pos))
            continue
        end = text.find("]]", start)
        if end < 0:
            return out
        out.append((name, text[start:end]))
        pos = end + 2
        if spans is not None:
            spans.append((m.start(), pos))


def strip_directives(text):
    spans = []
    parse_directives(text, spans)
    for start, end in reversed(spans):
        text = text[:start] + text[end:]
    return " ".join(text.split())


class Answer:
    """What the model says to one request."""

    def __init__(self, req):
        self.model = req.get("model") or "claude-mock"
        msgs = req.get("messages") or []
        self.n_messages = len(msgs)
        self.human_texts = [t for m in msgs for t in human_texts_of(m)]
        self.human_text = self.human_texts[-1] if self.human_texts else ""
        # A turn the CLI started itself on a background task's end: the
        # human text is an old one, its directives are not repeated.
        self.task_note = task_notification_of(msgs[-1]) if msgs else None
        self.directives = parse_directives(self.human_text)
        if self.task_note is not None:
            self.directives = [("slow", a) for n, a in self.directives
                               if n == "noteslow"]
        self.d = {}
        for name, arg in self.directives:
            self.d.setdefault(name, arg)
        tail = tool_result_of(msgs[-1]) if msgs else None
        self.key = digest(self.n_messages, *self.human_texts,
                          json.dumps(tail))
        self.msg_id = "msg_mock_" + self.key[:24]
        self.request_id = "req_mock_" + self.key[24:48]
        self.error = None
        self.blocks = self._blocks(tail)
        self.usage = self._usage()

    def _blocks(self, tail):
        blocks = []
        if self.task_note is not None:
            blocks.append({"type": "text", "text":
                           "Noted: the background task is %s." %
                           (self.task_note or "done")})
            return blocks
        if tail is not None:
            first, is_error = tail
            what = "failed" if is_error else "finished"
            blocks.append({"type": "text", "text":
                           "The tool %s. First line of its output: %s"
                           % (what, first or "(empty)")})
            return blocks
        if "think" in self.d:
            blocks.append({
                "type": "thinking",
                "thinking": "The user wants a mock answer. I will reply "
                            "briefly and deterministically.",
                "signature": "mocksig_" + self.key[:40]})
        if "echo" in self.d:
            text = "echo: %d messages; human texts: %s" % (
                self.n_messages,
                json.dumps([strip_directives(t) for t in self.human_texts]))
        elif "long" in self.d:
            n = min(max(int_arg(self.d["long"], 0), 0), MAX_LONG)
            pattern = "0123456789abcdefghijklmnopqrstuvwxyz\n"
            text = (pattern * (n // len(pattern) + 1))[:n]
        elif "bash" in self.d or "tool" in self.d:
            text = "I will run a tool."
        else:
            said = strip_directives(self.human_text)[:80]
            text = "Mock answer to: %s" % (said or "(nothing)")
        blocks.append({"type": "text", "text": text})
        tool_id = "toolu_mock_" + self.key[:24]
        if "bash" in self.d:
            cmd = self.d["bash"] or "true"
            blocks.append({"type": "tool_use", "id": tool_id, "name": "Bash",
                           "input": {"command": cmd,
                                     "description": "Run " + cmd[:40]}})
        elif "tool" in self.d:
            name, obj = self.d["tool"]
            blocks.append({"type": "tool_use", "id": tool_id, "name": name,
                           "input": obj})
        return blocks

    def _usage(self):
        out_chars = sum(len(json.dumps(b)) for b in self.blocks)
        return {
            "input_tokens": 100 + 7 * self.n_messages
            + len(self.human_text.encode()),
            "cache_creation_input_tokens": 50 if self.n_messages <= 1 else 20,
            "cache_read_input_tokens": 1000 + 100 * self.n_messages,
            "output_tokens": (int_arg(self.d["usage"], 0) if "usage" in
                              self.d else 10 + out_chars // 4),
        }

    @property
    def stop_reason(self):
        if any(b["type"] == "tool_use" for b in self.blocks):
            return "tool_use"
        return "end_turn"

    def message(self):
        return {"id": self.msg_id, "type": "message", "role": "assistant",
                "model": self.model, "content": self.blocks,
                "stop_reason": self.stop_reason, "stop_sequence": None,
                "usage": dict(self.usage)}

    def error_status(self):
        """HTTP status to answer instead of a message, or None."""
        if "error" not in self.d:
            return None
        parts = (self.d["error"] or "500").split(":")
        code = int_arg(parts[0], 500)
        if len(parts) > 1:
            limit = int_arg(parts[1], 0)
            with error_lock:
                k = (code, self.human_text)
                if error_counts.get(k, 0) >= limit:
                    return None
                error_counts[k] = error_counts.get(k, 0) + 1
        return code


RATELIMIT_RESET_S = 3600      # [[ratelimit:...]]: when the window resets


def ratelimit_headers(ans):
    """[[ratelimit:STATUS:UTIL]]: the anthropic-ratelimit-* headers of an
    account at UTIL (0..1) of its limits, unified STATUS (allowed,
    allowed_warning, rejected)."""
    arg = ans.d.get("ratelimit")
    if arg is None:
        return {}
    status, _, util = (arg or "allowed_warning").partition(":")
    try:
        u = min(max(float(util or "0.9"), 0.0), 1.0)
    except ValueError:
        u = 0.9
    reset = int(time.time()) + RATELIMIT_RESET_S
    left = int(round(1000 * (1 - u)))
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": str(reset),
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-5h-utilization": "%.2f" % u,
        "anthropic-ratelimit-unified-5h-reset": str(reset),
        "anthropic-ratelimit-requests-limit": "1000",
        "anthropic-ratelimit-requests-remaining": str(left),
        "anthropic-ratelimit-requests-reset": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset)),
    }


def int_arg(s, default):
    try:
        return int(s)
    except (TypeError, ValueError):
        return default


def chunks(s, size):
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


def sse_events(ans):
    """The SSE events of a streamed answer, as (name, payload) pairs;
    ("delta", ...) marks where [[slow]] sleeps."""
    start = dict(ans.usage, output_tokens=1)
    msg = {"id": ans.msg_id, "type": "message", "role": "assistant",
           "model": ans.model, "content": [], "stop_reason": None,
           "stop_sequence": None, "usage": start}
    yield "message_start", {"type": "message_start", "message": msg}
    yield "ping", {"type": "ping"}
    for i, b in enumerate(ans.blocks):
        if b["type"] == "thinking":
            cb = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": c}
                      for c in chunks(b["thinking"], DELTA_BYTES)]
            deltas.append({"type": "signature_delta",
                           "signature": b["signature"]})
        elif b["type"] == "text":
            cb = {"type": "text", "text": ""}
            size = LONG_DELTA_BYTES if "long" in ans.d else DELTA_BYTES
            deltas = [{"type": "text_delta", "text": c}
                      for c in chunks(b["text"], size)]
        else:
            cb = {"type": "tool_use", "id": b["id"], "name": b["name"],
                  "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": c}
                      for c in chunks(json.dumps(b["input"]),
                                      JSON_DELTA_BYTES)]
        yield "content_block_start", {"type": "content_block_start",
                                      "index": i, "content_block": cb}
        for d in deltas:
            yield "content_block_delta", {"type": "content_block_delta",
                                          "index": i, "delta": d}
        yield "content_block_stop", {"type": "content_block_stop",
                                     "index": i}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": ans.stop_reason,
                                      "stop_sequence": None},
                            "usage": dict(ans.usage)}
    yield "message_stop", {"type": "message_stop"}


def log_request(entry):
    if log_file is None:
        return
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    with log_lock:
        log_file.write(line)
        log_file.flush()


class ClientGone(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-anthropic/1"

    def setup(self):
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            # Each SSE event is written on its own: without this every
            # turn waits on the peer's delayed ACK (~40 ms).
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)

    def address_string(self):
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, fmt, *args):
        pass

    # -- plumbing ---------------------------------------------------------

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    raise ValueError("body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n)

    def send_json(self, status, obj, request_id=None):
        body = json.dumps(obj).encode()
        self.send_response(status, STATUS_PHRASES.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("request-id", request_id)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_error_body(self, status, message, request_id=None):
        etype = ERROR_TYPES.get(status, "api_error")
        self.send_json(status, {"type": "error", "error": {
            "type": etype, "message": message}}, request_id)

    def write_chunk(self, data):
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ClientGone() from e

    def peer_gone(self, timeout):
        r, _, _ = select.select([self.connection], [], [], timeout)
        if not r:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- methods ----------------------------------------------------------

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path.split("?")[0] == "/":
            self.send_json(200, {"mock": True})
        else:
            self.send_error_body(404, "no such endpoint: " + self.path)

    def do_POST(self):
        path = self.path.split("?")[0]
        try:
            req = json.loads(self.read_body() or b"{}")
        except ValueError as e:
            self.close_connection = True
            self.send_error_body(400, "bad request body: %s" % e)
            return
        if path == "/v1/messages/count_tokens":
            ans = Answer(req)
            n = ans.usage["input_tokens"]
            log_request({"path": self.path, "stream": False,
                         "n_messages": ans.n_messages,
                         "human_text": ans.human_text[:HUMAN_TEXT_LOG_MAX],
                         "directives": [], "usage": {"input_tokens": n},
                         "blocks": []})
            self.send_json(200, {"input_tokens": n})
            return
        if path != "/v1/messages":
            self.send_error_body(404, "no such endpoint: " + self.path)
            return
        self.messages(req)

    def messages(self, req):
        ans = Answer(req)
        stream = bool(req.get("stream"))
        status = ans.error_status()
        entry = {"path": self.path, "stream": stream,
                 "model": ans.model,
                 "api_key": self.headers.get("x-api-key"),
                 "n_messages": ans.n_messages,
                 "human_text": ans.human_text[:HUMAN_TEXT_LOG_MAX],
                 "directives": [n for n, _ in ans.directives],
                 "usage": ans.usage,
                 "blocks": [b["type"] for b in ans.blocks]}
        if os.environ.get("MOCK_DUMP_LAST"):
            entry["last"] = (req.get("messages") or [None])[-1]
        if status is not None:
            entry.update(status=status, usage=None, blocks=[])
            log_request(entry)
            self.send_error_body(status, "mock error %d" % status,
                                 ans.request_id)
            return
        entry["status"] = 200
        if not stream:
            log_request(entry)
            self.send_json(200, ans.message(), ans.request_id)
            return
        if "stall" in ans.d:
            entry["status"] = "stall"
        elif "break" in ans.d:
            entry["status"] = "break"
        log_request(entry)
        self.stream(ans)

    def stream(self, ans):
        slow_s = min(max(int_arg(ans.d.get("slow"), 0), 0), MAX_SLOW_MS) \
            / 1000.0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", ans.request_id)
        for k, v in ratelimit_headers(ans).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            for name, payload in sse_events(ans):
                if name == "content_block_delta" and slow_s:
                    time.sleep(slow_s)     # [[slow]]: not a bound
                if name == "content_block_start" and "break" in ans.d:
                    self.close_connection = True
                    return
                if name == "content_block_delta" and "stall" in ans.d:
                    self.stall()
                    return
                self.write_chunk(("event: %s\ndata: %s\n\n" % (
                    name, json.dumps(payload))).encode())
            self.write_chunk(b"")
        except ClientGone:
            self.close_connection = True

    def stall(self):
        """Hold the stream open until the client or the mock goes away."""
        self.close_connection = True
        while not stopping.is_set():
            if self.peer_gone(STALL_POLL_S):
                return


class TCPServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def write_port_file(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%s\n" % value)
    os.rename(tmp, path)


def main():
    global log_file
    ap = argparse.ArgumentParser(description="mock Anthropic Messages API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--stdin-eof-exit", action="store_true")
    args = ap.parse_args()

    if args.log:
        log_file = open(args.log, "a", encoding="utf-8")
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        server = UnixServer(args.unix, Handler)
        listening = args.unix
    else:
        server = TCPServer(("127.0.0.1", args.port), Handler)
        listening = server.server_address[1]

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if args.stdin_eof_exit:
        def watch_stdin():
            while os.read(sys.stdin.fileno(), 4096):
                pass
            done.set()
        threading.Thread(target=watch_stdin, daemon=True).start()

    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    if args.port_file:
        write_port_file(args.port_file, listening)
    while not done.wait(1.0):     # a poll of stdin's end: not a bound
        pass
    stopping.set()
    server.shutdown()
    server.server_close()
    if args.unix:
        try:
            os.unlink(args.unix)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
