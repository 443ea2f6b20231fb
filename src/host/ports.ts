// The ports to the outside world (ARCHITECTURE "host/"): resolver, state
// store, clock, and the HostEnv value that carries them with the
// configuration and the logger to every layer. Interfaces and the system
// clock only: the implementations live with their users (builtins/dns,
// builtins/state) and are chosen once per process.

import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';

/** DNS failure classes every resolver user distinguishes. */
export type DnsErrorCode = 'NXDOMAIN' | 'NODATA' | 'SERVFAIL' | 'TIMEOUT' | 'REFUSED' | 'FORMERR' | 'ERROR';

export class DnsError extends Error {
  constructor(
    readonly code: DnsErrorCode,
    readonly query: string,
    message?: string,
  ) {
    super(message ?? `${code} for ${query}`);
    this.name = 'DnsError';
  }
  /** Temporary: retrying later may give another answer. */
  get temporary(): boolean {
    return this.code === 'SERVFAIL' || this.code === 'TIMEOUT' || this.code === 'REFUSED' || this.code === 'ERROR';
  }
}

export interface MxRecord {
  exchange: string;
  priority: number;
}

/**
 * The one resolver everything uses (SPEC §9.2 server.dns.*): SPF, DKIM,
 * DMARC, DNSBL, dns::lookup, MX delivery. Every method has an overall
 * deadline and rejects with DnsError. Names are given and returned without a
 * trailing dot, lower-case.
 */
export interface Resolver {
  a(name: string, opts?: { timeoutMs?: number }): Promise<Array<{ address: string; ttl: number }>>;
  aaaa(name: string, opts?: { timeoutMs?: number }): Promise<Array<{ address: string; ttl: number }>>;
  mx(name: string, opts?: { timeoutMs?: number }): Promise<MxRecord[]>;
  txt(name: string, opts?: { timeoutMs?: number }): Promise<string[][]>;
  ptr(ip: string, opts?: { timeoutMs?: number }): Promise<string[]>;
  ns(name: string, opts?: { timeoutMs?: number }): Promise<string[]>;
}

/** Shared state for greylisting and rate limits (SPEC §8.5). Every call has a 1 s deadline. */
export interface StateStore {
  /** Adds 1 to the counter `key` in the fixed window of `windowMs` containing `nowMs`; returns the new count. */
  incrWindow(key: string, windowMs: number, nowMs: number): Promise<number>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  del(key: string): Promise<void>;
  close(): Promise<void>;
}

/** Milliseconds since the epoch; injectable so tests need not sleep. */
export interface Clock {
  now(): number;
  /** Waits `ms` (delays of smtpd_check_rules, mapping $D, AUTH slow-down). */
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * State the built-ins keep for the life of a server process, by key: the
 * services policies declare, the turns writers of one file take. It lives on
 * the HostEnv, not in module variables, so two servers in one process (tests,
 * mta test) share nothing.
 */
export interface HostLocals {
  /** The value kept under `key`, made by `make` the first time. */
  get<T>(key: string, make: () => T): T;
}

export function newHostLocals(): HostLocals {
  const values = new Map<string, unknown>();
  return {
    get<T>(key: string, make: () => T): T {
      if (!values.has(key)) values.set(key, make());
      return values.get(key) as T;
    },
  };
}

/** Long-lived services, one set per server process (not per evaluation). */
export interface HostEnv {
  config: Config;
  resolver: Resolver;
  state: StateStore;
  clock: Clock;
  log: Logger;
  /** Directory of main.vsl; data files resolve relative to the calling file instead. */
  policyDir: string;
  /** Per-process state of the built-ins. */
  locals: HostLocals;
}

