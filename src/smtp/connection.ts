// One SMTP connection, on top of smtp-server's SMTPConnection.
//
// What the library does for us, unchanged: the socket plumbing, the command
// and DATA parser (lines, dot-unstuffing, the CRLF.CRLF end only), the
// STARTTLS upgrade (with its discarding of plaintext pipelined after the
// command), implicit TLS and PROXY headers (in server.ts), close handling.
//
// What is overridden here, and why — the one marked place where this
// project departs from the library:
//   init / connectionReady  the library holds every connection 100 ms and
//                           then does a reverse lookup before the banner;
//                           here the pause is `server.smtp.greeting_delay`
//                           (default 0) and the connect stage decides the
//                           greeting (SPEC §4.1, §4.5).
//   _onCommand              the library's dispatcher answers with its own
//                           texts, has no HELO hook and no stages; every
//                           line goes to SmtpProtocol instead (protocol.ts),
//                           one at a time, in order (pipelining keeps order).
//   _createParser           a line over the parser's hard cap is
//                           `500 5.5.6 Line too long`, not the library's 421.
//   upgrade                 plaintext pipelined after STARTTLS is still
//                           dropped, and noted as a pipelining violation.
//   _onTimeout, _onClose    SPEC replies for timeouts; cleanup of DATA,
//                           timers and the connection registry.
// Replies are still written through the library's send(), so its guards
// (nothing written during a TLS handshake, 421 closes) hold.

import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { connectionLogger } from '../log/logger.js';
import { metrics } from '../metrics/metrics.js';
import { REPLY_TEMPFAIL_CONNECT } from '../policy/apply.js';
import { type Reply, type TlsInfo, newSession } from '../mail/types.js';
import { normalizeIp } from '../vsl/values/address.js';
import type { FrontContext, ListenerContext, Tracked } from './context.js';
import { SmtpProtocol } from './protocol.js';
import { clientGroup } from './client-slots.js';
import { makeReply } from '../mail/reply.js';
import { R } from './replies.js';
import type { VslSmtpServer } from './server.js';
import type { Settings } from './settings.js';
import { SessionState } from './state.js';
import type { DataEnd, Wire } from './wire.js';

export class VslConnection extends SMTPConnection implements Wire, Tracked {
  // NB: SMTPConnection's constructor calls _createParser() before these
  // fields exist; nothing below is touched from there.
  readonly clientIp: string;
  private readonly listenerCtx: ListenerContext;
  private readonly state: SessionState;
  private readonly proto: SmtpProtocol;
  private readonly log: Logger;

  /** The greeting was sent: commands are read from now on. */
  private greeted = false;
  /** Commands that arrived before the greeting (greeting_delay 0): run after it. */
  private readonly beforeGreeting: Array<() => void> = [];
  /** 4xx/5xx replies so far (SPEC §4.5 error counting). */
  private errors = 0;
  /** >0 while the server works outside a command (connect stage, end of data, error delay): the idle timeout waits. */
  private busyDepth = 0;
  /** A command is being handled: the client waits for its reply, so it is not idle. */
  private handling = false;
  /** The reply of the command being handled must be awaited by the client. */
  private awaited = false;
  /** Set while the parser is resumed synchronously: a command dispatched then was already buffered. */
  private resuming: { awaited: boolean } | null = null;
  /** DATA just started: check whether message bytes came before the 354. */
  private dataStartPending = false;
  private abortData: (() => void) | null = null;
  private registered = false;
  /** The client group whose connection slot this session holds (released on close). */
  private slotOf: string | null = null;
  private shutdownRequested = false;
  private sessionExpired = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Runs while a command line is incomplete (see _createParser). */
  private lineDeadline: NodeJS.Timeout | null = null;

  constructor(server: VslSmtpServer, socket: ConstructorParameters<typeof SMTPConnection>[1], options?: SMTPConnectionOptions | null) {
    super(server, socket, options);
    this.listenerCtx = server.listenerContext;
    const front = this.listenerCtx.front;
    const s = front.settings();
    this.clientIp = normalizeIp(this.remoteAddress);
    const session = newSession({
      id: this.id,
      listener: this.listenerCtx.kind,
      clientIp: this.clientIp,
      clientPort: this.remotePort,
      serverIp: normalizeIp(this.localAddress),
      serverPort: this.localPort,
      serverName: s.serverName,
      connectedAt: new Date(front.clock.now()),
      tls: null,
    });
    this.log = connectionLogger(front.log, session);
    metrics.connection(session.listener);
    this.state = new SessionState(session);
    this.proto = new SmtpProtocol(this.listenerCtx, this, this.state, this.log);
  }

