// Reply codes (SPEC §5.8–§5.9): the `code` object, its constructors, the
// reply-string grammar, and the exact lines a reply is sent as.

import type { Reply } from '../../mail/types.js';
import { VChar, VFn, VObject, VRange, fnError, isArray, isMap, typeOf, type Value, type VMap } from './value.js';

/** `type_of` of any value (SPEC §2.2), for error messages. */
export const typeName = typeOf;

const ENHANCED = /^[245]\.[0-9]{1,3}\.[0-9]{1,3}$/;

/** Whether `s` is a valid enhanced status code `class.subject.detail` (RFC 3463). */
export function isEnhancedCode(s: string): boolean {
  return ENHANCED.test(s);
}

/** An SMTP reply code with optional enhanced code and text. Immutable. */
export class Code extends VObject {
  readonly type = 'code';
  constructor(
    /** 200–599. */
    readonly code: number,
    /** `5.7.1`, or '' for none. As given: class alignment happens on output. */
    readonly enhanced: string,
    /** Free text; may hold `\n` for multi-line replies. */
    readonly message: string,
  ) {
    super();
  }

  text(): string {
    let s = String(this.code);
    if (this.enhanced !== '') s += ` ${this.enhanced}`;
    if (this.message !== '') s += ` ${this.message}`;
    return s;
  }

  equals(other: Value): boolean {
    if (other instanceof Code) {
      return other.code === this.code && other.enhanced === this.enhanced && other.message === this.message;
    }
    // A regex compares by matching our text (SPEC §6.3); it lives in objects.ts.
    if (other instanceof VObject && other.type === 'regex') return other.equals(this);
    return false;
  }

  /** `.code` (int), `.enhanced`, `.text`: the fields of the v1 map form. */
  override getProp(name: string): Value {
    if (name === 'code') return BigInt(this.code);
    if (name === 'enhanced') return this.enhanced;
    if (name === 'text') return this.message;
    return super.getProp(name);
  }

  get wireTag(): string {
    return 'code';
  }
  /** Memo of wireText; `declare`d so that no constructor work is emitted for it. */
  declare private wire: string | undefined;
  /** Exact on the wire: the text form is ambiguous when the message starts like an enhanced code. */
  get wireText(): string {
    this.wire ??= JSON.stringify([this.code, this.enhanced, this.message]);
    return this.wire;
  }
}

/** The three-element JSON array a Code or Status wire text is; null if it is not one. */
export function wireTriple(text: string): [unknown, unknown, unknown] | null {
  let a: unknown;
  try {
    a = JSON.parse(text);
  } catch {
    return null;
  }
  return Array.isArray(a) && a.length === 3 ? (a as [unknown, unknown, unknown]) : null;
}

/** Rebuilds a Code from its wireText; null if malformed. */
export function codeFromWire(text: string): Code | null {
  const a = wireTriple(text);
  if (!a) return null;
  const [c, e, m] = a;
  if (typeof c !== 'number' || !Number.isInteger(c) || c < 200 || c > 599) return null;
  if (typeof e !== 'string' || (e !== '' && !isEnhancedCode(e)) || typeof m !== 'string') return null;
  return new Code(c, e, m);
}

// ---------------------------------------------------------------- parsing

/** Parses `<code>[<sep><class>.<subject>.<detail>][<sep><text>]`; null if invalid. */
export function parseReplyOrNull(s: string): Code | null {
  const m = /^([2-5][0-9][0-9])(?:[ -]([\s\S]*))?$/.exec(s);
  if (m === null) return null;
  const code = Number(m[1]);
  const rest = m[2];
  if (rest === undefined) return new Code(code, '', '');
  // Anything shaped like an enhanced code must be a valid one (`550 6.7.1 x` is an error).
  const e = /^([0-9]+\.[0-9]+\.[0-9]+)(?=$|[ -])/.exec(rest);
  if (e === null) return new Code(code, '', rest);
  const enhanced = e[1]!;
  if (!isEnhancedCode(enhanced)) return null;
  return new Code(code, enhanced, rest.slice(enhanced.length + 1));
}

/** Replies parsed lately: policies return the same few reply strings (and predefined codes) on every call. */
const parsed = new Map<string, Code>();

