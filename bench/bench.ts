// `npm run bench [-- --messages N] [--sessions 20,100,300,600] [--workers N] [--peers [--rounds N]] [--syscalls [--syscall-messages N]]`
//
// Drives vsl-mta (doe-family relay policy, durable spool, discard transport)
// with Postfix's smtp-source at each session count, and prints per run:
// msg/s, CPU ms per message (all server processes), p50/p99 time per
// transaction (from a client of our own running beside smtp-source), peak
// RSS of all server processes, and the server's own p50/p99 policy time per
// stage. Also: a hot reload during the 100-session run, and RSS with 1,000
// idle connections.
//
// --peers: runs ../shared/bench/anchors.sh through bench/anchors-project.sh
// in the same run, vsl-mta as its "project" row beside Postfix, Haraka and
// the bare smtp-server (interleaved rounds, ROUNDS = --rounds, default 3),
// and prints msg/s and CPU ms/msg of each, with the ratios.
// --syscalls: one process (--workers 0) under `strace -f` over a measured
// slice of messages at 100 sessions; prints the file-system calls per
// accepted-then-discarded message, by call.
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
  rounds: number;
  syscalls: boolean;
  syscallMessages: number;
  /** --no-runs: skip vsl-mta's own session runs and the idle test (only --syscalls / --peers). */
  runs: boolean;
  port: number;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { messages: 10_000, sessions: [20, 100, 300, 600], workers: Math.max(1, os.availableParallelism() - 1), peers: false, rounds: 3, syscalls: false, syscallMessages: 2000, runs: true, port: 2530 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--peers') o.peers = true;
    else if (a === '--messages') o.messages = Number(argv[++i]);
    else if (a === '--sessions') o.sessions = argv[++i]!.split(',').map(Number);
    else if (a === '--workers') o.workers = Number(argv[++i]);
    else if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--syscalls') o.syscalls = true;
    else if (a === '--no-runs') o.runs = false;
    else if (a === '--syscall-messages') o.syscallMessages = Number(argv[++i]);
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

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time used so far by the server and its workers (with their reaped children), in ms. */
function cpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime stime cutime cstime: fields 14-17 of stat(5), 12-15 after the command.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone
    }
  }
  return (ticks * 1000) / CLK_TCK;
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
  cpuMsPerMsg: number;
  p50: number;
  p99: number;
  rssPeak: number;
  stagesP99: Record<string, number>;
  stagesP50: Record<string, number>;
}

async function run(o: Options, s: Server, sessions: number, during?: () => Promise<void>): Promise<RunResult> {
  const before = await readStats(s);
  let rssPeak = rssMb(s.child.pid!);
  const cpu0 = cpuMs(s.child.pid!);
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
  const cpu = cpuMs(s.child.pid!) - cpu0;
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
    msgPerSec: o.messages / elapsed, cpuMsPerMsg: cpu / (after.accepted - before.accepted), p50: pct(lat, 0.5), p99: pct(lat, 0.99), rssPeak, stagesP99, stagesP50,
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

interface PeerRow {
  msgPerSec: number;
  cpuMsPerMsg: number;
  accepted: number;
  msgs: number;
  rc: number;
}

/**
 * One interleaved run of ../shared/bench/anchors.sh with vsl-mta as its
 * project row (bench/anchors-project.sh): target → sessions → medians.
 */
function peers(o: Options): Map<string, Map<number, PeerRow>> {
  const script = path.join(ROOT, 'bench', 'anchors-project.sh');
  const out = new Map<string, Map<number, PeerRow>>();
  if (!fs.existsSync(path.join(ROOT, '..', 'shared', 'bench', 'anchors.sh'))) {
    process.stderr.write('--peers: ../shared/bench/anchors.sh not found\n');
    return out;
  }
  process.stdout.write(`running the peers and vsl-mta interleaved (${script}, ROUNDS=${o.rounds}) …\n`);
  const r = spawnSync('bash', [script, String(o.messages), ...o.sessions.map(String)], {
    encoding: 'utf8', cwd: ROOT, timeout: 4 * 3_600_000, env: { ...process.env, ROUNDS: String(o.rounds) },
  });
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^(\S+)\s+sessions=(\d+)\s+msgs=(\d+)\s+accepted=(\d+)\s+rc=(\d+)\s+(\d+) msg\/s\s+cpu=([\d.]+) ms\/msg/.exec(line);
    if (!m) continue;
    const name = m[1] === 'project' ? 'vsl-mta' : m[1]!;
    if (!out.has(name)) out.set(name, new Map());
    out.get(name)!.set(Number(m[2]), { msgs: Number(m[3]), accepted: Number(m[4]), rc: Number(m[5]), msgPerSec: Number(m[6]), cpuMsPerMsg: Number(m[7]) });
  }
  if (out.size === 0) process.stderr.write(`--peers: no result lines from anchors.sh:\n${(r.stdout ?? '').slice(-2000)}${(r.stderr ?? '').slice(-2000)}\n`);
  return out;
}

