// Failed AUTH attempts per client (SPEC §5.5 extension
// `server.auth.failures_per_ip_max`, `failure_window`): slows down and then
// refuses password guessing that spreads over many sessions, which
// `attempts_max` (per session) cannot see.
//
// Usage by the SMTP front, for each AUTH from `ip`:
//   if (tracker.isBlocked(ip))  → refuse without checking (454 or 421);
//   await clock.sleep(tracker.delayFor(ip)) before answering a failure or
//   success of the check;
//   then tracker.recordFailure(ip) on 535, tracker.recordSuccess(ip) on 235.
//
// Clients are counted per address for IPv4 and per /64 for IPv6 (one host
// usually owns a whole /64). Failures older than the window are forgotten.
// The table is bounded; beyond `maxClients` the least recently active
// client is forgotten first. One tracker per process, created by the front.

import { parseDuration } from '../../config/units.js';
import type { Config } from '../../config/schema.js';
import { systemClock, type Clock } from '../../host/ports.js';
import { clientNetwork } from '../greylist.js';
import { isIP } from 'node:net';

export interface FailureTrackerOptions {
  /** Failures counted within this many milliseconds (server.auth.failure_window). */
  windowMs: number;
  /** From this many failures in the window on, the client is refused (server.auth.failures_per_ip_max). */
  maxFailures: number;
  clock?: Clock;
  /** Delay after the first failure; doubles with each further one. Default 1000. */
  baseDelayMs?: number;
  /** Cap of the delay. Default 8000. */
  maxDelayMs?: number;
  /** Clients remembered at most. Default 100000. */
  maxClients?: number;
}

export interface FailureTracker {
  /** Milliseconds to wait before answering this client's next AUTH: 0, 1s, 2s, 4s, … capped. */
  delayFor(ip: string): number;
  /** Whether the client reached `maxFailures` within the window. */
  isBlocked(ip: string): boolean;
  /** Counts a failed AUTH (535, or invalid credentials). */
  recordFailure(ip: string): void;
  /** A successful AUTH forgets the client's failures. */
  recordSuccess(ip: string): void;
  /** Failures currently counted for the client. */
  failures(ip: string): number;
}

/** Options from server.auth.* (failure_window, failures_per_ip_max). */
export function failureTrackerOptions(config: Config, clock: Clock = systemClock): FailureTrackerOptions {
  return {
    windowMs: parseDuration(config.server.auth.failure_window),
    maxFailures: config.server.auth.failures_per_ip_max,
    clock,
  };
}

/** IPv4 address as is; IPv6 as its /64 (so one host cannot rotate addresses). */
function clientKey(ip: string): string {
  const family = isIP(ip.replace(/%.*$/, ''));
  if (family === 6 && !/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip)) return clientNetwork(ip);
  return ip.replace(/^::ffff:/i, '');
}

export function createFailureTracker(opts: FailureTrackerOptions): FailureTracker {
  const clock = opts.clock ?? systemClock;
  const base = opts.baseDelayMs ?? 1000;
  const cap = opts.maxDelayMs ?? 8000;
  const maxClients = opts.maxClients ?? 100_000;
  if (!(opts.windowMs > 0)) throw new Error('failure tracker: window must be positive');
  if (!Number.isInteger(opts.maxFailures) || opts.maxFailures < 1) {
    throw new Error('failure tracker: failures_per_ip_max must be an integer ≥ 1');
  }
  // Per client, the times of its counted failures, oldest first; Map order
  // is recency of activity (for eviction).
  const table = new Map<string, number[]>();

  const live = (key: string): number[] => {
    const times = table.get(key);
    if (!times) return [];
    const since = clock.now() - opts.windowMs;
    while (times.length > 0 && times[0]! <= since) times.shift();
    if (times.length === 0) table.delete(key);
    return times;
  };

  return {
    failures: (ip) => live(clientKey(ip)).length,
    isBlocked: (ip) => live(clientKey(ip)).length >= opts.maxFailures,
    delayFor(ip) {
      const n = live(clientKey(ip)).length;
      return n === 0 ? 0 : Math.min(cap, base * 2 ** Math.min(n - 1, 30));
    },
    recordFailure(ip) {
      const key = clientKey(ip);
      const times = live(key);
      times.push(clock.now());
      // Only the newest maxFailures matter for a decision.
      if (times.length > opts.maxFailures) times.splice(0, times.length - opts.maxFailures);
      table.delete(key);
      table.set(key, times);
      while (table.size > maxClients) table.delete(table.keys().next().value as string);
    },
    recordSuccess(ip) {
      table.delete(clientKey(ip));
    },
  };
}
