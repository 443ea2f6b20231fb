// Runs relay probes against a server over SMTP. Each probe gets a session
// of its own — greeting, EHLO (HELO if refused), MAIL, RCPT, then RSET and
// QUIT — so a refusal, an error delay or a closed connection in one probe
// cannot colour the next. DATA is never sent: a relay test sends no mail.
//
// The server is untrusted: every read has a deadline, replies are bounded
// in size, and their text is made printable before anyone prints it.

import net from 'node:net';
import tls from 'node:tls';
import { judgeReply, type ProbeResult, type ProbeStep } from './verdict.js';
import type { RelayProbe } from './probes.js';

export interface SmtpTarget {
  host: string;
  port: number;
}

export interface SmtpRunOptions {
  /** The HELO/EHLO name to announce. */
  helo: string;
  /** Deadline of the connection and of each reply, ms. */
  timeoutMs: number;
  /** Upgrade with STARTTLS when the server offers it, before MAIL. */
  starttls?: boolean;
}

/** What a first session learnt about the server. */
export interface ServerInfo {
  /** The greeting as received (`220 mx.example.org ESMTP`). */
  greeting: string;
  greetingCode: number;
  /** The name in the greeting, or null (`mx.example.org`). */
  name: string | null;
  /** EHLO keywords, upper-case (`PIPELINING`, `SMTPUTF8`, `SIZE`). */
  extensions: Set<string>;
  /** The address the socket connected to. */
  address: string | null;
}

interface Reply {
  code: number;
  lines: string[];
}

/** Longest reply accepted from the server: nothing legitimate comes near it. */
const MAX_REPLY_BYTES = 64 * 1024;
const MAX_REPLY_LINES = 200;

/** A reply made safe to print: control characters become `?`. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, '?');
}

export function replyText(r: Reply): string {
  return r.lines.map(printable).join(' / ');
}

/** A connection reading SMTP replies with a deadline on each. */
class SmtpConversation {
  private buffer = '';
  private lines: string[] = [];
  private readonly replies: Reply[] = [];
  private waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  private constructor(
    private socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.attach(socket);
  }

  private readonly onChunk = (chunk: Buffer): void => this.onData(chunk.toString('latin1'));
  private readonly onError = (e: Error): void => this.fail(new Error(`connection error: ${e.message}`));
  private readonly onClose = (): void => this.fail(new Error('connection closed by the server'));

