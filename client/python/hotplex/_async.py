"""The asyncio client: the same operations as Client, as coroutines; a
reader task routes every reply line to the request (or attachment) that
waits for it."""

import asyncio
import inspect

from . import _proto
from ._proto import ConnectionLost, Event, HotplexError, PermissionRequest

_EOF = object()     # put in every queue when the connection ends


class AsyncClient:
    """AsyncClient(socket=None): `async with AsyncClient() as c:`, or
    `await c.connect()` ... `await c.close()`."""

    def __init__(self, socket=None):
        self.path = _proto.socket_path(socket)
        self._reader = self._writer = self._task = None
        self._n = 0
        self._pending = {}      # request id -> asyncio.Queue of lines
        self._turns = {}        # execute request id -> its session
        self._follow = {}       # attached session -> asyncio.Queue
        self._lost = None

    async def connect(self):
        self._reader, self._writer = await asyncio.open_unix_connection(
            self.path, limit=_proto.LINE_MAX)
        self._task = asyncio.ensure_future(self._read_loop())
        return self

    async def close(self):
        if self._writer is None:
            return
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, OSError):
            pass
        self._writer = None

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    async def _read_loop(self):
        try:
            while True:
                try:
                    raw = await self._reader.readline()
                except (OSError, ValueError) as e:
                    # ValueError: a line longer than LINE_MAX.
                    self._lost = ConnectionLost("read: %s" % e)
                    break
                if not raw.endswith(b"\n"):
                    self._lost = ConnectionLost()
                    break
                o = _proto.decode(raw)
                rid = o.get("id")
                # Event lines of a followed session keep their execute's
                # id, which may equal one of ours (see _sync.py).
                evline = o.get("seq") is not None
                if rid in self._pending and (
                        not evline or
                        self._turns.get(rid) == o.get("session")):
                    self._pending[rid].put_nowait(o)
                elif evline and o.get("session") in self._follow:
                    self._follow[o["session"]].put_nowait(o)
                elif rid is None and o.get("type") == "error":
                    self._lost = _proto.error_of(o)
                    break
        finally:
            if self._lost is None:
                self._lost = ConnectionLost()
            for q in list(self._pending.values()) + \
                    list(self._follow.values()):
                q.put_nowait(_EOF)

    def _send(self, op, fields):
        """Writes a request (no await: the line is queued at once, so
        requests go out in the order of the calls)."""
        if self._writer is None:
            raise ConnectionLost("client is not connected")
        if self._lost is not None:
            raise self._lost
        self._n += 1
        rid = "py%d" % self._n
        self._pending[rid] = asyncio.Queue()
        self._writer.write(_proto.encode(op, rid, fields))
        return rid

    async def _next(self, q):
        o = await q.get()
        if o is _EOF:
            q.put_nowait(_EOF)
            raise self._lost
        return o

    async def request(self, op, **fields):
        rid = self._send(op, fields)
        try:
            await self._writer.drain()
            return _proto.check(await self._next(self._pending[rid]))
        except OSError as e:
            raise ConnectionLost("send: %s" % e)
        finally:
            self._pending.pop(rid, None)

    async def _data(self, op, **fields):
        return (await self.request(op, **fields)).get("data")

    async def hello(self, client="hotplex-python"):
        return await self.request("hello", proto=_proto.PROTO_VERSION,
                                  client=client)

    def execute(self, session, prompt, *, workdir=None, queue=False,
                on_permission=None, **options):
        """Sends the request now; returns an async iterator of the
        turn's events, ending with done (an error line raises)."""
        rid = self._send("execute", _proto.execute_fields(
            session, prompt, workdir, queue, options))
        self._turns[rid] = session
        return self._turn(rid, on_permission)

    async def _turn(self, rid, on_permission):
        q = self._pending[rid]
        try:
            while True:
                ev = Event(await self._next(q))
                if ev.type == "error":
                    raise _proto.error_of(ev.raw)
                if ev.type == "permission_request" and on_permission:
                    await self._answer(PermissionRequest(ev), on_permission)
                yield ev
                if ev.type == "done":
                    return
        finally:
            self._pending.pop(rid, None)
            self._turns.pop(rid, None)

    async def _answer(self, req, on_permission):
        answer = on_permission(req)
        if inspect.isawaitable(answer):
            answer = await answer
        f = _proto.answer_fields(req, answer)
        if f is None:
            return
        try:
            await self.request("permission", **f)
        except HotplexError as e:
            if e.code != "not_found":
                raise

    async def open(self, session, *, workdir=None, **options):
        return await self._data("open", **_proto.open_fields(
            session, workdir, options))

    async def interrupt(self, session):
        return await self._data("interrupt", session=session)

    async def stop(self, session, reason=None):
        return await self._data("stop", session=session, reason=reason)

    async def reset(self, session):
        return await self._data("reset", session=session)

    async def stats(self, session=None):
        return await self._data("stats", session=session)

    async def sessions(self):
        return await self._data("sessions")

    async def permission(self, session, request_id, decision, message=None,
                         updated_input=None):
        return await self._data("permission", **_proto.permission_fields(
            session, request_id, decision, message, updated_input))

    async def configure(self, session, **settings):
        return await self._data("configure", session=session, **settings)

    async def policy_check(self, text, target=None):
        return await self._data("policy_check", text=text, target=target)

    async def audit(self, **filters):
        return await self._data("audit", **filters)

    async def reload(self):
        return await self._data("reload")

    async def shutdown(self):
        return await self._data("shutdown")

    async def attach(self, session, since_seq=0):
        """Follows a session: an async iterator of its lines after
        since_seq, ending at detach(); .info is the answer's data."""
        self._follow[session] = asyncio.Queue()
        try:
            info = await self._data("attach", session=session,
                                    since_seq=since_seq)
        except BaseException:
            del self._follow[session]
            raise
        return AsyncAttachment(self, session, info)

    async def detach(self, session):
        q = self._follow.pop(session, None)
        if q is not None:
            q.put_nowait(None)      # ends the attachment's iteration
        return await self._data("detach", session=session)


class AsyncAttachment:
    def __init__(self, client, session, info):
        self.client = client
        self.session = session
        self.info = info
        self._q = client._follow[session]

    def __aiter__(self):
        return self

    async def __anext__(self):
        o = await self.client._next(self._q)
        if o is None:
            raise StopAsyncIteration
        return Event(o)
