// Built-in functions and methods of the standard library (SPEC §2.4, §2.7,
// §2.8). Pure ECMAScript, see value.ts.
//
// `recv.name(args)` goes to callMethod, which returns the result and the
// receiver after the call: the compiler writes that back when the receiver is
// a variable, property or index (SPEC §2.4). In-place methods on arrays and
// maps mutate the receiver and return it as `self`; in-place string methods
// return the new string as `self` (JavaScript strings are immutable).
//
// `name(recv, args)` goes to callGlobal: the engine functions (type_of,
// parse_int, …) and the function-call form of every method, which works on a
// copy (`push(a, 1)` leaves `a` unchanged and returns `()`).
//
// Errors raised here are prefixed with the method name (`sub_string: index
// out of range`). Errors thrown by a script callback pass through unchanged.
//
// Choices where SPEC is silent (mostly as in Rhai):
//   - positions: a negative start counts from the end; a start outside the
//     string or array is `index out of range`; a length running past the end
//     is clamped; a negative length is an error;
//   - `index_of`, `split(n)`, `truncate(n)` and friends count code points;
//   - `min`/`max` of two ints give an int, with a float they give a float;
//   - `sign` and `to_int` of NaN are errors; `round` rounds half away from 0;
//   - string methods also work on the text of address, fqdn, identifier, ip4,
//     ip6 and code objects (SPEC §6.5), but only the pure ones: an in-place
//     method would turn the object into a string;
//   - an array `index_of(f)` with a function searches with a predicate, and
//     `sort(f)` takes a comparator returning an int (Rhai forms).

import { formatFloat, toDebug, toStr } from '../values/format.js';
import { parseJson, toJson } from './json.js';
import { VStepRange, checkInt, compareNumbers, contains, copyValue, eq, order, resolveIndex, textOf, typeOf } from './ops.js';
import { doesIo } from './support.js';
import { I64_MAX, I64_MIN, VChar, VFn, VObject, VRange, VslError, fnError, isArray, isMap, type VMap, type Value } from '../values/value.js';

/** How a built-in runs: given the context, the receiver and the other arguments. */
type MethodRun = (x: unknown, recv: any, args: Value[]) => [result: Value, self: Value];

interface MethodDef {
  /** Arguments besides the receiver. */
  readonly min: number;
  readonly max: number;
  readonly run: MethodRun;
}

type Table = Map<string, MethodDef>;

/** A method that leaves its receiver unchanged. */
function pure(min: number, max: number, f: (x: unknown, recv: any, args: Value[]) => Value): MethodDef {
  return { min, max, run: (x, recv, args) => [f(x, recv, args), recv] };
}

/** A method that changes its receiver; it returns [result, new receiver]. */
function inPlace(min: number, max: number, run: MethodRun): MethodDef {
  return { min, max, run };
}

// ---------------------------------------------------------------- argument helpers

function argText(v: Value, what = 'argument'): string {
  const t = textOf(v);
  if (t === undefined) throw new VslError(`${what} must be a string, got ${typeOf(v)}`);
  return t;
}

function argInt(v: Value, what = 'argument'): bigint {
  if (typeof v !== 'bigint') throw new VslError(`${what} must be an int, got ${typeOf(v)}`);
  return v;
}

function argArray(v: Value, what = 'argument'): Value[] {
  if (!isArray(v)) throw new VslError(`${what} must be an array, got ${typeOf(v)}`);
  return v;
}

function argMap(v: Value, what = 'argument'): VMap {
  if (!isMap(v)) throw new VslError(`${what} must be a map, got ${typeOf(v)}`);
  return v;
}

/** A map key: a string, a char, or a text-like object. */
function argKey(v: Value): string {
  if (v instanceof VObject) return v.text();
  return argText(v, 'key');
}

/** A count such as a length, clamped into 0..=limit; negative is an error. */
function argCount(v: Value, limit: number, what = 'length'): number {
  const n = argInt(v, what);
  if (n < 0n) throw new VslError(`${what} must not be negative, got ${n}`);
  return n > BigInt(limit) ? limit : Number(n);
}

/** A start position in 0..=length; negative counts from the end. */
function argStart(v: Value, length: number): number {
  const i = argInt(v, 'index');
  const n = BigInt(length);
  const at = i < 0n ? i + n : i;
  if (at < 0n || at > n) throw new VslError('index out of range');
  return Number(at);
}

