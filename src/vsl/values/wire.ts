// How vSL values cross the sandbox boundary: a tagged JSON form, encoded on
// one side and decoded on the other with the same code (this module runs in
// the guest and in the host). Only data crosses — never functions or host
// objects — and decoding validates every tag, so the host never trusts
// anything the guest hands it beyond what it can re-validate.
//
//   int            {"$i":"123"}
//   float          123.5 | {"$f":"NaN"|"Infinity"|"-Infinity"|"-0"}
//   string/bool    as is;  unit: null
//   char           {"$c":"a"}
//   array          [ … ]
//   map            {"$m":[["k", v], …]}
//   object         {"$o":"<tag>","t":"<text>"}   (ip4, rg4, address, code, status, …)
//   service        {"$o":"service","t":"<handle id>"}

import { objectFromWire } from './objects.js';
import { VChar, VFn, VObject, VRange, VslError, type Value } from './value.js';

export type Wire = null | boolean | number | string | Wire[] | { [k: string]: Wire };

const MAX_DEPTH = 64;

/** A host-side handle (service) seen by the guest as an opaque object. */
export class ServiceHandle extends VObject {
  readonly type = 'service';
  constructor(
    readonly id: string,
    readonly kind: string,
  ) {
    super();
  }
  text(): string {
    return `service(${this.kind})`;
  }
  equals(other: Value): boolean {
    return other instanceof ServiceHandle && other.id === this.id;
  }
}

export function toWire(v: Value, depth = 0): Wire {
  if (depth > MAX_DEPTH) throw new VslError('value nested too deeply to pass to a built-in');
  switch (typeof v) {
    case 'bigint':
      return { $i: v.toString() };
    case 'number':
      if (Number.isFinite(v) && !Object.is(v, -0)) return v;
      return { $f: Object.is(v, -0) ? '-0' : String(v) };
    case 'string':
    case 'boolean':
      return v;
    case 'undefined':
      return null;
    default:
      break;
  }
  if (Array.isArray(v)) return v.map((e) => toWire(e, depth + 1));
  if (v instanceof Map) {
    const entries: Wire[] = [];
    for (const [k, e] of v) entries.push([k, toWire(e, depth + 1)]);
    return { $m: entries };
  }
  if (v instanceof VChar) return { $c: v.c };
  if (v instanceof ServiceHandle) return { $o: 'service', t: `${v.kind}\u0000${v.id}` };
  if (v instanceof VObject) {
    const w = v as VObject & { wireTag?: string; wireText?: string };
    if (typeof w.wireTag === 'string' && typeof w.wireText === 'string') return { $o: w.wireTag, t: w.wireText };
    throw new VslError(`a ${v.type} cannot be passed to a built-in`);
  }
  if (v instanceof VFn) throw new VslError('a function cannot be passed to a built-in');
  if (v instanceof VRange) return { $m: [['start', { $i: v.start.toString() }], ['end', { $i: v.end.toString() }]] };
  throw new VslError('value cannot be passed to a built-in');
}

export function fromWire(w: unknown, depth = 0): Value {
  if (depth > MAX_DEPTH) throw new VslError('value nested too deeply');
  if (w === null) return undefined;
  switch (typeof w) {
    case 'string':
    case 'boolean':
      return w;
    case 'number':
      return w;
    case 'object':
      break;
    default:
      throw new VslError('invalid value on the wire');
  }
  if (Array.isArray(w)) return w.map((e) => fromWire(e, depth + 1));
  const o = w as Record<string, unknown>;
  if (typeof o.$i === 'string') {
    if (!/^-?\d{1,19}$/.test(o.$i)) throw new VslError('invalid int on the wire');
    const n = BigInt(o.$i);
    if (n > 9223372036854775807n || n < -9223372036854775808n) throw new VslError('int out of range on the wire');
    return n;
  }
  if (typeof o.$f === 'string') {
    const special: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0 };
    if (!(o.$f in special)) throw new VslError('invalid float on the wire');
    return special[o.$f]!;
  }
  if (typeof o.$c === 'string') {
    if ([...o.$c].length !== 1) throw new VslError('invalid char on the wire');
    return new VChar(o.$c);
  }
  if (Array.isArray(o.$m)) {
    const m = new Map<string, Value>();
    for (const e of o.$m) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') throw new VslError('invalid map on the wire');
      m.set(e[0], fromWire(e[1], depth + 1));
    }
    return m;
  }
  if (typeof o.$o === 'string' && typeof o.t === 'string') {
    if (o.$o === 'service') {
      const i = o.t.indexOf('\u0000');
      return new ServiceHandle(o.t.slice(i + 1), o.t.slice(0, i));
    }
    return objectFromWire(o.$o, o.t);
  }
  throw new VslError('invalid value on the wire');
}

export function encodeValue(v: Value): string {
  return JSON.stringify(toWire(v));
}

export function decodeValue(s: string): Value {
  return fromWire(JSON.parse(s));
}
