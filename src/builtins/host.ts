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
import type { Header, MessageView, Session, Stage, StageEffect, Transaction } from '../mail/types.js';
import type { Value } from '../vsl/values/value.js';
import type { Clock, HostEnv } from '../host/ports.js';

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
