// A bounded SMTP fuzzer against the real server (issue "Hardening"):
//
//   npm run fuzz -- [--seconds 60] [--concurrency 4] [--seed N] [--config main.vsl]
//                   [--max-rss-mb 1024] [--keep]       (compiled: npm run build first)
//   node --import tsx scripts/fuzz.ts [options]        (from the sources)
//
// Starts `mta run` as a child process (one process, --workers 0, a temp
// queue; delivery goes to a closed local port, so every accepted message is
// deferred and stays in the spool), then runs random and mutated SMTP
// sessions for the given time: grammar-aware commands, addresses from the
// classes of SPEC §4.4, DATA bodies with bare CR/LF, smuggling dots, NUL
// bytes, overlong lines and header fields folded over up to 320,000 lines,
// large DATA transfers left unfinished, STARTTLS in the middle (with a throw-away
// certificate), AUTH exchanges, pipelining bursts, split writes, stalls and
// abrupt closes. Meanwhile it checks that
//
//   - the server stays up: it does not exit, and a probe connection gets its
//     banner (every second, within 5 s);
//   - its memory stays bounded: VmRSS of the child from /proc/<pid>/status,
//     sampled every 250 ms, never above --max-rss-mb;
//
// and after a graceful stop (SIGTERM, exit 0) that
//
//   - every message acknowledged with `250 … queued as <id>` is in the spool;
//   - every spooled message is well formed: its record parses, size and hash
//     match, recipients are not empty, the .eml starts with `Received:` and
//     has CRLF line ends only (no bare CR or LF); nothing went to corrupt/.
//
// Prints sessions/s and the largest RSS; exits 0 when all held, 1 otherwise.
// Reproducible with --seed (the timing of the server still varies).

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { checkSpool } from '../src/queue/fsck.js';
import { Spool } from '../src/queue/spool.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FROM_SOURCES = import.meta.url.endsWith('.ts');
/** The CLI entry: the sources through tsx, or the compiled one beside this compiled script (dist/scripts → dist/src). */
const MAIN = path.join(HERE, '..', 'src', 'cli', FROM_SOURCES ? 'main.ts' : 'main.js');

/** The repository root (for examples/): the nearest directory up with package.json and examples/. */
function repoRoot(): string {
  let dir = HERE;
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'examples'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}
const ROOT = repoRoot();

// ---------------------------------------------------------------- options

const HELP = `usage: npm run fuzz -- [--seconds 60] [--concurrency 4] [--seed N] [--config main.vsl]
                       [--max-rss-mb 1024] [--keep]

Random and mutated SMTP sessions against a real server (a child process with a
temp queue) for --seconds; fails on a crash, a probe without a banner, RSS over
--max-rss-mb, or an acknowledged message missing or malformed in the spool.
`;

