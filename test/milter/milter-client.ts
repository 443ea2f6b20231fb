// A raw milter client for tests: speaks the MTA's side of the protocol
// packet by packet (or sends any bytes at all), and reads the milter's
// packets with a deadline.

import net from 'node:net';
import { cstr, packet, PacketReader, uint32, type Packet } from '../../src/milter/wire.js';

export class MilterClient {
  private readonly reader = new PacketReader(16 * 1024 * 1024);
  private readonly queue: Packet[] = [];
  private waiters: Array<(p: Packet | null) => void> = [];
  private ended = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const p of this.reader.push(chunk)) {
        const w = this.waiters.shift();
        if (w) w(p);
        else this.queue.push(p);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  /** To 127.0.0.1:port, or to a unix socket path. */
  static connect(to: number | string): Promise<MilterClient> {
    return new Promise((resolve, reject) => {
      const where = typeof to === 'number' ? { port: to, host: '127.0.0.1' } : { path: to };
      const s = net.connect(where, () => resolve(new MilterClient(s)));
      s.once('error', reject);
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  send(cmd: string, ...parts: Buffer[]): void {
    this.write(packet(cmd, ...parts));
  }

  /** The next packet from the milter; null when it closed the connection. */
  read(timeoutMs = 5000): Promise<Packet | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no milter packet within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((p) => {
        clearTimeout(timer);
        resolve(p);
      });
    });
  }

  /** Option negotiation as Postfix offers it (every action and step flag). */
  async negotiate(): Promise<Packet | null> {
    this.send('O', uint32(6), uint32(0x1ff), uint32(0x1fffff));
    return this.read();
  }

  /** SMFIC_CONNECT for an IPv4 client. */
  connectInfo(hostname: string, ip: string, port = 40000): Buffer[] {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(port, 0);
    return [cstr(hostname), Buffer.from('4'), p, cstr(ip)];
  }

  get closed(): boolean {
    return this.ended;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