/**
 * The [start, end) slice named by `(i[, n])` or by a range, over `length`
 * items: used by sub_string, crop and extract.
 */
function sliceBounds(args: Value[], length: number): [number, number] {
  const first = args[0];
  if (first instanceof VRange) {
    if (first instanceof VStepRange) throw new VslError('a stepped range cannot select a slice');
    const start = argStart(first.start, length);
    const endIncl = first.inclusive ? first.end + 1n : first.end;
    const end = endIncl > BigInt(length) ? length : endIncl < BigInt(start) ? start : Number(endIncl);
    return [start, end];
  }
  const start = argStart(first, length);
  const end = args.length > 1 ? start + argCount(args[1], length - start) : length;
  return [start, end];
}

function chars(s: string): string[] {
  return Array.from(s);
}

function codePointLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// ---------------------------------------------------------------- callbacks

/** Errors thrown by script callbacks: rethrown as they are, never prefixed. */
const fromCallback = new WeakSet<object>();

const IO_IN_CALLBACK = 'I/O built-ins cannot run inside a map/filter callback';

/** Calls a script function with the given arguments, synchronously. */
function invoke(x: unknown, f: VFn, args: Value[]): Value {
  // Refused before it runs: an I/O function would start its I/O and be abandoned.
  if (doesIo(f)) throw new VslError(IO_IN_CALLBACK);
  let r: unknown;
  try {
    r = f.impl(x, ...args);
  } catch (e) {
    if (typeof e === 'object' && e !== null) fromCallback.add(e);
    throw e;
  }
  if (r instanceof Promise) {
    r.catch(() => undefined); // its failure, if any, no longer matters
    throw new VslError(IO_IN_CALLBACK);
  }
  return r as Value;
}

/**
 * Calls a callback with `base` arguments, plus the index when the function
 * takes one more parameter (SPEC §2.8: `(item)` or `(item, index)`).
 */
function callback(x: unknown, f: Value, base: Value[], index: number): Value {
  if (!(f instanceof VFn)) throw new VslError(`the callback must be a function, got ${typeOf(f)}`);
  if (f.arity === base.length) return invoke(x, f, base);
  if (f.arity === base.length + 1) return invoke(x, f, [...base, BigInt(index)]);
  throw new VslError(
    `the callback must take ${base.length} or ${base.length + 1} parameters, ${f.name} takes ${f.arity}`,
  );
}

function predicate(x: unknown, f: Value, item: Value, index: number): boolean {
  const r = callback(x, f, [copyValue(item)], index);
  if (typeof r !== 'boolean') throw new VslError(`the callback must return a bool, got ${typeOf(r)}`);
  return r;
}

// ---------------------------------------------------------------- numbers

function toFloatValue(v: Value): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new VslError(`expected a number, got ${typeOf(v)}`);
}

/** `to_int`: ints as they are, floats truncated, chars to their code point. */
export function toInt(v: Value): bigint {
  if (typeof v === 'bigint') return v;
  if (v instanceof VChar) return BigInt(v.c.codePointAt(0) as number);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new VslError(`cannot convert ${formatFloat(v)} to an int`);
    const i = BigInt(Math.trunc(v));
    if (i < I64_MIN || i > I64_MAX) throw new VslError(`${formatFloat(v)} is out of the i64 range`);
    return i;
  }
  throw new VslError(`cannot convert ${typeOf(v)} to an int`);
}

/** `to_float`: ints rounded to the nearest double, floats as they are. */
export function toFloat(v: Value): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new VslError(`cannot convert ${typeOf(v)} to a float`);
}

/**
 * `parse_int(s[, radix])`: the whole string, an optional sign and digits of
 * the radix (2..=36, default 10); no blanks, prefixes, underscores or exponent.
 */
