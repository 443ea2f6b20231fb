// vSL operators and the value plumbing the compiled code calls (SPEC §2.2,
// §2.5, §2.6, §2.7, §6.3, §6.4). Pure ECMAScript, see value.ts.
//
// Every failure is a catchable VslError with a plain message; built-in
// methods (methods.ts) prefix these with their own name.

import { toStr } from '../values/format.js';
import { I64_MAX, I64_MIN, VChar, VFn, VObject, VRange, VslError, isArray, isMap, typeOf, type VMap, type Value } from '../values/value.js';

/**
 * `range(a, b, step)` with a step other than 1 (SPEC §2.5). It is a VRange for
 * `type_of` ("range") and for code that only knows VRange, but iteration and
 * membership honour the step: `range(10, 0, -3)` yields 10, 7, 4, 1.
 */
export class VStepRange extends VRange {
  constructor(
    start: bigint,
    end: bigint,
    readonly step: bigint,
  ) {
    super(start, end, false);
  }
}

// ---------------------------------------------------------------- types

export { typeOf };

/** A condition or a `&& || !` operand: bools only, no truthiness (SPEC §2.2). */
export function asBool(v: Value, what: string): boolean {
  if (typeof v === 'boolean') return v;
  throw new VslError(`${what} must be a bool, got ${typeOf(v)}`);
}

/** Value semantics (SPEC §2.2): arrays and maps are copied deeply; the rest is immutable. */
export function copyValue(v: Value): Value {
  if (Array.isArray(v)) return v.map(copyValue);
  if (v instanceof Map) {
    const m: VMap = new Map();
    for (const [k, e] of v) m.set(k, copyValue(e));
    return m;
  }
  return v;
}

// ---------------------------------------------------------------- numbers

function isNumber(v: Value): v is bigint | number {
  return typeof v === 'bigint' || typeof v === 'number';
}

/** Checks that an exact int result still fits in i64 (SPEC §2.7). */
export function checkInt(r: bigint): bigint {
  if (r < I64_MIN || r > I64_MAX) throw new VslError('arithmetic overflow');
  return r;
}

function operandError(op: string, a: Value, b: Value): VslError {
  return new VslError(`cannot apply '${op}' to ${typeOf(a)} and ${typeOf(b)}`);
}

/** Applies a numeric operator: exact on two ints, IEEE as soon as a float is involved. */
function numeric(
  op: string,
  a: Value,
  b: Value,
  onInts: (x: bigint, y: bigint) => bigint,
  onFloats: (x: number, y: number) => number,
): Value {
  if (typeof a === 'bigint' && typeof b === 'bigint') return onInts(a, b);
  if (isNumber(a) && isNumber(b)) return onFloats(Number(a), Number(b));
  throw operandError(op, a, b);
}

function intDivisor(y: bigint): bigint {
  if (y === 0n) throw new VslError('division by zero');
  return y;
}

/** int ** int: exact; large exponents are refused before computing them. */
function intPow(base: bigint, exp: bigint): bigint {
  if (exp < 0n) throw new VslError('cannot raise an int to a negative power');
  if (base === 0n || base === 1n) return exp === 0n ? 1n : base;
  if (base === -1n) return exp % 2n === 0n ? 1n : -1n;
  // |base| >= 2, so 2**64 and beyond cannot fit: no need to build them.
  if (exp > 63n) throw new VslError('arithmetic overflow');
  return checkInt(base ** exp);
}

/** `+` (SPEC §2.6): numbers, string concatenation, char+char, array+array, map+map. */
export function add(a: Value, b: Value): Value {
  if (typeof a === 'bigint' && typeof b === 'bigint') return checkInt(a + b);
  if (isNumber(a) && isNumber(b)) return Number(a) + Number(b);
  if (typeof a === 'string' || typeof b === 'string') return toStr(a) + toStr(b);
  if (a instanceof VChar && b instanceof VChar) return a.c + b.c;
  if (isArray(a) && isArray(b)) return a.concat(b).map(copyValue);
  if (isMap(a) && isMap(b)) {
    const m = copyValue(a) as VMap;
    for (const [k, e] of b) m.set(k, copyValue(e));
    return m;
  }
  throw new VslError(`cannot add ${typeOf(a)} and ${typeOf(b)}`);
}