  private get front(): FrontContext {
    return this.listenerCtx.front;
  }

  private get settings(): Settings {
    return this.front.settings();
  }

  get gone(): boolean {
    return this._closing || this._closed;
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
    return t;
  }

  private clearTimer(t: NodeJS.Timeout | null): void {
    if (t === null) return;
    clearTimeout(t);
    this.timers.delete(t);
  }

  // ------------------------------------------------------------ library overrides

  override _createParser(): SMTPStream {
    const parser = super._createParser();
    // The library answers a line over its cap with a 421; SPEC §4.5 says 500 5.5.6.
    // The parser cannot go on after that line, so the connection closes.
    parser.removeAllListeners('error');
    parser.on('error', () => this.replyAndClose(R.lineTooLong));
    // Every byte resets the socket's idle timer, so a client trickling a
    // command a byte at a time would never be idle: a command line must
    // also be complete within the idle timeout of its first byte.
    const write = parser._write.bind(parser);
    parser._write = (chunk, encoding, next) => {
      if (!parser._dataMode && parser === this._parser) this.armLineDeadline();
      write(chunk, encoding, next);
    };
    return parser;
  }

  override init(): void {
    // Replies are small writes; with Nagle on, a reply that leaves in two
    // segments waits for the client's delayed ACK (40 ms on Linux) —
    // about 80 ms per transaction for nothing.
    (this._socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    this._socket.on('data', this.onEarlyData);
    this._setListeners(() => this.admit());
  }

  /** The library's path to its banner (reverse lookup, its own greeting): never taken, greet() replaces it. */
  override connectionReady(): void {
    this.greet();
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    this.clearTimer(this.lineDeadline);
    this.lineDeadline = null;
    const next = callback ?? ((): void => undefined);
    const buffered = this.resuming;
    if (this._upgrading) {
      // Plaintext after STARTTLS: never executed (the library drops it too).
      this.state.session.pipeliningViolation = true;
      next();
      return;
    }
    if (this.gone) {
      next();
      return;
    }
    if (!this.greeted) {
      this.state.session.pipeliningViolation = true;
      if (this.settings.greetingDelayMs > 0) this.talkedEarly();
      else this.beforeGreeting.push(() => this._onCommand(command, callback));
      return;
    }
    const session = this.state.session;
    // A command read before the reply it had to wait for, or any pipelining
    // after HELO (the client was not told PIPELINING is supported).
    if (buffered !== null && (buffered.awaited || (session.helo !== null && !session.esmtp))) session.pipeliningViolation = true;
    this.awaited = false;
    this.handling = true;
    this.proto
      .line(command)
      .catch((err: unknown) => this.onHandlerError(err))
      .finally(() => {
        this.handling = false;
        this.afterCommand();
        this.resume(next, this.awaited);
      });
  }

  override upgrade(callback: () => void, secureCallback?: () => void): void {
    const retired = this._parser;
    super.upgrade(callback, secureCallback);
    if (retired) {
      // The library retires the plaintext parser so that nothing pipelined
      // after STARTTLS runs. Let it hand those lines to a handler that only
      // notes the violation and drops them: still never executed (SPEC §4.3).
      retired.oncommand = (_line: Buffer, next?: () => void): void => {
        this.state.session.pipeliningViolation = true;
        next?.();
      };
      retired.isClosed = false;
    }
  }

  override _onTimeout(): void {
    if (this._closing) {
      this._socket.destroy();
      return;
    }
    if (this.busyDepth > 0 || this.handling) {
      // The client waits for us (a command's stage, the spool): not idle.
      this._armTimeout();
      return;
    }
    this.log.info('idle timeout');
    this.abortData?.();
    this.replyAndClose(R.timeout(this.settings.serverName));
  }

  override _onClose(): void {
    const first = !this._closed;
    this.abortData?.();
    super._onClose();
    if (!first) return;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.registered) this.front.registry.remove(this);
    this.registered = false;
    if (this.slotOf !== null) this.front.slots.release(this.slotOf);
    this.slotOf = null;
    this.log.info('disconnected');
  }

  /** Starts the deadline of the command line being received, unless one runs. */
  private armLineDeadline(): void {
    if (this.lineDeadline !== null || this.gone) return;
    this.lineDeadline = this.timer(this.settings.idleTimeoutMs, () => {
      this.lineDeadline = null;
      // While a command is served (its stage, the spool, DATA) the client waits for us.
      if (this.gone || this.handling || this.busyDepth > 0 || this.proto.inData) return;
      this.log.info('command line not completed within the idle timeout');
      this.replyAndClose(R.timeout(this.settings.serverName));
    });
  }

