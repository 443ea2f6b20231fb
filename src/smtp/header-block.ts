// The client's header block, read line by line as DATA arrives (RFC 5322
// §2.2): every line is looked at once, a folded field is one range of the
// input (its continuation lines only move the end of the range), so parsing
// is linear in the input however many lines a field is folded over. The
// `header_size_max` limit is checked while the data streams: once the block
// passes it, nothing more is kept.

import { isHeaderName } from '../mail/effects.js';

const CR = 0x0d;
const LF = 0x0a;

/** One header field as raw bytes: `Name: value` with its continuation lines, without the final CRLF. */
export interface RawField {
  name: string;
  raw: Buffer;
}

/** Where a field lies in the header buffer. */
interface FieldRange {
  name: string;
  start: number;
  end: number;
}

/** What a line starting at `pos` is, as far as the bytes up to `end` tell. */
type LineKind = 'field' | 'continuation' | 'not-header' | 'undecided';

export class HeaderBlockParser {
  private buf: Buffer = Buffer.allocUnsafe(4096);
  private len = 0;
  /** The bytes held: buf up to len (made once per chunk, not per line). */
  private view: Buffer = Buffer.alloc(0);
  /** Start of the first line not classified yet. */
  private scan = 0;
  /** Where the search for the next line end goes on (everything before has been searched). */
  private searched = 0;
  private readonly ranges: FieldRange[] = [];
  /** Size of the header block (through its empty line, if any); -1 while it is still open. */
  headerBytes = -1;
  /** Where the body starts in the buffer once the block ended. */
  private bodyStart = -1;
  /** The block passed `maxBytes`: nothing is kept any more. */
  tooBig = false;

  /** @param maxBytes `server.smtp.header_size_max` (0: no limit). */
  constructor(private readonly maxBytes: number) {}

  get ended(): boolean {
    return this.headerBytes >= 0;
  }

  /**
   * Adds DATA bytes while the block is open. Returns the bytes of `chunk`
   * past the end of the block once it ended (the start of the body), else
   * null (also once the block is too big).
   */
  push(chunk: Buffer): Buffer | null {
    if (this.ended || this.tooBig) return null;
    this.append(chunk);
    this.scanLines();
    if (!this.ended && this.passesLimit()) {
      this.drop();
      return null;
    }
    if (!this.ended) return null;
    if (this.maxBytes > 0 && this.headerBytes > this.maxBytes) {
      this.drop();
      return null;
    }
    return this.buf.subarray(this.bodyStart, this.len);
  }

  /** The data ended with the block still open: its last line ends where the data does. */
  finish(): void {
    if (this.ended || this.tooBig) return;
    if (this.scan < this.len) {
      const kind = this.classify(this.scan, this.len, true);
      if (kind === 'continuation') this.ranges[this.ranges.length - 1]!.end = this.len;
      else if (kind === 'field') this.ranges.push({ name: this.nameAt(this.scan), start: this.scan, end: this.len });
      else return this.endAt(this.scan, this.scan);
    }
    this.endAt(this.len, this.len);
    if (this.maxBytes > 0 && this.headerBytes > this.maxBytes) this.drop();
  }

  /** The fields, as views of one buffer holding the block (call once the block ended). */
  fields(): RawField[] {
    const block = this.buf.subarray(0, Math.max(0, this.headerBytes));
    return this.ranges.map((r) => ({ name: r.name, raw: block.subarray(r.start, r.end) }));
  }

  /** Bytes past the block in the buffer (the body's start), when the block ended in the data given to finish(). */
  rest(): Buffer {
    return this.ended ? this.buf.subarray(this.bodyStart, this.len) : Buffer.alloc(0);
  }

  /** Bytes held in memory now. */
  get heldBytes(): number {
    return this.buf.length;
  }

  private append(chunk: Buffer): void {
    if (this.len + chunk.length > this.buf.length) {
      // Doubling keeps the copying linear in the block's size.
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + chunk.length));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    chunk.copy(this.buf, this.len);
    this.len += chunk.length;
    this.view = this.buf.subarray(0, this.len);
  }

  private scanLines(): void {
    while (!this.ended) {
      const eol = this.crlfFrom(this.scan);
      if (eol < 0) return;
      if (eol === this.scan) return this.endAt(eol + 2, eol + 2);
      const kind = this.classify(this.scan, eol, true);
      if (kind === 'continuation') this.ranges[this.ranges.length - 1]!.end = eol;
      else if (kind === 'field') this.ranges.push({ name: this.nameAt(this.scan), start: this.scan, end: eol });
      else return this.endAt(this.scan, this.scan);
      this.scan = eol + 2;
    }
  }

  /**
   * Index of the CR of the next CRLF at or after `from`, or -1. A line that
   * arrives over many chunks is searched only where it grew.
   */
  private crlfFrom(from: number): number {
    const data = this.view;
    let i = data.indexOf(LF, Math.max(from + 1, this.searched));
    while (i >= 0 && data[i - 1] !== CR) i = data.indexOf(LF, i + 1);
    this.searched = i < 0 ? this.len : i + 1;
    return i < 0 ? -1 : i - 1;
  }

  /**
   * A line [pos, end): a continuation (leading space or tab after a field),
   * a field (a valid name then a colon), or neither (the body starts there).
   * With `complete` false the line may go on past `end`.
   */
  private classify(pos: number, end: number, complete: boolean): LineKind {
    const first = this.buf[pos]!;
    if ((first === 0x20 || first === 0x09) && this.ranges.length > 0) return 'continuation';
    const colon = this.buf.subarray(0, end).indexOf(0x3a, pos);
    if (colon >= 0) return isHeaderName(this.buf.toString('latin1', pos, colon)) ? 'field' : 'not-header';
    // No colon yet: a name may still be coming, unless what came cannot be one.
    return !complete && isHeaderName(this.buf.toString('latin1', pos, end)) ? 'undecided' : 'not-header';
  }

  private nameAt(pos: number): string {
    return this.buf.toString('latin1', pos, this.buf.indexOf(0x3a, pos));
  }

  private endAt(headerBytes: number, bodyStart: number): void {
    this.headerBytes = headerBytes;
    this.bodyStart = bodyStart;
  }

  /**
   * Whether the open block is already known to pass the limit: its complete
   * lines alone do, or the line being received takes it past the limit and
   * is (or may still turn out to be) a header line. A line that could still
   * be a field is counted as one, so an endless name-like line cannot be
   * held in memory.
   */
  private passesLimit(): boolean {
    if (this.maxBytes <= 0 || this.len <= this.maxBytes) return false;
    if (this.scan > this.maxBytes) return true;
    const kind = this.classify(this.scan, this.len, false);
    if (kind !== 'not-header') return true;
    // The line being received is body: the block ends before it.
    this.endAt(this.scan, this.scan);
    return false;
  }

  private drop(): void {
    this.tooBig = true;
    this.buf = Buffer.alloc(0);
    this.view = this.buf;
    this.len = 0;
    this.ranges.length = 0;
  }
}

/** Splits a whole CRLF message into header fields and body (the same reading as while DATA streams). */
export function splitHeaderBlock(data: Buffer): { fields: RawField[]; body: Buffer; headerBytes: number } {
  const p = new HeaderBlockParser(0);
  const rest = p.push(data);
  if (rest === null) p.finish();
  return { fields: p.fields(), body: rest ?? p.rest(), headerBytes: p.headerBytes };
}
