// Helpers that compiled vSL code calls besides operators and methods: value
// sharing (freeze/thaw), errors and their catchability, function values,
// directives. Pure; runs in the guest.

import { copyValue, typeOf } from './ops.js';
import { toStr } from './format.js';
import { VChar, VFn, VObject, VslError, VslFatal, type Value, type VMap } from './value.js';

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
  throw new VslError(v === undefined ? '()' : toStr(v), v);
}

export function tooDeep(_x: unknown): never {
  throw new VslFatal('call depth exceeded: more than 64 nested calls', 'depth');
}

// ---------------------------------------------------------------- functions

/** Calls a function value with arguments; may return a promise for I/O functions. */
export function callPtr(x: unknown, f: Value, args: Value[]): Value | Promise<Value> {
  if (!(f instanceof VFn)) throw new VslError(`cannot call a value of type ${typeOf(f)}`);
  if (f.arity >= 0 && f.arity !== args.length) {
    throw new VslError(`function '${f.name}' takes ${f.arity} argument(s), got ${args.length}`);
  }
  return f.impl(x, ...args);
}

/** A closure: compiled as `fn(x, $this, ...params)`. */
export function closure(name: string, fn: (x: unknown, self: unknown, ...a: Value[]) => Value, arity: number): VFn {
  return new VFn(name, (x: unknown, ...a: Value[]) => fn(x, undefined, ...a), arity);
}

/** `Fn("name")`: dispatches by the number of arguments to the file's overloads. */
export function fnPtr(name: string, overloads: Array<[number, (x: unknown, self: unknown, ...a: Value[]) => Value, boolean]>): VFn {
  if (overloads.length === 1) {
    const [arity, impl] = overloads[0]!;
    return new VFn(name, (x: unknown, ...a: Value[]) => impl(x, undefined, ...a), arity);
  }
  return new VFn(name, (x: unknown, ...a: Value[]) => {
    const o = overloads.find(([n]) => n === a.length);
    if (!o) throw new VslError(`function '${name}' has no overload with ${a.length} argument(s)`);
    return o[1](x, undefined, ...a);
  }, -1);
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