interface Options {
  seconds: number;
  concurrency: number;
  seed: number;
  config: string;
  maxRssMb: number;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { seconds: 60, concurrency: 4, seed: Math.floor(Math.random() * 2 ** 31), config: path.join(ROOT, 'examples/doe-family/main.vsl'), maxRssMb: 1024, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    const num = (min: number, max: number): number => {
      const n = Number(v());
      if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${a}: a number from ${min} to ${max}`);
      return n;
    };
    if (a === '--seconds') o.seconds = num(1, 86_400);
    else if (a === '--concurrency') o.concurrency = Math.floor(num(1, 64));
    else if (a === '--seed') o.seed = Math.floor(num(0, 2 ** 31));
    else if (a === '--config') o.config = path.resolve(v());
    else if (a === '--max-rss-mb') o.maxRssMb = num(16, 65_536);
    else if (a === '--keep') o.keep = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

// ---------------------------------------------------------------- randomness

/** mulberry32: small, seedable, good enough to pick fuzz cases. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  /** Picks by weight: [[weight, value], …]. */
  weighted<T>(xs: ReadonlyArray<readonly [number, T]>): T {
    const total = xs.reduce((s, [w]) => s + w, 0);
    let r = this.next() * total;
    for (const [w, x] of xs) if ((r -= w) < 0) return x;
    return xs[xs.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
}

// ---------------------------------------------------------------- grammar

const LOCAL = 'doe-family.com';
const OUTSIDE = ['example.org', 'example.net', 'evil.test'];
const USERS = ['jdoe', 'jane', 'postmaster', 'abuse', 'Jdoe', 'j.doe', 'j+tag'];

/** An address text (without angle brackets) from one of the classes of SPEC §4.4. */
function address(r: Rng): string {
  const u = r.pick(USERS);
  const o = r.pick(OUTSIDE);
  return r.weighted<() => string>([
    [30, () => `${u}@${LOCAL}`],
    [6, () => `${u}@${LOCAL.toUpperCase()}`],
    [8, () => `${u}@${o}`],
    [3, () => 'postmaster'],
    [2, () => 'PostMaster'],
    [2, () => u],
    [3, () => `@${o},@${LOCAL}:${u}@${LOCAL}`],
    [3, () => `@${LOCAL}:${u}@${o}`],
    [2, () => `${u}@[192.0.2.${r.int(0, 300)}]`],
    [2, () => `${u}@[IPv6:2001:db8::${r.int(0, 0xffff).toString(16)}]`],
    [1, () => `${u}@[IPv6:zz::1]`],
    [3, () => `${u}%${o}@${LOCAL}`],
    [2, () => `${o}!${u}@${LOCAL}`],
    [2, () => `"${u}@${o}"@${LOCAL}`],
    [2, () => `"${u} ${u}"@${LOCAL}`],
    [1, () => `"${u}\\"x"@${LOCAL}`],
    [2, () => `${u}\uFF20${o}@${LOCAL}`],
    [2, () => `jöran@bücher.example`],
    [1, () => `${u}@xn--bcher-kva.example`],
    [2, () => `${u}@${LOCAL}.`],
    [2, () => `${u}@${o}@${LOCAL}`],
    [1, () => `@${LOCAL}`],
    [1, () => `${u}@`],
    [1, () => ''],
    [1, () => `${'a'.repeat(r.int(60, 400))}@${LOCAL}`],
    [1, () => `${u}@${Array.from({ length: r.int(10, 80) }, () => 'label').join('.')}.example`],
    [1, () => `${u}\\@${o}@${LOCAL}`],
    [1, () => `${u}@sub.${LOCAL}`],
    [1, () => `${u}@evil${LOCAL}`],
    [1, () => `${u}\t@${LOCAL}`],
  ])();
}

/** `<addr>` mostly; sometimes the brackets are missing or doubled. */
function path_(r: Rng, a: string): string {
  return r.weighted([
    [20, `<${a}>`],
    [1, a],
    [1, `<<${a}>>`],
    [1, `<${a}`],
    [1, ` <${a}> `],
  ]);
}

function mailParams(r: Rng): string {
  const ps: string[] = [];
  const n = r.weighted([[6, 0], [3, 1], [1, 3]]);
  for (let i = 0; i < n; i++) {
    ps.push(r.pick(['SMTPUTF8', 'BODY=8BITMIME', 'BODY=7BIT', 'BODY=BINARYMIME', `SIZE=${r.int(0, 20_000_000)}`, 'SIZE=-1', 'SIZE=abc', 'AUTH=<>', 'RET=FULL', 'ENVID=x', 'XFOO=bar', '=', 'SMTPUTF8=yes']));
  }
  return ps.length ? ` ${ps.join(' ')}` : '';
}