function printPeers(o: Options, p: Map<string, Map<number, PeerRow>>): void {
  const names = [...p.keys()];
  process.stdout.write(`\none interleaved run, ${o.rounds} rounds × ${o.messages} messages per session count, medians (anchors.sh):\n`);
  process.stdout.write(`${'sessions'.padEnd(10)}${names.map((n) => `${n} msg/s | cpu ms/msg`.padEnd(34)).join('')}\n`);
  for (const sessions of o.sessions) {
    const cells = names.map((n) => {
      const row = p.get(n)!.get(sessions);
      return (row ? `${row.msgPerSec} | ${row.cpuMsPerMsg.toFixed(2)}${n === 'vsl-mta' ? ` (accepted ${row.accepted}/${row.msgs}, rc ${row.rc})` : ''}` : '-').padEnd(34);
    });
    process.stdout.write(`${String(sessions).padEnd(10)}${cells.join('')}\n`);
    const own = p.get('vsl-mta')?.get(sessions);
    if (own) {
      const ratios = names.filter((n) => n !== 'vsl-mta' && p.get(n)!.has(sessions)).map((n) => `${(own.msgPerSec / p.get(n)!.get(sessions)!.msgPerSec).toFixed(2)}× ${n}`);
      process.stdout.write(`${''.padEnd(10)}vsl-mta msg/s: ${ratios.join(', ')}\n`);
    }
  }
  const own = p.get('vsl-mta');
  if (own && own.size > 0) {
    const peak = Math.max(...[...own.values()].map((r) => r.msgPerSec));
    for (const [sessions, r] of own) if (sessions >= 600) process.stdout.write(`vsl-mta at ${sessions} sessions: ${((100 * r.msgPerSec) / peak).toFixed(0)}% of its peak in this run\n`);
  }
}

/** File-system calls: every call naming a path, and fd calls on regular files or directories (strace -y shows the path). */
const PATH_CALLS = new Set(['open', 'openat', 'openat2', 'creat', 'rename', 'renameat', 'renameat2', 'link', 'linkat', 'unlink', 'unlinkat', 'stat', 'lstat', 'newfstatat', 'statx', 'access', 'faccessat', 'faccessat2', 'mkdir', 'mkdirat', 'rmdir', 'readlink', 'readlinkat', 'truncate', 'utimensat', 'chmod', 'fchmodat']);

interface SyscallProfile {
  messages: number;
  fsCalls: Map<string, number>;
  allCalls: number;
  futex: number;
}

function parseTrace(file: string, messages: number): SyscallProfile {
  const fsCalls = new Map<string, number>();
  let allCalls = 0;
  let futex = 0;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\d+\s+(\w+)\((.*)$/.exec(line);
    if (!m) continue;
    const [, name, args] = m as unknown as [string, string, string];
    allCalls++;
    if (name === 'futex') futex++;
    const fd = /^-?\d+<([^>]*)>/.exec(args);
    let isFs = false;
    if (fd) isFs = fd[1]!.startsWith('/') && !fd[1]!.startsWith('/dev/');
    else isFs = PATH_CALLS.has(name);
    if (isFs) fsCalls.set(name, (fsCalls.get(name) ?? 0) + 1);
  }
  return { messages, fsCalls, allCalls, futex };
}