export function sub(a: Value, b: Value): Value {
  return numeric('-', a, b, (x, y) => checkInt(x - y), (x, y) => x - y);
}

export function mul(a: Value, b: Value): Value {
  return numeric('*', a, b, (x, y) => checkInt(x * y), (x, y) => x * y);
}

/** int / int truncates toward zero; `MIN / -1` overflows; floats follow IEEE. */
export function div(a: Value, b: Value): Value {
  return numeric('/', a, b, (x, y) => checkInt(x / intDivisor(y)), (x, y) => x / y);
}

/**
 * `%` takes the sign of the dividend, for ints and floats alike. `MIN % -1` is
 * 0, the exact result (only the quotient of that pair overflows).
 */
export function mod(a: Value, b: Value): Value {
  return numeric('%', a, b, (x, y) => x % intDivisor(y), (x, y) => x % y);
}

export function pow(a: Value, b: Value): Value {
  return numeric('**', a, b, intPow, (x, y) => Math.pow(x, y));
}

function shiftOperands(op: string, a: Value, b: Value): [bigint, bigint] {
  if (typeof a !== 'bigint' || typeof b !== 'bigint') throw operandError(op, a, b);
  if (b < 0n || b > 63n) throw new VslError(`shift count must be in 0..=63, got ${b}`);
  return [a, b];
}

/**
 * `<<` on ints. The result must still be the exact product a * 2^n: a shift
 * that pushes significant bits past the sign bit (changing the value's sign or
 * losing bits) is `arithmetic overflow` rather than a silent wrap, like the
 * other int operators (SPEC §2.7). So `1 << 62` is fine, `1 << 63` overflows,
 * and `-1 << 63` is i64 MIN.
 */
export function shl(a: Value, b: Value): Value {
  const [x, n] = shiftOperands('<<', a, b);
  return checkInt(x << n);
}

/** `>>` on ints: arithmetic (sign-extending), i.e. floor(a / 2^n). */
export function shr(a: Value, b: Value): Value {
  const [x, n] = shiftOperands('>>', a, b);
  return x >> n;
}

// Bigints inside the i64 range behave as two's complement under & | ^, so
// results stay in range.
export function band(a: Value, b: Value): Value {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a & b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a && b;
  throw operandError('&', a, b);
}

export function bor(a: Value, b: Value): Value {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a | b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a || b;
  throw operandError('|', a, b);
}

export function bxor(a: Value, b: Value): Value {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a ^ b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a !== b;
  throw operandError('^', a, b);
}

/** Unary `-`: `-MIN` overflows. */
export function neg(a: Value): Value {
  if (typeof a === 'bigint') return checkInt(-a);
  if (typeof a === 'number') return -a;
  throw new VslError(`cannot negate ${typeOf(a)}`);
}

/** Unary `+`: numbers only, unchanged. */
export function plus(a: Value): Value {
  if (isNumber(a)) return a;
  throw new VslError(`cannot apply unary '+' to ${typeOf(a)}`);
}

/** `!`: bools only (`not` is `!=`, SPEC §2.1). */
export function not(a: Value): boolean {
  return !asBool(a, "operand of '!'");
}

// ---------------------------------------------------------------- equality

/** int vs float, exactly: 2^53 + 1 does not equal the float 2^53. */
function intEqualsFloat(i: bigint, f: number): boolean {
  return Number.isInteger(f) && BigInt(f) === i;
}

function objectEquals(o: VObject, other: Value): boolean {
  try {
    return o.equals(other);
  } catch (e) {
    // equals() must not throw; if one does anyway, the values are unequal.
    if (e instanceof VslError) return false;
    throw e;
  }
}