  // ------------------------------------------------------------ connection start

  private readonly onEarlyData = (): void => {
    if (this.greeted) return;
    this.state.session.pipeliningViolation = true;
    if (this.settings.greetingDelayMs > 0) this.talkedEarly();
  };

  private talkedEarly(): void {
    if (this.gone) return;
    this.log.info('client talked before the greeting');
    this.replyAndClose(R.talkedEarly);
  }

  /** After accept: a connection slot (client-slots.ts), then greeting_delay, then the greeting (SPEC §4.1). */
  private admit(): void {
    const s = this.settings;
    this.front.registry.add(this);
    this.registered = true;
    this.log.info({ client_port: this.remotePort, server_port: this.localPort }, 'connected');
    const client = clientGroup(this.clientIp, s.clientIpv6PrefixLength);
    const limits = { total: s.clientCountMax, perClient: s.clientCountMaxPerIp, reservedForNew: s.clientCountReservedForNew };
    // The slot table may be in the primary process: the client waits for us meanwhile.
    this.setBusy(true);
    this.front.slots.acquire(client, limits).then(
      (answer) => {
        this.setBusy(false);
        if (!answer.ok) {
          this.log.warn({ client, reason: answer.reason, total: answer.total, same_client: answer.sameClient }, 'connection limit reached');
          this.replyAndClose(R.tooManyConnections(s.serverName));
          return;
        }
        if (this.gone) {
          this.front.slots.release(client);
          return;
        }
        this.slotOf = client;
        this.start();
      },
      (err: unknown) => {
        this.setBusy(false);
        // Fail closed: without the server-wide count, no session.
        this.log.error({ err: (err as Error).message }, 'connection slots unavailable');
        this.replyAndClose(makeReply(421, '4.3.0', `${s.serverName} Service temporarily unavailable, try again later`));
      },
    );
  }

  /** The session timer, then the greeting after greeting_delay. */
  private start(): void {
    const s = this.settings;
    this.timer(s.sessionTimeoutMs, () => this.onSessionTimeout());
    if (s.greetingDelayMs > 0) this.timer(s.greetingDelayMs, () => this.greet());
    else this.greet();
  }

  private greet(): void {
    if (this.gone) return;
    const session = this.state.session;
    if (this.secure) {
      // Implicit TLS (port 465): the handshake is already done.
      session.tls = this.tlsInfo();
      session.serverName = this.proto.serverNameFor(session.tls?.servername);
    }
    this.setBusy(true);
    this.proto
      .connect()
      .then((applied) => {
        this.setBusy(false);
        if (this.gone) return;
        if (this.settings.greetingDelayMs > 0 && session.pipeliningViolation) {
          this.talkedEarly();
          return;
        }
        this.greeted = true;
        this._ready = true;
        this._socket.removeListener('data', this.onEarlyData);
        this._resetSession();
        this.writeReply(applied.reply);
        if (applied.close) {
          this.close();
          return;
        }
        for (const run of this.beforeGreeting.splice(0)) run();
      })
      .catch((err: unknown) => {
        this.setBusy(false);
        this.log.error({ err }, 'connect stage failed');
        // A greeting may only be 220, 421 or 554.
        this.replyAndClose(REPLY_TEMPFAIL_CONNECT);
      });
  }

  // ------------------------------------------------------------ commands

  /** Lets the parser go on with the next line; marks what it had already buffered. */
  private resume(next: () => void, awaited: boolean): void {
    this._whenWritable(() => {
      this.resuming = { awaited };
      try {
        next();
      } finally {
        this.resuming = null;
      }
      if (this.dataStartPending) {
        this.dataStartPending = false;
        const parser = this._parser;
        // Message bytes consumed before the 354 was even read by the client.
        if (parser && (parser.dataBytes > 0 || (parser._lastBytes && parser._lastBytes.length > 0) || !parser._dataMode)) {
          this.state.session.pipeliningViolation = true;
        }
      }
    });
  }

  private onHandlerError(err: unknown): void {
    this.log.error({ err }, 'command failed');
    if (!this.gone) this.writeReply(R.tempFail);
  }

  /** Deferred endings: a graceful stop or the session timeout waiting for the command to finish. */
  private afterCommand(): void {
    if (this.gone || this.handling || this.busyDepth > 0 || this.proto.inData) return;
    if (this.sessionExpired) {
      this.replyAndClose(R.timeout(this.settings.serverName));
      return;
    }
    if (this.shutdownRequested && this.state.txn === null && this.proto.sasl === null) this.replyAndClose(R.shuttingDown);
  }

