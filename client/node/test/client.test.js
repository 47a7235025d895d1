// The Node client against a real hotplexd with the stand-in CLI.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client, ConnectionLost, HotplexError } from '../index.js';
import { Daemon, ROOT, scaled } from '../support/daemon.js';

const PKG = path.join(ROOT, 'client', 'node');
const INSTALL_TIMEOUT_MS = 300000;  // npm on a loaded machine
const EXAMPLE_TIMEOUT_MS = 120000;

let d;

before(async () => {
  d = await new Daemon().start();
});

after(async () => {
  await d.stop();
});

async function collect(it) {
  const out = [];
  for await (const ev of it) out.push(ev);
  return out;
}

async function untilDone(it) {
  const out = [];
  for await (const ev of it) {
    out.push(ev);
    if (ev.type === 'done') break;
  }
  return out;
}

test('npm install ./client/node offline; the README example runs as written',
  () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hpnpm.'));
    try {
      execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund',
        '--install-links', '--loglevel=error', '--prefix', tmp, PKG],
      { timeout: scaled(INSTALL_TIMEOUT_MS), stdio: 'pipe' });
      assert.ok(fs.existsSync(path.join(tmp, 'node_modules', 'hotplex',
        'index.d.ts')), 'installed with its declarations');
      const readme = fs.readFileSync(path.join(PKG, 'README.md'), 'utf8');
      const m = /```js\n([\s\S]*?)```/.exec(readme);
      assert.ok(m, 'README has a js example');
      const file = path.join(tmp, 'example.mjs');
      fs.writeFileSync(file, m[1]);
      const out = execFileSync('node', [file], {
        env: { ...process.env, HOTPLEX_SOCKET: d.sock },
        timeout: scaled(EXAMPLE_TIMEOUT_MS),
        encoding: 'utf8',
      });
      assert.match(out, /fake-claude turn 1\./);
      assert.match(out, /1 turn\(s\), \$/);
      assert.match(out, /refused: not_found/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

test('execute yields events with seq, ending with done', async () => {
  const c = new Client({ socket: d.sock });
  try {
    const h = await c.hello();
    assert.equal(h.proto, 1);
    const evs = await collect(c.execute('n1', 'stream:4',
      { workdir: path.join(d.work, 'n1'), model: 'claude-fake' }));
    const types = evs.map((e) => e.type);
    assert.equal(types[0], 'session_start');
    assert.equal(types.at(-1), 'done');
    assert.equal(types.filter((t) => t === 'answer').length, 4);
    assert.deepEqual(evs.map((e) => e.seq),
      Array.from(evs, (_, i) => i + 1));
    assert.equal(evs.at(-1).data.ok, true);
    assert.equal(evs.at(-1).session, 'n1');
    assert.equal((await c.stats('n1')).turns, 1);
    assert.ok((await c.sessions()).some((s) => s.session === 'n1'));
    assert.ok((await c.stats()).sessions >= 1);
    assert.equal((await c.policyCheck('echo hi', 'bash')).blocked, false);
  } finally {
    await c.close();
  }
});

test('error lines throw HotplexError with .code', async () => {
  const c = new Client({ socket: d.sock });
  try {
    await assert.rejects(collect(c.execute('n2', 'hi', { workdir: '/etc' })),
      (e) => e instanceof HotplexError && e.code === 'workdir_denied' &&
        e.text.includes('/etc'));
    await assert.rejects(c.stop('nosuch'),
      (e) => e instanceof HotplexError && e.code === 'not_found');
    await assert.rejects(c.request('nosuchop'),
      (e) => e.code === 'unknown_op');
    assert.throws(() => c.permission('n2', 'x', 'maybe'), TypeError);
  } finally {
    await c.close();
  }
});

test('interrupt on the same connection while a turn streams', async () => {
  const c = new Client({ socket: d.sock });
  try {
    const it = c.execute('n3', 'stall')[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value.type, 'session_start');
    assert.deepEqual(await c.interrupt('n3'), { interrupting: true });
    const rest = [];
    for (let r = await it.next(); !r.done; r = await it.next())
      rest.push(r.value);
    assert.equal(rest.at(-1).type, 'done');
    assert.equal(rest.at(-1).data.interrupted, true);
    // A reader that leaves a turn early leaves the connection usable.
    for await (const ev of c.execute('n3', 'stream:5')) {
      assert.equal(ev.type, 'session_start');
      break;
    }
    assert.equal((await c.stats('n3')).session, 'n3');
    // Two sessions' turns at once on one connection.
    const [a, b] = await Promise.all([
      collect(c.execute('n4', 'delay:5 stream:4')),
      collect(c.execute('n5', 'delay:5 stream:4')),
    ]);
    assert.equal(a.at(-1).type, 'done');
    assert.equal(b.at(-1).type, 'done');
    assert.equal(a[0].session, 'n4');
    assert.equal(b[0].session, 'n5');
  } finally {
    await c.close();
  }
});

test('execute with queue waits behind the running turn', async () => {
  const c = new Client({ socket: d.sock });
  try {
    const first = collect(c.execute('nq', 'delay:20 stream:3'));
    const second = collect(c.execute('nq', 'echo queued', { queue: true }));
    const [a, b] = await Promise.all([first, second]);
    assert.equal(b[0].type, 'queued');
    assert.equal(b[0].seq, undefined);
    assert.deepEqual(b[0].data, { position: 1 });
    assert.equal(b[1].seq, a.at(-1).seq + 1);
    assert.match(b.at(-1).data.result, /^echo queued/);
  } finally {
    await c.close();
  }
});

test('onPermission answers permission requests', async () => {
  const c = new Client({ socket: d.sock });
  const other = new Client({ socket: d.sock });
  try {
    const asked = [];
    let evs = await collect(c.execute('np', 'tool:echo js-allowed', {
      approvals: 'client',
      onPermission: (req) => { asked.push(req); return 'allow'; },
    }));
    assert.equal(asked.length, 1);
    assert.equal(asked[0].name, 'Bash');
    assert.equal(asked[0].input.command, 'echo js-allowed');
    assert.match(evs.find((e) => e.type === 'tool_result').data.output,
      /js-allowed/);
    evs = await collect(c.execute('np', 'tool:echo no', {
      onPermission: async () => ({ decision: 'deny', message: 'js says no' }),
    }));
    const pd = evs.find((e) => e.type === 'permission_denied');
    assert.equal(pd.data.by, 'client');
    assert.equal(pd.data.reason, 'js says no');
    // Another client answers first; the later answer is not_found.
    evs = await collect(c.execute('np', 'tool:echo mine', {
      onPermission: async (req) => {
        await other.permission(req.session, req.requestId, 'allow',
          { updatedInput: { command: 'echo by-other' } });
        return 'deny';
      },
    }));
    assert.match(evs.find((e) => e.type === 'tool_result').data.output,
      /by-other/);
    assert.equal(evs.find((e) => e.type === 'permission_denied'), undefined);
    evs = await collect(c.execute('npt', 'tool:echo t', {
      approvals: 'client', approval_timeout_ms: 200, onPermission: () => null,
    }));
    assert.equal(evs.find((e) => e.type === 'permission_denied').data.by,
      'timeout');
  } finally {
    await c.close();
    await other.close();
  }
});

test('configure and budgets', async () => {
  const c = new Client({ socket: d.sock });
  try {
    await collect(c.execute('nc', 'hi', { max_budget_usd: 0.01 }));
    assert.deepEqual(await c.configure('nc', { model: 'js-model' }),
      { live: true });
    const evs = await collect(c.execute('nc', 'settings cost:0.02'));
    assert.match(evs.at(-1).data.result, /^model:js-model /);
    await assert.rejects(collect(c.execute('nc', 'hi')),
      (e) => e.code === 'budget_exceeded');
    await c.configure('nc', { max_budget_usd: 1 });
    assert.equal((await collect(c.execute('nc', 'hi'))).at(-1).type, 'done');
  } finally {
    await c.close();
  }
});

test('open, reset, stop', async () => {
  const c = new Client({ socket: d.sock });
  try {
    await c.open('n6', { workdir: path.join(d.work, 'n6') });
    const st = (s) => s.find((x) => x.session === 'n6').state;
    assert.equal(st(await c.sessions()), 'ready');
    await c.reset('n6');
    await c.stop('n6', { reason: 'test' });
    assert.equal(st(await c.sessions()), 'ended');
  } finally {
    await c.close();
  }
});

test('attach follows another client\'s turn; detach ends it', async () => {
  const a = new Client({ socket: d.sock });
  const b = new Client({ socket: d.sock });
  try {
    await collect(a.execute('n7', 'stream:2'));
    const att = await b.attach('n7');
    assert.equal(att.info.session, 'n7');
    const replay = await untilDone(att);
    assert.equal(replay[0].seq, 1);
    const mine = await collect(a.execute('n7', 'stream:3'));
    const live = await untilDone(att);
    assert.deepEqual(live.map((e) => [e.seq, e.type]),
      mine.map((e) => [e.seq, e.type]));
    await b.detach('n7');
    assert.deepEqual(await collect(att), []);
  } finally {
    await a.close();
    await b.close();
  }
});

test('a daemon gone mid-turn throws ConnectionLost', async () => {
  const g = await new Daemon().start();
  try {
    const c = new Client({ socket: g.sock });
    const it = c.execute('g1', 'stall')[Symbol.asyncIterator]();
    assert.equal((await it.next()).value.type, 'session_start');
    const workers = g.workers();
    // The session's worker at least (and the spawner as root).
    assert.ok(workers.length >= (process.getuid() === 0 ? 2 : 1));
    g.proc.kill('SIGKILL');
    await g.exited;
    // Lines written before the kill may still come; then the loss.
    await assert.rejects((async () => {
      for (let r = await it.next(); !r.done; r = await it.next())
        assert.notEqual(r.value.type, 'done');
    })(), (e) => e instanceof ConnectionLost && e.code === 'disconnected');
    await assert.rejects(c.sessions(), ConnectionLost);
    await c.close();
    await Daemon.gone(workers);  // workers die with their master
  } finally {
    await g.stop();
  }
});

test('a socket nobody listens on rejects with ConnectionLost', async () => {
  const c = new Client({ socket: path.join(d.dir, 'nosuch.sock') });
  await assert.rejects(c.connected);
  await assert.rejects(c.sessions(), ConnectionLost);
  await c.close();
});
