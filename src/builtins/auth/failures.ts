// Failed AUTH attempts per client (SPEC §5.5 extension
// `server.auth.failures_per_ip_max`, `failure_window`): slows down and then
// refuses password guessing that spreads over many sessions, which
// `attempts_max` (per session) cannot see.
//
// Usage by the SMTP front, for each AUTH from `ip`:
//   if (tracker.isBlocked(ip))  → refuse without checking (421);
//   ticket = tracker.begin(ip)  → null: refuse without checking (421);
//     otherwise the check is counted as in flight until the ticket ends,
//     so parallel sessions cannot start more checks than failures_per_ip_max;
//   await clock.sleep(ticket.delayMs) before answering the check;
//   then ticket.end('failure') on 535, ticket.end('success') on 235,
//   ticket.end('abandoned') when the check could not be made.
//
// With several worker processes the table lives in the primary process and
// workers reach it over IPC (src/smtp/shared-limits.ts), so the count is
// per client across the whole server.
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

/** How an admitted check ended. */
export type AuthOutcome = 'success' | 'failure' | 'abandoned';

/** One admitted password check, counted in flight until it ends. */
export interface AuthTicket {
  /** Milliseconds to wait before answering this check (the slow-down of delayFor). */
  readonly delayMs: number;
  /** Ends the check; later calls do nothing. */
  end(outcome: AuthOutcome): void;
}

export interface FailureTracker {
  /**
   * Admits one check from the client unless its failures plus the checks
   * already in flight reach `maxFailures`; null when refused.
   */
  begin(ip: string): AuthTicket | null;
  /** Checks of the client in flight now. */
  inFlight(ip: string): number;
  /** Milliseconds to wait before answering this client's next AUTH: 0, 1s, 2s, 4s, … capped. */
  delayFor(ip: string): number;
  /** Whether the client's failures in the window plus its checks in flight reached `maxFailures`. */
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
export function clientKey(ip: string): string {
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

  // Checks admitted and not yet ended, per client (bounded by maxFailures each).
  const running = new Map<string, number>();
  const inFlight = (key: string): number => running.get(key) ?? 0;

  const tracker: FailureTracker = {
    failures: (ip) => live(clientKey(ip)).length,
    inFlight: (ip) => inFlight(clientKey(ip)),
    isBlocked(ip) {
      const key = clientKey(ip);
      return live(key).length + inFlight(key) >= opts.maxFailures;
    },
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
    begin(ip) {
      if (tracker.isBlocked(ip)) return null;
      const key = clientKey(ip);
      running.set(key, inFlight(key) + 1);
      const delayMs = tracker.delayFor(ip);
      let ended = false;
      return {
        delayMs,
        end(outcome) {
          if (ended) return;
          ended = true;
          const n = inFlight(key) - 1;
          if (n <= 0) running.delete(key);
          else running.set(key, n);
          if (outcome === 'failure') tracker.recordFailure(ip);
          else if (outcome === 'success') tracker.recordSuccess(ip);
        },
      };
    },
  };
  return tracker;
}
