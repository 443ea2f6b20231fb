// Text forms of vSL values (SPEC §2.2, §2.7, §2.8): `to_string()` — also what
// `${e}` templates and string `+` insert — and `to_debug()`. Pure ECMAScript,
// see value.ts. Both forms are deterministic: maps print in insertion order.
//
// Choices where SPEC is silent (Rhai-like):
//   - floats: shortest round-trip digits, always with a `.` or an exponent
//     (`1.0`, `0.5`, `-0.0`, `1e21`, `1.5e-7`); non-finite values print as
//     `inf`, `-inf` and `NaN`;
//   - unit prints as `()` in both forms;
//   - inside arrays and maps, elements use their debug form
//     (`[1, "a", 'c', ()]`, `#{"k": 1}`), so strings stay distinguishable.

import { VChar, VFn, VObject, VRange, type Value } from './value.js';

/** A float in shortest round-trip form, always recognisable as a float. */
export function formatFloat(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  if (n === 0) return Object.is(n, -0) ? '-0.0' : '0.0';
  // Number::toString is specified to give the shortest digits that round-trip.
  const s = String(n);
  if (s.indexOf('e') >= 0) return s.replace('e+', 'e');
  return s.indexOf('.') >= 0 ? s : `${s}.0`;
}

/** `to_string()`: the text a script sees when it inserts or concatenates v. */
export function toStr(v: Value): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'bigint':
      return v.toString();
    case 'number':
      return formatFloat(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return '()';
  }
  if (v instanceof VChar) return v.c;
  if (v instanceof VObject) return v.text();
  return collectionOrOther(v);
}

/** `to_debug()`: like to_string, but strings and chars are quoted. */
export function toDebug(v: Value): string {
  if (typeof v === 'string') return quoteString(v);
  if (v instanceof VChar) return quoteChar(v.c);
  if (v instanceof VObject) return v.debug();
  return toStr(v);
}

function collectionOrOther(v: Value): string {
  if (Array.isArray(v)) return `[${v.map(toDebug).join(', ')}]`;
  if (v instanceof Map) {
    const parts: string[] = [];
    for (const [k, e] of v) parts.push(`${quoteString(k)}: ${toDebug(e)}`);
    return `#{${parts.join(', ')}}`;
  }
  if (v instanceof VFn) return `Fn(${v.name})`;
  if (v instanceof VRange) {
    // range(a, b, step) values (ops.ts VStepRange) carry a step; reading it
    // structurally keeps this module free of an import cycle with ops.ts.
    const step = (v as VRange & { step?: bigint }).step;
    if (step !== undefined) return `range(${v.start}, ${v.end}, ${step})`;
    return `${v.start}${v.inclusive ? '..=' : '..'}${v.end}`;
  }
  // Not a vSL value: a bug in a caller; say what it was rather than crash.
  return `<${v === null ? 'null' : typeof v}>`;
}

/** A string in double quotes with `\\ \" \n \r \t \0` and `\u{..}` escapes. */
export function quoteString(s: string): string {
  return `"${escapeText(s, '"')}"`;
}

/** A char in single quotes, escaped like strings. */
export function quoteChar(c: string): string {
  return `'${escapeText(c, "'")}'`;
}

function escapeText(s: string, quote: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp === 0) out += '\\0';
    else if (cp < 0x20 || cp === 0x7f || (cp >= 0xd800 && cp <= 0xdfff)) {
      // Other control characters and lone surrogates would be invisible or
      // unprintable in a log line.
      out += `\\u{${cp.toString(16)}}`;
    } else out += ch;
  }
  return out;
}
