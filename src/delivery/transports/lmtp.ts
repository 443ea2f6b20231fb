// transport::lmtp: into a local mail store that speaks LMTP (RFC 2033),
// such as Dovecot's lmtp service. The target is a unix socket
// (`unix:/run/dovecot/lmtp` or an absolute path) or `host[:port]` (port 24);
// without one, `delivery.lmtp`. All recipients for one LMTP server go in one
// transaction, and after the final dot the server answers once for every
// recipient it accepted, in RCPT order: each recipient gets its own outcome.
//
// The session is short and sequential (LHLO, MAIL, RCPT…, DATA, QUIT), so
// the client is written here on a plain socket; every reply has a deadline
// of `delivery.timeout`, and a broken connection defers what is undecided.

import net from 'node:net';
import { parseDuration } from '../../config/units.js';
import type { Transport } from '../../mail/types.js';
import { addressText } from '../../mail/types.js';
import { deferred, type RcptResult, resultFromReply } from '../outcome.js';
import type { DeliveryJob, TransportContext, TransportDef } from './transport.js';

type LmtpAddress = { path: string } | { host: string; port: number };

/** Parses an LMTP target; throws an Error naming the problem. */
export function parseLmtpTarget(text: string): LmtpAddress {
  const t = text.trim();
  const unix = /^unix:(.+)$/.exec(t)?.[1] ?? (t.startsWith('/') ? t : null);
  if (unix !== null) {
    if (!unix.startsWith('/')) throw new Error(`invalid LMTP target ${JSON.stringify(text)}: the socket path must be absolute`);
    return { path: unix };
  }
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9_.-]+))(?::(\d{1,5}))?$/i.exec(t);
  const port = m?.[3] === undefined ? 24 : Number(m[3]);
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && !net.isIPv6(m[1]))) {
    throw new Error(`invalid LMTP target ${JSON.stringify(text)}: expected unix:/path, /path or host[:port]`);
  }
  return { host: (m[1] ?? m[2]!).toLowerCase(), port };
}

function targetOf(t: Transport, ctx: TransportContext): string {
  const target = (t.target ?? ctx.cfg.delivery.lmtp).trim();
  if (target === '') throw new Error('no LMTP target: give transport::lmtp one or set delivery.lmtp');
  return target;
}

/** The longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; servers send longer texts). */
const MAX_LINE = 4096;