function heloName(r: Rng): string {
  return r.weighted([
    [10, 'client.example.net'],
    [2, '[192.0.2.1]'],
    [1, ''],
    [1, 'two words'],
    [1, 'x'.repeat(r.int(200, 600))],
    [1, 'bücher.example'],
    [1, 'mx.doe-family.com'],
  ]);
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** One command line (without CRLF), of any kind. */
function commandLine(r: Rng): string {
  return r.weighted<() => string>([
    [6, () => `EHLO ${heloName(r)}`],
    [2, () => `HELO ${heloName(r)}`],
    [10, () => `MAIL FROM:${path_(r, r.chance(0.1) ? '' : address(r))}${mailParams(r)}`],
    [12, () => `RCPT TO:${path_(r, address(r))}${r.chance(0.1) ? ' NOTIFY=NEVER' : ''}`],
    [3, () => 'DATA'],
    [3, () => 'RSET'],
    [3, () => 'NOOP'],
    [1, () => 'QUIT'],
    [1, () => 'HELP'],
    [1, () => r.pick(['VRFY jdoe', 'EXPN staff', 'BDAT 100 LAST', 'ETRN doe-family.com', 'TURN', 'XCLIENT ADDR=192.168.1.10', 'XFORWARD ADDR=192.168.1.10'])],
    [2, () => `AUTH ${r.pick(['PLAIN', 'LOGIN', 'CRAM-MD5', 'plain', ''])}${r.chance(0.5) ? ` ${r.pick([b64(`\0jdoe\0${r.pick(['wrong', 'pw'])}`), '=', '*', '!!!', b64('x'.repeat(300))])}` : ''}`],
    [1, () => 'STARTTLS'],
    [1, () => r.pick(['mail from:<jdoe@doe-family.com>', 'Mail From: <jdoe@doe-family.com>', 'MAIL FROM <a@b>', 'MAIL TO:<a@b>', 'RCPT FROM:<a@b>', 'RCPT TO:', 'MAIL'])],
    [1, () => r.pick(['GET / HTTP/1.1', 'PROXY TCP4 192.168.1.10 192.0.2.25 1 25', 'FOO', '', ' ', '\t'])],
  ])();
}

/**
 * A message body for DATA, ending with the terminator it chose (or none),
 * sometimes followed by a whole transaction. That transaction's message is
 * `Subject: smuggled` when only a smuggling dot (a bare CR or LF one) comes
 * before it: the server must never store it as a message of its own.
 */
function body(r: Rng): { data: Buffer; ended: boolean } {
  const headers: string[] = [];
  headers.push(`Subject: fuzz ${r.int(0, 1e9)}`, `From: <jdoe@${LOCAL}>`, 'To: <jane@doe-family.com>', `Message-ID: <${r.int(0, 1e9)}@fuzz.test>`);
  if (r.chance(0.1)) for (let i = r.int(45, 55); i > 0; i--) headers.push('Received: from a by b; Sat, 1 Jan 2000 00:00:00 +0000');
  if (r.chance(0.1)) headers.push(`X-Long: ${Array.from({ length: r.int(10, 400) }, () => 'word').join('\r\n ')}`);
  if (r.chance(0.05)) headers.push(`X-Huge: ${'h'.repeat(r.int(1000, 40_000))}`);
  if (r.chance(0.08)) headers.push(foldedField(r));
  const lines: string[] = [];
  for (let i = r.int(0, 40); i > 0; i--) {
    lines.push(r.weighted([
      [20, 'Lorem ipsum dolor sit amet.'],
      [2, '.leading dot'],
      [2, '.'],
      [1, '..'],
      [1, 'x'.repeat(r.int(900, 12_000))],
      [1, 'caf\u00e9 \u2603 8-bit'],
      [1, 'MAIL FROM:<evil@example.net>'],
    ]));
  }
  if (r.chance(0.03)) lines.push('z'.repeat(r.int(100_000, 400_000)));
  // Dot-stuff most of the time; an unstuffed lone dot ends the message early.
  const stuff = r.chance(0.9);
  let text = `${headers.join('\r\n')}\r\n\r\n${lines.map((l) => (stuff && l.startsWith('.') ? `.${l}` : l)).join('\r\n')}`;
  // Damage: bare line ends, NULs, bytes that are not UTF-8.
  if (r.chance(0.1)) text = text.replace(/\r\n/g, () => (r.chance(0.1) ? r.pick(['\n', '\r']) : '\r\n'));
  if (r.chance(0.03)) text += '\0';
  let buf = Buffer.from(text, 'utf8');
  if (r.chance(0.05)) buf = Buffer.concat([buf, r.bytes(r.int(1, 64))]);
  const end = r.weighted([
    [40, '\r\n.\r\n'],
    [2, '\n.\n'],
    [2, '\r.\r'],
    [2, '\r\n.\n'],
    [2, '\n.\r\n'],
    [1, '\r\n.\r'],
    [1, '\r\n\0.\r\n'],
    [1, ''],
  ]);
  // A proper end before the tail makes it a real, pipelined transaction. Look
  // at the bytes, not at the choices: a damaged line end ("\r") followed by
  // the "\n.\r\n" variant is a proper CRLF.CRLF, and so is an unstuffed lone dot.
  const before = Buffer.concat([Buffer.from('\r\n'), buf, Buffer.from(end, 'latin1')]);
  const properEndBefore = end === '' || before.includes('\r\n.\r\n');
  const marker = properEndBefore ? 'pipelined' : 'smuggled';
  const tail = r.chance(0.3) ? `MAIL FROM:<${marker}@example.net>\r\nRCPT TO:<jdoe@doe-family.com>\r\nDATA\r\nSubject: ${marker}\r\n\r\n${marker}\r\n.\r\n` : '';
  // Whether the server has a proper end to answer: otherwise it waits for more text.
  const ended = tail !== '' || before.includes('\r\n.\r\n');
  return { data: Buffer.concat([buf, Buffer.from(end + tail, 'latin1')]), ended };
}

/**
 * One field folded over many continuation lines (issue 16 item 1: the parser
 * must stay linear), with odd folds: tabs, runs of spaces, whitespace-only
 * lines; now and then long enough to pass header_size_max (1 MiB by default).
 */
function foldedField(r: Rng): string {
  const lines = r.weighted([[6, r.int(100, 5_000)], [3, r.int(20_000, 120_000)], [1, r.int(270_000, 320_000)]]);
  const folds = [' a', '\tb', '   c', ' ', '\t', ' word word'];
  const parts = [`X-Folded-${r.int(0, 99)}: start`];
  for (let i = 0; i < lines; i++) parts.push(r.chance(0.9) ? ' a' : r.pick(folds));
  return parts.join('\r\n');
}

/** Byte-level damage to a line: flips, insertions of CR/LF/NUL, truncation, duplication. */
function mutate(r: Rng, line: Buffer): Buffer {
  let b = Buffer.from(line);
  for (let n = r.int(1, 4); n > 0; n--) {
    const at = b.length === 0 ? 0 : r.int(0, b.length - 1);
    switch (r.int(0, 5)) {
      case 0:
        if (b.length) b[at] = r.int(0, 255);
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([r.pick([0, 10, 13, 0x7f, 0xff, 0xc3])]), b.subarray(at)]);
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3:
        b = Buffer.concat([b, b]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), r.bytes(r.int(1, 16)), b.subarray(at)]);
        break;
      default:
        b = Buffer.from(b.toString('latin1').replace(/[a-z]/gi, (c) => (r.chance(0.5) ? c.toUpperCase() : c.toLowerCase())), 'latin1');
    }
  }
  return b;
}

