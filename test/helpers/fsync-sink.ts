// A minimal durable MessageSink for SMTP front tests (src/smtp/sink.ts):
// each message is written to <dir>/tmp, fsync'ed, renamed into <dir>/new and
// the directory fsync'ed before enqueue() resolves — the same promise the
// real queue (src/queue/) makes, without its formats. It also keeps what it
// stored in memory for assertions.

import { mkdir, mkdtemp, open, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnqueueRequest, MessageSink } from '../../src/smtp/sink.js';

async function writeDurably(path: string, data: Buffer | string): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class FsyncSink implements MessageSink {
  readonly stored: EnqueueRequest[] = [];
  /** Make the next enqueue() calls fail (a full disk, say). */
  failNext = 0;

  private constructor(readonly dir: string) {}

  static async create(): Promise<FsyncSink> {
    const dir = await mkdtemp(join(tmpdir(), 'vsl-mta-spool-'));
    await mkdir(join(dir, 'tmp'));
    await mkdir(join(dir, 'new'));
    return new FsyncSink(dir);
  }

  async enqueue(req: EnqueueRequest): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('test sink: write failed');
    }
    const tmpEml = join(this.dir, 'tmp', `${req.id}.eml`);
    const tmpJson = join(this.dir, 'tmp', `${req.id}.json`);
    const envelope = { id: req.id, mailFrom: req.mailFrom, rcpts: req.rcpts, quarantine: req.quarantine ?? null, remembered: req.txnRemembered };
    await writeDurably(tmpEml, req.data);
    await writeDurably(tmpJson, JSON.stringify(envelope));
    await rename(tmpEml, join(this.dir, 'new', `${req.id}.eml`));
    await rename(tmpJson, join(this.dir, 'new', `${req.id}.json`));
    await syncDir(join(this.dir, 'new'));
    this.stored.push(req);
  }

  /** Message files on disk (ids). */
  async onDisk(): Promise<string[]> {
    const names = await readdir(join(this.dir, 'new'));
    return names.filter((n) => n.endsWith('.eml')).map((n) => n.slice(0, -4));
  }

  /** Files left in tmp/ (there should be none). */
  async leftovers(): Promise<string[]> {
    return readdir(join(this.dir, 'tmp'));
  }

  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