  private attach(socket: net.Socket): void {
    socket.on('data', this.onChunk);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /** The TLS handshake after a 220 to STARTTLS; the certificate is not checked (this tests relaying, not TLS). */
  async startTls(servername: string | undefined): Promise<void> {
    const plain = this.socket;
    plain.removeListener('data', this.onChunk);
    plain.removeListener('close', this.onClose);
    this.buffer = '';
    this.lines = [];
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`TLS handshake: no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) }, () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`TLS handshake failed: ${e.message}`));
      });
    });
    this.socket = secure;
    this.attach(secure);
  }

  static open(target: SmtpTarget, timeoutMs: number): Promise<SmtpConversation> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect: ${e.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpConversation(socket, timeoutMs));
      });
    });
  }

  get remoteAddress(): string | null {
    return this.socket.remoteAddress ?? null;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_REPLY_BYTES) {
      this.fail(new Error('reply too long'));
      this.socket.destroy();
      return;
    }
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl < 0) break;
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.lines.push(line);
      if (this.lines.length > MAX_REPLY_LINES) {
        this.fail(new Error('reply too long'));
        this.socket.destroy();
        return;
      }
      // `ddd-text` continues a reply; `ddd text` or `ddd` ends it.
      if (line[3] !== '-') {
        const code = /^\d{3}/.test(line) ? Number(line.slice(0, 3)) : 0;
        this.push({ code, lines: this.lines });
        this.lines = [];
      }
    }
  }

  private push(r: Reply): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w.resolve(r);
    else this.replies.push(r);
  }

  private fail(e: Error): void {
    if (this.failure === null) this.failure = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(this.failure);
  }

  read(): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // Out of step with the server from here on: nothing more is sent.
        this.waiter = null;
        const e = new Error(`timeout: no reply within ${this.timeoutMs} ms`);
        this.failure ??= e;
        this.socket.destroy();
        reject(e);
      }, this.timeoutMs);
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  command(line: string): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    this.socket.write(Buffer.from(`${line}\r\n`, 'utf8'));
    return this.read();
  }

  /** RSET and QUIT, politely, without waiting long; then the socket is gone. */
  async close(): Promise<void> {
    if (this.failure === null) {
      try {
        await this.command('RSET');
        await this.command('QUIT');
      } catch {
        // The server went away first: nothing left to close politely.
      }
    }
    this.socket.destroy();
  }
}

/** The host name a greeting announces (`220 mx.example.org ESMTP …`), if it looks like one. */
function greetingName(line: string): string | null {
  const m = /^220[ -](\S+)/.exec(line);
  if (!m) return null;
  const name = m[1]!;
  return /^[A-Za-z0-9.-]+$/.test(name) && name.includes('.') ? name.toLowerCase() : null;
}

/** EHLO, or HELO when EHLO is not understood (a 500/502). */
async function hello(c: SmtpConversation, name: string): Promise<{ reply: Reply; extensions: Set<string> }> {
  const ehlo = await c.command(`EHLO ${name}`);
  if (ehlo.code === 500 || ehlo.code === 502) return { reply: await c.command(`HELO ${name}`), extensions: new Set() };
  const extensions = new Set(ehlo.lines.slice(1).map((l) => l.slice(4).split(' ')[0]!.toUpperCase()));
  return { reply: ehlo, extensions };
}

/** One short session to read the greeting and the EHLO keywords. */
export async function inspectServer(target: SmtpTarget, opts: SmtpRunOptions): Promise<ServerInfo> {
  const c = await SmtpConversation.open(target, opts.timeoutMs);
  try {
    const greeting = await c.read();
    const info: ServerInfo = {
      greeting: replyText(greeting),
      greetingCode: greeting.code,
      name: greetingName(greeting.lines[0] ?? ''),
      extensions: new Set(),
      address: c.remoteAddress,
    };
    if (greeting.code === 220) info.extensions = (await hello(c, opts.helo)).extensions;
    return info;
  } finally {
    await c.close();
  }
}

/** Runs one probe in a session of its own. */
export async function runSmtpProbe(target: SmtpTarget, probe: RelayProbe, opts: SmtpRunOptions): Promise<ProbeResult> {
  let step: ProbeStep = 'connect';
  let c: SmtpConversation;
  try {
    c = await SmtpConversation.open(target, opts.timeoutMs);
  } catch (e) {
    return { probe, step, reply: (e as Error).message, verdict: 'error' };
  }
  try {
    const steps: Array<[ProbeStep, () => Promise<Reply>]> = [];
    let smtputf8 = false;
    steps.push(['greeting', () => c.read()]);
    steps.push([
      'helo',
      async () => {
        let h = await hello(c, opts.helo);
        if (opts.starttls === true && h.reply.code === 250 && h.extensions.has('STARTTLS')) {
          const ready = await c.command('STARTTLS');
          if (ready.code !== 220) return ready;
          await c.startTls(net.isIP(target.host) === 0 ? target.host : undefined);
          h = await hello(c, opts.helo);
        }
        smtputf8 = probe.smtputf8 && h.extensions.has('SMTPUTF8');
        return h.reply;
      },
    ]);
    steps.push(['mail', () => c.command(`MAIL FROM:${probe.mailFrom}${smtputf8 ? ' SMTPUTF8' : ''}`)]);
    steps.push(['rcpt', () => c.command(`RCPT TO:${probe.rcptTo}`)]);
    for (const [name, run] of steps) {
      step = name;
      const reply = await run();
      const verdict = judgeReply(name, reply.code);
      if (verdict !== null) return { probe, step, reply: replyText(reply), verdict };
    }
    return { probe, step, reply: '', verdict: 'error' };
  } catch (e) {
    return { probe, step, reply: printable((e as Error).message), verdict: 'error' };
  } finally {
    await c.close();
  }
}
