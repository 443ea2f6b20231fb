// Recycling of spool files, so that the steady state frees no disk blocks.
//
// Why: on a file system mounted with online discard (ext4 `-o discard`, the
// default of many cloud disks, and of this project's machines), every freed
// block is trimmed at journal commit, about 1 ms each, one at a time for the
// whole file system, and every fsync waits for that commit. A message used
// to free two files (its `.eml` and its `.json`) when it left the queue, which
// capped the spool at about 500 messages a second; on the same disk without
// discard, or with this pool, the same load runs at about 1,000
// (docs/performance.md has the measurements).
//
// How: a file that leaves the spool is renamed into `<queue.dir>/reuse/`
// instead of being unlinked, and a new spool file is written over one taken
// from there. A taken file is overwritten, truncated to its new length and
// fsynced like a new one before it is linked anywhere, so durability is the
// same. Any process may give or take (the SMTP workers take, the scheduler
// gives): a take is a rename out of reuse/, so two takers never get the same
// file, and one that loses the race just tries the next name.
//
// What is never reused: a file with more than one link (it would change the
// content seen under its other name). Files given by rename had one link
// when given; only files linked in by keepReplaced (named `*.k`) may still
// have another, so the taker checks those, under a name only it knows. Nor
// files larger than REUSE_MAX_BYTES
// (keeping them would hold disk space for little gain: the pool is at most
// about DEFAULT_MAX_FILES × REUSE_MAX_BYTES = 64 MiB, usually far less).

import { promises as fs, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ensureDir, errCode, removeFile } from './durable.js';

/** Files larger than this are unlinked, not kept. */
export const REUSE_MAX_BYTES = 64 * 1024;
/** Pool names of files linked in (not renamed): they may still have another name, so takers check. */
const LINKED_SUFFIX = '.k';
/** The pool holds about this many files (each process estimates the count). */
const DEFAULT_MAX_FILES = 1024;
/** A taker that found the pool empty looks again after this long. */
const EMPTY_RECHECK_MS = 100;
/**
 * A giver that believes the pool full counts it again after this long (its
 * count only grows: the takers are usually other processes).
 */
const FULL_RECHECK_MS = 50;

export class FileRecycler {
  /** Names in reuse/ this process believes are there, most recently given last. */
  private candidates: string[] = [];
  private lastListing = 0;
  private listing: Promise<void> | null = null;
  private poolSize = 0;
  private lastCount = 0;
  private seq = 0;
  private dirReady: Promise<void> | null = null;
  /** Counters for tests and metrics. */
  readonly stats = { given: 0, taken: 0, unlinked: 0, refused: 0 };

  constructor(
    readonly dir: string,
    private readonly maxFiles = DEFAULT_MAX_FILES,
  ) {}

  /**
   * Takes a file out of the spool for later reuse. The caller must no longer
   * refer to it by any spool name it cares about (its commit point is past).
   */
  async give(file: string): Promise<void> {
    let st: Stats;
    try {
      st = await fs.lstat(file);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return;
      throw err;
    }
    if (st.nlink !== 1 || st.size > REUSE_MAX_BYTES || !st.isFile() || !(await this.hasRoom())) {
      await removeFile(file);
      this.stats.unlinked++;
      return;
    }
    await this.addToPool(file, fs.rename, 'next');
  }

  /**
   * Keeps the file now at `file` for reuse once the caller renames a new one
   * over it (a record rewrite), by linking it into the pool first. Until that
   * rename, the pooled name is a second link and take() refuses it.
   */
  async keepReplaced(file: string): Promise<void> {
    if (!(await this.hasRoom())) return;
    // Taken last: by then the caller's rename is long done.
    await this.addToPool(file, fs.link, 'last', LINKED_SUFFIX);
  }

  /**
   * Moves `file` into the pool without looking at it first, for a file the
   * caller knows to be small and to have no other name (a queued message's
   * record or message file in active/, which only the scheduler touches):
   * one rename instead of an lstat and a rename. `gone` when the file was not
   * there, `full` (nothing done) when the pool has no room.
   */
  async adopt(file: string): Promise<'pooled' | 'gone' | 'full'> {
    if (!(await this.hasRoom())) return 'full';
    await (this.dirReady ??= ensureDir(this.dir));
    const name = `${process.pid}.${(++this.seq).toString(36)}`;
    try {
      await fs.rename(file, path.join(this.dir, name));
    } catch (err) {
      if (errCode(err) === 'ENOENT') return 'gone';
      throw err;
    }
    this.candidates.push(name);
    this.poolSize++;
    this.stats.given++;
    return 'pooled';
  }

