// The message between the final dot and the spool: the checks made on the
// received bytes (SPEC §4.5: bare CR/LF, size, hops), the header block the
// server prepends (Received:, pending headers), the header edits of preq,
// and the MessageView the preq stage reads (src/builtins/host.ts).

import type { MessageView } from '../mail/types.js';
import type { Header } from '../mail/types.js';
import { isHeaderName } from '../mail/effects.js';

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');

export type DataProblem = 'bare-cr-lf' | 'too-big' | 'nul' | 'header-too-big' | 'too-many-hops';

export interface DataLimits {
  /** `server.smtp.message_size_limit` (0: none). */
  maxBytes: number;
  /** `server.smtp.header_size_max` (0: none). */
  maxHeaderBytes: number;
  /** More `Received:` headers than this refuse the message (SPEC §4.5: 50). */
  maxReceived: number;
}

/**
 * Collects the (dot-unstuffed) DATA bytes as they arrive and notes what is
 * wrong with them, keeping at most `maxBytes` in memory. The end of data is
 * found by the parser (only CRLF.CRLF); a bare CR or LF anywhere, including
 * the `\n.\n` and `\r.\r` variants some servers take as the end, refuses the
 * whole message, so nothing after such a sequence can become a second
 * message (SMTP smuggling).
 */
export class DataCollector {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  /** Bytes received so far, including those not kept. */
  bytes = 0;
  private lastByte = -1;
  private bare = false;
  private nul = false;

  constructor(private readonly limits: DataLimits) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (!this.bare) this.bare = hasBareCrOrLf(chunk, this.lastByte);
    if (!this.nul && chunk.indexOf(0) >= 0) this.nul = true;
    this.lastByte = chunk[chunk.length - 1]!;
    this.bytes += chunk.length;
    if (this.limits.maxBytes > 0 && this.bytes > this.limits.maxBytes) return; // over the limit: counted, not kept
    this.chunks.push(chunk);
    this.kept += chunk.length;
  }

  /** The message as received, or what is wrong with it (first problem in SPEC order of severity). */
  finish(): { ok: true; data: Buffer; parsed: ParsedMessage } | { ok: false; problem: DataProblem } {
    if (this.bare || this.lastByte === CR) return { ok: false, problem: 'bare-cr-lf' };
    if (this.limits.maxBytes > 0 && this.bytes > this.limits.maxBytes) return { ok: false, problem: 'too-big' };
    if (this.nul) return { ok: false, problem: 'nul' };
    const data = Buffer.concat(this.chunks, this.kept);
    const parsed = parseMessage(data);
    if (this.limits.maxHeaderBytes > 0 && parsed.headerBytes > this.limits.maxHeaderBytes) return { ok: false, problem: 'header-too-big' };
    const received = parsed.fields.filter((f) => f.name.toLowerCase() === 'received').length;
    if (received > this.limits.maxReceived) return { ok: false, problem: 'too-many-hops' };
    return { ok: true, data, parsed };
  }
}

/** Whether `chunk` holds a CR not followed by LF or an LF not preceded by CR; `before` is the byte preceding the chunk (-1: none). */
export function hasBareCrOrLf(chunk: Buffer, before: number): boolean {
  if (before === CR && chunk[0] !== LF) return true;
  for (let i = chunk.indexOf(LF); i >= 0; i = chunk.indexOf(LF, i + 1)) {
    const prev = i > 0 ? chunk[i - 1] : before;
    if (prev !== CR) return true;
  }
  for (let i = chunk.indexOf(CR); i >= 0; i = chunk.indexOf(CR, i + 1)) {
    if (i + 1 < chunk.length && chunk[i + 1] !== LF) return true;
  }
  return false;
}

/** One header field as raw bytes: `Name: value` with its continuation lines, without the final CRLF. */
export interface RawField {
  name: string;
  raw: Buffer;
}

export interface ParsedMessage {
  fields: RawField[];
  /** The body, after the empty line (or where the first non-header line starts). */
  body: Buffer;
  /** Size of the header block as received. */
  headerBytes: number;
}

// RFC 5322 field name: printable ASCII except colon.
function isFieldName(name: string): boolean {
  return isHeaderName(name);
}

/**
 * Splits a CRLF message into header fields and body. A line that is neither a
 * field nor a continuation ends the header block (RFC 5322 has no such line;
 * treating it as the body keeps it intact).
 */
