// The message between the final dot and the spool: the checks made on the
// received bytes (SPEC §4.5: bare CR/LF, size, hops), the header block the
// server prepends (Received:, pending headers), the header edits of preq,
// and the MessageView the preq stage reads (src/builtins/host.ts).

import type { Header, MessageView } from '../mail/types.js';
import { BodyStore, bodyBytes, bodySize, type MessageBody } from './body-store.js';
import { HeaderBlockParser, splitHeaderBlock, type RawField } from './header-block.js';

export type { RawField } from './header-block.js';

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

/** The client's message as checked at the final dot: its header fields and its body. */
export type CheckedData = { ok: true; parsed: ParsedMessage } | { ok: false; problem: DataProblem };

/**
 * Takes the (dot-unstuffed) DATA bytes as they arrive and notes what is
 * wrong with them, holding little in memory: the header block (at most
 * `maxHeaderBytes`), then the body through a BodyStore (a small buffer in
 * front of a temporary file). Once the message is over a limit nothing more
 * is kept, but every byte is still counted and checked to the final dot.
 * The end of data is found by the parser (only CRLF.CRLF); a bare CR or LF
 * anywhere, including the `\n.\n` and `\r.\r` variants some servers take
 * as the end, refuses the whole message, so nothing after such a sequence
 * can become a second message (SMTP smuggling).
 */
export class DataCollector {
  private readonly header: HeaderBlockParser;
  private readonly body: BodyStore;
  /** Bytes received so far, including those not kept. */
  bytes = 0;
  private lastByte = -1;
  private bare = false;
  private nul = false;
  /** Over a limit: the rest is counted, not kept. */
  private dropped = false;

  constructor(
    private readonly limits: DataLimits,
    spillPath: (() => string) | null = null,
  ) {
    this.header = new HeaderBlockParser(limits.maxHeaderBytes);
    this.body = new BodyStore(spillPath);
  }

  /** Adds a chunk; a returned promise asks the connection to read no more until it resolves. */
  push(chunk: Buffer): Promise<void> | undefined {
    if (chunk.length === 0) return undefined;
    if (!this.bare) this.bare = hasBareCrOrLf(chunk, this.lastByte);
    if (!this.nul && chunk.indexOf(0) >= 0) this.nul = true;
    this.lastByte = chunk[chunk.length - 1]!;
    this.bytes += chunk.length;
    if (this.dropped) return undefined;
    if (this.limits.maxBytes > 0 && this.bytes > this.limits.maxBytes) return this.drop();
    let bodyPart: Buffer | null = chunk;
    if (!this.header.ended) {
      bodyPart = this.header.push(chunk);
      if (this.header.tooBig) return this.drop();
    }
    return bodyPart === null ? undefined : this.body.push(bodyPart);
  }

  /** The message as received, or what is wrong with it (first problem in SPEC order of severity). */
  async finish(): Promise<CheckedData> {
    const problem = this.problem();
    if (problem !== null) {
      await this.discard();
      return { ok: false, problem };
    }
    const fields = this.header.fields();
    const received = fields.filter((f) => f.name.toLowerCase() === 'received').length;
    if (received > this.limits.maxReceived) {
      await this.discard();
      return { ok: false, problem: 'too-many-hops' };
    }
    return { ok: true, parsed: { fields, body: await this.body.finish(), headerBytes: this.header.headerBytes } };
  }

  /** Drops whatever was kept (the message is refused or abandoned). */
  discard(): Promise<void> {
    return this.body.discard();
  }

  private problem(): DataProblem | null {
    if (this.bare || this.lastByte === CR) return 'bare-cr-lf';
    if (this.limits.maxBytes > 0 && this.bytes > this.limits.maxBytes) return 'too-big';
    if (this.nul) return 'nul';
    if (!this.header.ended) {
      this.header.finish();
      const rest = this.header.rest();
      if (rest.length > 0) void this.body.push(rest);
    }
    if (this.header.tooBig) return 'header-too-big';
    return null;
  }

  private drop(): undefined {
    this.dropped = true;
    void this.body.discard();
    return undefined;
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

export interface ParsedMessage {
  fields: RawField[];
  /** The body, after the empty line (or where the first non-header line starts). */
  body: MessageBody;
  /** Size of the header block as received. */
  headerBytes: number;
}

/**
 * Splits a CRLF message into header fields and body, in one pass. A line
 * that is neither a field nor a continuation ends the header block (RFC 5322
 * has no such line; treating it as the body keeps it intact).
 */
export function parseMessage(data: Buffer): ParsedMessage {
  return splitHeaderBlock(data);
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
    readonly body: MessageBody,
  ) {}

  /** Received:, then the pending headers, then the client's fields (SPEC §7.5, §10). */
  static assemble(prefix: Header[], client: ParsedMessage): MessageDraft {
    const fields = prefix.map((h) => ({ name: h.name, raw: foldField(h.name, h.value) }));
    return new MessageDraft([...fields, ...client.fields], client.body);
  }

  headers(): Array<{ name: string; raw: string; value: string }> {
    return this.fields.map((f) => ({ name: f.name, raw: f.raw.toString('utf8'), value: fieldValue(f) }));
  }

  /** The whole message; a spilled body is read from its file (only built-ins that need the body ask). */
  raw(): Buffer {
    if (this.cached === null) this.cached = Buffer.concat([this.head(), bodyBytes(this.body)]);
    return this.cached;
  }

  /** The header block as it stands, with the empty line that ends it. */
  head(): Buffer {
    const parts: Buffer[] = [];
    for (const f of this.fields) parts.push(f.raw, CRLF);
    parts.push(CRLF);
    return Buffer.concat(parts);
  }

  /** Size of the whole message in bytes. */
  get size(): number {
    let n = 2;
    for (const f of this.fields) n += f.raw.length + 2;
    return n + bodySize(this.body);
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