/** `==` (SPEC §2.6, §6.3). Never a runtime error. */
export function eq(a: Value, b: Value): boolean {
  if (a instanceof VObject || b instanceof VObject) {
    // Some relations are defined from one side only (a regex matching an
    // address), so either side may say yes.
    if (a instanceof VObject && objectEquals(a, b)) return true;
    return b instanceof VObject && objectEquals(b, a);
  }
  switch (typeof a) {
    case 'bigint':
      if (typeof b === 'number') return intEqualsFloat(a, b);
      return a === b;
    case 'number':
      if (typeof b === 'bigint') return intEqualsFloat(b, a);
      return a === b;
    case 'string':
      if (b instanceof VChar) return a === b.c;
      return a === b;
    case 'boolean':
    case 'undefined':
      return a === b;
  }
  if (a instanceof VChar) {
    if (b instanceof VChar) return a.c === b.c;
    return typeof b === 'string' && a.c === b;
  }
  if (isArray(a)) {
    if (!isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false;
    return true;
  }
  if (isMap(a)) {
    if (!isMap(b) || a.size !== b.size) return false;
    // Maps are compared as sets of keys; insertion order does not matter.
    for (const [k, e] of a) if (!b.has(k) || !eq(e, b.get(k))) return false;
    return true;
  }
  if (a instanceof VFn) return b instanceof VFn && a.name === b.name;
  if (a instanceof VRange) return b instanceof VRange && rangeEquals(a, b);
  return false;
}

function rangeStep(r: VRange): bigint {
  return r instanceof VStepRange ? r.step : 1n;
}

function rangeEquals(a: VRange, b: VRange): boolean {
  return (
    a.start === b.start &&
    a.end === b.end &&
    a.inclusive === b.inclusive &&
    rangeStep(a) === rangeStep(b)
  );
}

export function ne(a: Value, b: Value): boolean {
  return !eq(a, b);
}

// ---------------------------------------------------------------- ordering

/**
 * Compares strings in Unicode code point order. JavaScript's `<` compares
 * UTF-16 code units, which puts U+E000..U+FFFF after astral characters; the
 * first differing unit is remapped so surrogates sort above the BMP.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x += x >= 0xe000 ? -0x800 : 0x2000;
        y += y >= 0xe000 ? -0x800 : 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Orders an int against a float exactly; NaN when unordered. */
function compareIntFloat(i: bigint, f: number): number {
  if (Number.isNaN(f)) return NaN;
  if (f === Infinity) return -1;
  if (f === -Infinity) return 1;
  const floor = Math.floor(f);
  const fb = BigInt(floor);
  if (i !== fb) return i < fb ? -1 : 1;
  return floor === f ? 0 : -1;
}

/** Orders two numbers; NaN when unordered (a float NaN is involved). */
export function compareNumbers(a: bigint | number, b: bigint | number): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'number' && typeof b === 'number') {
    if (a < b) return -1;
    if (a > b) return 1;
    return a === b ? 0 : NaN;
  }
  if (typeof a === 'bigint') return compareIntFloat(a, b as number);
  return -compareIntFloat(b as bigint, a);
}

/** The order behind `< <= > >=` (SPEC §2.6); NaN when unordered. */
export function order(a: Value, b: Value): number {
  if (isNumber(a) && isNumber(b)) return compareNumbers(a, b);
  if (typeof a === 'string' && typeof b === 'string') return compareCodePoints(a, b);
  if (a instanceof VChar && b instanceof VChar) return compareCodePoints(a.c, b.c);
  throw new VslError(`cannot compare ${typeOf(a)} with ${typeOf(b)}`);
}

export function lt(a: Value, b: Value): boolean {
  return order(a, b) < 0;
}
export function le(a: Value, b: Value): boolean {
  return order(a, b) <= 0;
}
export function gt(a: Value, b: Value): boolean {
  return order(a, b) > 0;
}
export function ge(a: Value, b: Value): boolean {
  return order(a, b) >= 0;
}

// ---------------------------------------------------------------- membership

/** Object types whose text stands for a string where a built-in expects one (SPEC §6.5). */
const TEXT_OBJECT_TYPES = new Set(['address', 'fqdn', 'identifier', 'ip4', 'ip6', 'code']);

/** The string a built-in sees for `v`, or undefined when v is not text-like. */
export function textOf(v: Value): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof VChar) return v.c;
  if (v instanceof VObject && TEXT_OBJECT_TYPES.has(v.type)) return v.text();
  return undefined;
}

/** Object types an array looks into for `x in array` (SPEC §6.4). */
const NESTED_CONTAINER_TYPES = new Set(['rg4', 'rg6', 'regex']);

function elementHolds(e: Value, x: Value): boolean {
  if (eq(e, x)) return true;
  if (isArray(e)) return arrayHolds(e, x);
  if (e instanceof VObject && NESTED_CONTAINER_TYPES.has(e.type)) {
    try {
      return e.contains(x);
    } catch (err) {
      // A network next to a non-IP value: simply not a match.
      if (err instanceof VslError) return false;
      throw err;
    }
  }
  return false;
}

