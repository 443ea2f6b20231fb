// `npm run bench [-- --messages N] [--sessions 20,100,300,600] [--workers N] [--peers]`
//
// Drives vsl-mta (doe-family relay policy, durable spool, discard transport)
// with Postfix's smtp-source at each session count, and prints per run:
// msg/s, p50/p99 time per transaction (from a client of our own running
// beside smtp-source), peak RSS of all server processes, and the server's own
// p50/p99 policy time per stage. Also: a hot reload during the 100-session
// run, and RSS with 1,000 idle connections. With --peers, runs
// ../shared/bench/anchors.sh in the same run and prints the ratios.
// A benchmark, not a test: it never fails on a number, only on a lost message.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantileUs, type Histogram } from '../src/stats.js';

const ROOT = (() => {
  let d = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(d, 'package.json'))) d = path.dirname(d);
  return d;
})();

interface Options {
  messages: number;
  sessions: number[];
  workers: number;
  peers: boolean;
  port: number;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { messages: 10_000, sessions: [20, 100, 300, 600], workers: Math.max(1, os.availableParallelism() - 1), peers: false, port: 2530 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--peers') o.peers = true;
    else if (a === '--messages') o.messages = Number(argv[++i]);
    else if (a === '--sessions') o.sessions = argv[++i]!.split(',').map(Number);
    else if (a === '--workers') o.workers = Number(argv[++i]);
    else if (a === '--port') o.port = Number(argv[++i]);
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function processTree(pid: number): number[] {
  const out = [pid];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/** Resident memory of the server and its workers, in MB. */
function rssMb(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // gone
    }
  }
  return kb / 1024;
}

interface Server {
  child: ChildProcess;
  queueDir: string;
  stop(): Promise<void>;
}

async function waitPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('data', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`server did not answer on port ${port}`);
}

