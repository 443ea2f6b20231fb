// One outgoing SMTP connection, on nodemailer's SMTP client, with promises,
// deadlines and per-recipient results.
//
// nodemailer's client reports a broken connection through an 'error' event
// and may never call the callback of the command in flight, so every
// operation here races its callback against the connection's end and a
// deadline of its own: a next hop that hangs, trickles bytes or sends
// garbage costs at most the configured timeouts.

import net from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { createRequire } from 'node:module';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

// nodemailer is loaded by the process that delivers, on first use; the SMTP
// front processes never need it.
const require = createRequire(import.meta.url);
let SmtpConnectionClass: typeof SMTPConnection | null = null;
import { deferred, failed, type RcptResult, resultFromReply } from './outcome.js';

export type TlsMode = 'none' | 'opportunistic' | 'required' | 'tunnel';

export interface SmtpConnectOptions {
  /** IP address to connect to (names are resolved by the caller through the Resolver). */
  ip: string;
  port: number;
  /** Host name for TLS (SNI and certificate check) and for messages. */
  hostname: string;
  tls: TlsMode;
  /** EHLO name: server.name. */
  heloName: string;
  /** Inactivity limit for the greeting and every command (delivery.timeout). */
  timeoutMs: number;
  /** Limit for the TCP connection to be established (default: timeoutMs). */
  connectTimeoutMs?: number;
  auth?: { user: string; pass: string } | null;
  /** Extra trust anchors for verified TLS (tests, private relays). */
  ca?: SecureContextOptions['ca'];
}

/** Failure to set up a session (connect, greeting, EHLO, TLS, AUTH). */
export class ConnectError extends Error {
  constructor(
    message: string,
    /** The remote reply that caused it, if any. */
    readonly reply: string | null,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
  /** AUTH refused with 5xx, or a TLS requirement not met: retrying the same way will not help soon. */
  get permanentAuth(): boolean {
    return this.code === 'EAUTH' && /^5/.test(this.reply ?? '');
  }
}

type SmtpError = SMTPConnection.SMTPError & { rejectedErrors?: Array<SMTPConnection.SMTPError & { recipient?: string }> };

/** Recipients per transaction before the rest go into another one (RFC 5321 §4.5.3.1.8: at least 100 must be accepted). */
export const MAX_RCPTS_PER_TRANSACTION = 100;

export class SmtpSession {
  private conn: SMTPConnection;
  private ended = false;
  private endError: Error | null = null;
  private waiters = new Set<(err: Error) => void>();
  /** A transaction failed half-way: RSET before the next MAIL. */
  private dirty = false;
  /** Messages sent on this connection. */
  messages = 0;
  readonly remoteMta: string;

  private constructor(
    conn: SMTPConnection,
    readonly opts: SmtpConnectOptions,
  ) {
    this.conn = conn;
    this.remoteMta = opts.hostname && opts.hostname !== opts.ip ? `${opts.hostname} [${opts.ip}]` : `[${opts.ip}]`;
    conn.on('error', (err) => this.finish(err));
    conn.on('end', () => this.finish(new Error('connection closed by the remote server')));
  }

  private finish(err: Error): void {
    if (!this.ended) {
      this.ended = true;
      this.endError = err;
    }
    for (const w of [...this.waiters]) w(err);
    this.waiters.clear();
  }

  get usable(): boolean {
    return !this.ended;
  }

