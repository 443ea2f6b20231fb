// A raw-socket SMTP client for tests: sends exactly the bytes it is given
// (lines, pipelined groups, malformed input) and reads replies, multi-line
// replies included. Every read has a deadline, so a server that stays silent
// fails the test instead of hanging it.
//
//   const c = await SmtpClient.connect(port);
//   assert.equal((await c.greeting()).code, 220);
//   const [ehlo, mail] = await c.pipeline(['EHLO me', 'MAIL FROM:<a@b.example>']);
//   await c.startTls();            // after a 220 to STARTTLS
//   c.write('raw bytes\r\n');      // anything at all
//   assert.ok(await c.closedWithin(1000));

import net from 'node:net';
import tls from 'node:tls';

export interface SmtpReply {
  code: number;
  /** Every line as received, without CRLF (`250-PIPELINING`, `250 SIZE 10240000`). */
  lines: string[];
  /** The text after the code of each line (`PIPELINING`, `SIZE 10240000`). */
  texts: string[];
  /** The last line, for exact comparisons of single-line replies. */
  last: string;
}

export interface ConnectOptions {
  host?: string;
  /** Implicit TLS (port 465 style). */
  tls?: boolean;
  servername?: string;
  /** Further options of the TLS connection (maxVersion, say). */
  tlsOptions?: tls.ConnectionOptions;
  /** Deadline of each read, ms (default 5000). */
  timeoutMs?: number;
  /** Bytes sent before anything else (a PROXY header, say). */
  preamble?: string;
}

export class SmtpClient {
  private buffer = '';
  private readonly queue: SmtpReply[] = [];
  private waiters: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void }> = [];
  private ended = false;
  private readonly closeWaiters: Array<() => void> = [];
  private readonly timeoutMs: number;

  private constructor(
    private socket: net.Socket | tls.TLSSocket,
    timeoutMs: number,
  ) {
    this.timeoutMs = timeoutMs;
    this.attach(socket);
  }

  static connect(port: number, opts: ConnectOptions = {}): Promise<SmtpClient> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      const socket: net.Socket = opts.tls
        ? tls.connect({ port, host, servername: opts.servername ?? 'localhost', rejectUnauthorized: false, ...opts.tlsOptions }, () => done())
        : net.connect({ port, host }, () => done());
      const done = (): void => {
        socket.removeListener('error', onError);
        if (opts.preamble !== undefined) socket.write(opts.preamble);
        resolve(new SmtpClient(socket, opts.timeoutMs ?? 5000));
      };
      socket.once('error', onError);
    });
  }

  private attach(socket: net.Socket | tls.TLSSocket): void {
    socket.setEncoding('latin1');
    socket.on('data', this.onData);
    socket.on('error', () => undefined);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: string): void => {
    this.buffer += chunk;
    let lines: string[] = [];
    for (;;) {
      const i = this.buffer.indexOf('\r\n');
      if (i < 0) break;
      const line = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      lines.push(line);
      // `ddd ` or a bare `ddd` ends a reply; `ddd-` continues it.
      if (line.length <= 3 || line[3] !== '-') {
        this.deliver(lines);
        lines = [];
      }
    }
    // Keep the lines of an unfinished multi-line reply.
    if (lines.length > 0) this.buffer = `${lines.map((l) => `${l}\r\n`).join('')}${this.buffer}`;
  };

  private deliver(lines: string[]): void {
    const reply: SmtpReply = {
      code: Number(lines[0]!.slice(0, 3)),
      lines,
      texts: lines.map((l) => l.slice(4)),
      last: lines[lines.length - 1]!,
    };
    const w = this.waiters.shift();
    if (w) w.resolve(reply);
    else this.queue.push(reply);
  }

  private readonly onClose = (): void => {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed before a reply'));
    for (const c of this.closeWaiters.splice(0)) c();
  };

  /** Writes bytes as they are. */
  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** Writes one line and CRLF. */
  send(line: string): void {
    this.write(`${line}\r\n`);
  }

  /** The next reply, or a rejection after the deadline or when the server closed. */
  readReply(timeoutMs = this.timeoutMs): Promise<SmtpReply> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(new Error('connection closed before a reply'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (r: SmtpReply) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  greeting(): Promise<SmtpReply> {
    return this.readReply();
  }

  /** Sends a command and reads its reply. */
  async command(line: string): Promise<SmtpReply> {
    this.send(line);
    return this.readReply();
  }

  /** Sends all lines in one write (one TCP segment in practice) and reads one reply per line. */
  async pipeline(lines: string[]): Promise<SmtpReply[]> {
    this.write(lines.map((l) => `${l}\r\n`).join(''));
    const out: SmtpReply[] = [];
    for (let i = 0; i < lines.length; i++) out.push(await this.readReply());
    return out;
  }

  /** EHLO and its reply. */
  ehlo(name = 'client.example'): Promise<SmtpReply> {
    return this.command(`EHLO ${name}`);
  }

  /** Sends a message body (dot-stuffing applied, CRLF.CRLF appended) and reads the end-of-data reply. */
  async data(body: string): Promise<SmtpReply> {
    const stuffed = body.replace(/^\./gm, '..');
    this.write(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
    return this.readReply();
  }

  /** Whether a reply is already waiting (no read needed). */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Upgrades to TLS after the server's `220` to STARTTLS. Anything the
   * server sent in plaintext after that reply is discarded.
   */
  async startTls(opts: { servername?: string; tlsOptions?: tls.ConnectionOptions } = {}): Promise<void> {
    const plain = this.socket;
    plain.removeListener('data', this.onData);
    plain.removeListener('close', this.onClose);
    this.buffer = '';
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, servername: opts.servername ?? 'localhost', rejectUnauthorized: false, ...opts.tlsOptions }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
  }

  /** The TLS socket after startTls() or an implicit TLS connect. */
  get tlsSocket(): tls.TLSSocket | null {
    return this.socket instanceof tls.TLSSocket ? this.socket : null;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Resolves true once the server closed the connection, false after the deadline. */
  closedWithin(ms = this.timeoutMs): Promise<boolean> {
    if (this.ended) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Closes from the client side, abruptly. */
  destroy(): void {
    this.socket.destroy();
  }

  /** QUIT, its reply, then waits for the close. */
  async quit(): Promise<SmtpReply> {
    const r = await this.command('QUIT');
    await this.closedWithin();
    return r;
  }
}
