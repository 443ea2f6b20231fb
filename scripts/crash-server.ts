// Crash test of the whole server (issue "Durable queue and delivery",
// must-show 6; SPEC §10: a message acknowledged with 250 is delivered).
//
//   node --import tsx scripts/crash-server.ts [options]     (from the sources)
//   node dist/scripts/crash-server.js [options]             (after npm run build)
//
// The script owns a next-hop SMTP sink (test/helpers/smtp-sink.ts) and
// spawns the real server, `mta --config main.vsl --listen 127.0.0.1:0
// --queue-dir DIR`, with a policy forwarding every recipient to that sink.
// A few SMTP clients of its own send messages, each with a unique
// Message-ID, until `--messages` of them got the end-of-data 250. Meanwhile
// the server's whole process group is killed with SIGKILL `--kills` times at
// random moments and restarted on the same queue directory (by default the
// generations alternate between `--workers 0` and the CLI's default
// workers). Then the queue must drain, and:
//
//   - every message that got 250 reached the sink at least once (else exit 1);
//   - every copy that reached the sink is the message as sent (else exit 1);
//   - how many were delivered twice or more is reported (target 0), with
//     the generation that sent each copy. A duplicate is expected only when
//     a generation was killed between the end of the data reaching the sink
//     and its recording that (the window RFC 1047 describes); two copies
//     sent by one generation are a bug (exit 1), and so is a server that
//     exits or fails to restart without being killed.
//
// Options: --messages N (2000)  --clients N (4)  --kills N (3)
//          --workers N|alternate (alternate)  --tempfail RATE (0.02: the sink
//          answers 451 to that share of messages, so retries and deferred/
//          are part of what gets killed)  --drain SECONDS (60)  --keep
//
// Bounded: sending stops after 120 s whatever the count, the drain after
// --drain seconds, a graceful stop after 35 s.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SmtpClient } from '../test/helpers/smtp-client.js';
import { startSmtpSink, type SmtpSink } from '../test/helpers/smtp-sink.js';

// ---- options ----

interface Options {
  messages: number;
  clients: number;
  kills: number;
  /** Workers per generation: a number for all, or 'alternate' (0, default, 0, …). */
  workers: number | 'alternate';
  tempfail: number;
  drainMs: number;
  keep: boolean;
}

const SEND_LIMIT_MS = 120_000;