  /** Gives `file` a new name in reuse/ by `place` (rename or link); nothing when it is gone. */
  private async addToPool(file: string, place: (from: string, to: string) => Promise<void>, order: 'next' | 'last', suffix = ''): Promise<void> {
    await (this.dirReady ??= ensureDir(this.dir));
    const name = `${process.pid}.${(++this.seq).toString(36)}${suffix}`;
    try {
      await place(file, path.join(this.dir, name));
    } catch (err) {
      if (errCode(err) === 'ENOENT') return;
      throw err;
    }
    if (order === 'next') this.candidates.push(name);
    else this.candidates.unshift(name);
    this.poolSize++;
    this.stats.given++;
  }

  /**
   * Moves a pooled file to `dest` (a new, unique name of the caller's) and
   * opens it for writing, or returns null when there is none to take. The
   * caller overwrites it from offset 0 and truncates it to its new length.
   */
  async take(dest: string): Promise<FileHandle | null> {
    for (;;) {
      let name = this.candidates.pop();
      if (name === undefined) {
        await this.refill();
        name = this.candidates.pop();
      }
      if (name === undefined) return null;
      this.poolSize = Math.max(0, this.poolSize - 1);
      try {
        await fs.rename(path.join(this.dir, name), dest);
      } catch (err) {
        if (errCode(err) === 'ENOENT') continue; // another process took it
        throw err;
      }
      const fh = await fs.open(dest, 'r+');
      // Only a file linked into the pool (keepReplaced) can have another
      // name; one renamed in had a single link when it was given.
      if (!name.endsWith(LINKED_SUFFIX)) {
        this.stats.taken++;
        return fh;
      }
      const st = await fh.stat();
      if (st.nlink === 1 && st.isFile()) {
        this.stats.taken++;
        return fh;
      }
      // Linked elsewhere meanwhile: not ours to overwrite. Drop our name for it.
      await fh.close();
      await removeFile(dest);
      this.stats.refused++;
    }
  }

  /**
   * Lists reuse/ again when the known candidates ran out, at most every
   * EMPTY_RECHECK_MS; concurrent takers share one listing.
   */
  private refill(): Promise<void> {
    if (this.listing) return this.listing;
    const now = Date.now();
    if (now - this.lastListing < EMPTY_RECHECK_MS) return Promise.resolve();
    this.lastListing = now;
    this.listing = fs
      .readdir(this.dir)
      .then(
        (names) => {
          this.poolSize = names.length;
          this.candidates = names;
        },
        (err: unknown) => {
          if (errCode(err) !== 'ENOENT') throw err;
        },
      )
      .finally(() => {
        this.listing = null;
      });
    return this.listing;
  }

  /** Whether the pool is below its size, counting the directory again now and then. */
  private async hasRoom(): Promise<boolean> {
    if (this.poolSize < this.maxFiles) return true;
    const now = Date.now();
    if (now - this.lastCount < FULL_RECHECK_MS) return false;
    this.lastCount = now;
    try {
      this.poolSize = (await fs.readdir(this.dir)).length;
    } catch {
      this.poolSize = 0;
    }
    return this.poolSize < this.maxFiles;
  }
}

/**
 * Writes `data` into `file` (a new, unique name), reusing a pooled file when
 * there is one: the same contract as writing a new file — the content is
 * complete and fsynced when this resolves.
 */
export async function writeReused(recycler: FileRecycler, file: string, data: Buffer): Promise<boolean> {
  const fh = await recycler.take(file);
  if (!fh) return false;
  let written = false;
  try {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await fh.write(data, off, data.length - off, off);
      off += bytesWritten;
    }
    await fh.truncate(data.length);
    await fh.sync();
    written = true;
  } finally {
    await fh.close();
    if (!written) await removeFile(file);
  }
  return true;
}
