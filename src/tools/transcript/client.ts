// The client end of one `mta test` session: an in-memory socket handed to
// the real SMTP front (SmtpFront.accept), lines written as the transcript
// says, replies read back whole (multi-line replies included). STARTTLS is
// followed: when the server answers the STARTTLS command with 220, the
// client starts a TLS handshake over the same socket, and lines the
// transcript sends meanwhile wait for it.

import { StringDecoder } from 'node:string_decoder';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ListenerKind } from '../../mail/types.js';
import type { SmtpFront } from '../../smtp/front.js';
import { MemorySocket } from './memory-socket.js';

export interface ReceivedReply {
  code: number;
  /** Every line as received, without CRLF. */
  lines: string[];
  /** The first line with the `-` after the code read as a space (SPEC §11.3). */
  first: string;
}

export type ReplyWait = { reply: ReceivedReply } | { closed: true } | { timeout: true };

export interface OpenOptions {
  listener: ListenerKind;
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
  /** A TLS handshake before anything else (implicit TLS). */
  implicitTls: boolean;
}

/** The server's well-known port for a listener kind. */
export const LISTENER_PORTS: Record<ListenerKind, number> = { smtp: 25, submission: 587, submissions: 465 };

export class TranscriptClient {
  private active: Duplex;
  private buffer = '';
  private decoder = new StringDecoder('utf8');
  private partial: string[] = [];
  private readonly replies: ReceivedReply[] = [];
  private waiter: ((r: ReplyWait) => void) | null = null;
  private closed = false;
  private readonly closeWaiters: Array<() => void> = [];
  /** Lines sent since the transcript last waited. */
  private outgoing: string[] = [];
  /** Writes held while a TLS handshake runs. */
  private held: string[] | null = null;
  /** Lines sent that the server answers, and replies read so far (the greeting is reply 0). */
  private commandsSent = 0;
  private repliesRead = 0;
  private inData = false;
  /** The reply number that answers a STARTTLS sent by the transcript. */
  private startTlsReply: number | null = null;
  /** A socket-level problem (a failed handshake), shown when a reply does not come. */
  problem: string | null = null;

  private constructor(private readonly raw: MemorySocket) {
    this.active = raw;
  }

  static async open(front: SmtpFront, o: OpenOptions): Promise<TranscriptClient> {
    const { client, server } = MemorySocket.pair({ address: o.clientIp, port: o.clientPort }, { address: o.serverIp, port: o.serverPort });
    const c = new TranscriptClient(client);
    if (o.implicitTls) {
      c.held = [];
      c.attach(c.secure());
    } else {
      c.attach(client);
    }
    await front.accept(o.listener, server, {
      client: { address: o.clientIp, port: o.clientPort },
      server: { address: o.serverIp, port: o.serverPort },
      implicitTls: o.implicitTls,
    });
    return c;
  }

  /** Sends one line (CRLF added). Never waits: pipelining is the transcript's business. */
  send(text: string): void {
    if (this.inData) {
      if (text === '.') {
        this.inData = false;
        this.commandsSent++;
      }
    } else {
      this.commandsSent++;
      const verb = text.trim().toUpperCase();
      if (verb === 'DATA') this.inData = true;
      if (verb === 'STARTTLS') this.startTlsReply = this.commandsSent;
    }
    // Lines sent one after the other leave in one write, as a pipelining
    // client's do (one TCP segment): flushed once the transcript waits.
    this.outgoing.push(`${text}\r\n`);
    if (this.outgoing.length === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    const data = this.outgoing.join('');
    this.outgoing = [];
    if (data !== '') this.write(data);
  }

  /** The next reply, in order; `closed` once the server has closed and every reply was read. */
  nextReply(timeoutMs: number): Promise<ReplyWait> {
    const r = this.replies.shift();
    if (r) return Promise.resolve({ reply: r });
    if (this.closed) return Promise.resolve({ closed: true });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve({ timeout: true });
      }, timeoutMs);
      this.waiter = (w) => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(w);
      };
    });
  }

  /** Ends the session from the client side and waits (bounded) for the connection to go. */
  async close(timeoutMs = 2000): Promise<void> {
    this.flush();
    if (!this.closed) {
      this.active.end();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.closeWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.active.destroy();
    this.raw.destroy();
  }

  private write(data: string): void {
    if (this.held !== null) this.held.push(data);
    else if (!this.active.destroyed && this.active.writable) this.active.write(data);
  }

  private secure(): tls.TLSSocket {
    const socket = tls.connect({ socket: this.raw, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      const held = this.held ?? [];
      this.held = null;
      for (const d of held) this.write(d);
    });
    return socket;
  }

  private attach(socket: Duplex): void {
    this.active = socket;
    // Decoded here, not with setEncoding: the TLS layer reads the raw socket after STARTTLS.
    this.decoder = new StringDecoder('utf8');
    socket.on('data', this.onData);
    socket.on('error', (err: Error) => {
      this.problem ??= err.message;
    });
    socket.on('close', () => this.onClosed());
    socket.on('end', () => this.onClosed());
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffer += this.decoder.write(chunk);
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.partial.push(line);
      // `250-…` continues a reply; `250 …` or a bare code ends it; anything else stands alone.
      if (/^\d{3}-/.test(line)) continue;
      const lines = this.partial;
      this.partial = [];
      const m = /^(\d{3})/.exec(lines[0]!);
      const reply: ReceivedReply = { code: m ? Number(m[1]) : 0, lines, first: lines[0]!.replace(/^(\d{3})-/, '$1 ') };
      this.deliver(reply);
      if (this.startTlsReply !== null && this.repliesRead - 1 === this.startTlsReply) {
        this.startTlsReply = null;
        if (reply.code === 220) {
          this.upgrade();
          return;
        }
      }
    }
  };

  private deliver(reply: ReceivedReply): void {
    this.repliesRead++;
    if (this.waiter) this.waiter({ reply });
    else this.replies.push(reply);
  }

  /** After `220` to STARTTLS: the TLS handshake over the same socket (RFC 3207). */
  private upgrade(): void {
    const plain = this.active;
    plain.removeListener('data', this.onData);
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    this.buffer = '';
    this.held = [];
    this.attach(this.secure());
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.waiter && this.replies.length === 0) this.waiter({ closed: true });
    for (const w of this.closeWaiters.splice(0)) w();
  }
}
