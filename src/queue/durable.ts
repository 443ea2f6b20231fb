// Durable file primitives for the spool: write-and-fsync, directory fsync
// with group commit, and temporary names that say which process made them.

import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** Writes a new file (never an existing one), fsyncs it and closes it. */
export async function writeDurable(file: string, data: Buffer | string): Promise<void> {
  const fh = await fs.open(file, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes a new file made of `head` then the first `body.size` bytes of the
 * file `body.path`, copied in bounded pieces; fsyncs and closes it. Returns
 * the SHA-256 (hex) of what it wrote.
 */
export async function writeDurableJoined(file: string, head: Buffer, body: { path: string; size: number }): Promise<string> {
  const hash = createHash('sha256').update(head);
  const out = await fs.open(file, 'wx', 0o600);
  try {
    await out.writeFile(head);
    const src = await fs.open(body.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(1, body.size)));
      for (let done = 0; done < body.size; ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, body.size - done), done);
        if (bytesRead === 0) throw new Error(`${body.path}: body file shorter than ${body.size} bytes`);
        const piece = buf.subarray(0, bytesRead);
        hash.update(piece);
        await out.writeFile(piece);
        done += bytesRead;
      }
    } finally {
      await src.close();
    }
    await out.sync();
  } finally {
    await out.close();
  }
  return hash.digest('hex');
}

/**
 * Reads a whole file with open, read and close: a read shorter than the
 * buffer is the end of a regular file, so the size need not be asked first
 * (fs.readFile stats the file: one more call per message and record).
 */
export async function readWhole(file: string): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const parts: Buffer[] = [];
    let total = 0;
    for (let size = READ_FIRST; ; size = Math.min(size * 4, 16 * 1024 * 1024)) {
      const buf = Buffer.allocUnsafe(size);
      const { bytesRead } = await fh.read(buf, 0, size, total);
      parts.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (bytesRead < size) break;
    }
    // A copy of the right size, so the large read buffer is not kept alive by a small file.
    return Buffer.concat(parts, total);
  } finally {
    await fh.close();
  }
}

/** First read of readWhole: messages and records of the usual size fit. */
const READ_FIRST = 16 * 1024;

/** Size of the pieces writeDurableJoined copies. */
const COPY_CHUNK = 256 * 1024;

/** fsyncs a directory, making the entries created, renamed or removed in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

interface Batch {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Group commit of directory fsyncs.
 *
 * A caller renames its files into a directory, then awaits `sync(dir)`. Calls
 * for the same directory join the batch that has not started yet; a batch
 * starts once the previous fsync of that directory has finished (and after
 * one turn of the event loop, so renames finishing in the same tick join
 * it). Because a caller joins only a batch that starts after its own rename
 * completed, the fsync that resolves it covers its directory entry: no
 * caller is ever resolved before its entry is durable, and N concurrent
 * enqueues cost about two directory fsyncs instead of N. File contents are
 * not batched: each file is fsynced by its writer before its rename.
 */
export class DirSyncBatcher {
  private readonly waiting = new Map<string, Batch>();
  private readonly running = new Map<string, Promise<void>>();
  /** fsyncs actually made, for tests and metrics. */
  syncCount = 0;

  sync(dir: string): Promise<void> {
    const existing = this.waiting.get(dir);
    if (existing) return existing.promise;
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const batch: Batch = { promise, resolve, reject };
    this.waiting.set(dir, batch);
    const previous = this.running.get(dir) ?? Promise.resolve();
    const run = previous
      .catch(() => undefined)
      .then(() => new Promise<void>((r) => setImmediate(r)))
      .then(async () => {
        // From here on, new callers start a new batch.
        if (this.waiting.get(dir) === batch) this.waiting.delete(dir);
        this.syncCount++;
        await fsyncDir(dir);
      })
      .then(
        () => batch.resolve(),
        (err) => batch.reject(err),
      );
    this.running.set(dir, run);
    void run.then(() => {
      if (this.running.get(dir) === run) this.running.delete(dir);
    });
    return promise;
  }
}

let tmpSeq = 0;

/**
 * A temporary file name: `<pid>.<seq>.<label>.tmp`. The pid tells recovery
 * whether the writer may still be alive (its files must not be removed from
 * under it: several processes write into one spool).
 */
export function tmpName(label: string): string {
  tmpSeq++;
  return `${process.pid}.${tmpSeq.toString(36)}.${label.replace(/[^A-Za-z0-9_.-]/g, '_')}.tmp`;
}

/** The writer pid of a name made by tmpName, or null. */
export function tmpNamePid(name: string): number | null {
  const m = /^(\d+)\.[0-9a-z]+\..*\.tmp$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Whether a process with this pid exists (EPERM means it exists but is not ours). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * Unlinks a file that may already be gone. Cheaper than `fs.rm(file,
 * { force: true })`, which stats the path twice, once synchronously on the
 * main thread (measured: 7% of the SMTP worker's time at 100 sessions).
 */
export async function removeFile(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw err;
  }
}

/** mkdir -p that fsyncs each parent it added an entry to. */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, 0o700); // messages are private
    await fsyncDir(path.dirname(dir));
  } catch (err) {
    if (errCode(err) === 'EEXIST') return;
    if (errCode(err) === 'ENOENT') {
      await ensureDir(path.dirname(dir));
      await ensureDir(dir);
      return;
    }
    throw err;
  }
}