function arrayHolds(a: Value[], x: Value): boolean {
  for (const e of a) if (elementHolds(e, x)) return true;
  return false;
}

/** `x in container`, same as `container.contains(x)` (SPEC §6.4). */
export function contains(container: Value, x: Value): boolean {
  if (typeof container === 'string') {
    const t = textOf(x);
    if (t === undefined) throw new VslError(`cannot test membership of ${typeOf(x)} in string`);
    return container.indexOf(t) >= 0;
  }
  if (isArray(container)) return arrayHolds(container, x);
  if (isMap(container)) {
    // "a key equal to the text of x": strings, chars and any object's text.
    const key = x instanceof VObject ? x.text() : textOf(x);
    if (key === undefined) throw new VslError(`cannot test membership of ${typeOf(x)} in map`);
    return container.has(key);
  }
  if (container instanceof VObject) return container.contains(x);
  if (container instanceof VRange) {
    if (typeof x !== 'bigint') throw new VslError(`cannot test membership of ${typeOf(x)} in range`);
    return rangeHolds(container, x);
  }
  throw new VslError(`cannot test membership in ${typeOf(container)}`);
}

function rangeHolds(r: VRange, x: bigint): boolean {
  const step = rangeStep(r);
  if (step > 0n) {
    const below = r.inclusive ? x <= r.end : x < r.end;
    return x >= r.start && below && (x - r.start) % step === 0n;
  }
  return x <= r.start && x > r.end && (r.start - x) % -step === 0n;
}

// ---------------------------------------------------------------- ranges and loops

/** `a..b` and `a..=b`. */
export function range(a: Value, b: Value, inclusive: boolean): VRange {
  if (typeof a !== 'bigint' || typeof b !== 'bigint') {
    throw new VslError(`range bounds must be ints, got ${typeOf(a)} and ${typeOf(b)}`);
  }
  return new VRange(a, b, inclusive);
}

function* rangeValues(r: VRange): Generator<Value> {
  const step = rangeStep(r);
  if (step > 0n) {
    for (let i = r.start; r.inclusive ? i <= r.end : i < r.end; i += step) yield i;
  } else {
    for (let i = r.start; i > r.end; i += step) yield i;
  }
}

function* stringChars(s: string): Generator<Value> {
  for (const c of s) yield new VChar(c);
}

/** What `for x in v` walks (SPEC §2.5): a copy of an array, a range, or a string's chars. */
export function iterate(v: Value): Iterable<Value> {
  if (isArray(v)) return copyValue(v) as Value[];
  if (v instanceof VRange) return rangeValues(v);
  if (typeof v === 'string') return stringChars(v);
  if (isMap(v)) throw new VslError('maps are not iterable; use keys() or values()');
  throw new VslError(`cannot iterate over ${typeOf(v)}`);
}

// ---------------------------------------------------------------- indexing and properties

/**
 * Resolves an index for a sequence of `length` items; negative counts from the
 * end. Returns -1 when out of range.
 */
export function resolveIndex(idx: bigint, length: number): number {
  const n = BigInt(length);
  const i = idx < 0n ? idx + n : idx;
  return i < 0n || i >= n ? -1 : Number(i);
}

function indexOperand(idx: Value, what: string): bigint {
  if (typeof idx !== 'bigint') throw new VslError(`${what} index must be an int, got ${typeOf(idx)}`);
  return idx;
}

function mapKey(idx: Value): string {
  const key = textOf(idx);
  if (key === undefined) throw new VslError(`map index must be a string, got ${typeOf(idx)}`);
  return key;
}

/**
 * `obj[idx]` and, with `optional`, `obj?[idx]`. Array elements and map
 * values are returned as stored (not copied), so the compiler can chain
 * writes (`a[0][1] = v`); it copies when it binds the result to a variable.
 */