/** Runs one server process under strace over `o.syscallMessages` messages at 100 sessions. */
async function syscallProfile(o: Options, policy: string): Promise<SyscallProfile | null> {
  if (spawnSync('which', ['strace']).status !== 0) {
    process.stderr.write('--syscalls: strace not found (apt-get install strace)\n');
    return null;
  }
  const s = await startServer({ ...o, workers: 0 }, policy);
  const traceFile = path.join(s.queueDir, '..', `vsl-bench-strace-${process.pid}.txt`);
  try {
    const load = (messages: number): Promise<number> =>
      new Promise((resolve) => {
        const src = spawn('smtp-source', ['-s', '100', '-m', String(messages), '-l', '2000', '-f', 'a@example.org', '-t', 'bob@yourdomain.com', `127.0.0.1:${o.port}`], { stdio: 'ignore' });
        src.once('exit', (code) => resolve(code ?? 1));
      });
    await load(500); // warm up: JIT, the file pool of reuse/, connections
    await sleep(1000);
    const before = await readStats(s);
    // -f from the main thread follows all its threads (the libuv pool, V8's); -y names each fd's file.
    const st = spawn('strace', ['-f', '-y', '-qq', '-o', traceFile, '-p', String(s.child.pid)], { stdio: 'ignore' });
    await sleep(1500);
    const rc = await load(o.syscallMessages);
    // The last messages leave the queue within a scheduler turn.
    await sleep(1500);
    st.kill('SIGINT');
    await new Promise((r) => st.once('exit', r));
    const after = await readStats(s);
    const accepted = after.accepted - before.accepted;
    if (rc !== 0 || accepted < o.syscallMessages) process.stderr.write(`--syscalls: smtp-source rc ${rc}, ${accepted} of ${o.syscallMessages} accepted\n`);
    return parseTrace(traceFile, accepted);
  } finally {
    fs.rmSync(traceFile, { force: true });
    await s.stop();
  }
}

function printSyscalls(p: SyscallProfile): void {
  const total = [...p.fsCalls.values()].reduce((a, b) => a + b, 0);
  const per = (n: number): string => (n / p.messages).toFixed(2);
  process.stdout.write(`\nsyscalls (strace -f, one process, ${p.messages} messages at 100 sessions): ${per(total)} file-system calls per message` +
    ` (${per(p.allCalls)} system calls in all, ${per(p.futex)} futex)\n`);
  const rows = [...p.fsCalls].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${per(v)}`);
  process.stdout.write(`  per message: ${rows.join(', ')}\n`);
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
  for (const sessions of o.runs ? o.sessions : []) {
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
      process.stdout.write(`vsl-mta    sessions=${String(sessions).padEnd(4)} msgs=${r.msgs} accepted=${r.accepted} rc=${r.rc}  ${r.msgPerSec.toFixed(0)} msg/s  cpu ${r.cpuMsPerMsg.toFixed(2)} ms/msg` +
        `  txn p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms  peak RSS ${r.rssPeak.toFixed(0)} MB${reloads ? `  (hot reload during run)` : ''}${ok ? '' : '  MESSAGES MISSING'}\n`);
      process.stdout.write(`           policy time per stage (server's own timing): ${stages}\n`);
    } finally {
      await s.stop();
    }
  }
  if (o.runs) {
    const idle = await idleConnections(o, policy);
    process.stdout.write(`idle: 1000 connections held: RSS ${idle.rss.toFixed(0)} MB (baseline ${idle.baseline.toFixed(0)} MB), new client banner in ${idle.banner.toFixed(0)} ms, closed by the idle timeout (8 s) within 10 s: ${idle.closed}/1000\n`);
    const peak = Math.max(...results.map((r) => r.msgPerSec));
    const at600 = results.find((r) => r.sessions === 600);
    if (at600) process.stdout.write(`600 sessions: ${(100 * at600.msgPerSec / peak).toFixed(0)}% of vsl-mta's own peak (${peak.toFixed(0)} msg/s)\n`);
  }
  if (o.syscalls) {
    const profile = await syscallProfile(o, policy);
    if (profile) printSyscalls(profile);
  }
  if (o.peers) printPeers(o, peers(o));
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
