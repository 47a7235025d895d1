// hotplex: a client for hotplexd (hotplex-protocol(7)).  No dependencies;
// Node.js 18 or later.  One connection; reply lines are routed by their id
// to the request that waits for them, so that an interrupt or a permission
// answer may be sent while a turn streams on the same connection.

import net from 'node:net';

export const DEFAULT_SOCKET = '/run/hotplex/hotplexd.sock';
export const PROTO_VERSION = 1;
// The longest reply line read: a done's result is at most 1 MiB; the
// daemon buffers 16 MiB per client.
const LINE_MAX = 32 * 1024 * 1024;

export class HotplexError extends Error {
  constructor(code, message, data = {}, session = undefined) {
    super(`${code}: ${message}`);
    this.name = 'HotplexError';
    this.code = code;
    // The message without the code in front, as the daemon wrote it.
    this.text = message;
    this.data = data;
    this.session = session;
  }
}

export class ConnectionLost extends HotplexError {
  constructor(message = 'connection to hotplexd lost') {
    super('disconnected', message);
    this.name = 'ConnectionLost';
  }
}

export class Event {
  constructor(line) {
    this.type = line.type;
    this.data = line.data;
    this.seq = line.seq;
    this.id = line.id;
    this.session = line.session;
    // 'cli' for a line of a turn the CLI started by itself (attach only).
    this.origin = line.origin ?? null;
    this.raw = line;
  }
}

function errorOf(line) {
  const d = line.data || {};
  return new HotplexError(d.code || 'internal', d.message || '', d,
    line.session);
}

// An async queue of lines that a connection's end fails.
class Queue {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.err = null;
    this.done = false;
  }

  push(x) {
    const w = this.waiters.shift();
    if (w) w.resolve(x);
    else this.items.push(x);
  }

  fail(err) {
    this.err = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  finish() {
    this.done = true;
    for (const w of this.waiters.splice(0)) w.resolve(null);
  }

  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.done) return Promise.resolve(null);
    if (this.err) return Promise.reject(this.err);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
    });
  }
}

function permissionFields(session, requestId, decision, message,
  updatedInput) {
  if (decision !== 'allow' && decision !== 'deny')
    throw new TypeError('decision must be "allow" or "deny"');
  return { session, request_id: requestId, decision, message,
    updated_input: updatedInput };
}

export class Client {
  // new Client({socket}): socket defaults to $HOTPLEX_SOCKET, then the
  // system's.  Requests made before the connection is up are queued.
  constructor({ socket } = {}) {
    this.path = socket || process.env.HOTPLEX_SOCKET || DEFAULT_SOCKET;
    this.n = 0;
    this.pending = new Map();   // request id -> Queue of its lines
    this.turns = new Map();     // execute request id -> its session
    this.follow = new Map();    // attached session -> Queue
    this.lost = null;
    this.buf = '';
    this.sock = net.createConnection(this.path);
    this.sock.setEncoding('utf8');
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.connected.catch(() => {});
    this.sock.on('data', (chunk) => this.#onData(chunk));
    this.sock.on('error', (e) => this.#end(new ConnectionLost(e.message)));
    this.sock.on('close', () => this.#end(new ConnectionLost()));
  }

  #onData(chunk) {
    this.buf += chunk;
    let nl;
    while ((nl = this.buf.indexOf('\n')) !== -1) {
      const raw = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.#route(raw);
    }
    if (this.buf.length > LINE_MAX) {
      this.#end(new HotplexError('too_large',
        `reply line longer than ${LINE_MAX} bytes`));
      this.sock.destroy();
    }
  }

