"""What the synchronous and the asyncio clients share: the socket path,
request lines, events and errors (hotplex-protocol(7))."""

import json
import os

DEFAULT_SOCKET = "/run/hotplex/hotplexd.sock"
PROTO_VERSION = 1
# The longest reply line read: a done's result is at most 1 MiB, an
# event's JSON escaping may grow it; the daemon buffers 16 MiB per client.
LINE_MAX = 32 * 1024 * 1024
TERMINAL = ("done", "error")
DECISIONS = ("allow", "deny")


class HotplexError(Exception):
    """An error line: .code (see ERROR CODES in hotplex-protocol(7)),
    .message, .data (the line's whole data), .session."""

    def __init__(self, code, message, data=None, session=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.data = data if data is not None else {}
        self.session = session


class ConnectionLost(HotplexError):
    """The daemon closed the connection (or went away) before the
    reply or terminal line that was awaited."""

    def __init__(self, message="connection to hotplexd lost"):
        super().__init__("disconnected", message)


class Event:
    """One line of a turn: .type, .data, .seq, .id, .session; .origin is
    "cli" for a line of a turn the CLI started by itself (attach only),
    else None; .raw is the decoded line."""

    __slots__ = ("type", "data", "seq", "id", "session", "origin", "raw")

    def __init__(self, line):
        self.raw = line
        self.type = line.get("type")
        self.data = line.get("data")
        self.seq = line.get("seq")
        self.id = line.get("id")
        self.session = line.get("session")
        self.origin = line.get("origin")

    def __repr__(self):
        return "Event(type=%r, seq=%r, data=%r)" % (self.type, self.seq,
                                                    self.data)


class PermissionRequest:
    """A permission_request event, as on_permission receives it."""

    __slots__ = ("session", "request_id", "tool_id", "name", "input",
                 "event")

    def __init__(self, ev):
        d = ev.data or {}
        self.event = ev
        self.session = ev.session
        self.request_id = d.get("request_id")
        self.tool_id = d.get("tool_id")
        self.name = d.get("name")
        self.input = d.get("input")

    def __repr__(self):
        return "PermissionRequest(%r, %r, %r)" % (self.request_id,
                                                  self.name, self.input)


def socket_path(path=None):
    """The socket: the argument, else $HOTPLEX_SOCKET, else the system's."""
    return path or os.environ.get("HOTPLEX_SOCKET") or DEFAULT_SOCKET


def encode(op, rid, fields):
    """A request line; fields that are None are left out."""
    o = {"op": op, "id": rid}
    for k, v in fields.items():
        if v is not None:
            o[k] = v
    return (json.dumps(o, separators=(",", ":")) + "\n").encode()


def decode(raw):
    try:
        o = json.loads(raw)
    except ValueError as e:
        raise HotplexError("internal", "bad reply line: %s" % e)
    if not isinstance(o, dict):
        raise HotplexError("internal", "reply line is not an object")
    return o


def error_of(line):
    d = line.get("data") or {}
    return HotplexError(d.get("code", "internal"), d.get("message", ""),
                        d, line.get("session"))


def check(line):
    """The reply line, or its HotplexError raised."""
    if line.get("type") == "error":
        raise error_of(line)
    return line


def execute_fields(session, prompt, workdir, queue, options):
    f = {"session": session, "prompt": prompt, "workdir": workdir}
    if queue:
        f["queue"] = True
    if options:
        f["options"] = options
    return f


def open_fields(session, workdir, options):
    f = {"session": session, "workdir": workdir}
    if options:
        f["options"] = options
    return f


def permission_fields(session, request_id, decision, message, updated_input):
    if decision not in DECISIONS:
        raise ValueError("decision must be \"allow\" or \"deny\"")
    return {"session": session, "request_id": request_id,
            "decision": decision, "message": message,
            "updated_input": updated_input}


def answer_fields(req, answer):
    """permission fields for what on_permission returned, or None when
    it leaves the request unanswered."""
    if answer is None:
        return None
    if isinstance(answer, str):
        return permission_fields(req.session, req.request_id, answer,
                                 None, None)
    if isinstance(answer, dict):
        return permission_fields(req.session, req.request_id,
                                 answer.get("decision"),
                                 answer.get("message"),
                                 answer.get("updated_input"))
    raise TypeError("on_permission must return \"allow\", \"deny\", "
                    "a dict or None")
