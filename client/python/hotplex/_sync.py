"""The synchronous client: one connection, requests answered in any order.

Reply lines are routed by their id to the request that waits for them, so
that a permission answer or an interrupt may be sent while a turn streams
on the same connection; lines of a session being followed (attach) that
belong to no request of ours go to that attachment.
"""

import collections
import socket as _socket

from . import _proto
from ._proto import ConnectionLost, Event, HotplexError, PermissionRequest


class Client:
    """A connection to hotplexd.  Client(socket=None, timeout=None):
    socket is the path (default $HOTPLEX_SOCKET, then the system's);
    timeout bounds each read, in seconds (None: wait as long as a turn
    takes).  A context manager; close() ends the connection."""

    def __init__(self, socket=None, timeout=None):
        self.path = _proto.socket_path(socket)
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(self.path)
        except OSError:
            self._sock.close()
            raise
        self._rf = self._sock.makefile("rb")
        self._n = 0
        self._pending = {}      # request id -> deque of its lines
        self._turns = {}        # execute request id -> its session
        self._follow = {}       # attached session -> deque of its lines
        self._lost = None

    def close(self):
        if self._sock is None:
            return
        try:
            self._rf.close()
        finally:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Lines in and out.

    def _send(self, op, fields):
        if self._sock is None:
            raise ConnectionLost("client is closed")
        self._n += 1
        rid = "py%d" % self._n
        self._pending[rid] = collections.deque()
        try:
            self._sock.sendall(_proto.encode(op, rid, fields))
        except OSError as e:
            del self._pending[rid]
            raise ConnectionLost("send: %s" % e)
        return rid

    def _read(self):
        """Reads one line and routes it."""
        if self._lost is not None:
            raise self._lost
        try:
            raw = self._rf.readline(_proto.LINE_MAX)
        except OSError as e:
            if isinstance(e, _socket.timeout):
                raise
            raw = b""
        if not raw or not raw.endswith(b"\n"):
            self._lost = ConnectionLost() if not raw else HotplexError(
                "too_large", "reply line longer than %d bytes" %
                _proto.LINE_MAX)
            raise self._lost
        o = _proto.decode(raw)
        rid = o.get("id")
        # Event lines (seq) of an attached session keep the id of the
        # execute they belong to, which may be another client's and equal
        # to one of ours: they go to our request only if it is that turn.
        evline = o.get("seq") is not None
        if rid in self._pending and (not evline or
                                     self._turns.get(rid) == o.get("session")):
            self._pending[rid].append(o)
        elif evline and o.get("session") in self._follow:
            self._follow[o["session"]].append(o)
        elif rid is None and o.get("type") == "error":
            # Refused as a connection (capacity, forbidden).
            raise _proto.error_of(o)
        # Anything else belongs to a turn whose reader left.

    def _next(self, rid):
        q = self._pending[rid]
        while not q:
            self._read()
        return q.popleft()

    def request(self, op, **fields):
        """Sends any operation and returns its reply line (a dict); an
        error line raises HotplexError.  Fields that are None are left
        out."""
        rid = self._send(op, fields)
        try:
            return _proto.check(self._next(rid))
        finally:
            self._pending.pop(rid, None)

    def _data(self, op, **fields):
        return self.request(op, **fields).get("data")

    # Operations, as hotplex-protocol(7) names them.

    def hello(self, client="hotplex-python"):
        return self.request("hello", proto=_proto.PROTO_VERSION,
                            client=client)

    def execute(self, session, prompt, *, workdir=None, queue=False,
                on_permission=None, **options):
        """Runs a turn; returns an iterator of its events, the last of
        which is done.  An error line raises HotplexError.  The request
        is sent at once (before the first event is read)."""
        rid = self._send("execute", _proto.execute_fields(
            session, prompt, workdir, queue, options))
        self._turns[rid] = session
        return self._turn(rid, on_permission)

    def _turn(self, rid, on_permission):
        try:
            while True:
                ev = Event(self._next(rid))
                if ev.type == "error":
                    raise _proto.error_of(ev.raw)
                if ev.type == "permission_request" and on_permission:
                    self._answer(PermissionRequest(ev), on_permission)
                yield ev
                if ev.type == "done":
                    return
        finally:
            # A reader that leaves early drops the rest of the turn.
            self._pending.pop(rid, None)
            self._turns.pop(rid, None)

    def _answer(self, req, on_permission):
        f = _proto.answer_fields(req, on_permission(req))
        if f is None:
            return
        try:
            self.request("permission", **f)
        except HotplexError as e:
            # Someone else answered first, or it timed out meanwhile.
            if e.code != "not_found":
                raise

    def open(self, session, *, workdir=None, **options):
        return self._data("open", **_proto.open_fields(session, workdir,
                                                       options))

    def interrupt(self, session):
        return self._data("interrupt", session=session)

    def stop(self, session, reason=None):
        return self._data("stop", session=session, reason=reason)

    def reset(self, session):
        return self._data("reset", session=session)

    def stats(self, session=None):
        return self._data("stats", session=session)

    def sessions(self):
        return self._data("sessions")

    def permission(self, session, request_id, decision, message=None,
                   updated_input=None):
        """Answers a permission_request: decision "allow" or "deny"."""
        return self._data("permission", **_proto.permission_fields(
            session, request_id, decision, message, updated_input))

    def configure(self, session, **settings):
        """Changes a live session's settings (model, permission_mode,
        max_budget_usd)."""
        return self._data("configure", session=session, **settings)

    def policy_check(self, text, target=None):
        return self._data("policy_check", text=text, target=target)

    def audit(self, **filters):
        return self._data("audit", **filters)

    def reload(self):
        return self._data("reload")

    def shutdown(self):
        return self._data("shutdown")

    def attach(self, session, since_seq=0):
        """Follows a session: returns an Attachment, an iterator of the
        session's lines after since_seq (error lines come as events),
        ending at detach().  Its .info is the attach answer's data."""
        self._follow[session] = collections.deque()
        try:
            info = self._data("attach", session=session,
                              since_seq=since_seq)
        except BaseException:
            del self._follow[session]
            raise
        return Attachment(self, session, info)

    def detach(self, session):
        self._follow.pop(session, None)
        return self._data("detach", session=session)


class Attachment:
    """The lines of a followed session, as Events."""

    def __init__(self, client, session, info):
        self.client = client
        self.session = session
        self.info = info

    def __iter__(self):
        return self

    def __next__(self):
        c = self.client
        while True:
            q = c._follow.get(self.session)
            if q is None:
                raise StopIteration
            if q:
                return Event(q.popleft())
            c._read()
