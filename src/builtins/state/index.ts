// Chooses the state store from `state.store` (SPEC §8.5, §9.2): "memory" or a
// redis:// / rediss:// URL. One store per server process; it is restart-only
// configuration (R), so a reload never swaps it.

import type { Clock, StateStore } from '../../host/ports.js';
import { MemoryStateStore } from './memory.js';
import { RedisStateStore } from './redis.js';

export { MemoryStateStore, MEMORY_STORE_MAX_ENTRIES } from './memory.js';
export { RedisStateStore, STATE_OP_DEADLINE_MS, checkRedisUrl } from './redis.js';

export interface StateStoreOptions {
  /** Clock for the memory store's expiry (default: system time). */
  clock?: Clock;
  /** Per-operation deadline for Redis (default 1000 ms). */
  timeoutMs?: number;
  /** Memory store bound (default 10^6). */
  maxEntries?: number;
  /** Redis connection problems, for the server log. */
  onConnectionError?: (message: string) => void;
}

export function createStateStore(url: string, prefix: string, opts: StateStoreOptions = {}): StateStore {
  const spec = url.trim();
  if (spec === 'memory') {
    return new MemoryStateStore(prefix, {
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.maxEntries !== undefined ? { maxEntries: opts.maxEntries } : {}),
    });
  }
  if (/^rediss?:\/\//i.test(spec)) {
    return new RedisStateStore(spec, prefix, {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.onConnectionError ? { onConnectionError: opts.onConnectionError } : {}),
    });
  }
  throw new Error(`state.store: expected "memory" or a redis:// or rediss:// URL, got '${url}'`);
}
