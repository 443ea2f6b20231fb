// csv services (SPEC §7.12): a small table in a file, one record per line,
// no header row, RFC 4180 quoting, fields trimmed. `get(key)` finds the
// first record whose first field is `key`; `set(fields)` appends a record;
// `rm(key)` deletes every record with that key. Writes need write access and
// replace the file atomically.
//
// With refresh "no" the table is read when the service is created (policy
// load and reload) and only this process's own writes change it; with
// "always" it is re-read whenever the file's modification time changed.

import { promises as fsp, readFileSync, statSync, type Stats } from 'node:fs';
import { fnError, type Value } from '../../vsl/values/value.js';
import type { HostCall } from '../host.js';
import { writeFileAtomically } from './atomic.js';

export type CsvAccess = 'O_RDONLY' | 'O_WRONLY' | 'O_RDWR';
export type CsvRefresh = 'no' | 'always';

export interface CsvOptions {
  /** Absolute path of the file. */
  file: string;
  access: CsvAccess;
  refresh: CsvRefresh;
  /** One character. */
  delimiter: string;
}

export type CsvRecord = string[];

// ---------------------------------------------------------------- format

/** Parses CSV text (RFC 4180; LF or CRLF; blank lines skipped; fields trimmed outside quotes). Throws naming the line. */
export function parseCsv(text: string, delimiter = ','): CsvRecord[] {
  const records: CsvRecord[] = [];
  const blank = (c: string | undefined) => (c === ' ' || c === '\t') && c !== delimiter;
  let i = 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const record: string[] = [];
    const startLine = line;
    let quotedAny = false;
    for (;;) {
      while (blank(text[i])) i++;
      let value = '';
      if (text[i] === '"') {
        quotedAny = true;
        i++;
        for (;;) {
          if (i >= n) throw new Error(`line ${startLine}: unterminated quoted field`);
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              value += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          value += c;
          i++;
        }
        while (blank(text[i])) i++;
        const next = text[i];
        if (next !== undefined && next !== delimiter && next !== '\n' && next !== '\r') {
          throw new Error(`line ${line}: unexpected ${JSON.stringify(next)} after a quoted field`);
        }
      } else {
        const start = i;
        while (i < n && text[i] !== delimiter && text[i] !== '\n' && text[i] !== '\r') i++;
        value = text.slice(start, i).trim();
      }
      record.push(value);
      if (text[i] === delimiter) {
        i++;
        continue;
      }
      break;
    }
    // End of record: CRLF, LF, a lone CR, or the end of the text.
    if (text[i] === '\r') i++;
    if (text[i] === '\n') i++;
    line++;
    const isBlank = record.length === 1 && record[0] === '' && !quotedAny;
    if (!isBlank) records.push(record);
  }
  return records;
}

