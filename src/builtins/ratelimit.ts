// ratelimit::check(key, count, window) (SPEC §8.5): fixed windows aligned to
// the epoch (window k covers [k·window, (k+1)·window)), every call counts,
// refused above `count`. The counter is one atomic increment in the state
// store, so instances sharing a Redis share the limit.

import { parseDuration } from '../config/units.js';
import { makeStatus } from '../vsl/values/status.js';
import { fnError, type Value } from '../vsl/values/value.js';
import type { CheckDecision } from './greylist.js';
import type { Clock, StateStore } from '../host/ports.js';
import type { HostBuiltin } from './host.js';

export const RATELIMIT_REPLY = '451 4.7.1 Rate limit exceeded, try again later';

/** Counts one call for `key` in the current window and decides. */
export async function ratelimitCheck(
  store: StateStore,
  clock: Clock,
  key: string,
  count: number,
  windowMs: number,
): Promise<CheckDecision & { used: number }> {
  const used = await store.incrWindow(`ratelimit:${key}`, windowMs, clock.now());
  return used > count ? { kind: 'reject', reply: RATELIMIT_REPLY, used } : { kind: 'next', used };
}

function parseArgs(args: Value[], fn: string): { key: string; count: number; windowMs: number } {
  const [key, count, window] = args;
  if (typeof key !== 'string' || key === '') throw fnError(fn, 'key must be a non-empty string');
  if (typeof count !== 'bigint' || count < 0n || count > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw fnError(fn, 'count must be an int ≥ 0');
  }
  if (typeof window !== 'string') throw fnError(fn, 'window must be a duration string like "1h"');
  let windowMs: number;
  try {
    windowMs = parseDuration(window);
  } catch (err) {
    throw fnError(fn, `window: ${(err as Error).message}`);
  }
  if (windowMs <= 0) throw fnError(fn, 'window must be longer than 0');
  return { key, count: Number(count), windowMs };
}

export const ratelimitBuiltins: HostBuiltin[] = [
  {
    name: 'ratelimit::check',
    from: 'connect',
    io: true,
    arity: 3,
    fn: async (call, args) => {
      const fn = 'ratelimit::check';
      const { key, count, windowMs } = parseArgs(args, fn);
      let decision: CheckDecision & { used: number };
      try {
        decision = await ratelimitCheck(call.env.state, call.env.clock, key, count, windowMs);
      } catch (err) {
        throw fnError(fn, (err as Error).message);
      }
      call.log.debug({ rule: call.rule, ratelimit: key, used: decision.used, count }, 'rate limit decision');
      return decision.kind === 'next' ? makeStatus('next') : makeStatus('reject', decision.reply);
    },
  },
];