export function parseInt64(s: Value, radix: Value = 10n): bigint {
  const text = argText(s, 'the text');
  const r = argInt(radix, 'radix');
  if (r < 2n || r > 36n) throw new VslError(`radix must be in 2..=36, got ${r}`);
  const base = Number(r);
  let i = 0;
  const negative = text[0] === '-';
  if (text[0] === '-' || text[0] === '+') i = 1;
  if (i >= text.length) throw new VslError(`invalid number ${JSON.stringify(text)}`);
  let n = 0n;
  let tooLarge = false;
  for (; i < text.length; i++) {
    const d = parseInt(text[i] as string, 36);
    if (Number.isNaN(d) || d >= base) throw new VslError(`invalid number ${JSON.stringify(text)}`);
    // Past the i64 range, keep validating digits but stop growing the bigint.
    if (!tooLarge) n = n * r + BigInt(d);
    if (n > I64_MAX + 1n) tooLarge = true;
  }
  const v = negative ? -n : n;
  if (tooLarge || v < I64_MIN || v > I64_MAX) throw new VslError(`${text} is out of the i64 range`);
  return v;
}

const FLOAT_TEXT = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const FLOAT_SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;

/** `parse_float(s)`: decimal or exponent notation, or inf/infinity/nan; the whole string. */
export function parseFloat64(s: Value): number {
  const text = argText(s, 'the text');
  if (FLOAT_TEXT.test(text)) return Number(text);
  const special = FLOAT_SPECIAL.exec(text);
  if (special !== null) {
    if ((special[2] as string).toLowerCase() === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  throw new VslError(`invalid number ${JSON.stringify(text)}`);
}

/** Rounds half away from zero, like Rust's f64::round. */
function roundHalfAway(f: number): number {
  const t = Math.trunc(f); // keeps -0.0 for -0.4
  const frac = f - t; // exact for doubles
  if (frac >= 0.5) return t + 1;
  if (frac <= -0.5) return t - 1;
  return t;
}

/** floor, ceiling, round: floats give floats; an int is already whole. */
function floatOnly(f: (v: number) => number): MethodDef {
  return pure(0, 0, (_x, n: bigint | number) => (typeof n === 'bigint' ? n : f(n)));
}

function minMax(pickFirst: (c: number) => boolean): MethodDef {
  return pure(1, 1, (_x, a: bigint | number, [b]) => {
    if (typeof b !== 'bigint' && typeof b !== 'number') throw new VslError(`argument must be a number, got ${typeOf(b)}`);
    const c = compareNumbers(a, b);
    if (Number.isNaN(c)) return NaN;
    const chosen = pickFirst(c) ? a : b;
    // An int and a float give a float (like `+`).
    return typeof a === 'number' || typeof b === 'number' ? Number(chosen) : chosen;
  });
}

const NUMBER_METHODS: Table = new Map([
  [
    'abs',
    pure(0, 0, (_x, n: bigint | number) => (typeof n === 'bigint' ? checkInt(n < 0n ? -n : n) : Math.abs(n))),
  ],
  [
    'sign',
    pure(0, 0, (_x, n: bigint | number) => {
      if (typeof n === 'number' && Number.isNaN(n)) throw new VslError('NaN has no sign');
      return n > 0 ? 1n : n < 0 ? -1n : 0n;
    }),
  ],
  ['min', minMax((c) => c <= 0)],
  ['max', minMax((c) => c >= 0)],
  ['floor', floatOnly(Math.floor)],
  ['ceiling', floatOnly(Math.ceil)],
  ['round', floatOnly(roundHalfAway)],
  ['sqrt', pure(0, 0, (_x, n: bigint | number) => Math.sqrt(Number(n)))],
  ['is_nan', pure(0, 0, (_x, n: bigint | number) => typeof n === 'number' && Number.isNaN(n))],
  ['is_finite', pure(0, 0, (_x, n: bigint | number) => typeof n === 'bigint' || Number.isFinite(n))],
  [
    'is_infinite',
    pure(0, 0, (_x, n: bigint | number) => typeof n === 'number' && (n === Infinity || n === -Infinity)),
  ],
  ['is_zero', pure(0, 0, (_x, n: bigint | number) => n === 0n || n === 0)],
  ['is_odd', pure(0, 0, (_x, n: bigint | number) => typeof n === 'bigint' ? n % 2n !== 0n : failIntOnly())],
  ['is_even', pure(0, 0, (_x, n: bigint | number) => typeof n === 'bigint' ? n % 2n === 0n : failIntOnly())],
  ['to_int', pure(0, 0, (_x, n: Value) => toInt(n))],
  ['to_float', pure(0, 0, (_x, n: Value) => toFloat(n))],
]);

function failIntOnly(): never {
  throw new VslError('defined for ints only');
}

// ---------------------------------------------------------------- strings

/** Code point index of the first `needle` at or after code point `from`, or -1. */
function stringIndexOf(s: string, needle: string, from: number): number {
  const cs = chars(s);
  if (from > cs.length) return -1;
  const unitFrom = cs.slice(0, from).join('').length;
  const at = s.indexOf(needle, unitFrom);
  return at < 0 ? -1 : codePointLength(s.slice(0, at));
}

/** Every occurrence of `from` replaced; an empty pattern matches between code points. */
function replaceAll(s: string, from: string, to: string): string {
  if (from === '') return to + chars(s).join(to) + (s === '' ? '' : to);
  return s.split(from).join(to);
}

function splitString(s: string, args: Value[]): Value[] {
  if (args.length === 0) return s.split(/\s+/).filter((p) => p !== '');
  const sep = args[0];
  if (typeof sep === 'bigint' && args.length === 1) {
    // split(i): the two halves around a position (Rhai).
    const cs = chars(s);
    const at = argStart(sep, cs.length);
    return [cs.slice(0, at).join(''), cs.slice(at).join('')];
  }
  const t = argText(sep, 'separator');
  const parts: string[] = t === '' ? chars(s) : s.split(t);
  if (args.length < 2) return parts;
  const max = argInt(args[1], 'count');
  if (max < 1n) throw new VslError(`count must be at least 1, got ${max}`);
  if (BigInt(parts.length) <= max) return parts;
  const keep = Number(max) - 1;
  return [...parts.slice(0, keep), parts.slice(keep).join(t)];
}

function padString(s: string, [len, fill]: Value[]): string {
  const target = argCount(len, Number.MAX_SAFE_INTEGER);
  const f = argText(fill, 'padding');
  if (f === '') throw new VslError('padding must not be empty');
  const cs = chars(s);
  const fc = chars(f);
  // Guard against a script asking for an absurd string: the sandbox memory
  // limit would stop it anyway, but an error is clearer.
  if (target > 1 << 24) throw new VslError(`length ${target} is too large`);
  const start = cs.length;
  while (cs.length < target) cs.push(fc[(cs.length - start) % fc.length] as string);
  return cs.join('');
}

/** Pure string methods, also offered on text-like objects. */
const STRING_PURE: Table = new Map([
  ['len', pure(0, 0, (_x, s: string) => BigInt(codePointLength(s)))],
  ['is_empty', pure(0, 0, (_x, s: string) => s === '')],
  ['starts_with', pure(1, 1, (_x, s: string, [p]) => s.startsWith(argText(p)))],
  ['ends_with', pure(1, 1, (_x, s: string, [p]) => s.endsWith(argText(p)))],
  [
    'index_of',
    pure(1, 2, (_x, s: string, [needle, from]) => {
      const start = from === undefined ? 0 : clampStart(argInt(from, 'start'), codePointLength(s));
      return BigInt(stringIndexOf(s, argText(needle), start));
    }),
  ],
  [
    'sub_string',
    pure(1, 2, (_x, s: string, args) => {
      const cs = chars(s);
      const [a, b] = sliceBounds(args, cs.length);
      return cs.slice(a, b).join('');
    }),
  ],
  ['split', pure(0, 2, (_x, s: string, args) => splitString(s, args))],
  ['to_upper', pure(0, 0, (_x, s: string) => s.toUpperCase())],
  ['to_lower', pure(0, 0, (_x, s: string) => s.toLowerCase())],
  ['chars', pure(0, 0, (_x, s: string) => chars(s).map((c) => new VChar(c)))],
  [
    'get',
    pure(1, 1, (_x, s: string, [i]) => {
      const cs = chars(s);
      const at = resolveIndex(argInt(i, 'index'), cs.length);
      return at < 0 ? undefined : new VChar(cs[at] as string);
    }),
  ],
]);

/** For `index_of(x, from)`: negative counts from the end; out of range is clamped. */
function clampStart(from: bigint, length: number): number {
  const n = BigInt(length);
  const at = from < 0n ? from + n : from;
  if (at < 0n) return 0;
  return at > n ? length + 1 : Number(at);
}

/** In-place string methods: the new string is the receiver after the call. */
function stringEdit(min: number, max: number, f: (s: string, args: Value[]) => string): MethodDef {
  return inPlace(min, max, (_x, s: string, args) => [undefined, f(s, args)]);
}

const STRING_IN_PLACE: Table = new Map([
  ['trim', stringEdit(0, 0, (s) => s.trim())],
  ['make_upper', stringEdit(0, 0, (s) => s.toUpperCase())],
  ['make_lower', stringEdit(0, 0, (s) => s.toLowerCase())],
  ['replace', stringEdit(2, 2, (s, [a, b]) => replaceAll(s, argText(a, 'pattern'), argText(b, 'replacement')))],
  [
    'truncate',
    stringEdit(1, 1, (s, [n]) => {
      const k = argInt(n, 'length');
      const cs = chars(s);
      return k <= 0n ? '' : k >= BigInt(cs.length) ? s : cs.slice(0, Number(k)).join('');
    }),
  ],
  ['pad', stringEdit(2, 2, padString)],
  [
    'crop',
    stringEdit(1, 2, (s, args) => {
      const cs = chars(s);
      const [a, b] = sliceBounds(args, cs.length);
      return cs.slice(a, b).join('');
    }),
  ],
  ['remove', stringEdit(1, 1, (s, [p]) => {
    const t = argText(p, 'pattern');
    return t === '' ? s : s.split(t).join('');
  })],
  ['clear', stringEdit(0, 0, () => '')],
]);

// ---------------------------------------------------------------- chars

function oneChar(s: string, c: string): VChar {
  // Some case mappings give several code points ('ß' → "SS"); a char stays one.
  const cs = chars(s);
  return new VChar(cs.length === 1 ? (cs[0] as string) : c);
}

const CHAR_METHODS: Table = new Map([
  ['to_upper', pure(0, 0, (_x, c: VChar) => oneChar(c.c.toUpperCase(), c.c))],
  ['to_lower', pure(0, 0, (_x, c: VChar) => oneChar(c.c.toLowerCase(), c.c))],
  ['to_int', pure(0, 0, (_x, c: VChar) => toInt(c))],
  ['is_whitespace', pure(0, 0, (_x, c: VChar) => /^\s$/u.test(c.c))],
  ['is_digit', pure(0, 0, (_x, c: VChar) => c.c >= '0' && c.c <= '9')],
]);

// ---------------------------------------------------------------- arrays

function compareForSort(a: Value, b: Value, kind: string): number {
  if (typeOfSortable(a) !== kind || typeOfSortable(b) !== kind) {
    throw new VslError(`cannot sort mixed types (${typeOf(a)} and ${typeOf(b)})`);
  }
  const c = order(a, b);
  if (Number.isNaN(c)) throw new VslError('cannot sort NaN');
  return c;
}

/** The sort class of a value: numbers (ints and floats together), strings or chars. */
function typeOfSortable(v: Value): string {
  if (typeof v === 'bigint' || typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  if (v instanceof VChar) return 'char';
  throw new VslError(`cannot sort values of type ${typeOf(v)}`);
}

function sortArray(x: unknown, a: Value[], cmp: Value): void {
  if (cmp !== undefined) {
    // sort(f): f(a, b) returns an int, negative when a comes first.
    if (!(cmp instanceof VFn) || cmp.arity !== 2) throw new VslError('the comparator must be a function of 2 parameters');
    a.sort((p, q) => {
      const r = invoke(x, cmp, [copyValue(p), copyValue(q)]);
      if (typeof r !== 'bigint') throw new VslError(`the comparator must return an int, got ${typeOf(r)}`);
      return r < 0n ? -1 : r > 0n ? 1 : 0;
    });
    return;
  }
  if (a.length === 0) return;
  const kind = typeOfSortable(a[0]);
  // Check every element first so that a mixed array is refused even where the
  // sort would never compare the offending pair.
  for (const v of a) compareForSort(a[0], v, kind);
  a.sort((p, q) => compareForSort(p, q, kind));
}

function arrayIndexOf(x: unknown, a: Value[], [needle, from]: Value[]): bigint {
  const start = from === undefined ? 0 : clampStart(argInt(from, 'start'), a.length);
  for (let i = start; i < a.length; i++) {
    const hit = needle instanceof VFn ? predicate(x, needle, a[i], i) : eq(a[i], needle);
    if (hit) return BigInt(i);
  }
  return -1n;
}

function arrayPop(a: Value[], fromFront: boolean): Value {
  if (a.length === 0) return undefined;
  return fromFront ? a.shift() : a.pop();
}

const ARRAY_METHODS: Table = new Map([
  ['len', pure(0, 0, (_x, a: Value[]) => BigInt(a.length))],
  ['is_empty', pure(0, 0, (_x, a: Value[]) => a.length === 0)],
  ['index_of', pure(1, 2, (x, a: Value[], args) => arrayIndexOf(x, a, args))],
  [
    'get',
    pure(1, 1, (_x, a: Value[], [i]) => {
      const at = resolveIndex(argInt(i, 'index'), a.length);
      return at < 0 ? undefined : copyValue(a[at]);
    }),
  ],
  ['map', pure(1, 1, (x, a: Value[], [f]) => a.map((e, i) => callback(x, f, [copyValue(e)], i)))],
  [
    'filter',
    pure(1, 1, (x, a: Value[], [f]) => a.filter((e, i) => predicate(x, f, e, i)).map(copyValue)),
  ],
  [
    'reduce',
    pure(1, 2, (x, a: Value[], [f, init]) => {
      let acc = copyValue(init);
      a.forEach((e, i) => {
        acc = callback(x, f, [acc, copyValue(e)], i);
      });
      return acc;
    }),
  ],
  ['some', pure(1, 1, (x, a: Value[], [f]) => a.some((e, i) => predicate(x, f, e, i)))],
  ['all', pure(1, 1, (x, a: Value[], [f]) => a.every((e, i) => predicate(x, f, e, i)))],
  [
    'find',
    pure(1, 1, (x, a: Value[], [f]) => {
      for (let i = 0; i < a.length; i++) if (predicate(x, f, a[i], i)) return copyValue(a[i]);
      return undefined;
    }),
  ],
  [
    'extract',
    pure(1, 2, (_x, a: Value[], args) => {
      const [s, e] = sliceBounds(args, a.length);
      return a.slice(s, e).map(copyValue);
    }),
  ],
  ['join', pure(0, 1, (_x, a: Value[], [sep]) => a.map(toStr).join(sep === undefined ? '' : argText(sep, 'separator')))],
  [
    'push',
    inPlace(1, 1, (_x, a: Value[], [v]) => {
      a.push(copyValue(v));
      return [undefined, a];
    }),
  ],
  [
    'append',
    inPlace(1, 1, (_x, a: Value[], [b]) => {
      for (const v of argArray(b)) a.push(copyValue(v));
      return [undefined, a];
    }),
  ],
  [
    'insert',
    inPlace(2, 2, (_x, a: Value[], [i, v]) => {
      const n = BigInt(a.length);
      const k = argInt(i, 'index');
      const at = k < 0n ? (k + n < 0n ? 0n : k + n) : k > n ? n : k;
      a.splice(Number(at), 0, copyValue(v));
      return [undefined, a];
    }),
  ],
  ['pop', inPlace(0, 0, (_x, a: Value[]) => [arrayPop(a, false), a])],
  ['shift', inPlace(0, 0, (_x, a: Value[]) => [arrayPop(a, true), a])],
  [
    'remove',
    inPlace(1, 1, (_x, a: Value[], [i]) => {
      const at = resolveIndex(argInt(i, 'index'), a.length);
      return [at < 0 ? undefined : a.splice(at, 1)[0], a];
    }),
  ],
  [
    'truncate',
    inPlace(1, 1, (_x, a: Value[], [n]) => {
      const k = argInt(n, 'length');
      if (k <= 0n) a.length = 0;
      else if (k < BigInt(a.length)) a.length = Number(k);
      return [undefined, a];
    }),
  ],
  [
    'clear',
    inPlace(0, 0, (_x, a: Value[]) => {
      a.length = 0;
      return [undefined, a];
    }),
  ],
  [
    'reverse',
    inPlace(0, 0, (_x, a: Value[]) => {
      a.reverse();
      return [undefined, a];
    }),
  ],
  [
    'sort',
    inPlace(0, 1, (x, a: Value[], [f]) => {
      sortArray(x, a, f);
      return [undefined, a];
    }),
  ],
]);

// ---------------------------------------------------------------- maps

const MAP_METHODS: Table = new Map([
  ['len', pure(0, 0, (_x, m: VMap) => BigInt(m.size))],
  ['is_empty', pure(0, 0, (_x, m: VMap) => m.size === 0)],
  ['keys', pure(0, 0, (_x, m: VMap) => Array.from(m.keys()))],
  ['values', pure(0, 0, (_x, m: VMap) => Array.from(m.values(), copyValue))],
  ['get', pure(1, 1, (_x, m: VMap, [k]) => copyValue(m.get(argKey(k))))],
  [
    'set',
    inPlace(2, 2, (_x, m: VMap, [k, v]) => {
      m.set(argKey(k), copyValue(v));
      return [undefined, m];
    }),
  ],
  [
    'remove',
    inPlace(1, 1, (_x, m: VMap, [k]) => {
      const key = argKey(k);
      const old = m.get(key);
      m.delete(key);
      return [old, m];
    }),
  ],
  [
    'mixin',
    inPlace(1, 1, (_x, m: VMap, [other]) => {
      for (const [k, v] of argMap(other)) m.set(k, copyValue(v));
      return [undefined, m];
    }),
  ],
  [
    'clear',
    inPlace(0, 0, (_x, m: VMap) => {
      m.clear();
      return [undefined, m];
    }),
  ],
]);

// ---------------------------------------------------------------- ranges

function rangeLength(r: VRange): bigint {
  const step = r instanceof VStepRange ? r.step : 1n;
  const end = r.inclusive ? r.end + 1n : r.end;
  if (step > 0n) return end > r.start ? (end - r.start + step - 1n) / step : 0n;
  return r.start > end ? (r.start - end - step - 1n) / -step : 0n;
}

const RANGE_METHODS: Table = new Map([
  ['start', pure(0, 0, (_x, r: VRange) => r.start)],
  ['end', pure(0, 0, (_x, r: VRange) => r.end)],
  ['is_inclusive', pure(0, 0, (_x, r: VRange) => r.inclusive)],
  ['is_exclusive', pure(0, 0, (_x, r: VRange) => !r.inclusive)],
  ['len', pure(0, 0, (_x, r: VRange) => rangeLength(r))],
  ['is_empty', pure(0, 0, (_x, r: VRange) => rangeLength(r) === 0n)],
]);

// ---------------------------------------------------------------- every value

const UNIVERSAL_METHODS: Table = new Map([
  ['type_of', pure(0, 0, (_x, v: Value) => typeOf(v))],
  ['to_string', pure(0, 0, (_x, v: Value) => toStr(v))],
  ['to_debug', pure(0, 0, (_x, v: Value) => toDebug(v))],
  ['to_json', pure(0, 0, (_x, v: Value) => toJson(v))],
  // `c.contains(x)` is `x in c` for every container (SPEC §6.4).
  ['contains', pure(1, 1, (_x, c: Value, [v]) => contains(c, v))],
]);

/** Object types whose text a pure string method may read (SPEC §6.5). */
const TEXT_OBJECTS = new Set(['address', 'fqdn', 'identifier', 'ip4', 'ip6', 'code']);

/** The tables searched for a receiver, most specific first. */
function tablesFor(recv: Value): Table[] {
  if (typeof recv === 'string') return [STRING_PURE, STRING_IN_PLACE];
  if (isArray(recv)) return [ARRAY_METHODS];
  if (isMap(recv)) return [MAP_METHODS];
  if (typeof recv === 'bigint' || typeof recv === 'number') return [NUMBER_METHODS];
  if (recv instanceof VChar) return [CHAR_METHODS];
  if (recv instanceof VRange) return [RANGE_METHODS];
  return [];
}

const ALL_TABLES: Table[] = [
  UNIVERSAL_METHODS,
  STRING_PURE,
  STRING_IN_PLACE,
  ARRAY_METHODS,
  MAP_METHODS,
  NUMBER_METHODS,
  CHAR_METHODS,
  RANGE_METHODS,
];

function arityText(def: MethodDef): string {
  const n = def.min === def.max ? `${def.min}` : `${def.min} to ${def.max}`;
  return `${n} argument${def.max === 1 && def.min === 1 ? '' : 's'}`;
}

function runDef(def: MethodDef, x: unknown, recv: Value, name: string, args: Value[]): [Value, Value] {
  if (args.length < def.min || args.length > def.max) {
    throw fnError(name, `expected ${arityText(def)}, got ${args.length}`);
  }
  try {
    return def.run(x, recv, args);
  } catch (e) {
    if (e instanceof VslError && !fromCallback.has(e)) throw fnError(name, e.message);
    throw e;
  }
}

/**
 * `recv.name(args)` for built-in methods. Returns the call's result and the
 * receiver after the call (the same array or map when changed in place, a new
 * string for in-place string methods, `recv` itself for pure methods).
 */
/** Service methods (SPEC §7.12): I/O, reached through callMethodIo from async code only. */
const SERVICE_CALLS = new Set(['run', 'get', 'set', 'rm']);

export function callMethod(x: unknown, recv: Value, name: string, args: Value[]): [result: Value, self: Value] {
  const universal = UNIVERSAL_METHODS.get(name);
  if (universal !== undefined) return runDef(universal, x, recv, name, args);
  for (const table of tablesFor(recv)) {
    const def = table.get(name);
    if (def !== undefined) return runDef(def, x, recv, name, args);
  }
  if (recv instanceof VObject && TEXT_OBJECTS.has(recv.type)) {
    const def = STRING_PURE.get(name);
    if (def !== undefined) {
      const [result] = runDef(def, x, recv.text(), name, args);
      return [result, recv];
    }
  }
  if (recv instanceof VObject && recv.type === 'service' && SERVICE_CALLS.has(name)) {
    throw new VslError(`${name}: a service call does I/O, which only rules and actions (and the functions they call) can do`);
  }
  throw new VslError(`no method '${name}' for ${typeOf(recv)}`);
}

// ---------------------------------------------------------------- function-call style

function rangeOf(args: Value[]): VRange {
  const [a, b, step] = args;
  const start = argInt(a, 'start');
  const end = argInt(b, 'end');
  if (step === undefined) return new VRange(start, end, false);
  const s = argInt(step, 'step');
  if (s === 0n) throw new VslError('step must not be 0');
  return s === 1n ? new VRange(start, end, false) : new VStepRange(start, end, s);
}

/** Engine functions that are not methods, or whose function form differs. */
const GLOBALS: Map<string, { min: number; max: number; run: (args: Value[]) => Value }> = new Map([
  ['type_of', { min: 1, max: 1, run: ([v]: Value[]) => typeOf(v) }],
  ['to_string', { min: 1, max: 1, run: ([v]: Value[]) => toStr(v) }],
  ['to_debug', { min: 1, max: 1, run: ([v]: Value[]) => toDebug(v) }],
  ['to_json', { min: 1, max: 1, run: ([v]: Value[]) => toJson(v) }],
  ['range', { min: 2, max: 3, run: rangeOf }],
  ['parse_int', { min: 1, max: 2, run: ([s, r]: Value[]) => parseInt64(s, r ?? 10n) }],
  ['parse_float', { min: 1, max: 1, run: ([s]: Value[]) => parseFloat64(s) }],
  ['parse_json', { min: 1, max: 1, run: ([s]: Value[]) => parseJson(argText(s, 'the text')) }],
  ['to_int', { min: 1, max: 1, run: ([v]: Value[]) => toInt(v) }],
  ['to_float', { min: 1, max: 1, run: ([v]: Value[]) => toFloat(v) }],
]);

/** Whether `name(…)` with `arity` arguments is a built-in (for the compiler's name resolution). */
export function hasGlobalFunction(name: string, arity: number): boolean {
  const g = GLOBALS.get(name);
  if (g !== undefined && arity >= g.min && arity <= g.max) return true;
  if (arity < 1) return false;
  for (const table of ALL_TABLES) {
    const def = table.get(name);
    if (def !== undefined && arity - 1 >= def.min && arity - 1 <= def.max) return true;
  }
  return false;
}

/**
 * `name(args)`: an engine function, or the function form of a method applied
 * to a copy of the first argument (so in-place methods leave the caller's
 * value unchanged and only their result is returned).
 */
export function callGlobal(x: unknown, name: string, args: Value[]): Value {
  const g = GLOBALS.get(name);
  if (g !== undefined && args.length >= g.min && args.length <= g.max) {
    try {
      return g.run(args);
    } catch (e) {
      if (e instanceof VslError) throw fnError(name, e.message);
      throw e;
    }
  }
  if (args.length === 0) throw new VslError(`no function '${name}' without arguments`);
  return callMethod(x, copyValue(args[0]), name, args.slice(1))[0];
}