  #route(raw) {
    let o;
    try {
      o = JSON.parse(raw);
    } catch (e) {
      return; // not ours to judge; the daemon writes JSON
    }
    if (o === null || typeof o !== 'object') return;
    // Event lines (seq) of an attached session keep the id of the
    // execute they belong to, which may be another client's and equal
    // to one of ours: they go to our request only if it is that turn.
    const evline = o.seq != null;
    const q = this.pending.get(o.id);
    if (q && (!evline || this.turns.get(o.id) === o.session)) q.push(o);
    else if (evline && this.follow.has(o.session))
      this.follow.get(o.session).push(o);
    else if (o.id == null && o.type === 'error') {
      // Refused as a connection (capacity, forbidden).
      this.#end(errorOf(o));
      this.sock.destroy();
    }
  }

  #end(err) {
    if (this.lost) return;
    this.lost = err;
    for (const q of this.pending.values()) q.fail(err);
    for (const q of this.follow.values()) q.fail(err);
  }

  #send(op, fields = {}) {
    if (this.lost) throw this.lost;
    const rid = `js${++this.n}`;
    const o = { op, id: rid };
    for (const [k, v] of Object.entries(fields))
      if (v !== undefined && v !== null) o[k] = v;
    this.pending.set(rid, new Queue());
    this.sock.write(JSON.stringify(o) + '\n');
    return rid;
  }

  // Sends any operation; resolves to its reply line (an object), rejects
  // with HotplexError for an error line.
  async request(op, fields = {}) {
    const rid = this.#send(op, fields);
    try {
      const o = await this.pending.get(rid).next();
      if (o.type === 'error') throw errorOf(o);
      return o;
    } finally {
      this.pending.delete(rid);
    }
  }

  async #data(op, fields) {
    return (await this.request(op, fields)).data;
  }

  hello(client = 'hotplex-node') {
    return this.request('hello', { proto: PROTO_VERSION, client });
  }

  // Sends the request now; returns an async iterable of the turn's
  // Events, ending with done.  An error line throws HotplexError.
  execute(session, prompt, opts = {}) {
    const { workdir, queue, onPermission, ...options } = opts;
    const f = { session, prompt, workdir };
    if (queue) f.queue = true;
    if (Object.keys(options).length) f.options = options;
    const rid = this.#send('execute', f);
    this.turns.set(rid, session);
    return this.#turn(rid, onPermission);
  }

  async *#turn(rid, onPermission) {
    const q = this.pending.get(rid);
    try {
      for (;;) {
        const ev = new Event(await q.next());
        if (ev.type === 'error') throw errorOf(ev.raw);
        if (ev.type === 'permission_request' && onPermission)
          await this.#answer(ev, onPermission);
        yield ev;
        if (ev.type === 'done') return;
      }
    } finally {
      // A reader that leaves early drops the rest of the turn.
      this.pending.delete(rid);
      this.turns.delete(rid);
    }
  }

  async #answer(ev, onPermission) {
    const d = ev.data || {};
    const req = { session: ev.session, requestId: d.request_id,
      request_id: d.request_id, toolId: d.tool_id, name: d.name,
      input: d.input, event: ev };
    const a = await onPermission(req);
    if (a === null || a === undefined) return;
    const f = typeof a === 'string'
      ? permissionFields(req.session, req.requestId, a)
      : permissionFields(req.session, req.requestId, a.decision, a.message,
        a.updated_input ?? a.updatedInput);
    try {
      await this.request('permission', f);
    } catch (e) {
      // Someone else answered first, or it timed out meanwhile.
      if (!(e instanceof HotplexError) || e.code !== 'not_found') throw e;
    }
  }

  open(session, opts = {}) {
    const { workdir, ...options } = opts;
    const f = { session, workdir };
    if (Object.keys(options).length) f.options = options;
    return this.#data('open', f);
  }

  interrupt(session) { return this.#data('interrupt', { session }); }

  stop(session, { reason } = {}) {
    return this.#data('stop', { session, reason });
  }

  reset(session) { return this.#data('reset', { session }); }

  stats(session) { return this.#data('stats', { session }); }

  sessions() { return this.#data('sessions'); }

  permission(session, requestId, decision, { message, updatedInput } = {}) {
    return this.#data('permission', permissionFields(session, requestId,
      decision, message, updatedInput));
  }

  // settings: model, permission_mode, max_budget_usd (the protocol's).
  configure(session, settings = {}) {
    return this.#data('configure', { ...settings, session });
  }

  policyCheck(text, target) {
    return this.#data('policy_check', { text, target });
  }

  audit(filters = {}) { return this.#data('audit', filters); }

  reload() { return this.#data('reload'); }

  shutdown() { return this.#data('shutdown'); }

  // Follows a session: an async iterable of its lines after sinceSeq
  // (error lines come as events), ending at detach(); .info is the
  // attach answer's data.
  async attach(session, { sinceSeq = 0 } = {}) {
    const q = new Queue();
    this.follow.set(session, q);
    let info;
    try {
      info = await this.#data('attach', { session, since_seq: sinceSeq });
    } catch (e) {
      this.follow.delete(session);
      throw e;
    }
    return {
      info,
      session,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const o = await q.next();
          if (o === null) return;
          yield new Event(o);
        }
      },
    };
  }

  detach(session) {
    const q = this.follow.get(session);
    this.follow.delete(session);
    if (q) q.finish();
    return this.#data('detach', { session });
  }

  // Ends the connection; resolves once it is closed.
  close() {
    return new Promise((resolve) => {
      if (this.sock.destroyed) return resolve();
      this.sock.once('close', () => resolve());
      // Written requests go out first; then the connection is gone.
      this.sock.end(() => this.sock.destroy());
    });
  }
}
