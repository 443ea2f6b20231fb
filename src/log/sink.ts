// Where log lines go: a file descriptor (stdout by default) written
// asynchronously, which never blocks the event loop and never stops the
// server. When the descriptor cannot take more — a full disk (ENOSPC), a
// quota, EIO — the lines are dropped and counted, stderr says so once per
// outage, and the first successful write afterwards logs how many were lost.
// A slow reader (EAGAIN on a pipe) is waited for, with at most
// MAX_BUFFERED bytes held; beyond that lines are dropped too.

import fs from 'node:fs';
import { Writable } from 'node:stream';
import { notify } from './observers.js';

const MAX_BUFFERED = 8 * 1024 * 1024;
const RETRY_MS = 20;

export interface SinkOptions {
  fd: number;
  /** `json` writes the recovery notice as a JSON line, `pretty` as text. */
  format: 'json' | 'pretty';
  /** Where the one warning per outage goes (stderr by default). */
  warn?: (text: string) => void;
  maxBuffered?: number;
}

function lineCount(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n || 1;
}

export class DroppingSink extends Writable {
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  /** Lines lost in the current outage; null while writes succeed. */
  private lostInOutage: number | null = null;
  /** Every line lost since the process started. */
  dropped = 0;

  constructor(private readonly opts: SinkOptions) {
    super({ decodeStrings: false });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.enqueue(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
    cb();
  }

  private enqueue(text: string): void {
    if (this.pendingBytes + text.length > (this.opts.maxBuffered ?? MAX_BUFFERED)) {
      this.lose(text, 'the log is not being read fast enough');
      return;
    }
    this.pending.push(text);
    this.pendingBytes += text.length;
    this.flush();
  }

  private flush(): void {
    if (this.writing || this.pending.length === 0) return;
    const buf = Buffer.from(this.pending.join(''), 'utf8');
    this.pending = [];
    this.pendingBytes = 0;
    this.writing = true;
    fs.write(this.opts.fd, buf, 0, buf.length, null, (err, written) => {
      this.writing = false;
      if (err && (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK')) {
        this.requeue(buf.toString('utf8'));
        setTimeout(() => this.flush(), RETRY_MS).unref();
        return;
      }
      if (err) {
        this.lose(buf.toString('utf8'), `${err.code ?? 'error'}: ${err.message}`);
        return;
      }
      if (written < buf.length) this.requeue(buf.subarray(written).toString('utf8'));
      else if (this.lostInOutage !== null) this.recovered();
      this.flush();
    });
  }

  private requeue(text: string): void {
    this.pending.unshift(text);
    this.pendingBytes += text.length;
  }

  private lose(text: string, why: string): void {
    const n = lineCount(text);
    this.dropped += n;
    notify('logLinesDropped', n);
    if (this.lostInOutage === null) {
      this.lostInOutage = 0;
      (this.opts.warn ?? ((t) => process.stderr.write(t)))(`mta: cannot write the log (${why}); dropping log lines until it can be written again\n`);
    }
    this.lostInOutage += n;
  }

  private recovered(): void {
    const n = this.lostInOutage ?? 0;
    this.lostInOutage = null;
    const msg = `log writes resumed; ${n} line(s) were dropped while the log could not be written`;
    this.enqueue(this.opts.format === 'json' ? `${JSON.stringify({ level: 40, time: new Date().toISOString(), log_lines_dropped: n, msg })}\n` : `WARN: ${msg}\n`);
  }

  /** Writes what is still held, synchronously (at exit); failures are ignored. */
  flushSync(): void {
    const text = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    try {
      if (text) fs.writeSync(this.opts.fd, text);
    } catch {
      // nothing more can be done at exit
    }
  }
}
