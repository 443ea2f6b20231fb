// The in-process state store (SPEC §8.5, `state.store = "memory"`): a Map
// used as an LRU (insertion order = recency), bounded to 10^6 entries, with
// per-entry expiry read from an injectable clock. JavaScript runs one
// operation at a time, so every operation is atomic without locks. State is
// per process and lost at restart, as the SPEC says.

import type { Clock, StateStore } from '../../host/ports.js';
import { systemClock } from '../../host/ports.js';

export const MEMORY_STORE_MAX_ENTRIES = 1_000_000;

export interface MemoryStoreOptions {
  /** Time source for expiry (tests inject a frozen clock). */
  clock?: Clock;
  /** Entries kept before the least recently used is evicted. */
  maxEntries?: number;
}

interface Entry {
  value: string;
  /** Epoch ms at which the entry disappears. */
  expiresAt: number;
}

export class MemoryStateStore implements StateStore {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private closed = false;

  constructor(
    private readonly prefix: string,
    opts: MemoryStoreOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.maxEntries = opts.maxEntries ?? MEMORY_STORE_MAX_ENTRIES;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new Error(`memory state store: maxEntries must be a positive integer, got ${this.maxEntries}`);
    }
  }

  /** Number of live and not yet purged entries (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  async incrWindow(key: string, windowMs: number, nowMs: number): Promise<number> {
    this.assertOpen();
    checkWindow(windowMs, nowMs);
    const windowIndex = Math.floor(nowMs / windowMs);
    const fullKey = `${this.prefix}${key}:w${windowIndex}`;
    // The counter lives until its window ends; judged on the caller's time
    // so a counter never outlives the window it counts.
    const windowEnd = (windowIndex + 1) * windowMs;
    const current = this.read(fullKey, nowMs);
    const count = (current === null ? 0 : Number(current)) + 1;
    this.write(fullKey, String(count), windowEnd);
    return count;
  }

  async get(key: string): Promise<string | null> {
    this.assertOpen();
    return this.read(this.prefix + key, this.clock.now());
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.assertOpen();
    checkTtl(ttlMs);
    this.write(this.prefix + key, value, this.clock.now() + ttlMs);
  }

  async del(key: string): Promise<void> {
    this.assertOpen();
    this.entries.delete(this.prefix + key);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.entries.clear();
  }

  private read(fullKey: string, nowMs: number): string | null {
    const entry = this.entries.get(fullKey);
    if (!entry) return null;
    if (entry.expiresAt <= nowMs) {
      this.entries.delete(fullKey);
      return null;
    }
    // Touch: move to the most recently used end.
    this.entries.delete(fullKey);
    this.entries.set(fullKey, entry);
    return entry.value;
  }

  private write(fullKey: string, value: string, expiresAt: number): void {
    this.entries.delete(fullKey);
    this.entries.set(fullKey, { value, expiresAt });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('memory state store: closed');
  }
}

export function checkWindow(windowMs: number, nowMs: number): void {
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0) {
    throw new Error(`state store: window must be a positive number of milliseconds, got ${windowMs}`);
  }
  if (!Number.isFinite(nowMs)) throw new Error(`state store: invalid time ${nowMs}`);
}

export function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new Error(`state store: ttl must be a positive number of milliseconds, got ${ttlMs}`);
  }
}