// ---------------------------------------------------------------- a fuzz connection

class FuzzConn {
  private socket: net.Socket;
  private text = '';
  private replies = 0;
  private waiters: Array<() => void> = [];
  closed = false;
  tls = false;
  /** A `220 2.0.0` (Ready to start TLS) was read. */
  sawTlsReady = false;
  /** The last reply was 354: the server reads message text until a proper end. */
  inData = false;

  private constructor(socket: net.Socket, private readonly stats: Stats) {
    this.socket = socket;
    this.attach(socket);
  }

  static open(port: number, stats: Stats): Promise<FuzzConn | null> {
    return new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('error', () => resolve(null));
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(new FuzzConn(s, stats));
      });
    });
  }

  private readonly onData = (d: Buffer): void => {
    this.text += d.toString('latin1');
    // Count complete replies; keep only an unfinished tail.
    let nl: number;
    while ((nl = this.text.indexOf('\r\n')) >= 0) {
      const line = this.text.slice(0, nl);
      this.text = this.text.slice(nl + 2);
      if (line[3] === '-') continue;
      this.replies++;
      this.stats.replies[line[0] ?? '?'] = (this.stats.replies[line[0] ?? '?'] ?? 0) + 1;
      const m = /^250 2\.0\.0 Ok: queued as (\S+)/.exec(line);
      if (m) this.stats.acknowledged.add(m[1]!);
      if (line.startsWith('220 2.0.0')) this.sawTlsReady = true;
      this.inData = line.startsWith('354');
    }
    if (this.text.length > 1_000_000) this.text = '';
    for (const w of this.waiters.splice(0)) w();
  };

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('error', () => undefined);
    s.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  write(b: Buffer | string): void {
    if (this.closed) return;
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    this.stats.bytes += buf.length;
    this.socket.write(buf);
  }

  /** Waits until `n` more replies arrived, the connection closed, or `ms` passed. */
  async waitReplies(n: number, ms: number): Promise<void> {
    const target = this.replies + n;
    const until = Date.now() + ms;
    while (this.replies < target && !this.closed && Date.now() < until) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, until - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The TLS handshake over the current socket (after a 220 to STARTTLS). */
  async startTls(): Promise<boolean> {
    if (this.closed) return false;
    const plain = this.socket;
    plain.removeListener('data', this.onData);
    const secure = await new Promise<tls.TLSSocket | null>((resolve) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' }, () => resolve(s));
      s.once('error', () => resolve(null));
      setTimeout(() => resolve(null), 5000).unref();
    });
    if (secure === null) {
      plain.destroy();
      return false;
    }
    this.socket = secure;
    this.tls = true;
    this.attach(secure);
    return true;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
    this.closed = true;
  }
}

