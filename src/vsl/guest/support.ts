// Helpers that compiled vSL code calls besides operators and methods: value
// sharing (freeze/thaw), errors and their catchability, function values,
// directives. Pure; runs in the guest.

import { copyValue, typeOf } from './ops.js';
import { toStr } from '../values/format.js';
import { VChar, VFn, VObject, VslError, VslFatal, type Value, type VMap } from '../values/value.js';

// ---------------------------------------------------------------- sharing
//
// Value semantics (SPEC §2.2) without copying on every read: constants and
// exports are frozen when stored; mutating a frozen array or map first takes
// a private shallow copy ("thaw"). Locals are copied when assigned from
// another variable, so only shared values are ever frozen.

const frozenMaps = new WeakSet<Map<string, Value>>();

export function freeze(v: Value): Value {
  if (Array.isArray(v)) {
    if (!Object.isFrozen(v)) {
      for (const e of v) freeze(e);
      Object.freeze(v);
    }
  } else if (v instanceof Map) {
    if (!frozenMaps.has(v)) {
      for (const e of v.values()) freeze(e);
      frozenMaps.add(v);
    }
  }
  return v;
}

export function isFrozenValue(v: Value): boolean {
  return (Array.isArray(v) && Object.isFrozen(v)) || (v instanceof Map && frozenMaps.has(v));
}

/** A mutable version of `v` (a shallow copy if it is shared). */
export function thaw(v: Value): Value {
  if (Array.isArray(v) && Object.isFrozen(v)) return v.slice();
  if (v instanceof Map && frozenMaps.has(v)) return new Map(v);
  return v;
}

export function copy(v: Value): Value {
  return isFrozenValue(v) ? v : copyValue(v);
}

export function map(entries: Array<[string, Value]>): VMap {
  return new Map(entries);
}

export function char(c: string): VChar {
  return new VChar(c);
}

// ---------------------------------------------------------------- errors

/** Only script-level runtime errors are catchable (SPEC §2.9); limits and internal faults are not. */
export function catchable(e: unknown): boolean {
  return e instanceof VslError;
}

export function caught(e: unknown): Value {
  return (e as VslError).value;
}

export function throwValue(v: Value): never {
  const e = new VslError(v === undefined ? '()' : toStr(v), v);
  // `throw;` throws () (SPEC §2.9); VslError's default value would be the message.
  if (v === undefined) (e as { value: Value }).value = undefined;
  throw e;
}

export function tooDeep(_x: unknown): never {
  throw new VslFatal('call depth exceeded: more than 64 nested calls', 'depth');
}

// ---------------------------------------------------------------- functions
//
// A function value's `impl` never returns a promise unless the function does
// I/O; those are listed in `ioFunctions` and only rules, actions and the
// functions they call (async code) may call them. A function that may do I/O
// only through pointers or services has a second, async variant in
// `asyncVariants` (see src/vsl/compiler.ts, "Asynchrony").

type Compiled = (x: unknown, self: unknown, ...a: Value[]) => Value;
type Impl = (x: unknown, ...a: Value[]) => Value;

const ioFunctions = new WeakSet<VFn>();
const asyncVariants = new WeakMap<VFn, Impl>();

/** Whether calling `f` does I/O (returns a promise): refused outside async code. */
export function doesIo(f: VFn): boolean {
  return ioFunctions.has(f);
}

function checkCall(f: Value, args: Value[]): VFn {
  if (!(f instanceof VFn)) throw new VslError(`cannot call a value of type ${typeOf(f)}`);
  if (f.arity >= 0 && f.arity !== args.length) {
    throw new VslError(`function '${f.name}' takes ${f.arity} argument(s), got ${args.length}`);
  }
  return f;
}

/** Calls a function value from async code (the caller awaits the result). */
export function callPtr(x: unknown, f: Value, args: Value[]): Value | Promise<Value> {
  const fn = checkCall(f, args);
  return (asyncVariants.get(fn) ?? fn.impl)(x, ...args);
}

/** Calls a function value from plain code (load time, callbacks): I/O functions are refused before they start. */
export function callPtrSync(x: unknown, f: Value, args: Value[]): Value {
  const fn = checkCall(f, args);
  if (ioFunctions.has(fn)) throw ioRefused(fn.name);
  return fn.impl(x, ...args);
}

function ioRefused(name: string): VslError {
  return new VslError(`cannot call '${name}' here: it does I/O, which only rules and actions (and the functions they call) can do`);
}

// ---------------------------------------------------------------- async code as generators
//
// Async vSL functions are generator functions (src/vsl/compiler.ts,
// "Asynchrony"): they yield the promises of host I/O and delegate to each
// other with yield*. Whoever starts one drives it: synchronously while it
// yields nothing, through promises once it waits for I/O.

const generatorPrototype = Object.getPrototypeOf(Object.getPrototypeOf((function* () {})())) as object;

