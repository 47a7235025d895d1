// A hotplexd of the tests' own, on a private socket in a temp dir, with
// the stand-in CLI (tests/fake-claude), as tests/integration/hplib.py
// starts it.  Every daemon started here is stopped by stop().

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
  '..', '..', '..');  // client/node/support
export const BDIR = path.resolve(ROOT, process.env.B || 'build');
const CONNECT_TIMEOUT_MS = 10000;   // the daemon binds before it forks
const POLL_MS = 20;                 // connect attempts while it starts
const SCALE_MAX = 100;              // only a bogus load reading is cut

// How much longer than on an idle machine things take now, as time_scale()
// in tests/integration/hplib.py: a bound that only stops a stuck test is
// multiplied by it, so that another make check beside us costs time, not
// failures.  HP_TIME_SCALE, else the larger of the 1- and 5-minute load
// averages per CPU, from 1 to SCALE_MAX.
export function timeScale() {
  const v = Number(process.env.HP_TIME_SCALE);
  if (v > 0) return Math.max(1, v);
  const [l1, l5] = os.loadavg();
  const s = Math.max(l1, l5) / (os.cpus().length || 1);
  return Math.min(SCALE_MAX, Math.max(1, s));
}

// A bound in ms for the machine as loaded now.
export const scaled = (ms) => Math.ceil(ms * timeScale());

function connectable(sock) {
  return new Promise((resolve) => {
    const s = net.createConnection(sock);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export class Daemon {
  constructor(conf = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hpnode.'));
    this.sock = path.join(this.dir, 'hotplexd.sock');
    this.work = path.join(this.dir, 'work');
    fs.mkdirSync(this.work);
    // Sessions run as their creator (root's as worker_user hotplex): they
    // pass through the dir and make their workdirs in work/, as in /tmp.
    fs.chmodSync(this.dir, 0o711);
    fs.chmodSync(this.work, 0o1777);
    const c = {
      socket: this.sock,
      workdir_root: this.work,
      state_dir: path.join(this.dir, 'state'),
      cli_path: path.join(BDIR, 'fake-claude'),
      spare_min: '1',
      kill_grace: '500ms',
      log_level: 'debug',
      firewall_rules: '',
      // RLIMIT_NPROC counts every task of worker_user on the machine,
      // other daemons' too: as tests/integration/hplib.py, not ours here.
      rlimit_nproc: '0',
      ...conf,
    };
    this.conf = path.join(this.dir, 'hotplexd.conf');
    fs.writeFileSync(this.conf, Object.entries(c)
      .map(([k, v]) => `${k} = ${v}\n`).join(''));
    this.log = path.join(this.dir, 'hotplexd.log');
    this.proc = null;
  }

  async start() {
    const log = fs.openSync(this.log, 'a');
    // setpriv: the daemon gets SIGTERM if the test process dies first.
    this.proc = spawn('setpriv', ['--pdeathsig', 'TERM', '--',
      path.join(BDIR, 'hotplexd'), '-f', '-c', this.conf],
    { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.once('exit', resolve));
    const deadline = Date.now() + scaled(CONNECT_TIMEOUT_MS);
    while (!(await connectable(this.sock))) {
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        await this.stop();
        throw new Error(`hotplexd did not start: ${this.logtail()}`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS)); // not a bound
    }
    return this;
  }

  // The daemon's live processes below it, from /proc: its children (the
  // spawner, when it runs as root) and theirs (the workers).
  workers() {
    const kids = (ppid) => {
      const out = [];
      for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
          const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
          const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
          if (f[0] !== 'Z' && Number(f[1]) === ppid) out.push(+d);
        } catch {
          // gone meanwhile
        }
      }
      return out;
    };
    const top = kids(this.proc.pid);
    return top.concat(...top.map(kids));
  }

  // Resolves once none of pids is alive (zombies count as gone).
  static async gone(pids, timeoutMs = 60000) {
    const alive = (p) => {
      try {
        const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        return st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z';
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + scaled(timeoutMs);
    while (pids.some(alive)) {
      if (Date.now() > deadline)
        throw new Error(`still alive: ${pids.filter(alive)}`);
      await new Promise((r) => setTimeout(r, POLL_MS)); // not a bound
    }
  }

  logtail() {
    try {
      return fs.readFileSync(this.log, 'utf8').split('\n').slice(-30)
        .join('\n');
    } catch {
      return '';
    }
  }

  async stop(signal = 'SIGTERM') {
    if (this.proc && this.proc.exitCode === null &&
        this.proc.signalCode === null) {
      this.proc.kill(signal);
      await this.exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
