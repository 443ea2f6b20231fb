// The contract between the sandbox and host built-ins (SPEC §7–§8).
//
// A script reaches the host only through functions registered here. The
// sandbox decodes the guest's arguments into runtime values (src/vsl/runtime),
// calls the host function with a HostCall describing the evaluation it runs in,
// and encodes the result back. A host function throws VslError (use
// fnError(name, message)) for anything the script did wrong or any failure of
// the outside world; the sandbox turns that into a catchable runtime error at
// the calling vSL position. Nothing else may escape.

import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Header, Session, Stage, StageEffect, Transaction } from '../policy/types.js';
import type { Value } from '../vsl/values/value.js';

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

/** Long-lived services, one set per server process (not per evaluation). */
export interface HostEnv {
  config: Config;
  resolver: Resolver;
  state: StateStore;
  clock: Clock;
  log: Logger;
  /** Directory of main.vsl; data files resolve relative to the calling file instead. */
  policyDir: string;
}

/** The message under evaluation, from preq on. */
export interface MessageView {
  /** Header fields in order, as raw lines (continuations included). */
  headers(): Array<{ name: string; raw: string; value: string }>;
  /** The whole message as written to the spool (CRLF line ends). */
  raw(): Buffer;
}

/**
 * Changes a stage makes besides its verdict. They are applied when the stage
 * ends and discarded if it fails (SPEC §5.3, §7.5).
 */
export interface Effects {
  /** Add a header (top = prepend, bottom = append): to the pending list before DATA, to the message from preq on. */
  addHeader(h: Header, where: 'top' | 'bottom'): void;
  /** Records any other change (header edits, envelope changes, transports). */
  record(e: StageEffect): void;
  /** Everything recorded so far in this evaluation, in order (for reads after writes). */
  list(): readonly StageEffect[];
}

/** One host call, made by one directive in one stage evaluation. */
export interface HostCall {
  stage: Stage;
  /** Name of the directive running, and the vSL position of the call. */
  rule: string;
  at: string;
  /** Directory of the vSL file containing the call (data files are relative to it). */
  fileDir: string;
  session: Readonly<Session>;
  txn: Readonly<Transaction> | null;
  message: MessageView | null;
  env: HostEnv;
  log: Logger;
  effects: Effects;
  /** Per-transaction cache (SPF and DKIM results, SPEC §7.9–§7.10). */
  cache: Map<string, unknown>;
  /** True in `mta test` / `mta explain`: writes are reported, not made. */
  dryRun: boolean;
  /** The AUTH in progress, during the authenticate stage only (SPEC §7.3). */
  credentials?: { mechanism: string; authid: string; authpass: string };
}

/** A host built-in. Sync functions return a value; I/O functions return a promise. */
export type HostFn = (call: HostCall, args: Value[]) => Value | Promise<Value>;

export interface HostBuiltin {
  /** Full vSL name, e.g. `dns::lookup` or `check_spf`. */
  name: string;
  fn: HostFn;
  /** Earliest stage it may run at (E_TOO_EARLY before). */
  from: Stage;
  /** I/O built-ins wait on the outside world, cannot run at load, and are doubled in tests. */
  io: boolean;
  /** Accepted argument counts. */
  arity: number | [number, number];
}