/** parseReplyOrNull, throwing `<fn>: invalid reply '…'`. Codes are immutable, so a parsed one is shared. */
export function parseReply(s: string, fn = 'code'): Code {
  const known = parsed.get(s);
  if (known !== undefined) return known;
  const c = parseReplyOrNull(s);
  if (c === null) throw fnError(fn, `invalid reply '${s}'`);
  if (parsed.size >= 256) parsed.clear();
  parsed.set(s, c);
  return c;
}

function intCode(fn: string, v: Value): number {
  if (typeof v !== 'bigint') throw fnError(fn, `reply code must be an integer, got ${typeName(v)}`);
  if (v < 200n || v > 599n) throw fnError(fn, `reply code ${v} is not in 200..599`);
  return Number(v);
}

function enhancedArg(fn: string, v: Value): string {
  if (typeof v !== 'string') throw fnError(fn, `enhanced code must be a string, got ${typeName(v)}`);
  if (v !== '' && !isEnhancedCode(v)) throw fnError(fn, `invalid enhanced code '${v}'`);
  return v;
}

function textArg(fn: string, v: Value): string {
  if (typeof v !== 'string') throw fnError(fn, `reply text must be a string, got ${typeName(v)}`);
  return v;
}

/**
 * v1 code object `#{ code: 550, enhanced: "5.7.1", text: "go away" }` (all
 * three keys; enhanced may be ""). vSMTP 1.x scripts name the number `base`.
 */
export function codeFromMap(m: VMap, fn = 'code'): Code {
  const number = m.has('code') || !m.has('base') ? 'code' : 'base';
  for (const k of [number, 'enhanced', 'text']) {
    if (!m.has(k)) throw fnError(fn, `code map needs the key '${k}'`);
  }
  return new Code(intCode(fn, m.get(number)), enhancedArg(fn, m.get('enhanced')), textArg(fn, m.get('text')));
}

/**
 * The script constructor (SPEC §5.8): `code(550, "text")`,
 * `code(550, "5.7.1", "text")`, `code("550 5.7.1 text")`, or a v1 code map.
 */
export function code(...args: Value[]): Code {
  const fn = 'code';
  if (args.length === 1) return toCode(fn, args[0]);
  if (args.length === 2) return new Code(intCode(fn, args[0]), '', textArg(fn, args[1]));
  if (args.length === 3) {
    return new Code(intCode(fn, args[0]), enhancedArg(fn, args[1]), textArg(fn, args[2]));
  }
  throw fnError(fn, `expected 1 to 3 arguments, got ${args.length}`);
}

/** A value where a code is expected: a code object, a reply string or a v1 code map. */
export function toCode(fn: string, v: Value): Code {
  if (v instanceof Code) return v;
  if (typeof v === 'string') return parseReply(v, fn);
  if (isMap(v)) return codeFromMap(v, fn);
  throw fnError(fn, `expected a code, a reply string or a code map, got ${typeName(v)}`);
}

// ---------------------------------------------------------------- output

/** RFC 5321 §4.5.3.1.5: 512 octets with CRLF. */
const MAX_LINE_OCTETS = 510;

// C0 and C1 controls and DEL, but not tab.
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Number of UTF-16 units of `s` whose UTF-8 form fits in `max` octets, without splitting a pair. */
function fitUnits(s: string, max: number): number {
  let n = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    const units = c >= 0xd800 && c <= 0xdbff ? 2 : 1;
    const octets = c < 0x80 ? 1 : c < 0x800 ? 2 : units === 2 ? 4 : 3;
    if (n + octets > max) break;
    n += octets;
    i += units;
  }
  return i;
}

/** Splits one text line into pieces of at most `max` octets, at spaces where possible. */
function splitLong(text: string, max: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (utf8Length(rest) > max) {
    const cut = fitUnits(rest, max);
    if (rest[cut] === ' ') {
      out.push(rest.slice(0, cut));
      rest = rest.slice(cut + 1);
      continue;
    }
    const space = rest.lastIndexOf(' ', cut - 1);
    if (space > 0) {
      out.push(rest.slice(0, space));
      rest = rest.slice(space + 1);
    } else {
      // One word longer than a line: cut it, the line limit wins.
      out.push(rest.slice(0, cut));
      rest = rest.slice(cut);
    }
  }
  out.push(rest);
  return out;
}

