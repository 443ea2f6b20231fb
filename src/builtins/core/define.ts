// How the core built-ins are declared: a HostBuiltin whose function checks
// its argument count and never lets anything but a VslError escape (SPEC
// §7.1: every failure is a runtime error named after the function).

import type { Stage } from '../../mail/types.js';
import { VslError, fnError, type Value } from '../../vsl/values/value.js';
import type { HostBuiltin, HostCall } from '../host.js';

type Arity = number | [number, number];

function arityOk(arity: Arity, n: number): boolean {
  return typeof arity === 'number' ? n === arity : n >= arity[0] && n <= arity[1];
}

function asVslError(name: string, err: unknown): VslError {
  if (err instanceof VslError) return err;
  return fnError(name, err instanceof Error ? err.message : String(err));
}

export interface BuiltinSpec {
  name: string;
  /** Earliest stage (SPEC §7 "From"). */
  from: Stage;
  io: boolean;
  arity: Arity;
  fn: (call: HostCall, args: Value[]) => Value | Promise<Value>;
}

export function builtin(spec: BuiltinSpec): HostBuiltin {
  const { name, arity } = spec;
  return {
    name,
    from: spec.from,
    io: spec.io,
    arity,
    fn(call, args) {
      if (!arityOk(arity, args.length)) {
        const want = typeof arity === 'number' ? `${arity}` : `${arity[0]} to ${arity[1]}`;
        throw fnError(name, `expected ${want} argument(s), got ${args.length}`);
      }
      let r: Value | Promise<Value>;
      try {
        r = spec.fn(call, args);
      } catch (err) {
        throw asVslError(name, err);
      }
      if (r instanceof Promise) {
        return r.catch((err: unknown) => {
          throw asVslError(name, err);
        });
      }
      return r;
    },
  };
}