export function parseMessage(data: Buffer): ParsedMessage {
  const fields: RawField[] = [];
  let pos = 0;
  while (pos < data.length) {
    let end = data.indexOf(CRLF, pos);
    if (end < 0) end = data.length;
    if (end === pos) return { fields, body: data.subarray(pos + 2), headerBytes: pos + 2 };
    const first = data[pos]!;
    if ((first === 0x20 || first === 0x09) && fields.length > 0) {
      const last = fields[fields.length - 1]!;
      last.raw = Buffer.concat([last.raw, CRLF, data.subarray(pos, end)]);
    } else {
      const colon = data.indexOf(0x3a, pos);
      const name = colon > pos && colon < end ? data.toString('latin1', pos, colon) : '';
      if (!isFieldName(name)) return { fields, body: data.subarray(pos), headerBytes: pos };
      fields.push({ name, raw: data.subarray(pos, end) });
    }
    pos = end + 2;
  }
  return { fields, body: Buffer.alloc(0), headerBytes: data.length };
}

/** `Name: value` folded at whitespace so that lines stay within 78 columns where possible (SPEC §7.5). */
export function foldField(name: string, value: string): Buffer {
  // Unfold what is folded already; any other CR or LF (the runner refuses
  // them) must never split the header.
  const clean = value.replace(/\r\n(?=[ \t])/g, '').replace(/[\r\n]+/g, ' ');
  const words = clean.split(' ');
  let out = `${name}:`;
  let col = out.length;
  for (const w of words) {
    if (col + 1 + w.length > 78 && col > name.length + 1) {
      out += `\r\n ${w}`;
      col = 1 + w.length;
    } else {
      out += ` ${w}`;
      col += 1 + w.length;
    }
  }
  return Buffer.from(out, 'utf8');
}

/** The unfolded, trimmed value of a raw field. */
export function fieldValue(f: RawField): string {
  const text = f.raw.toString('utf8');
  const colon = text.indexOf(':');
  return text.slice(colon + 1).replace(/\r\n/g, '').trim();
}

/**
 * The message being assembled at end of DATA: header fields that preq
 * effects may edit, and the untouched body.
 */
export class MessageDraft implements MessageView {
  private cached: Buffer | null = null;

  constructor(
    public fields: RawField[],
    private readonly body: Buffer,
  ) {}

  /** Received:, then the pending headers, then the client's fields (SPEC §7.5, §10). */
  static assemble(prefix: Header[], client: ParsedMessage): MessageDraft {
    const fields = prefix.map((h) => ({ name: h.name, raw: foldField(h.name, h.value) }));
    return new MessageDraft([...fields, ...client.fields], client.body);
  }

  headers(): Array<{ name: string; raw: string; value: string }> {
    return this.fields.map((f) => ({ name: f.name, raw: f.raw.toString('utf8'), value: fieldValue(f) }));
  }

  raw(): Buffer {
    if (this.cached === null) {
      const parts: Buffer[] = [];
      for (const f of this.fields) parts.push(f.raw, CRLF);
      parts.push(CRLF, this.body);
      this.cached = Buffer.concat(parts);
    }
    return this.cached;
  }

  private changed(): void {
    this.cached = null;
  }

  append(name: string, value: string): void {
    this.fields.push({ name, raw: foldField(name, value) });
    this.changed();
  }

  prepend(name: string, value: string): void {
    this.fields.unshift({ name, raw: foldField(name, value) });
    this.changed();
  }

  /** Replaces the first field of that name, or appends one. */
  set(name: string, value: string): void {
    const i = this.fields.findIndex((f) => sameName(f.name, name));
    if (i < 0) this.fields.push({ name, raw: foldField(name, value) });
    else this.fields[i] = { name, raw: foldField(name, value) };
    this.changed();
  }

  /** Renames every field `from` to `to`, keeping values. */
  rename(from: string, to: string): void {
    this.fields = this.fields.map((f) => (sameName(f.name, from) ? { name: to, raw: foldField(to, fieldValue(f)) } : f));
    this.changed();
  }

  remove(name: string): boolean {
    const before = this.fields.length;
    this.fields = this.fields.filter((f) => !sameName(f.name, name));
    this.changed();
    return this.fields.length !== before;
  }

  /** First value of a field, unfolded; null when absent. */
  get(name: string): string | null {
    const f = this.fields.find((x) => sameName(x.name, name));
    return f === undefined ? null : fieldValue(f);
  }
}

export function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