/** One LMTP connection: sends command lines and reads complete (multi-line) replies. */
class LmtpConnection {
  private buffer = '';
  private replies: string[] = [];
  private waiting: { resolve(r: string): void; reject(e: Error): void } | null = null;
  private failure: Error | null = null;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the LMTP server')));
  }

  static open(address: LmtpAddress, timeoutMs: number): Promise<LmtpConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ ...address, timeout: timeoutMs });
      const onError = (err: Error) => {
        socket.destroy();
        reject(err);
      };
      socket.once('error', onError);
      socket.once('timeout', () => onError(new Error('timeout connecting')));
      socket.once('connect', () => {
        socket.off('error', onError);
        socket.setTimeout(0);
        resolve(new LmtpConnection(socket, timeoutMs));
      });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let reply: string[] = [];
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      reply.push(line);
      if (!/^\d{3}-/.test(line)) {
        this.replies.push(reply.join('\n'));
        reply = [];
      }
    }
    // Lines of an unfinished multi-line reply go back to the buffer.
    if (reply.length > 0) this.buffer = `${reply.join('\n')}\n${this.buffer}`;
    if (this.buffer.length > MAX_LINE * 16) this.fail(new Error('LMTP reply too long'));
    this.deliverReply();
  }

  private deliverReply(): void {
    if (!this.waiting) return;
    const next = this.replies.shift();
    if (next !== undefined) this.waiting.resolve(next);
    else if (this.failure) this.waiting.reject(this.failure);
    else return;
    this.waiting = null;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.socket.destroy();
    this.deliverReply();
  }

  /** The next reply, or an error when the connection ends or `delivery.timeout` passes first. */
  reply(): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error('timeout waiting for the LMTP server')), this.timeoutMs);
      this.waiting = {
        resolve(r) {
          clearTimeout(timer);
          resolve(r);
        },
        reject(e) {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.deliverReply();
    });
  }

  /** Sends a command and reads its reply. */
  async command(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`, 'latin1');
    return this.reply();
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    if (!this.failure) this.socket.end('QUIT\r\n');
    this.failure ??= new Error('closed');
  }
}

/** The message as DATA: CRLF line ends, leading dots doubled, and the final dot. */
function dataBlock(message: Buffer): Buffer {
  let text = message.toString('latin1').replace(/\r?\n/g, '\r\n');
  if (!text.endsWith('\r\n')) text += '\r\n';
  return Buffer.from(`${text.replace(/^\./gm, '..')}.\r\n`, 'latin1');
}

const isPositive = (reply: string) => /^2/.test(reply);

/**
 * One LMTP transaction: LHLO, MAIL, a RCPT each, DATA, and one reply per
 * accepted recipient. Results go into `results` as they are known, so a
 * connection that breaks half-way keeps the answers already given.
 */
async function transaction(conn: LmtpConnection, job: DeliveryJob, ctx: TransportContext, remote: string, results: Map<string, RcptResult>): Promise<void> {
  const rcpts = job.rcpts.map(addressText);
  const all = (reply: string) => {
    for (const a of rcpts) results.set(a, resultFromReply(a, reply, remote));
  };
  const greeting = await conn.reply();
  if (!/^220/.test(greeting)) return all(greeting.startsWith('5') ? greeting : `451 4.4.0 LMTP greeting: ${greeting}`);
  const lhlo = await conn.command(`LHLO ${ctx.cfg.server.name}`);
  if (!isPositive(lhlo)) return all(lhlo);
  const body = job.message.some((b) => b >= 0x80) && /^250[ -]8BITMIME\b/im.test(lhlo) ? ' BODY=8BITMIME' : '';
  const mail = await conn.command(`MAIL FROM:<${addressText(job.mailFrom)}>${body}`);
  if (!isPositive(mail)) return all(mail);
  const accepted: string[] = [];
  for (const a of rcpts) {
    const reply = await conn.command(`RCPT TO:<${a}>`);
    if (isPositive(reply)) accepted.push(a);
    else results.set(a, resultFromReply(a, reply, remote));
  }
  if (accepted.length > 0) {
    const data = await conn.command('DATA');
    if (!/^354/.test(data)) {
      for (const a of accepted) results.set(a, resultFromReply(a, data, remote));
    } else {
      conn.write(dataBlock(job.message));
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
      for (const a of accepted) results.set(a, resultFromReply(a, await conn.reply(), remote));
    }
  }
}

async function deliverLmtp(t: Transport, job: DeliveryJob, ctx: TransportContext): Promise<RcptResult[]> {
  const target = targetOf(t, ctx);
  const address = parseLmtpTarget(target);
  const remote = `lmtp ${target}`;
  const timeoutMs = Math.max(100, parseDuration(ctx.cfg.delivery.timeout));
  const results = new Map<string, RcptResult>();
  // Whatever is not answered when the connection fails or times out is deferred.
  const rest = (why: string) =>
    job.rcpts.map(addressText).map((a) => results.get(a) ?? deferred(a, `451 4.4.1 LMTP delivery to ${target}: ${why}`, '4.4.1', remote));
  let conn: LmtpConnection;
  try {
    conn = await LmtpConnection.open(address, timeoutMs);
  } catch (err) {
    return rest(`cannot connect: ${(err as Error).message}`);
  }
  try {
    await transaction(conn, job, ctx, remote, results);
    return rest('no reply');
  } catch (err) {
    return rest((err as Error).message);
  } finally {
    conn.close();
  }
}

export const lmtpTransport: TransportDef = {
  kind: 'lmtp',
  builtin: 'lmtp',
  target: { optional: true, check: (target) => void parseLmtpTarget(target) },
  destination(t, _rcpt, ctx) {
    const target = targetOf(t, ctx);
    parseLmtpTarget(target);
    return `lmtp:${target}`;
  },
  deliver: (t, job, ctx) => ctx.pool.runLocal(() => deliverLmtp(t, job, ctx)),
};