// ---------------------------------------------------------------- sessions

interface Stats {
  sessions: number;
  commands: number;
  bytes: number;
  tlsSessions: number;
  replies: Record<string, number>;
  acknowledged: Set<string>;
  connectFailures: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// How long a session waits for replies before going on regardless: the
// server answers in milliseconds, so a longer wait only means that fewer
// replies than expected are coming (a DATA that swallowed the rest, a close).
const REPLY_WAIT = 300;
const END_OF_DATA_WAIT = 2000;

/** A complete, valid transaction: most accepted messages come from here. */
async function transaction(c: FuzzConn, r: Rng): Promise<void> {
  c.write(`MAIL FROM:<${r.pick(['alice@example.net', 'bob@example.org', ''])}>\r\n`);
  await c.waitReplies(1, REPLY_WAIT);
  for (let i = r.int(1, 3); i > 0; i--) {
    c.write(`RCPT TO:<${r.pick(['jdoe', 'jane', 'jim'])}@${LOCAL}>\r\n`);
    await c.waitReplies(1, REPLY_WAIT);
  }
  c.write('DATA\r\n');
  await c.waitReplies(1, REPLY_WAIT);
  const lines = Array.from({ length: r.int(1, 30) }, (_, i) => (i % 7 === 3 ? '..stuffed' : `line ${i} of a fuzz message`));
  c.write(`Subject: valid ${r.int(0, 1e9)}\r\nFrom: <alice@example.net>\r\n\r\n${lines.join('\r\n')}\r\n.\r\n`);
  await c.waitReplies(1, END_OF_DATA_WAIT);
}

async function session(port: number, r: Rng, stats: Stats, tlsAvailable: boolean): Promise<void> {
  const c = await FuzzConn.open(port, stats);
  if (c === null) {
    stats.connectFailures++;
    return;
  }
  stats.sessions++;
  const hardStop = setTimeout(() => c.destroy(), 15_000);
  try {
    if (r.chance(0.03)) c.write('PROXY TCP4 192.168.1.10 192.0.2.25 40000 25\r\n');
    if (r.chance(0.05)) c.write(commandLine(r) + '\r\n'); // talking before the greeting
    await c.waitReplies(1, REPLY_WAIT);
    if (r.chance(0.85)) {
      c.write(`EHLO ${r.chance(0.9) ? 'client.example.net' : heloName(r)}\r\n`);
      await c.waitReplies(1, REPLY_WAIT);
    }
    for (let steps = r.int(1, 25); steps > 0 && !c.closed; steps--) {
      stats.commands++;
      if (c.inData && r.chance(0.8)) {
        // Most of the time, end a message left open rather than feed it commands.
        c.write('\r\n.\r\n');
        await c.waitReplies(1, END_OF_DATA_WAIT);
      }
      const action = r.weighted<string>([
        [14, 'command'], [8, 'transaction'], [5, 'data'], [4, 'pipeline'], [3, 'mutate'],
        [2, 'starttls'], [1, 'starttls-inject'], [2, 'longline'], [2, 'controls'], [2, 'split'],
        [2, 'auth-exchange'], [1, 'stall'], [1, 'garbage'], [1, 'halfclose'], [1, 'abort'],
        [2, 'unfinished'],
      ]);
      switch (action) {
        case 'command':
          c.write(`${commandLine(r)}\r\n`);
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'transaction':
          await transaction(c, r);
          break;
        case 'data':
          c.write(`MAIL FROM:<alice@example.net>${r.chance(0.3) ? ' SMTPUTF8' : ''}\r\nRCPT TO:<jdoe@${LOCAL}>\r\nDATA\r\n`);
          await c.waitReplies(3, REPLY_WAIT);
          const message = body(r);
          c.write(message.data);
          await c.waitReplies(1, message.ended ? END_OF_DATA_WAIT : REPLY_WAIT);
          // A body without a proper end leaves the session in DATA: end it, mostly.
          if (r.chance(0.8)) c.write('\r\n.\r\n');
          break;
        case 'unfinished': {
          // Issue 16 item 4: a large DATA that is never ended (the connection
          // goes away or stalls), or ended only after a long body: the
          // server must hold it on disk, not in memory, and leave no file behind.
          c.write(`MAIL FROM:<alice@example.net>\r\nRCPT TO:<jdoe@${LOCAL}>\r\nDATA\r\n`);
          await c.waitReplies(3, REPLY_WAIT);
          c.write(`Subject: unfinished ${r.int(0, 1e9)}\r\n\r\n`);
          const piece = Buffer.from(`${'u'.repeat(1022)}\r\n`.repeat(64));
          for (let n = r.int(1, 64); n > 0 && !c.closed; n--) {
            c.write(piece);
            if (n % 8 === 0) await sleep(r.int(0, 20));
          }
          const how = r.weighted([[3, 'abort'], [1, 'stall'], [2, 'end']]);
          if (how === 'abort') {
            c.destroy();
            return;
          }
          if (how === 'stall') await sleep(r.int(100, 1500));
          c.write('\r\n.\r\n');
          await c.waitReplies(1, END_OF_DATA_WAIT);
          break;
        }
        case 'pipeline': {
          const n = r.int(2, 12);
          c.write(Array.from({ length: n }, () => `${commandLine(r)}\r\n`).join(''));
          await c.waitReplies(n, REPLY_WAIT);
          break;
        }
        case 'mutate':
          c.write(Buffer.concat([mutate(r, Buffer.from(commandLine(r), 'utf8')), Buffer.from('\r\n')]));
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'starttls':
        case 'starttls-inject': {
          if (c.tls) break;
          c.sawTlsReady = false;
          c.write(action === 'starttls' ? 'STARTTLS\r\n' : 'STARTTLS\r\nMAIL FROM:<injected@example.net>\r\nRCPT TO:<jdoe@doe-family.com>\r\n');
          await c.waitReplies(1, REPLY_WAIT);
          if (!tlsAvailable || !c.sawTlsReady) break;
          if (r.chance(0.1)) {
            c.write(r.bytes(r.int(1, 300))); // garbage instead of a ClientHello
            await c.waitReplies(1, 500);
            c.destroy();
            break;
          }
          if (await c.startTls()) {
            stats.tlsSessions++;
            c.write('EHLO client.example.net\r\n');
            await c.waitReplies(1, REPLY_WAIT);
          }
          break;
        }
        case 'longline':
          c.write(`${r.pick(['MAIL FROM:<', 'RCPT TO:<', 'EHLO ', 'NOOP ', ''])}${'x'.repeat(r.weighted([[5, r.int(2000, 3000)], [2, r.int(60_000, 70_000)], [1, r.int(100_000, 300_000)]]))}\r\n`);
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'controls':
          c.write(Buffer.concat([Buffer.from(r.pick(['MAIL FROM:<a', 'RCPT TO:<jdoe', 'EHLO x', 'NOOP'])), Buffer.from([r.pick([0, 1, 8, 11, 27, 0x7f, 0x80, 0xc0, 0xfe])]), Buffer.from('>\r\n')]));
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'split': {
          const line = Buffer.from(`${commandLine(r)}\r\n`, 'utf8');
          for (let i = 0; i < line.length && !c.closed; ) {
            const n = r.int(1, 8);
            c.write(line.subarray(i, i + n));
            i += n;
            await sleep(r.int(0, 5));
          }
          await c.waitReplies(1, REPLY_WAIT);
          break;
        }
        case 'auth-exchange':
          c.write(`AUTH ${r.pick(['PLAIN', 'LOGIN'])}\r\n`);
          await c.waitReplies(1, REPLY_WAIT);
          c.write(`${r.pick([b64('jdoe'), b64('\0jdoe\0wrong'), '*', '!!', '', b64('x'.repeat(2000))])}\r\n`);
          await c.waitReplies(1, REPLY_WAIT);
          c.write(`${r.pick([b64('wrong'), '*', 'NOOP'])}\r\n`);
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'stall':
          await sleep(r.int(50, 600));
          break;
        case 'garbage':
          c.write(r.bytes(r.int(1, 2000)));
          await c.waitReplies(1, REPLY_WAIT);
          break;
        case 'halfclose':
          c.end();
          await c.waitReplies(10, 1000);
          return;
        case 'abort':
          c.destroy();
          return;
      }
    }
    if (!c.closed && r.chance(0.7)) {
      c.write('QUIT\r\n');
      await c.waitReplies(1, REPLY_WAIT);
    }
  } finally {
    clearTimeout(hardStop);
    c.destroy();
  }
}

// ---------------------------------------------------------------- the server under test

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** A throw-away certificate, or null without openssl (STARTTLS then stays unavailable). */
function makeCertificate(dir: string): { cert: string; key: string } | null {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore', timeout: 20_000 });
    return { cert, key };
  } catch {
    return null;
  }
}

