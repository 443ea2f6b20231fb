// The shared state store (SPEC §8.5, `state.store = "redis://…"`): several
// vsl-mta instances pointing at one Redis see the same greylist triplets and
// rate-limit counters.
//
// Every operation is one atomic Redis step (a MULTI for the windowed counter,
// a SET with PX for values) and has a deadline: a dead or unreachable Redis
// yields a thrown error within about `timeoutMs`, never a hang. ioredis is
// configured accordingly: its own command timeout, a bounded connect
// timeout, and an offline queue flushed at every failed reconnection so
// waiting commands cannot pile up while Redis is away.

import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';

// ioredis (~24 MB in memory) is loaded only when state.store is a Redis URL.
const require = createRequire(import.meta.url);
import type { StateStore } from '../../host/ports.js';
import { checkTtl, checkWindow } from './memory.js';

export const STATE_OP_DEADLINE_MS = 1000;

export interface RedisStoreOptions {
  /** Deadline of one operation (SPEC §8.5: 1 s). */
  timeoutMs?: number;
  /** Told about connection problems (once per change of message), e.g. to log a warning. */
  onConnectionError?: (message: string) => void;
}

/** Checks a `redis://` / `rediss://` URL and gives a clear error for anything else. */
export function checkRedisUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`state.store: invalid URL (expected redis://[user:pass@]host[:port][/db])`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`state.store: unsupported scheme '${parsed.protocol}' (expected "memory", redis:// or rediss://)`);
  }
  if (!parsed.hostname) throw new Error('state.store: the Redis URL has no host');
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db)) {
    throw new Error(`state.store: Redis database must be a number, got '${db}'`);
  }
  return parsed;
}

export class RedisStateStore implements StateStore {
  private readonly redis: Redis;
  private readonly timeoutMs: number;
  /** Last connection error, to say why an operation failed. */
  private lastError: string | null = null;

  constructor(
    url: string,
    private readonly prefix: string,
    opts: RedisStoreOptions = {},
  ) {
    checkRedisUrl(url);
    this.timeoutMs = opts.timeoutMs ?? STATE_OP_DEADLINE_MS;
    const RedisClient = (require('ioredis') as typeof import('ioredis')).Redis;
    this.redis = new RedisClient(url, {
      commandTimeout: this.timeoutMs,
      connectTimeout: this.timeoutMs,
      // Queued commands are failed after each unsuccessful reconnection
      // instead of after 20 (the default), so the queue stays short.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      // Reconnect forever, at most every 2 s; close() stops it.
      retryStrategy: (times: number) => Math.min(times * 200, 2000),
    });
    // Without a listener, ioredis reports connection errors as unhandled
    // 'error' events; the operations report them instead.
    this.redis.on('error', (err: Error) => {
      if (err.message !== this.lastError) opts.onConnectionError?.(err.message);
      this.lastError = err.message;
    });
    this.redis.on('ready', () => {
      this.lastError = null;
    });
  }

  async incrWindow(key: string, windowMs: number, nowMs: number): Promise<number> {
    checkWindow(windowMs, nowMs);
    const windowIndex = Math.floor(nowMs / windowMs);
    const fullKey = `${this.prefix}${key}:w${windowIndex}`;
    // Relative expiry (not PEXPIREAT): the caller's clock may differ from
    // Redis's, and the counter must live until the end of its window.
    const ttl = Math.max(1, (windowIndex + 1) * windowMs - nowMs);
    const replies = await this.op('incrWindow', () =>
      this.redis.multi().incr(fullKey).pexpire(fullKey, ttl).exec(),
    );
    if (!replies) throw new Error('state store: redis: transaction aborted');
    const [incrErr, count] = replies[0]!;
    if (incrErr) throw new Error(`state store: redis: ${incrErr.message}`);
    return Number(count);
  }

  async get(key: string): Promise<string | null> {
    return this.op('get', () => this.redis.get(this.prefix + key));
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    await this.op('set', () => this.redis.set(this.prefix + key, value, 'PX', ttlMs));
  }

  async del(key: string): Promise<void> {
    await this.op('del', () => this.redis.del(this.prefix + key));
  }

  async close(): Promise<void> {
    try {
      if (this.redis.status === 'ready') {
        await withDeadline(this.redis.quit(), this.timeoutMs, 'quit');
        return;
      }
    } catch {
      // fall through to a hard disconnect
    }
    this.redis.disconnect();
  }

  /** Runs one Redis operation under the deadline, with a clear error. */
  private async op<T>(what: string, run: () => Promise<T>): Promise<T> {
    if (this.redis.status === 'end') throw new Error('state store: redis: connection closed');
    try {
      return await withDeadline(run(), this.timeoutMs, what);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const cause = this.lastError && this.lastError !== message ? ` (${this.lastError})` : '';
      throw new Error(`state store: redis ${what}: ${message}${cause}`);
    }
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  // A late rejection of the raced promise must not become unhandled.
  promise.catch(() => {});
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