function parseOptions(argv: string[]): Options {
  const o: Options = { messages: 2000, clients: 4, kills: 3, workers: 'alternate', tempfail: 0.02, drainMs: 60_000, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (min: number, max: number): number => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${a} is a number from ${min} to ${max}`);
      return n;
    };
    if (a === '--messages') o.messages = int(1, 100_000);
    else if (a === '--clients') o.clients = int(1, 16);
    else if (a === '--kills') o.kills = int(0, 20);
    else if (a === '--workers') {
      const v = value();
      if (v === 'alternate') o.workers = 'alternate';
      else if (/^\d+$/.test(v) && Number(v) <= 16) o.workers = Number(v);
      else throw new Error('--workers is a number from 0 to 16 or "alternate"');
    } else if (a === '--tempfail') {
      o.tempfail = Number(value());
      if (!(o.tempfail >= 0 && o.tempfail < 1)) throw new Error('--tempfail is a rate from 0 to below 1');
    } else if (a === '--drain') o.drainMs = int(1, 600) * 1000;
    else if (a === '--keep') o.keep = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

// ---- the messages ----

/** Message n: its content follows from n, so the sink's copy can be checked without keeping it. */
function messageFor(n: number): string {
  const h = createHash('sha256').update(`crash-server ${n}`).digest('hex');
  const lines = 3 + (parseInt(h.slice(0, 6), 16) % 120); // ~0.2 to ~10 KB
  const body: string[] = [];
  for (let i = 0; i < lines; i++) body.push(`${i % 17 === 5 ? '.' : ''}${h}${h}`.slice(0, 72));
  return [
    'From: <sender@crash.test>',
    'To: <rcpt@far.test>',
    `Subject: crash ${n}`,
    `Message-ID: <crash-${n}@crash.test>`,
    'Date: Sat, 22 Nov 2025 10:00:00 +0000',
    '',
    ...body,
    '',
  ].join('\r\n');
}

/** The number in a delivered message's Message-ID, or null. */
function numberOf(data: Buffer): number | null {
  const m = /^Message-ID: <crash-(\d+)@crash\.test>\r$/m.exec(data.toString('latin1'));
  return m ? Number(m[1]) : null;
}

// ---- the server under test ----

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FROM_SOURCES = import.meta.url.endsWith('.ts');
/** The CLI entry: the sources through tsx, or the compiled one beside this compiled script. */
const MAIN = path.join(HERE, '..', 'src', 'cli', FROM_SOURCES ? 'main.ts' : 'main.js');

function policyFor(sink: SmtpSink): string {
  return `fn on_config(config) {
  config.server.name = "mx.crash.test";
  config.server.domain = "crash.test";
  config.delivery.retry = ["1s", "2s", "4s"];
  config.delivery.timeout = "10s";
  config
}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
    action "forward to the sink" || transport::forward(ctx::rcpt(), "smtp://127.0.0.1:${sink.port}?tls=none"),
  ],
}
`;
}

interface Generation {
  n: number;
  workers: number | null;
  child: ChildProcess;
  port: number;
  exited: Promise<{ code: number | null; signal: string | null }>;
  logFile: string;
}

/** Starts the server; resolves once its log says it listens. Its output goes to a file, never back-pressuring it. */
async function startGeneration(n: number, workers: number | null, dir: string, queueDir: string): Promise<Generation> {
  const logFile = path.join(dir, `server-${n}.log`);
  const fd = fs.openSync(logFile, 'w');
  const args = [...(FROM_SOURCES ? ['--import', 'tsx'] : []), MAIN, '--config', path.join(dir, 'main.vsl'), '--listen', '127.0.0.1:0', '--queue-dir', queueDir, '--log-format', 'json'];
  if (workers !== null) args.push('--workers', String(workers));
  // Its own process group, so that SIGKILL takes the primary and its workers at once.
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const text = fs.readFileSync(logFile, 'utf8');
    const m = /"port":(\d+)[^\n]*"msg":"listening on/.exec(text) ?? /"msg":"listening on [^"]*"[^\n]*"port":(\d+)/.exec(text);
    if (m) return { n, workers, child, port: Number(m[1]), exited, logFile };
    if (gone || Date.now() > deadline) {
      killGroup(child);
      throw new Error(`server generation ${n} did not start (${gone ? 'it exited' : 'timeout'}):\n${text.slice(-3000)}`);
    }
    await sleep(50);
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- the run ----

type Fate = 'acked' | 'refused' | 'unknown';

class Run {
  /** The server currently up, or null while it is being restarted. */
  private current: Generation | null = null;
  private upWaiters: Array<() => void> = [];
  readonly fate = new Map<number, Fate>();
  acked = 0;
  private inFlight = 0;
  private nextNumber = 1;
  private sendingStopped = false;
  readonly generations: Generation[] = [];
  /** Times of the SIGKILLs. */
  readonly killedAt: number[] = [];
  /** Set when a server generation exited although nobody killed it. */
  unexpectedExit: string | null = null;
  private stoppingServer = false;

  constructor(
    readonly opts: Options,
    readonly dir: string,
    readonly queueDir: string,
  ) {}

  private workersFor(n: number): number | null {
    if (this.opts.workers !== 'alternate') return this.opts.workers;
    return n % 2 === 0 ? 0 : null; // null: the CLI's default (one worker per CPU)
  }

  async start(): Promise<void> {
    await this.restart();
  }

  private async restart(): Promise<void> {
    const g = await startGeneration(this.generations.length, this.workersFor(this.generations.length), this.dir, this.queueDir);
    this.generations.push(g);
    this.current = g;
    for (const w of this.upWaiters.splice(0)) w();
    // A server that dies without being killed is a finding, not something to wait out.
    void g.exited.then((r) => {
      if (this.current !== g || this.stoppingServer) return;
      const tail = fs.readFileSync(g.logFile, 'utf8').slice(-3000);
      this.unexpectedExit = `generation ${g.n} (${this.describeWorkers(g)}) exited on its own (${r.signal ?? `exit ${r.code}`}); its log ends with:\n${tail}`;
      this.current = null;
      this.stopSending();
    });
  }

  /** The port of the running server, once there is one. */
  private async port(): Promise<number | null> {
    while (!this.current) {
      if (this.sendingStopped) return null;
      await new Promise<void>((r) => this.upWaiters.push(r));
    }
    return this.current.port;
  }

  /** SIGKILL to the whole server, then a new generation on the same queue. */
  async crashAndRestart(): Promise<void> {
    const g = this.current!;
    this.current = null;
    this.killedAt.push(Date.now());
    killGroup(g.child);
    await g.exited;
    await this.restart();
  }

  /** The next message number to send, or null when enough are acknowledged or in flight. */
  private take(): number | null {
    if (this.sendingStopped || this.acked + this.inFlight >= this.opts.messages) return null;
    this.inFlight++;
    return this.nextNumber++;
  }

  private settle(n: number, fate: Fate): void {
    this.inFlight--;
    this.fate.set(n, fate);
    if (fate === 'acked') this.acked++;
  }

  /** One SMTP client: sessions of many transactions; reconnects after a crash. */
  async client(): Promise<void> {
    while (this.acked < this.opts.messages && !this.sendingStopped) {
      if (this.acked + this.inFlight >= this.opts.messages) {
        // The rest is in flight on other sessions; wait in case some of it is cut off.
        await sleep(20);
        continue;
      }
      const port = await this.port();
      if (port === null) return;
      let c: SmtpClient | null = null;
      let n: number | null = null;
      try {
        c = await SmtpClient.connect(port, { timeoutMs: 30_000 });
        if ((await c.greeting()).code !== 220 || (await c.ehlo('client.crash.test')).code !== 250) throw new Error('no session');
        while ((n = this.take()) !== null) {
          const [mail, rcpt, data] = await c.pipeline(['MAIL FROM:<sender@crash.test>', 'RCPT TO:<rcpt@far.test>', 'DATA']);
          if (data!.code !== 354) {
            this.settle(n, 'refused');
            n = null;
            if (mail!.code !== 250 || rcpt!.code !== 250) throw new Error(`refused: ${mail!.last} / ${rcpt!.last}`);
            continue;
          }
          const end = await c.data(messageFor(n));
          this.settle(n, end.code === 250 ? 'acked' : 'refused');
          n = null;
        }
        await c.quit().catch(() => undefined);
      } catch {
        // The server went away (or refused): what was in flight may or may not be queued.
        if (n !== null) this.settle(n, 'unknown');
        await sleep(20);
      } finally {
        c?.destroy();
      }
    }
  }

  /** Kills at random moments: after a random share of the messages, plus a random delay. */
  async killer(): Promise<void> {
    // One kill at a random point of each of `kills` equal slices of the run (between 5 % and 90 %).
    const slice = 0.85 / Math.max(1, this.opts.kills);
    const at = Array.from({ length: this.opts.kills }, (_, i) => Math.floor(this.opts.messages * (0.05 + slice * (i + Math.random()))));
    for (const threshold of at) {
      while (this.acked < threshold && !this.sendingStopped) await sleep(5);
      if (this.sendingStopped) break;
      await sleep(Math.floor(Math.random() * 400));
      process.stdout.write(`  SIGKILL to generation ${this.current?.n} (${this.describeWorkers(this.current)}) after ${this.acked} acknowledged\n`);
      await this.crashAndRestart();
    }
  }

  describeWorkers(g: Generation | null): string {
    if (!g) return '-';
    return g.workers === null ? 'default workers' : `--workers ${g.workers}`;
  }

  stopSending(): void {
    this.sendingStopped = true;
    for (const w of this.upWaiters.splice(0)) w();
  }

  /** SIGTERM to the last generation; SIGKILL if it does not stop in time. */
  async stopServer(): Promise<string> {
    const g = this.current ?? this.generations[this.generations.length - 1];
    if (!g) return 'none';
    this.stoppingServer = true;
    killGroup(g.child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(g.child), 35_000);
    const r = await g.exited;
    clearTimeout(timer);
    // Workers of a primary killed by the timer would be orphans: make sure the group is gone.
    killGroup(g.child);
    return r.signal ?? `exit ${r.code}`;
  }
}

function countIn(dir: string, ext = '.json'): number {
  try {
    return fs.readdirSync(dir).filter((n) => n.endsWith(ext)).length;
  } catch {
    return 0;
  }
}

function quarantined(queueDir: string): number {
  const q = path.join(queueDir, 'quarantine');
  return fs.existsSync(q) ? fs.readdirSync(q).reduce((s, name) => s + countIn(path.join(q, name)), 0) : 0;
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-crash-server-'));
  const queueDir = path.join(dir, 'queue');
  const started = Date.now();

  // The sink: counts each message's copies and checks them against what was sent.
  const copies = new Map<number, number>();
  /** Queue ids (from the Received: line) of the messages delivered more than once, for the report. */
  const duplicateIds = new Map<number, string>();
  /**
   * When the transaction of each copy began at the sink (its MAIL): that
   * tells which server generation sent it, even when the end of the data
   * reached the sink after the sender was killed.
   */
  const copyTimes = new Map<number, number[]>();
  const mailAt = new Map<number, number>();
  let damaged = 0;
  let foreign = 0;
  const sink = await startSmtpSink({
    script: {
      mail: (ctx) => {
        mailAt.set(ctx.transaction, Date.now());
        return 'accept';
      },
      data: (ctx) => {
        if (Math.random() < opts.tempfail) {
          mailAt.delete(ctx.transaction);
          return { code: 451, text: '4.3.0 Try again later' };
        }
        const n = numberOf(ctx.message);
        if (n === null) {
          foreign++;
          return 'accept';
        }
        copies.set(n, (copies.get(n) ?? 0) + 1);
        copyTimes.set(n, [...(copyTimes.get(n) ?? []), mailAt.get(ctx.transaction) ?? Date.now()]);
        mailAt.delete(ctx.transaction);
        const sent = messageFor(n);
        const data = ctx.message.toString('latin1');
        if (copies.get(n)! > 1) duplicateIds.set(n, /\bid (\S+);/.exec(data)?.[1] ?? '?');
        if (!data.endsWith(sent) || !data.startsWith('Received: ')) damaged++;
        return 'accept';
      },
    },
  });
  // The sink keeps no copies: the counts above are all this script needs.
  const keepNone = (): void => void sink.messages.splice(0);
  const trim = setInterval(keepNone, 1000);

  fs.writeFileSync(path.join(dir, 'main.vsl'), policyFor(sink));
  const run = new Run(opts, dir, queueDir);
  let status = 1;
  try {
    process.stdout.write(
      `crash-server: ${opts.messages} messages, ${opts.clients} clients, ${opts.kills} SIGKILLs, workers ${opts.workers}, sink 451 rate ${opts.tempfail} (${dir})\n`,
    );
    await run.start();
    const sendLimit = setTimeout(() => run.stopSending(), SEND_LIMIT_MS);
    // A restart that fails ends the sending at once (and the run, below).
    const killer = run.killer().then(
      () => null,
      (err: Error) => {
        run.stopSending();
        return err;
      },
    );
    await Promise.all(Array.from({ length: opts.clients }, () => run.client()));
    clearTimeout(sendLimit);
    run.stopSending();
    const restartError = await killer;
    if (restartError) throw restartError;
    if (run.unexpectedExit) throw new Error(run.unexpectedExit);
    const sentAt = Date.now();
    process.stdout.write(`  sending done in ${((sentAt - started) / 1000).toFixed(1)} s, ${run.killedAt.length} SIGKILL(s)\n`);

    // Drain: every acknowledged message at the sink and nothing left in active/ or deferred/.
    const ackedIds = [...run.fate].filter(([, f]) => f === 'acked').map(([n]) => n);
    const missing = (): number[] => ackedIds.filter((n) => !copies.has(n));
    const queued = (): number => countIn(path.join(queueDir, 'active')) + countIn(path.join(queueDir, 'deferred'));
    const drainDeadline = Date.now() + opts.drainMs;
    while ((missing().length > 0 || queued() > 0) && Date.now() < drainDeadline && !run.unexpectedExit) await sleep(100);
    if (run.unexpectedExit) throw new Error(run.unexpectedExit);
    const drainedIn = ((Date.now() - sentAt) / 1000).toFixed(1);
    const stop = await run.stopServer();

    const lost = missing();
    const duplicates = [...copies.values()].filter((c) => c > 1).length;
    // A copy's generation follows from the kill times (its transaction began
    // before or after each SIGKILL). Two copies from one generation are not
    // the crash window but a bug.
    const generationAt = (t: number): number => run.killedAt.filter((k) => k < t).length;
    const sameGenerationCount = [...copyTimes.values()].filter((times) => new Set(times.map(generationAt)).size < times.length).length;
    const unknown = [...run.fate.values()].filter((f) => f === 'unknown').length;
    const refused = [...run.fate.values()].filter((f) => f === 'refused').length;
    const unackedDelivered = [...copies.keys()].filter((n) => run.fate.get(n) !== 'acked').length;
    const left = queued();
    const dead = countIn(path.join(queueDir, 'dead'));
    const corrupt = countIn(path.join(queueDir, 'corrupt'), '');
    const held = quarantined(queueDir);
    const failed = lost.length > 0 || damaged > 0 || sameGenerationCount > 0;
    const lines = [
      `crash-server summary (${((Date.now() - started) / 1000).toFixed(1)} s):`,
      `  generations:      ${run.generations.map((g) => run.describeWorkers(g)).join(' → ')}; last one stopped by SIGTERM (${stop})`,
      `  acknowledged:     ${ackedIds.length} (250 to end of data); ${unknown} cut off by a kill before the reply; ${refused} refused`,
      `  delivered:        ${ackedIds.length - lost.length} of ${ackedIds.length} acknowledged; ${unackedDelivered} unacknowledged ones delivered too`,
      `  duplicates:       ${duplicates} message(s) delivered more than once (target 0)`,
      `  damaged copies:   ${damaged}; foreign messages at the sink: ${foreign}`,
      `  queue at the end: ${left} active/deferred, ${dead} dead, ${held} quarantined, ${corrupt} file(s) in corrupt/ (drain took ${drainedIn} s)`,
    ];
    if (duplicates) {
      const describe = (n: number): string => {
        const times = copyTimes.get(n)!;
        const first = times[0]!;
        const kill = run.killedAt.find((k) => k >= first);
        const gap = kill === undefined ? '' : `, the first begun ${kill - first} ms before a SIGKILL`;
        return `crash ${n} (${duplicateIds.get(n)}: copies sent by generations ${times.map(generationAt).join(' and ')}${gap})`;
      };
      const perKill = run.killedAt.map((_, k) => [...duplicateIds.keys()].filter((n) => generationAt(copyTimes.get(n)![0]!) === k).length);
      lines.push(`  per SIGKILL:      ${perKill.join(', ')} duplicate(s) whose first copy the killed generation sent`);
      lines.push(`  for instance:     ${[...duplicateIds.keys()].slice(0, 5).map(describe).join('; ')}`);
      if (sameGenerationCount) lines.push(`  TWICE BY ONE GENERATION (no crash between the copies, a bug): ${sameGenerationCount}`);
    }
    if (lost.length) lines.push(`  NEVER DELIVERED:  ${lost.length}: ${lost.slice(0, 20).join(', ')}${lost.length > 20 ? ', …' : ''}`);
    lines.push(failed ? 'FAILED' : 'passed');
    process.stdout.write(`${lines.join('\n')}\n`);
    status = failed ? 1 : 0;
    if (failed && !opts.keep) process.stdout.write(`  (run again with --keep to inspect the queue and the server logs)\n`);
  } finally {
    run.stopSending();
    clearInterval(trim);
    for (const g of run.generations) killGroup(g.child);
    await sink.close();
    if (opts.keep) process.stdout.write(`  kept ${dir}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
  return status;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`crash-server: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
