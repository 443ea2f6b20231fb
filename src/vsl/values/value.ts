// The vSL value model (SPEC §2.2). This module, and every module under
// src/vsl/values/ and src/vsl/guest/, is pure ECMAScript: no Node APIs, no I/O. It runs both in
// Node (tests, host built-ins) and inside the QuickJS sandbox (bundled by
// scripts/build-guest.mjs), so host and guest share one implementation.
//
// Representation:
//   int    -> bigint (exact 64-bit range, checked on every operation)
//   float  -> number
//   bool   -> boolean
//   unit   -> undefined
//   char   -> VChar
//   string -> string (positions and lengths count code points)
//   array  -> Value[]            (mutable; copied on assignment/passing)
//   map    -> Map<string, Value> (insertion-ordered; copied likewise)
//   Fn     -> VFn
//   range  -> VRange
//   host objects (ip4, rg4, address, code, status, …) -> subclasses of VObject,
//            immutable.

export type Value =
  | bigint
  | number
  | boolean
  | undefined
  | string
  | VChar
  | Value[]
  | VMap
  | VFn
  | VRange
  | VObject;

export type VMap = Map<string, Value>;

export const I64_MIN = -(2n ** 63n);
export const I64_MAX = 2n ** 63n - 1n;

/** A single Unicode code point. */
export class VChar {
  constructor(readonly c: string) {}
  toString(): string {
    return this.c;
  }
}

/** A range `a..b` (end excluded) or `a..=b`. */
export class VRange {
  constructor(
    readonly start: bigint,
    readonly end: bigint,
    readonly inclusive: boolean,
  ) {}
}

/**
 * A function value: `Fn("name")`, a closure, or a directive body. `impl` is the
 * compiled function; compiled functions take the evaluation context first
 * (`impl(x, ...args)`), and `this` for method-style calls.
 */
export class VFn {
  constructor(
    readonly name: string,
    readonly impl: (...args: any[]) => any,
    readonly arity: number,
  ) {}
}

/**
 * Base of every host object type (ip4, ip6, rg4, rg6, address, fqdn, regex,
 * identifier, code, status, rule/action, service, timestamp, credentials,
 * context, message). Objects are immutable. `type` is what `type_of` reports.
 */
export abstract class VObject {
  abstract readonly type: string;
  /** to_string() */
  abstract text(): string;
  /** to_debug(); defaults to the type and text. */
  debug(): string {
    return `${this.type}(${JSON.stringify(this.text())})`;
  }
  /** `==` with any other value (SPEC §6.3). Never throws. */
  abstract equals(other: Value): boolean;
  /** `x in this` (SPEC §6.4). Types that are not containers throw. */
  contains(_x: Value): boolean {
    throw new VslError(`cannot test membership in ${this.type}`);
  }
  /** `this.name` (SPEC §6.5, §7.3). Unknown properties throw. */
  getProp(name: string): Value {
    throw new VslError(`${this.type} has no property '${name}'`);
  }
}

/**
 * A catchable runtime error (SPEC §2.9). `value` is what `catch (err)` binds:
 * for built-in and engine errors, the message string prefixed with the
 * function name (`"dns::lookup: no record for x.test"`); for `throw e`, e.
 */
export class VslError extends Error {
  constructor(
    message: string,
    readonly value: Value = message,
  ) {
    super(message);
    this.name = 'VslError';
  }
}

/**
 * An uncatchable failure: resource limits (call depth, memory, stack), the
 * rule timeout, or an internal fault (SPEC §5.7, §13). Compiled `catch`
 * blocks rethrow it.
 */
export class VslFatal extends Error {
  constructor(
    message: string,
    readonly reason: 'timeout' | 'memory' | 'stack' | 'depth' | 'internal' | 'too_early',
  ) {
    super(message);
    this.name = 'VslFatal';
  }
}

/** `type_of(v)` (SPEC §2.2); host objects report their own type. */
export function typeOf(v: Value): string {
  switch (typeof v) {
    case 'bigint':
      return 'i64';
    case 'number':
      return 'f64';
    case 'boolean':
      return 'bool';
    case 'undefined':
      return '()';
    case 'string':
      return 'string';
  }
  if (v instanceof VChar) return 'char';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'map';
  if (v instanceof VFn) return 'Fn';
  if (v instanceof VRange) return v.inclusive ? 'range=' : 'range';
  if (v instanceof VObject) return v.type;
  return 'unknown';
}

export function isMap(v: Value): v is VMap {
  return v instanceof Map;
}

export function isArray(v: Value): v is Value[] {
  return Array.isArray(v);
}

/** Prefixes an error message with the function that raised it, once. */
export function fnError(fn: string, message: string): VslError {
  return new VslError(message.startsWith(`${fn}: `) ? message : `${fn}: ${message}`);
}