export function getIndex(obj: Value, idx: Value, optional = false): Value {
  if (isArray(obj)) {
    const i = resolveIndex(indexOperand(idx, 'array'), obj.length);
    if (i < 0) throw new VslError('index out of range');
    return obj[i];
  }
  if (typeof obj === 'string') {
    const chars = Array.from(obj);
    const i = resolveIndex(indexOperand(idx, 'string'), chars.length);
    if (i < 0) throw new VslError('index out of range');
    return new VChar(chars[i] as string);
  }
  if (isMap(obj)) return obj.get(mapKey(idx));
  if (obj === undefined && optional) return undefined;
  throw new VslError(`cannot index ${typeOf(obj)}`);
}

/**
 * `obj[idx] = v`. Returns the updated container: arrays and maps are changed
 * in place (and returned), strings are immutable in JavaScript so a new string
 * comes back. The stored value is a copy (value semantics).
 */
export function setIndex(obj: Value, idx: Value, v: Value): Value {
  if (isArray(obj)) {
    const i = resolveIndex(indexOperand(idx, 'array'), obj.length);
    if (i < 0) throw new VslError('index out of range');
    obj[i] = copyValue(v);
    return obj;
  }
  if (typeof obj === 'string') {
    const chars = Array.from(obj);
    const i = resolveIndex(indexOperand(idx, 'string'), chars.length);
    if (i < 0) throw new VslError('index out of range');
    const c = v instanceof VChar ? v.c : typeof v === 'string' && Array.from(v).length === 1 ? v : undefined;
    if (c === undefined) throw new VslError(`a string element must be set to a char, got ${typeOf(v)}`);
    chars[i] = c;
    return chars.join('');
  }
  if (isMap(obj)) {
    obj.set(mapKey(idx), copyValue(v));
    return obj;
  }
  throw new VslError(`cannot index ${typeOf(obj)}`);
}

/** Address properties lifted over arrays of addresses (SPEC §6.5). */
const ARRAY_PROPERTIES: Record<string, string> = { local_parts: 'local_part', domains: 'domain' };

/**
 * `obj.name` and `obj?.name`: a map key (`()` when absent), a host object's
 * property, or `.local_parts`/`.domains` of an array of addresses. A property
 * of `()` without `?.` is an error (SPEC §2.8).
 */
export function getProp(obj: Value, name: string, optional: boolean): Value {
  if (isMap(obj)) return obj.get(name);
  if (obj instanceof VObject) return obj.getProp(name);
  if (obj === undefined && optional) return undefined;
  if (isArray(obj) && Object.prototype.hasOwnProperty.call(ARRAY_PROPERTIES, name)) {
    const single = ARRAY_PROPERTIES[name] as string;
    return obj.map((e) => {
      if (!(e instanceof VObject) || e.type !== 'address') {
        throw new VslError(`${name}: every element must be an address, got ${typeOf(e)}`);
      }
      return e.getProp(single);
    });
  }
  throw new VslError(`cannot read property '${name}' of ${typeOf(obj)}`);
}

/** `m.name = v`: maps only (host objects are immutable); creates the key. Returns the map. */
export function setProp(obj: Value, name: string, v: Value): Value {
  if (isMap(obj)) {
    obj.set(name, copyValue(v));
    return obj;
  }
  throw new VslError(`cannot set property '${name}' of ${typeOf(obj)}`);
}

// ---------------------------------------------------------------- switch

/** Type-strict equality of a switch value and a case literal (SPEC §2.5). */
export function matchCase(value: Value, pattern: Value): boolean {
  if (typeof value !== typeof pattern) return false;
  if (typeof value !== 'object') return value === pattern;
  if (value instanceof VChar) return pattern instanceof VChar && value.c === pattern.c;
  if (isArray(value)) {
    if (!isArray(pattern) || value.length !== pattern.length) return false;
    for (let i = 0; i < value.length; i++) if (!matchCase(value[i], pattern[i])) return false;
    return true;
  }
  if (isMap(value)) {
    if (!isMap(pattern) || value.size !== pattern.size) return false;
    for (const [k, e] of value) if (!pattern.has(k) || !matchCase(e, pattern.get(k))) return false;
    return true;
  }
  return typeOf(value) === typeOf(pattern) && eq(value, pattern);
}

/** A `from..to` / `from..=to` switch arm: ints only (SPEC §2.5). */
export function matchRange(value: Value, from: Value, to: Value, inclusive: boolean): boolean {
  if (typeof value !== 'bigint' || typeof from !== 'bigint' || typeof to !== 'bigint') return false;
  return value >= from && (inclusive ? value <= to : value < to);
}