function formatField(f: string, delimiter: string): string {
  const needsQuotes = f === '' || f.includes(delimiter) || /["\r\n]/.test(f) || f !== f.trim();
  return needsQuotes ? `"${f.replace(/"/g, '""')}"` : f;
}

/** Writes records as CSV text, quoting only where reading back needs it; LF line ends. */
export function formatCsv(records: readonly CsvRecord[], delimiter = ','): string {
  return records.map((r) => `${r.map((f) => formatField(f, delimiter)).join(delimiter)}\n`).join('');
}

// ---------------------------------------------------------------- file access

/** What identifies a version of the file: modification time, size and inode. */
function stampOf(st: Stats): string {
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}

/** Writers of one file take turns (read, modify, replace), so no write is lost: the last turn taken, by file. */
export type FileTurns = Map<string, Promise<unknown>>;

function serialised<T>(writeQueues: FileTurns, file: string, work: () => Promise<T>): Promise<T> {
  const prev = writeQueues.get(file) ?? Promise.resolve();
  const run = prev.then(work, work);
  const tail = run.catch(() => undefined);
  writeQueues.set(file, tail);
  void tail.then(() => {
    if (writeQueues.get(file) === tail) writeQueues.delete(file);
  });
  return run;
}

function canRead(a: CsvAccess): boolean {
  return a !== 'O_WRONLY';
}
function canWrite(a: CsvAccess): boolean {
  return a !== 'O_RDONLY';
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return 'no such file';
  return e.code ?? e.message;
}

export class CsvService {
  readonly kind = 'csv';
  private records: CsvRecord[] = [];
  private stamp: string | null = null;

  /** Reads the file now (policy load): a read-only table must exist; a writable one may be created later. */
  constructor(
    readonly id: string,
    readonly opts: CsvOptions,
    private readonly turns: FileTurns,
  ) {
    let text: string;
    try {
      const st = statSync(opts.file);
      text = readFileSync(opts.file, 'utf8');
      this.stamp = stampOf(st);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && canWrite(opts.access)) return;
      throw new Error(`cannot read ${opts.file}: ${errText(err)}`);
    }
    this.records = this.parse(text);
  }

  private parse(text: string): CsvRecord[] {
    try {
      return parseCsv(text, this.opts.delimiter);
    } catch (err) {
      throw new Error(`${this.opts.file}: ${(err as Error).message}`);
    }
  }

  /** The records on disk now (missing file: none). */
  private async readFile(): Promise<{ records: CsvRecord[]; stamp: string | null }> {
    let st: Stats;
    try {
      st = await fsp.stat(this.opts.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], stamp: null };
      throw new Error(`cannot read ${this.opts.file}: ${errText(err)}`);
    }
    const stamp = stampOf(st);
    if (stamp === this.stamp) return { records: this.records, stamp };
    let text: string;
    try {
      text = await fsp.readFile(this.opts.file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${this.opts.file}: ${errText(err)}`);
    }
    return { records: this.parse(text), stamp };
  }

  /** The table to answer a read from: re-read first when refresh is "always" and the file changed. */
  private async table(): Promise<CsvRecord[]> {
    if (this.opts.refresh === 'always') {
      const { records, stamp } = await this.readFile();
      this.records = records;
      this.stamp = stamp;
    }
    return this.records;
  }

  async get(fn: string, key: string): Promise<Value> {
    if (!canRead(this.opts.access)) throw fnError(fn, `${this.opts.file} is write-only (access O_WRONLY)`);
    const r = (await this.table()).find((rec) => rec[0] === key);
    return r ? [...r] : [];
  }

  private checkWrite(fn: string): void {
    if (!canWrite(this.opts.access)) throw fnError(fn, `${this.opts.file} is read-only (access ${this.opts.access})`);
  }

  /** Reads the current file, edits the records, replaces the file; the cache follows. */
  private async modify(call: HostCall, fn: string, what: string, edit: (rs: CsvRecord[]) => CsvRecord[] | null): Promise<boolean> {
    if (call.dryRun) {
      const changed = edit([...(await this.readFile()).records]) !== null;
      call.log.info({ file: this.opts.file }, `${fn}: would run ${what} on ${this.opts.file}`);
      return changed;
    }
    return serialised(this.turns, this.opts.file, async () => {
      const current = await this.readFile();
      const next = edit([...current.records]);
      if (next === null) return false;
      try {
        await writeFileAtomically(this.opts.file, formatCsv(next, this.opts.delimiter), { mode: 0o640 });
        const st = await fsp.stat(this.opts.file);
        this.records = next;
        this.stamp = stampOf(st);
      } catch (err) {
        throw fnError(fn, `cannot write ${this.opts.file}: ${errText(err)}`);
      }
      return true;
    });
  }

  async set(call: HostCall, fn: string, fields: string[]): Promise<Value> {
    this.checkWrite(fn);
    await this.modify(call, fn, 'set', (rs) => [...rs, fields]);
    return undefined;
  }

  async rm(call: HostCall, fn: string, key: string): Promise<Value> {
    this.checkWrite(fn);
    return this.modify(call, fn, 'rm', (rs) => {
      const kept = rs.filter((r) => r[0] !== key);
      return kept.length === rs.length ? null : kept;
    });
  }
}