/** The banner within `ms`: the server is up and accepting. */
function probe(port: number, ms: number): Promise<{ ok: boolean; ms: number; why: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let text = '';
    const done = (ok: boolean, why: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ ok, ms: Date.now() - t0, why });
    };
    const timer = setTimeout(() => done(false, `no banner within ${ms} ms`), ms);
    s.on('data', (d) => {
      text += d.toString('latin1');
      if (text.includes('\r\n')) done(text.startsWith('220 '), text.trim());
    });
    s.on('error', (e) => done(false, e.message));
  });
}

/** VmRSS of a process in bytes, or null once it is gone. */
function rssOf(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

interface Server {
  child: ChildProcess;
  port: number;
  queueDir: string;
  exit: Promise<number | null>;
  /** The last lines of its output, for the report of a crash. */
  tail(): string;
}

async function startServer(o: Options, dir: string): Promise<{ server: Server; tlsAvailable: boolean }> {
  const port = await freePort();
  // Delivery goes to a port nobody listens on: every message is deferred and stays in the spool.
  const deadPort = await freePort();
  const queueDir = path.join(dir, 'queue');
  const cert = makeCertificate(dir);
  const set = [
    `vsl.data_dir=${JSON.stringify(path.join(dir, 'data'))}`,
    `delivery.default="127.0.0.1:${deadPort}"`,
    'delivery.bounce=false',
    // Local-domain mail too (the example delivers it to maildirs).
    'delivery.local=""',
    'server.smtp.timeout="3s"',
    'server.smtp.data_timeout="5s"',
    'server.smtp.session_timeout="20s"',
    'server.smtp.error.delay="20ms"',
    'server.smtp.client_count_max_per_ip=128',
    'server.smtp.message_size_limit=1000000',
  ];
  if (cert) set.push(`server.tls.certificate=${JSON.stringify(cert.cert)}`, `server.tls.private_key=${JSON.stringify(cert.key)}`);
  const args = [...(FROM_SOURCES ? ['--import', 'tsx'] : []), MAIN, 'run', '--config', o.config, '--listen', `127.0.0.1:${port}`, '--queue-dir', queueDir, '--workers', '0', '--log-level', 'error', '--log-format', 'json'];
  for (const s of set) args.push('--set', s);
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const server: Server = { child, port, queueDir, exit, tail: () => tail };
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode} while starting:\n${tail}`);
    if ((await probe(port, 1000)).ok) break;
    if (Date.now() > until) throw new Error(`the server did not start within 60 s:\n${tail}`);
    await sleep(200);
  }
  return { server, tlsAvailable: cert !== null };
}

// ---------------------------------------------------------------- the spool check

async function checkTheSpool(queueDir: string, acknowledged: Set<string>): Promise<{ problems: string[]; spooled: number }> {
  const spool = await Spool.open(queueDir);
  const check = await checkSpool(spool);
  const problems = [...check.problems];
  for (const place of await spool.places()) {
    for (const id of await spool.list(place)) {
      let read;
      try {
        read = await spool.read(place, id);
      } catch {
        continue; // reported by checkSpool
      }
      const eml = read.message.toString('latin1');
      if (!eml.startsWith('Received: ')) problems.push(`${id}: does not start with Received:`);
      const bare = eml.replace(/\r\n/g, '').search(/[\r\n]/);
      if (bare >= 0) problems.push(`${id}: bare CR or LF in the spooled message`);
      if (eml.includes('\0')) problems.push(`${id}: NUL in the spooled message`);
      if (read.record.recipients.length === 0) problems.push(`${id}: no recipients`);
      const head = eml.slice(0, eml.indexOf('\r\n\r\n') >>> 0);
      if (/^Subject: smuggled\r?$/m.test(head)) problems.push(`${id}: a message smuggled after a bare CR/LF end of data was stored`);
    }
  }
  for (const id of acknowledged) if (!check.messages.has(id)) problems.push(`acknowledged ${id} is not in the spool`);
  // Bodies received into tmp/ are removed once their message is queued, refused or abandoned.
  const bodies = (await fs.readdir(path.join(queueDir, 'tmp')).catch(() => [] as string[])).filter((n) => n.endsWith('.body.tmp'));
  if (bodies.length > 0) problems.push(`tmp/ still holds ${bodies.length} message bodies after the stop`);
  const corrupt = await fs.readdir(path.join(queueDir, 'corrupt')).catch(() => [] as string[]);
  if (corrupt.length > 0) problems.push(`corrupt/ holds ${corrupt.length} files`);
  return { problems, spooled: check.messages.size };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mta-fuzz-'));
  process.stdout.write(`fuzz: ${o.seconds} s, concurrency ${o.concurrency}, seed ${o.seed}, policy ${path.relative(process.cwd(), o.config) || o.config}\n`);
  const stats: Stats = { sessions: 0, commands: 0, bytes: 0, tlsSessions: 0, replies: {}, acknowledged: new Set(), connectFailures: 0 };
  const failures: string[] = [];
  let server: Server | null = null;
  let maxRss = 0;
  let maxProbeMs = 0;
  let probes = 0;
  try {
    const started = await startServer(o, dir);
    server = started.server;
    const srv = server;
    let crashed = false;
    let stopping = false;
    void srv.exit.then((code) => {
      if (!stopping) {
        crashed = true;
        failures.push(`the server exited (${code}) during the run`);
      }
    });

    const sampler = setInterval(() => {
      const rss = rssOf(srv.child.pid!);
      if (rss !== null) maxRss = Math.max(maxRss, rss);
    }, 250);
    const t0 = Date.now();
    const deadline = t0 + o.seconds * 1000;
    const probing = (async () => {
      while (Date.now() < deadline && !crashed) {
        const p = await probe(srv.port, 5000);
        probes++;
        maxProbeMs = Math.max(maxProbeMs, p.ms);
        if (!p.ok && !crashed) failures.push(`probe at ${Math.round((Date.now() - t0) / 1000)} s: ${p.why}`);
        await sleep(1000);
      }
    })();
    const workers = Array.from({ length: o.concurrency }, async (_, w) => {
      const r = new Rng(o.seed + w * 7919);
      while (Date.now() < deadline && !crashed) await session(srv.port, r, stats, started.tlsAvailable);
    });
    await Promise.all([...workers, probing]);
    const elapsed = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    if (!crashed) {
      const last = await probe(srv.port, 5000);
      if (!last.ok) failures.push(`final probe: ${last.why}`);
    }
    if (maxRss > o.maxRssMb * 1024 * 1024) failures.push(`RSS reached ${(maxRss / 2 ** 20).toFixed(0)} MiB, over --max-rss-mb ${o.maxRssMb}`);

    // A graceful stop: exit 0 within the grace period.
    stopping = true;
    if (!crashed) {
      srv.child.kill('SIGTERM');
      const code = await Promise.race([srv.exit, sleep(40_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        failures.push('the server did not stop within 40 s of SIGTERM');
        srv.child.kill('SIGKILL');
        await srv.exit;
      } else if (code !== 0) failures.push(`the server exited with ${code} after SIGTERM`);
    }
    const spool = await checkTheSpool(srv.queueDir, stats.acknowledged);
    failures.push(...spool.problems.slice(0, 50));
    if (spool.problems.length > 50) failures.push(`… and ${spool.problems.length - 50} more spool problems`);

    const replies = Object.entries(stats.replies).sort().map(([k, v]) => `${k}xx ${v}`).join(', ');
    process.stdout.write(
      [
        `sessions: ${stats.sessions} in ${elapsed.toFixed(1)} s = ${(stats.sessions / elapsed).toFixed(1)} sessions/s (${stats.tlsSessions} went TLS, ${stats.connectFailures} connections failed)`,
        `actions: ${stats.commands}, bytes sent: ${(stats.bytes / 2 ** 20).toFixed(1)} MiB, replies: ${replies}`,
        `messages acknowledged: ${stats.acknowledged.size}, in the spool: ${spool.spooled}`,
        `largest RSS: ${(maxRss / 2 ** 20).toFixed(1)} MiB (limit ${o.maxRssMb} MiB)`,
        `probes: ${probes}, slowest banner ${maxProbeMs} ms`,
        '',
      ].join('\n'),
    );
  } catch (e) {
    failures.push((e as Error).message);
  } finally {
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
      await server.exit;
    }
    if (failures.length > 0 && server) process.stdout.write(`server output (last lines):\n${server.tail().split('\n').slice(-30).join('\n')}\n`);
    if (o.keep) process.stdout.write(`kept ${dir}\n`);
    else await fs.rm(dir, { recursive: true, force: true });
  }
  if (failures.length > 0) {
    process.stdout.write(`FAIL (seed ${o.seed}):\n${failures.map((f) => `  ${f}`).join('\n')}\n`);
    return 1;
  }
  process.stdout.write('ok: no crash, memory bounded, every acknowledged message spooled and well formed\n');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`fuzz: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
