// The two sides of the guest's host calls, shared by the sandbox (sandbox.ts)
// and the thread that runs a copy of it (thread.ts): the HostHandler the
// policy layer implements, its wire-level form, and what an evaluation
// returns.

import type { Pos } from '../vsl/ast.js';
import type { Status } from '../vsl/values/status.js';
import { decodeValue, toWire } from '../vsl/values/wire.js';
import { VslError, type Value } from '../vsl/values/value.js';

/** Host side of the bridge: the policy layer implements it (src/policy/host-bridge.ts). */
export interface HostHandler {
  /** `state` is what the caller passed to evaluate() (or loadState at load); `ruleIndex` the directive running. */
  callSync(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): Value;
  callAsync(state: unknown, ruleIndex: number, name: string, args: Value[], posId: number): Promise<Value>;
}

/**
 * The bridge at the wire level (arguments and answers as the guest encodes
 * them): what a sandbox in a worker thread uses to reach the HostHandler of
 * the main thread (thread.ts) without decoding values it only passes on.
 */
export interface WireHost {
  wireSync(state: unknown, ruleIndex: number, name: string, argsJson: string, posId: number): string;
  wireAsync(state: unknown, ruleIndex: number, name: string, argsJson: string, posId: number): Promise<string>;
}

export function isWireHost(h: HostHandler | WireHost): h is WireHost {
  return typeof (h as WireHost).wireSync === 'function';
}

/** Runs a synchronous host call for the guest: wire arguments in, wire answer out (never throws). */
export function answerSync(host: HostHandler, state: unknown, ruleIndex: number, name: string, argsJson: string, posId: number): string {
  try {
    const args = decodeValue(argsJson);
    const v = host.callSync(state, ruleIndex, name, Array.isArray(args) ? args : [], posId);
    return JSON.stringify({ ok: toWire(v) });
  } catch (e) {
    return JSON.stringify(e instanceof VslError ? { err: e.message } : { fatal: `${name}: internal error: ${(e as Error).message}` });
  }
}

/** Runs an I/O host call for the guest (never rejects). `state` null: at load, where I/O is refused. */
export async function answerAsync(host: HostHandler, state: unknown, ruleIndex: number, name: string, argsJson: string, posId: number): Promise<string> {
  try {
    const args = decodeValue(argsJson);
    if (state === null) throw new VslError(`${name}: I/O built-ins cannot run at load`);
    const v = await host.callAsync(state, ruleIndex, name, Array.isArray(args) ? args : [], posId);
    return JSON.stringify({ ok: toWire(v) });
  } catch (e) {
    return JSON.stringify(e instanceof VslError ? { err: e.message } : { fatal: `${name}: internal error: ${(e as Error).message}` });
  }
}

export interface SandboxLimits {
  memoryBytes: number;
  ruleTimeoutMs: number;
}

export interface GuestError {
  message: string;
  /** vSL position of the failing expression, if it could be mapped. */
  at: Pos | null;
  /** Script call chain, innermost first. */
  chain: Pos[];
  /** timeout | memory | stack | depth | internal, or null for an ordinary runtime error. */
  fatal: string | null;
}

export type StageRun =
  | { ok: true; index: number; status: Status | null; trace: Array<{ index: number; kind: string; ms: number }> }
  | { ok: false; index: number; error: GuestError; trace: Array<{ index: number; kind: string; ms: number }> };

