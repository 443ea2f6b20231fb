// An in-memory stand-in for a connected TCP socket pair, so that `mta test`
// can drive the real SMTP front (smtp-server underneath) without opening a
// port. Each end is a Duplex with the parts of net.Socket the library and
// node:tls use: the address fields, `readyState`, an idle `setTimeout`, and
// TCP-like ends (closing one side ends the other's reading side).

import { Duplex } from 'node:stream';

export interface Endpoint {
  address: string;
  port: number;
}

export class MemorySocket extends Duplex {
  remoteAddress: string;
  remotePort: number;
  remoteFamily: string;
  localAddress: string;
  localPort: number;
  /** net.Socket's field: false once connected (always, here). */
  readonly connecting = false;
  private peer: MemorySocket | null = null;
  private idleMs = 0;
  private idleTimer: NodeJS.Timeout | null = null;

  private constructor(local: Endpoint, remote: Endpoint) {
    // Like net.Socket: the end of the reading side ends the writing side too.
    super({ allowHalfOpen: false });
    this.localAddress = local.address;
    this.localPort = local.port;
    this.remoteAddress = remote.address;
    this.remotePort = remote.port;
    this.remoteFamily = remote.address.includes(':') ? 'IPv6' : 'IPv4';
  }

  /** A connected pair: `client` talks from `clientEnd` to `serverEnd`; `server` is the accepted socket. */
  static pair(clientEnd: Endpoint, serverEnd: Endpoint): { client: MemorySocket; server: MemorySocket } {
    const client = new MemorySocket(clientEnd, serverEnd);
    const server = new MemorySocket(serverEnd, clientEnd);
    client.peer = server;
    server.peer = client;
    return { client, server };
  }

  /** net.Socket's view of the two directions. */
  get readyState(): string {
    if (this.destroyed) return 'closed';
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  override _read(): void {
    // Data is pushed by the peer's writes.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.touch();
    const peer = this.peer;
    // Delivered in order on a later turn of the event loop, never within the
    // writer's own tick: a server that answers and then changes the socket
    // (STARTTLS) finishes its promise chain first, as it would with a network
    // in between.
    setImmediate(() => {
      if (peer && !peer.destroyed && !peer.readableEnded) {
        peer.touch();
        peer.push(chunk);
      }
    });
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    const peer = this.peer;
    setImmediate(() => peer?.endReading());
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.clearIdle();
    const peer = this.peer;
    // The other side sees the connection end (a FIN; we never simulate resets).
    setImmediate(() => peer?.endReading());
    cb(err);
  }

  private endReading(): void {
    if (!this.destroyed && !this.readableEnded) this.push(null);
  }

  /** net.Socket.setTimeout: emit 'timeout' after `ms` of no activity; 0 disarms. */
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) {
      if (ms === 0) this.removeListener('timeout', cb);
      else this.once('timeout', cb);
    }
    this.idleMs = ms;
    this.touch();
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  private touch(): void {
    this.clearIdle();
    if (this.idleMs > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs);
      this.idleTimer.unref();
    }
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
