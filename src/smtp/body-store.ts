// The body of the message being received, kept with a small bounded buffer:
// the first bytes in memory, and once they pass `memoryMax`, everything in a
// temporary file of the spool (tmp/, named for the writing process so that
// recovery removes it after a crash). A client sending megabytes it never
// ends costs its connection at most about `memoryMax` of memory, not the
// message: while a write to the file is in progress and `memoryMax` bytes
// wait behind it, push() returns a promise and the connection stops reading
// until it resolves (the client then waits on TCP flow control).

import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { readFileSync } from 'node:fs';

/** The body as spilled to a file: `size` bytes of `path`. */
export interface SpilledBody {
  path: string;
  size: number;
}

/** A body in memory (small messages, and sinks without a spool) or in a file. */
export type MessageBody = Buffer | SpilledBody;

export function bodySize(b: MessageBody): number {
  return Buffer.isBuffer(b) ? b.length : b.size;
}

/** The body's bytes (read from its file when spilled: only when a built-in asks for the whole message). */
export function bodyBytes(b: MessageBody): Buffer {
  return Buffer.isBuffer(b) ? b : readFileSync(b.path).subarray(0, b.size);
}

/** Default bound of the bytes a connection holds for its body. */
export const BODY_MEMORY_MAX = 64 * 1024;

export class BodyStore {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private size = 0;
  private file: FileHandle | null = null;
  private path: string | null = null;
  /** The write loop, while one runs. */
  private writing: Promise<void> | null = null;
  private failure: unknown = null;
  private waiters: Array<() => void> = [];
  private discarded = false;

  /**
   * @param spillPath a fresh temporary path for the body file, or null to keep
   *   every byte in memory (the in-process sinks of `mta test`).
   */
  constructor(
    private readonly spillPath: (() => string) | null,
    private readonly memoryMax = BODY_MEMORY_MAX,
  ) {}

  /** Adds body bytes; a returned promise says: read no more until it resolves. */
  push(chunk: Buffer): Promise<void> | undefined {
    if (this.discarded || chunk.length === 0) return undefined;
    this.size += chunk.length;
    if (this.failure !== null) return undefined; // counted, not kept: finish() reports the failure
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.spillPath === null || (this.path === null && this.heldBytes <= this.memoryMax)) return undefined;
    if (this.writing === null) this.writing = this.drain();
    if (this.heldBytes <= this.memoryMax) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The whole body, once every byte is written (and the file closed); rejects if writing failed. */
  async finish(): Promise<MessageBody> {
    if (this.writing !== null) await this.writing;
    if (this.failure !== null) throw this.failure;
    if (this.path === null) return this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    if (this.held.length > 0) {
      this.writing = this.drain();
      await this.writing;
      if (this.failure !== null) throw this.failure;
    }
    await this.closeFile();
    return { path: this.path, size: this.size };
  }

  /** Drops the body (refused or abandoned message): the file is removed. */
  async discard(): Promise<void> {
    this.discarded = true;
    this.held = [];
    this.heldBytes = 0;
    this.release();
    if (this.writing !== null) await this.writing;
    await this.closeFile();
    if (this.path !== null) await fs.unlink(this.path).catch(() => undefined);
  }

  /** Writes what is held, in order, until nothing is (one loop at a time). */
  private async drain(): Promise<void> {
    try {
      if (this.file === null) {
        this.path = this.spillPath!();
        this.file = await fs.open(this.path, 'wx', 0o600);
      }
      while (this.held.length > 0 && !this.discarded) {
        // One buffer per write: the parser's chunks can be a few bytes each
        // (it splits at every dot-stuffed line).
        const batch = Buffer.concat(this.held, this.heldBytes);
        this.held = [];
        this.heldBytes = 0;
        this.release();
        for (let off = 0; off < batch.length; ) {
          const { bytesWritten } = await this.file.write(batch, off, batch.length - off);
          if (bytesWritten <= 0) throw new Error('short write to the body file');
          off += bytesWritten;
        }
      }
    } catch (err) {
      this.failure = err;
      this.held = [];
      this.heldBytes = 0;
      this.release();
    } finally {
      this.writing = null;
    }
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  private async closeFile(): Promise<void> {
    const f = this.file;
    this.file = null;
    if (f !== null) await f.close().catch(() => undefined);
  }
}