/** The enhanced code with its class set from the reply code (`451 5.7.24` → `4.7.24`); '' for 3xx. */
export function alignedEnhanced(c: Code): string {
  if (c.enhanced === '') return '';
  const cls = Math.floor(c.code / 100);
  if (cls === 3) return '';
  return `${cls}${c.enhanced.slice(c.enhanced.indexOf('.'))}`;
}

/** The reply a code is sent as: aligned enhanced code, text lines cleaned and split to fit. */
export function toReply(c: Code): Reply {
  const enhanced = alignedEnhanced(c);
  const segments = c.message.split(/\r?\n/);
  // "text\n" ends the text; it does not ask for an empty last line.
  if (segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
  const room = MAX_LINE_OCTETS - 4 - (enhanced === '' ? 0 : enhanced.length + 1);
  const lines: string[] = [];
  for (const seg of segments) {
    for (const piece of splitLong(seg.replace(CONTROLS, ''), room)) lines.push(piece);
  }
  return { code: c.code, enhanced, lines };
}

/** Wire lines (without CRLF) of a reply: codes repeated on every line, `-` after the code on all but the last. */
export function formatReply(r: Reply): string[] {
  const lines = r.lines.length === 0 ? [''] : r.lines;
  return lines.map((text, i) => {
    const sep = i < lines.length - 1 ? '-' : ' ';
    const body = r.enhanced === '' ? text : text === '' ? r.enhanced : `${r.enhanced} ${text}`;
    return body === '' ? String(r.code) + (sep === '-' ? '-' : '') : `${r.code}${sep}${body}`;
  });
}

/** The lines a code is sent as (SPEC §5.8). */
export function replyLines(c: Code): string[] {
  return formatReply(toReply(c));
}

// ---------------------------------------------------------------- predefined codes

const V2_CODES: Record<string, string> = {
  c554_7_1: '554 5.7.1 Relay access denied',
  c550_7_20: '550 5.7.20 No passing DKIM signature found',
  c550_7_21: '550 5.7.21 No acceptable DKIM signature found',
  c550_7_22: '550 5.7.22 No valid author-matched DKIM signature found',
  c550_7_23: '550 5.7.23 SPF validation failed',
  c550_7_24: '550 5.7.24 SPF validation error',
  c451_7_24: '451 4.7.24 SPF validation error',
  c550_7_25: '550 5.7.25 Reverse DNS validation failed',
  c550_7_26: '550 5.7.26 Multiple authentication checks failed',
  // vSMTP sent 500; the name stays for compatibility, the reply is 550.
  c500_7_26: '550 5.7.26 Multiple authentication checks failed',
  c550_7_27: '550 5.7.27 Sender address has null MX',
  c556_1_10: '556 5.1.10 Recipient address has null MX',
  c451_7_1: '451 4.7.1 Sender is not authorized. Please try again.',
  c451_3_0: '451 4.3.0 Multiple destination domains per transaction is unsupported. Please try again.',
  c550_1_1: '550 5.1.1 The email account that you tried to reach does not exist. Please try again.',
};

/** v2 names without a v1 constant, and v1 names that differ from `code` + the v2 suffix. */
const V2_ONLY = ['c500_7_26', 'c451_3_0', 'c550_1_1', 'c451_7_1'];

function buildPredefined(): Record<string, string> {
  const all: Record<string, string> = {};
  for (const name of Object.keys(V2_CODES)) {
    all[name] = V2_CODES[name]!;
    if (V2_ONLY.indexOf(name) < 0) all[`code${name.slice(1)}`] = V2_CODES[name]!;
  }
  all['code_greylist'] = V2_CODES['c451_7_1']!;
  return all;
}

/**
 * Predefined codes (SPEC §5.9) by name: the v2 names without `code::`
 * (`c554_7_1`, called as `code::c554_7_1()`) and the v1 engine constants
 * (`code554_7_1`, `code_greylist`), each to its reply string.
 */
export const PREDEFINED: Readonly<Record<string, string>> = Object.freeze(buildPredefined());

/** The predefined code of a v2 or v1 name, or undefined. */
export function predefinedCode(name: string): Code | undefined {
  const s = Object.prototype.hasOwnProperty.call(PREDEFINED, name) ? PREDEFINED[name] : undefined;
  return s === undefined ? undefined : parseReply(s);
}