  private onSessionTimeout(): void {
    if (this.gone) return;
    this.log.info('session time limit reached');
    if (this.busyDepth > 0 || this.handling) {
      this.sessionExpired = true;
      return;
    }
    this.abortData?.();
    this.replyAndClose(R.timeout(this.settings.serverName));
  }

  // ------------------------------------------------------------ Wire

  /** Writes a reply through the library's send(), with the enhanced code on every line. */
  private writeReply(r: Reply): void {
    const lines = (r.lines.length > 0 ? r.lines : ['']).map((l) => (r.enhanced === '' ? l : `${r.enhanced} ${l}`));
    this.send(r.code, lines, false);
  }

  async reply(r: Reply, opts: { close?: boolean } = {}): Promise<void> {
    const s = this.settings;
    if (this.errors >= s.errorSoftCount && s.errorDelayMs > 0) {
      this.setBusy(true);
      try {
        await this.front.clock.sleep(s.errorDelayMs);
      } finally {
        this.setBusy(false);
      }
    }
    if (this.gone) return;
    this.writeReply(r);
    if (opts.close === true) {
      this.close();
      return;
    }
    if (r.code >= 400 && r.code !== 421) {
      this.errors++;
      if (this.errors >= s.errorHardCount) {
        this.log.warn({ errors: this.errors }, 'too many errors');
        this.replyAndClose(R.tooManyErrors);
      }
    }
  }

  replyAndClose(r: Reply): void {
    if (this.gone) return;
    this.writeReply(r);
    this.close();
  }

  tlsInfo(): TlsInfo | null {
    if (!this.secure) return null;
    const socket = this._socket as TLSSocket;
    if (typeof socket.getCipher !== 'function') return null;
    const info: TlsInfo = { protocol: socket.getProtocol() ?? 'unknown', cipher: socket.getCipher()?.name ?? 'unknown' };
    const sni = (socket as TLSSocket & { servername?: string | false }).servername;
    if (typeof sni === 'string' && sni !== '') info.servername = sni;
    return info;
  }

  receiveData(onChunk: (chunk: Buffer) => void | Promise<void>): Promise<DataEnd> {
    const parser = this._parser;
    if (!parser || this.gone) return Promise.resolve('aborted');
    // No size limit in the parser: the collector counts and refuses (SPEC §4.5 552).
    const stream = parser.startDataMode();
    this._dataStream = stream;
    this.dataStartPending = true;
    return new Promise((resolve) => {
      let settled = false;
      let dataTimer: NodeJS.Timeout | null = null;
      const settle = (how: DataEnd): void => {
        if (settled) return;
        settled = true;
        this.clearTimer(dataTimer);
        this.abortData = null;
        resolve(how);
      };
      this.abortData = () => settle('aborted');
      stream.on('data', (chunk: Buffer) => {
        if (settled) return;
        // Backpressure: the body is being written to disk; the parser, then the socket, wait.
        const wait = onChunk(chunk);
        if (wait !== undefined) {
          stream.pause();
          void wait.then(() => stream.resume());
        }
      });
      stream.once('end', () => settle('end'));
      stream.once('error', () => settle('aborted'));
      stream.once('close', () => settle(stream.readableEnded ? 'end' : 'aborted'));
      // A slow client cannot hold a DATA phase forever: `data_timeout` bounds it as a whole.
      dataTimer = this.timer(this.settings.dataTimeoutMs, () => {
        this.log.info('DATA timeout');
        settle('aborted');
        this.replyAndClose(R.timeout(this.settings.serverName));
      });
    });
  }

  dataDone(): void {
    this._dataStream = false;
    if (this._parser) this._parser.continue();
    this.afterCommand();
  }

  startTls(onSecure: () => void): void {
    const handshake = this.timer(this.settings.handshakeTimeoutMs, () => {
      if (this.secure) return;
      this.log.info('TLS handshake timeout');
      this._socket.destroy();
    });
    // upgrade() retires the parser: whatever the client pipelined after
    // STARTTLS is read and dropped, never executed (SPEC §4.3).
    this.upgrade(
      () => undefined,
      () => {
        this.clearTimer(handshake);
        onSecure();
      },
    );
  }

  markAwaited(): void {
    this.awaited = true;
  }

  setBusy(busy: boolean): void {
    this.busyDepth = Math.max(0, this.busyDepth + (busy ? 1 : -1));
  }

  // ------------------------------------------------------------ Tracked

  requestShutdown(): void {
    this.shutdownRequested = true;
    if (!this.greeted) {
      this.replyAndClose(R.shuttingDown);
      return;
    }
    this.afterCommand();
  }

  forceShutdown(): void {
    this.abortData?.();
    this.replyAndClose(R.shuttingDown);
  }
}