export function isGenerator(v: unknown): v is Generator<unknown, Value, unknown> {
  return typeof v === 'object' && v !== null && generatorPrototype.isPrototypeOf(v);
}

/** `yield* settle(v)`: the value of a call that may have returned a promise or a generator. */
export function* settle(v: unknown): Generator<unknown, Value, unknown> {
  if (v instanceof Promise) return (yield v) as Value;
  if (isGenerator(v)) return yield* v;
  return v as Value;
}

/** Runs a generator to its value: synchronously if it never waits, else a promise of it. */
export function drive(gen: Generator<unknown, Value, unknown>): Value | Promise<Value> {
  let r = gen.next();
  while (!r.done) {
    if (r.value instanceof Promise) return driveAsync(gen, r.value);
    r = gen.next(r.value);
  }
  return r.value;
}

async function driveAsync(gen: Generator<unknown, Value, unknown>, waiting: Promise<unknown>): Promise<Value> {
  for (;;) {
    // The I/O outcome goes back into the generator: a value, or an error the script may catch.
    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await waiting };
    } catch (error) {
      outcome = { ok: false, error };
    }
    let r = outcome.ok ? gen.next(outcome.value) : gen.throw(outcome.error);
    while (!r.done && !(r.value instanceof Promise)) r = gen.next(r.value);
    if (r.done) return r.value;
    waiting = r.value as Promise<unknown>;
  }
}

/** A closure: compiled as `fn(x, $this, ...params)`; `io` when compiled async. */
export function closure(name: string, fn: Compiled, arity: number, io = false): VFn {
  const f = new VFn(name, (x: unknown, ...a: Value[]) => fn(x, undefined, ...a), arity);
  if (io) ioFunctions.add(f);
  return f;
}

/**
 * `Fn("name")`: dispatches by the number of arguments to the file's
 * overloads, each `[arity, plain variant, async variant, does I/O]`.
 */
export function fnPtr(name: string, overloads: Array<[number, Compiled, Compiled, boolean]>): VFn {
  if (overloads.length === 1) {
    const [arity, plain, variant, io] = overloads[0]!;
    const f = new VFn(name, (x: unknown, ...a: Value[]) => plain(x, undefined, ...a), arity);
    if (io) ioFunctions.add(f);
    if (variant !== plain) asyncVariants.set(f, (x: unknown, ...a: Value[]) => variant(x, undefined, ...a));
    return f;
  }
  const pick = (n: number) => {
    const o = overloads.find(([arity]) => arity === n);
    if (!o) throw new VslError(`function '${name}' has no overload with ${n} argument(s)`);
    return o;
  };
  const f = new VFn(name, (x: unknown, ...a: Value[]) => {
    const [, plain, , io] = pick(a.length);
    if (io) throw ioRefused(name);
    return plain(x, undefined, ...a);
  }, -1);
  asyncVariants.set(f, (x: unknown, ...a: Value[]) => pick(a.length)[2](x, undefined, ...a));
  return f;
}

// ---------------------------------------------------------------- directives

/** A `rule` or `action` (SPEC §3.2): a value that can be stored and placed in the stage map. */
export class Directive extends VObject {
  constructor(
    readonly type: 'rule' | 'action',
    readonly name: string,
    readonly fn: VFn,
    /** Position id of the directive's name. */
    readonly posId: number,
    readonly description: string | undefined,
  ) {
    super();
  }
  text(): string {
    return `${this.type} "${this.name}"`;
  }
  equals(other: Value): boolean {
    return other === this;
  }
  override getProp(name: string): Value {
    if (name === 'name') return this.name;
    if (name === 'description') return this.description;
    return super.getProp(name);
  }
}

export function directive(_x: unknown, kind: 'rule' | 'action', name: string, body: Value, posId: number): Directive {
  let fn: Value = body;
  let description: string | undefined;
  if (body instanceof Map) {
    fn = body.get('evaluate');
    const d = body.get('description');
    if (typeof d === 'string') description = d;
  }
  if (!(fn instanceof VFn)) {
    throw new VslError(`${kind} "${name}": the body must be a function (|| …) or a map with an 'evaluate' function`);
  }
  if (fn.arity > 0) throw new VslError(`${kind} "${name}": the body takes no parameters`);
  // The stage loop awaits: a body with an async variant runs that one.
  const variant = asyncVariants.get(fn);
  if (variant) fn = new VFn(fn.name, variant, fn.arity);
  return new Directive(kind, name, fn, posId, description);
}

/** `a += b`: push for arrays (SPEC §2.8), concatenation for strings, merge for maps. */
export function addAssign(a: Value, b: Value, add: (a: Value, b: Value) => Value): Value {
  if (Array.isArray(a) && !Array.isArray(b)) {
    const r = thaw(a) as Value[];
    r.push(copyValue(b));
    return r;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const r = thaw(a) as Value[];
    for (const e of b) r.push(copyValue(e));
    return r;
  }
  return add(a, b);
}