  /** Runs one client operation, failing on connection end or after `deadlineMs`. */
  private op<T>(deadlineMs: number, what: string, start: (done: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
    if (this.ended) return Promise.reject(this.endError ?? new Error('connection closed'));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | null | undefined, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.waiters.delete(onEnd);
        if (err) reject(err);
        else resolve(value as T);
      };
      const onEnd = (err: Error) => settle(err);
      const timer = setTimeout(() => {
        const err = Object.assign(new Error(`timeout during ${what}`), { code: 'ETIMEDOUT' });
        settle(err);
        this.close();
        this.finish(err);
      }, deadlineMs);
      this.waiters.add(onEnd);
      try {
        start(settle);
      } catch (err) {
        settle(err as Error);
      }
    });
  }

  /** Connects, reads the greeting, says EHLO, does STARTTLS/TLS as asked, and logs in. */
  static async open(opts: SmtpConnectOptions): Promise<SmtpSession> {
    try {
      return await SmtpSession.openOnce(opts, opts.tls);
    } catch (err) {
      // Opportunistic TLS that breaks during the handshake: try again in
      // plaintext rather than never delivering (what a serious MTA does).
      if (opts.tls === 'opportunistic' && err instanceof ConnectError && err.code === 'ETLS') {
        return SmtpSession.openOnce(opts, 'none');
      }
      throw err;
    }
  }

  private static async openOnce(opts: SmtpConnectOptions, mode: TlsMode): Promise<SmtpSession> {
    const tlsOptions = {
      servername: net.isIP(opts.hostname) ? undefined : opts.hostname,
      // Opportunistic TLS protects against passive listeners only; the
      // certificate is checked when the target asks for it (SPEC §10).
      rejectUnauthorized: mode === 'required' || mode === 'tunnel',
      ca: opts.ca,
    };
    SmtpConnectionClass ??= require('nodemailer/lib/smtp-connection/index.js') as typeof SMTPConnection;
    const conn = new SmtpConnectionClass({
      host: opts.ip,
      port: opts.port,
      name: opts.heloName,
      secure: mode === 'tunnel',
      ignoreTLS: mode === 'none',
      requireTLS: mode === 'required',
      opportunisticTLS: mode === 'opportunistic',
      connectionTimeout: opts.connectTimeoutMs ?? opts.timeoutMs,
      greetingTimeout: opts.timeoutMs,
      socketTimeout: opts.timeoutMs,
      logger: false,
      tls: tlsOptions,
    });
    const session = new SmtpSession(conn, opts);
    try {
      // Connect covers TCP, greeting, EHLO and TLS: a few round trips.
      await session.op<void>((opts.connectTimeoutMs ?? opts.timeoutMs) + opts.timeoutMs * 2, 'connect', (done) => conn.connect((err) => done(err)));
      if (opts.auth) {
        await session.op<void>(opts.timeoutMs, 'AUTH', (done) =>
          conn.login({ credentials: { user: opts.auth!.user, pass: opts.auth!.pass } }, (err) => done(err)),
        );
      }
    } catch (err) {
      session.close();
      const e = err as SmtpError;
      throw new ConnectError(e.message, e.response ?? null, e.code);
    }
    return session;
  }

  /**
   * Sends one message to some recipients of this destination and returns a
   * result for each. Recipients go in transactions of at most
   * MAX_RCPTS_PER_TRANSACTION; when the server answers 452 (too many
   * recipients) to some after accepting others, those go in the next
   * transaction on the same connection, otherwise they are deferred.
   * Never throws: a broken connection defers whatever is not decided.
   */
  async sendMessage(mailFrom: string, rcpts: string[], data: Buffer): Promise<RcptResult[]> {
    const results = new Map<string, RcptResult>();
    let remaining = [...rcpts];
    const eightBit = data.some((b) => b >= 0x80);
    const size = data.length;
    const deadline = this.opts.timeoutMs * 3 + Math.ceil(size / 10_000) * 1000; // generous for slow links, still bounded
    while (remaining.length > 0 && this.usable) {
      const batch = remaining.slice(0, MAX_RCPTS_PER_TRANSACTION);
      let rest = remaining.slice(MAX_RCPTS_PER_TRANSACTION);
      let tooMany: string[] = [];
      let accepted = 0;
      try {
        if (this.dirty) {
          await this.op<void>(this.opts.timeoutMs, 'RSET', (done) => this.conn.reset((err) => done(err)));
          this.dirty = false;
        }
        const info = await this.op<SMTPConnection.SentMessageInfo>(deadline, 'the transaction', (done) =>
          this.conn.send({ from: mailFrom, to: batch, size, use8BitMime: eightBit }, data, (err, inf) => done(err, inf)),
        );
        this.messages++;
        for (const a of info.accepted) {
          results.set(a, resultFromReply(a, info.response, this.remoteMta));
          accepted++;
        }
        tooMany = this.rcptRejections(info.rejectedErrors ?? [], results);
      } catch (err) {
        const e = err as SmtpError;
        this.dirty = true;
        if (e.command === 'RCPT TO' && e.rejectedErrors) {
          // Every recipient of the batch refused.
          tooMany = this.rcptRejections(e.rejectedErrors, results);
        } else if ((e.command === 'MAIL FROM' || e.command === 'DATA') && e.response) {
          // Refused as a whole: recipients refused at RCPT keep their own reply.
          const own = this.internalRejections();
          tooMany = this.rcptRejections(own, results);
          for (const a of batch) if (!results.has(a) && !tooMany.includes(a)) results.set(a, resultFromReply(a, e.response, this.remoteMta));
        } else if (e.code === 'EMESSAGE' && /larger than allowed/.test(e.message)) {
          for (const a of batch) results.set(a, failed(a, `552 5.3.4 message too big for the remote server (${e.message})`, '5.3.4', this.remoteMta));
        } else {
          for (const a of [...batch, ...rest]) {
            if (!results.has(a)) results.set(a, deferred(a, `connection to ${this.remoteMta} failed: ${e.message}`, '4.4.2', this.remoteMta));
          }
          rest = [];
        }
      }
      if (tooMany.length > 0 && accepted > 0) {
        remaining = [...tooMany, ...rest];
      } else {
        for (const a of tooMany) {
          if (!results.has(a)) results.set(a, deferred(a, `452 4.5.3 too many recipients (${this.remoteMta})`, '4.5.3', this.remoteMta));
        }
        remaining = rest;
      }
    }
    for (const a of rcpts) {
      if (!results.has(a)) results.set(a, deferred(a, `connection to ${this.remoteMta} lost: ${this.endError?.message ?? 'closed'}`, '4.4.2', this.remoteMta));
    }
    return rcpts.map((a) => results.get(a)!);
  }

  /** Records RCPT refusals; returns the recipients refused with 452 (to retry in another transaction). */
  private rcptRejections(errors: Array<SMTPConnection.SMTPError & { recipient?: string }>, results: Map<string, RcptResult>): string[] {
    const tooMany: string[] = [];
    for (const e of errors) {
      const a = e.recipient;
      if (!a) continue;
      const reply = e.response ?? e.message;
      if (/^452\b/.test(reply) || /^4\d\d[ -]4\.5\.3\b/.test(reply)) tooMany.push(a);
      else results.set(a, resultFromReply(a, reply, this.remoteMta));
    }
    return tooMany;
  }

  /**
   * RCPT refusals of a transaction that then failed at DATA. nodemailer
   * keeps them on its envelope but does not attach them to the DATA error,
   * so they are read from there (an internal field; absent → none).
   */
  private internalRejections(): Array<SMTPConnection.SMTPError & { recipient?: string }> {
    const env = (this.conn as unknown as { _envelope?: { rejectedErrors?: unknown } })._envelope;
    return Array.isArray(env?.rejectedErrors) ? (env.rejectedErrors as Array<SMTPConnection.SMTPError & { recipient?: string }>) : [];
  }

  /**
   * Checks that a connection kept from an earlier message still works
   * (RSET, as MTAs do before reusing a cached connection): a remote that
   * closed an idle connection then costs a reconnect, not a deferral.
   */
  async probe(): Promise<boolean> {
    if (!this.usable) return false;
    try {
      await this.op<void>(this.opts.timeoutMs, 'RSET', (done) => this.conn.reset((err) => done(err)));
      this.dirty = false;
      return true;
    } catch {
      this.close();
      return false;
    }
  }

  /** Polite close: QUIT, then close when answered (or on the socket timeout). */
  quit(): void {
    if (this.ended) return;
    try {
      this.conn.quit();
    } catch {
      this.close();
    }
    const t = setTimeout(() => this.close(), Math.min(this.opts.timeoutMs, 10_000));
    t.unref();
    this.conn.once('end', () => clearTimeout(t));
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}
