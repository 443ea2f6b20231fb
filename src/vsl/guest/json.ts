// JSON for vSL values (SPEC §2.8 `to_json`, `parse_json`). Pure ECMAScript,
// see value.ts. JSON.parse cannot be used: it rounds integers beyond 2^53,
// and vSL ints are exact 64-bit values (SPEC §2.7), so both directions write
// and read integer digits themselves.
//
// Mapping: map <-> object (insertion order kept; a repeated key keeps its
// first position and its last value), array <-> array, int <-> number without
// fraction or exponent, float <-> any other number (floats are written with a
// `.` or exponent, so they read back as floats), string <-> string, bool,
// () <-> null. A char is written as a one-character string and a host object
// as the string of its text(); functions, ranges, NaN and infinities have no
// JSON form and are errors.

import { formatFloat } from '../values/format.js';
import { typeOf } from '../values/value.js';
import { I64_MAX, I64_MIN, VChar, VObject, VslError, fnError, type VMap, type Value } from '../values/value.js';

/** Nesting deeper than this is refused, so hostile input cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 128;

/** `x.to_json()`: compact JSON text. */
export function toJson(v: Value): string {
  try {
    return encode(v);
  } catch (e) {
    if (e instanceof VslError) throw fnError('to_json', e.message);
    throw e;
  }
}

function encode(v: Value): string {
  switch (typeof v) {
    case 'bigint':
      return v.toString();
    case 'number':
      if (!Number.isFinite(v)) throw new VslError(`${formatFloat(v)} has no JSON form`);
      return formatFloat(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'null';
    case 'string':
      return JSON.stringify(v);
  }
  if (v instanceof VChar) return JSON.stringify(v.c);
  if (Array.isArray(v)) return `[${v.map(encode).join(',')}]`;
  if (v instanceof Map) {
    const parts: string[] = [];
    for (const [k, e] of v) parts.push(`${JSON.stringify(k)}:${encode(e)}`);
    return `{${parts.join(',')}}`;
  }
  if (v instanceof VObject) return JSON.stringify(v.text());
  throw new VslError(`cannot convert ${typeOf(v)} to JSON`);
}

/** `parse_json(s)`: strict RFC 8259 text to a value. */
export function parseJson(text: string): Value {
  try {
    const p = new JsonParser(text);
    const v = p.value(0);
    p.skipSpace();
    if (!p.atEnd()) p.fail('unexpected content after the JSON value');
    return v;
  } catch (e) {
    if (e instanceof VslError) throw fnError('parse_json', e.message);
    throw e;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

class JsonParser {
  private pos = 0;

  constructor(private readonly s: string) {}

  atEnd(): boolean {
    return this.pos >= this.s.length;
  }

  fail(message: string): never {
    throw new VslError(`${message} at offset ${this.pos}`);
  }

  skipSpace(): void {
    while (this.pos < this.s.length) {
      const c = this.s[this.pos];
      if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') return;
      this.pos++;
    }
  }

  value(depth: number): Value {
    this.skipSpace();
    if (this.atEnd()) this.fail('unexpected end of input');
    const c = this.s[this.pos] as string;
    if (c === '{') return this.object(depth + 1);
    if (c === '[') return this.array(depth + 1);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (this.word('true')) return true;
    if (this.word('false')) return false;
    if (this.word('null')) return undefined;
    return this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private word(w: string): boolean {
    if (this.s.startsWith(w, this.pos)) {
      this.pos += w.length;
      return true;
    }
    return false;
  }

  private enter(depth: number): void {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    this.pos++; // the opening bracket
  }

  private object(depth: number): VMap {
    this.enter(depth);
    const m: VMap = new Map();
    this.skipSpace();
    if (this.s[this.pos] === '}') {
      this.pos++;
      return m;
    }
    for (;;) {
      this.skipSpace();
      if (this.s[this.pos] !== '"') this.fail('expected a string key');
      const key = this.string();
      this.skipSpace();
      if (this.s[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      m.set(key, this.value(depth));
      this.skipSpace();
      const c = this.s[this.pos];
      this.pos++;
      if (c === '}') return m;
      if (c !== ',') {
        this.pos--;
        this.fail("expected ',' or '}'");
      }
    }
  }

  private array(depth: number): Value[] {
    this.enter(depth);
    const a: Value[] = [];
    this.skipSpace();
    if (this.s[this.pos] === ']') {
      this.pos++;
      return a;
    }
    for (;;) {
      a.push(this.value(depth));
      this.skipSpace();
      const c = this.s[this.pos];
      this.pos++;
      if (c === ']') return a;
      if (c !== ',') {
        this.pos--;
        this.fail("expected ',' or ']'");
      }
    }
  }

  private string(): string {
    this.pos++; // the opening quote
    let out = '';
    for (;;) {
      if (this.atEnd()) this.fail('unterminated string');
      const c = this.s[this.pos] as string;
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c < ' ') this.fail('control character in string');
      if (c !== '\\') {
        out += c;
        this.pos++;
        continue;
      }
      const e = this.s[this.pos + 1];
      if (e === 'u') {
        const hex = this.s.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid \\u escape');
        // Surrogate pairs arrive as two escapes; appending both units joins them.
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (e !== undefined && Object.prototype.hasOwnProperty.call(SIMPLE_ESCAPES, e)) {
        out += SIMPLE_ESCAPES[e];
        this.pos += 2;
      } else {
        this.fail('invalid escape');
      }
    }
  }

  private number(): Value {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.s);
    if (m === null) return this.fail('invalid number');
    const raw = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      const i = BigInt(raw);
      if (i < I64_MIN || i > I64_MAX) this.fail(`integer ${raw} out of the i64 range`);
      this.pos += raw.length;
      return i;
    }
    const f = Number(raw);
    if (!Number.isFinite(f)) this.fail(`number ${raw} out of the f64 range`);
    this.pos += raw.length;
    return f;
  }
}