async function startServer(o: Options, policy: string, extra: string[] = []): Promise<Server> {
  const queueDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-bench-queue-'));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/mta.js'), '--config', policy, '--listen', `127.0.0.1:${o.port}`,
    '--queue-dir', queueDir, '--log-level', 'warn', '--log-format', 'json', '--workers', String(o.workers), ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
  });
  let errText = '';
  child.stderr!.on('data', (d) => (errText += d));
  child.stdout!.on('data', () => undefined);
  await waitPort(o.port, 20_000).catch((e) => {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\n${errText}`);
  });
  return {
    child,
    queueDir,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(queueDir, { recursive: true, force: true });
    },
  };
}

interface Stats {
  accepted: number;
  stages: Record<string, Histogram>;
}

async function readStats(s: Server): Promise<Stats> {
  const file = path.join(s.queueDir, 'stats.json');
  const before = fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0;
  s.child.kill('SIGUSR2');
  for (let i = 0; i < 40; i++) {
    await sleep(50);
    if (fs.existsSync(file) && fs.statSync(file).mtimeMs !== before) {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')) as Stats;
      } catch {
        // being replaced; retry
      }
    }
  }
  throw new Error('the server did not write its stats');
}

/** One SMTP transaction with our own client; returns its duration in ms. */
function transaction(port: number): Promise<number> {
  const t0 = performance.now();
  const body = `From: <a@example.org>\r\nTo: <bob@yourdomain.com>\r\nSubject: latency probe\r\n\r\n${'x'.repeat(1900)}\r\n.\r\n`;
  const cmds = ['EHLO probe.test\r\n', 'MAIL FROM:<a@example.org>\r\n', 'RCPT TO:<bob@yourdomain.com>\r\n', 'DATA\r\n', body, 'QUIT\r\n'];
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = '';
    let step = 0;
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!/^\d{3} /.test(line)) continue;
        if (!/^[23]/.test(line)) { s.destroy(); reject(new Error(`probe got: ${line}`)); return; }
        if (step < cmds.length) s.write(cmds[step++]!);
        else { s.destroy(); resolve(performance.now() - t0); }
      }
    });
    s.on('error', reject);
  });
}

function pct(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]!;
}

interface RunResult {
  sessions: number;
  msgs: number;
  accepted: number;
  rc: number;
  msgPerSec: number;
  p50: number;
  p99: number;
  rssPeak: number;
  stagesP99: Record<string, number>;
  stagesP50: Record<string, number>;
}

async function run(o: Options, s: Server, sessions: number, during?: () => Promise<void>): Promise<RunResult> {
  const before = await readStats(s);
  let rssPeak = rssMb(s.child.pid!);
  const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMb(s.child.pid!))), 200);
  const t0 = performance.now();
  const src = spawn('smtp-source', ['-s', String(sessions), '-m', String(o.messages), '-l', '2000', '-f', 'a@example.org', '-t', 'bob@yourdomain.com', `127.0.0.1:${o.port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let srcOut = '';
  src.stdout!.on('data', (d) => (srcOut += d));
  src.stderr!.on('data', (d) => (srcOut += d));
  const done = new Promise<number>((r) => src.once('exit', (code) => r(code ?? 1)));
  // Our latency probe: sequential transactions beside the load.
  const lat: number[] = [];
  let running = true;
  const probe = (async () => {
    while (running) {
      try {
        lat.push(await transaction(o.port));
      } catch {
        lat.push(Infinity);
      }
    }
  })();
  if (during) await during();
  const rc = await done;
  const elapsed = (performance.now() - t0) / 1000;
  running = false;
  await probe;
  clearInterval(rssTimer);
  await sleep(300);
  const after = await readStats(s);
  lat.sort((a, b) => a - b);
  const stagesP99: Record<string, number> = {};
  const stagesP50: Record<string, number> = {};
  for (const [k, h] of Object.entries(after.stages)) {
    const b = before.stages[k];
    const diff: Histogram = { counts: h.counts.map((c, i) => c - (b?.counts[i] ?? 0)), total: h.total - (b?.total ?? 0), sumUs: h.sumUs - (b?.sumUs ?? 0) };
    stagesP99[k] = quantileUs(diff, 0.99);
    stagesP50[k] = quantileUs(diff, 0.5);
  }
  if (rc !== 0) process.stderr.write(`smtp-source exited ${rc}: ${srcOut.slice(0, 500)}\n`);
  return {
    sessions, msgs: o.messages, accepted: after.accepted - before.accepted - lat.length, rc,
    msgPerSec: o.messages / elapsed, p50: pct(lat, 0.5), p99: pct(lat, 0.99), rssPeak, stagesP99, stagesP50,
  };
}

async function idleConnections(o: Options, policy: string): Promise<{ rss: number; baseline: number; banner: number; closed: number }> {
  const s = await startServer(o, policy, ['--set', 'server.smtp.timeout="8s"']);
  try {
    await sleep(500);
    const baseline = rssMb(s.child.pid!);
    const socks: net.Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 1000; i++) {
      const c = net.connect(o.port, '127.0.0.1');
      c.on('error', () => undefined);
      // Read (and drop) what the server sends: a socket nobody reads never
      // sees the server's 421 and FIN, so it would never report 'close'.
      c.on('data', () => undefined);
      c.on('close', () => closed++);
      socks.push(c);
      if (i % 100 === 99) await sleep(50);
    }
    await sleep(2000);
    const rss = rssMb(s.child.pid!);
    const t0 = performance.now();
    await waitPort(o.port, 5000);
    const banner = performance.now() - t0;
    // The idle timeout (8 s here) closes them.
    for (let i = 0; i < 100 && closed < 1000; i++) await sleep(100);
    for (const c of socks) c.destroy();
    return { rss, baseline, banner, closed };
  } finally {
    await s.stop();
  }
}

function peers(o: Options): Map<string, Map<number, number>> {
  const script = path.join(ROOT, '..', 'shared', 'bench', 'anchors.sh');
  const out = new Map<string, Map<number, number>>();
  if (!fs.existsSync(script)) {
    process.stderr.write(`--peers: ${script} not found\n`);
    return out;
  }
  process.stdout.write(`running peers (${script}) …\n`);
  const r = spawnSync('bash', [script, String(o.messages), ...o.sessions.map(String)], { encoding: 'utf8', cwd: ROOT, timeout: 3_600_000 });
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^(\S+)\s+sessions=(\d+)\s+msgs=\d+\s+accepted=(\d+)\s+rc=(\d+)\s+(\d+) msg\/s/.exec(line);
    if (!m) continue;
    process.stdout.write(`  ${line}\n`);
    if (!out.has(m[1]!)) out.set(m[1]!, new Map());
    out.get(m[1]!)!.set(Number(m[2]), Number(m[5]));
  }
  return out;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (spawnSync('which', ['smtp-source']).status !== 0) {
    process.stderr.write('smtp-source not found: apt-get install postfix (it ships smtp-source)\n');
    process.exit(2);
  }
  const policyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-bench-policy-'));
  // A copy, so the hot reload edits a file of our own.
  fs.mkdirSync(path.join(policyDir, 'bench'));
  fs.cpSync(path.join(ROOT, 'examples', 'doe-family'), path.join(policyDir, 'examples', 'doe-family'), { recursive: true });
  const policy = path.join(policyDir, 'bench', 'doe-family-bench.vsl');
  fs.copyFileSync(path.join(ROOT, 'bench', 'doe-family-bench.vsl'), policy);

  process.stdout.write(`vsl-mta benchmark: ${o.messages} messages of 2 KB per run, one connection per message, ${o.workers} worker(s), ${os.availableParallelism()} CPUs\n`);
  const results: RunResult[] = [];
  let lost = 0;
  for (const sessions of o.sessions) {
    const s = await startServer(o, policy);
    try {
      let reloads = 0;
      const during = sessions === 100 ? async () => {
        // A hot reload in the middle of the run (issue: it must cost no failed transaction).
        await sleep(1000);
        fs.appendFileSync(policy, `\n// reload ${Date.now()}\n`);
        reloads++;
      } : undefined;
      const r = await run(o, s, sessions, during);
      results.push(r);
      const ok = r.rc === 0 && r.accepted === r.msgs;
      if (!ok) lost++;
      const stages = Object.entries(r.stagesP99).map(([k, v]) => `${k} p50/p99 ${r.stagesP50[k]}/${v} µs`).join(', ');
      process.stdout.write(`vsl-mta    sessions=${String(sessions).padEnd(4)} msgs=${r.msgs} accepted=${r.accepted} rc=${r.rc}  ${r.msgPerSec.toFixed(0)} msg/s` +
        `  txn p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms  peak RSS ${r.rssPeak.toFixed(0)} MB${reloads ? `  (hot reload during run)` : ''}${ok ? '' : '  MESSAGES MISSING'}\n`);
      process.stdout.write(`           policy time per stage (server's own timing): ${stages}\n`);
    } finally {
      await s.stop();
    }
  }
  const idle = await idleConnections(o, policy);
  process.stdout.write(`idle: 1000 connections held: RSS ${idle.rss.toFixed(0)} MB (baseline ${idle.baseline.toFixed(0)} MB), new client banner in ${idle.banner.toFixed(0)} ms, closed by the idle timeout (8 s) within 10 s: ${idle.closed}/1000\n`);
  const peak = Math.max(...results.map((r) => r.msgPerSec));
  const at600 = results.find((r) => r.sessions === 600);
  if (at600) process.stdout.write(`600 sessions: ${(100 * at600.msgPerSec / peak).toFixed(0)}% of vsl-mta's own peak (${peak.toFixed(0)} msg/s)\n`);
  if (o.peers) {
    const p = peers(o);
    for (const r of results) {
      const cells = [...p].map(([name, m]) => (m.has(r.sessions) ? `${(r.msgPerSec / m.get(r.sessions)!).toFixed(2)}× ${name}` : '')).filter(Boolean);
      process.stdout.write(`ratio at ${r.sessions} sessions: ${cells.join(', ')}\n`);
    }
  }
  fs.rmSync(policyDir, { recursive: true, force: true });
  if (lost) {
    process.stderr.write(`${lost} run(s) lost messages\n`);
    process.exit(1);
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
