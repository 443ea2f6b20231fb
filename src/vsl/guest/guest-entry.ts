// The guest side of the sandbox: bundled by scripts/build-guest.mjs and
// evaluated first in every QuickJS runtime. It builds the runtime namespace
// `$` that compiled policies call, and exposes `globalThis.$vsl`, the only
// surface the host drives:
//
//   install(program)          evaluate the compiled policy (defines modules)
//   setServer(json)           server identity and local domains
//   onConfig(m, key, cfg)     run on_config on the default configuration
//   init(order, main)         run module top-level code, validate the stage map
//   runStage(id, stage, ctx)  evaluate one stage; reports through __vsl_done
//
// The host installs four functions before this script runs:
// __vsl_host_sync, __vsl_host_async, __vsl_rule_start, __vsl_done.

import * as ops from './ops.js';
import { callGlobal, callMethod } from './methods.js';
import { toStr } from '../values/format.js';
import * as support from './support.js';
import * as bi from './intrinsics.js';
import { Status } from '../values/status.js';
import { decodeValue, toWire } from '../values/wire.js';
import { setPlatform } from '../values/platform.js';
import { decodeContext } from '../values/context-wire.js';
import { VslError, VslFatal, type Value } from '../values/value.js';
import type { EvalCtx, ServerInfo } from './intrinsics.js';

declare const globalThis: Record<string, unknown>;
type HostSync = (evalId: number, ruleIndex: number, name: string, args: string, posId: number) => string;
type HostAsync = (evalId: number, ruleIndex: number, name: string, args: string, posId: number) => Promise<string>;
const hostSync = globalThis.__vsl_host_sync as HostSync;
const hostAsyncFn = globalThis.__vsl_host_async as HostAsync;
const ruleStart = globalThis.__vsl_rule_start as (evalId: number, index: number) => void;
const done = globalThis.__vsl_done as (evalId: number, json: string) => void;

bi.setBridge({ sync: hostSync, async: hostAsyncFn });
// IDN conversion needs the host's IDNA tables (SPEC §4.4).
setPlatform({
  toASCII(domain: string): string {
    if (/^[\x00-\x7f]*$/.test(domain)) return domain.toLowerCase();
    const r = JSON.parse(hostSync(0, -1, 'sys::idna', JSON.stringify([domain]), -1)) as { ok?: string; err?: string };
    if (typeof r.ok !== 'string') throw new VslError(r.err ?? `invalid domain '${domain}'`);
    return r.ok;
  },
});

const intrinsics = {
  ctx_client_address: bi.ctx_client_address, ctx_client_ip: bi.ctx_client_ip, ctx_client_port: bi.ctx_client_port,
  ctx_server_address: bi.ctx_server_address, ctx_server_ip: bi.ctx_server_ip, ctx_server_port: bi.ctx_server_port,
  ctx_server_name: bi.ctx_server_name, ctx_connection_timestamp: bi.ctx_connection_timestamp,
  ctx_is_secured: bi.ctx_is_secured, ctx_helo: bi.ctx_helo, ctx_mail_from: bi.ctx_mail_from, ctx_rcpt: bi.ctx_rcpt,
  ctx_rcpt_list: bi.ctx_rcpt_list, ctx_mail_timestamp: bi.ctx_mail_timestamp, ctx_message_id: bi.ctx_message_id,
  ctx_to_string: bi.ctx_to_string, auth_is_authenticated: bi.auth_is_authenticated, auth_credentials: bi.auth_credentials,
  ctx_handle: bi.ctx_handle, msg_handle: bi.msg_handle, srv_handle: bi.srv_handle, in_domain: bi.in_domain,
  hostname: bi.hostname,
  ip4: bi.ctorIp4, ip6: bi.ctorIp6, rg4: bi.ctorRg4, rg6: bi.ctorRg6, address: bi.ctorAddress, fqdn: bi.ctorFqdn,
  regex: bi.ctorRegex, identifier: bi.ctorIdentifier, code: bi.ctorCode, file: bi.ctorFile,
  time_now: bi.time_now, time_date: bi.time_date,
  net_rg_192: bi.net_rg_192, net_rg_172: bi.net_rg_172, net_rg_10: bi.net_rg_10, net_non_routable: bi.net_non_routable,
  constant: bi.constant, cfg_server: bi.cfg_server, cfg_app: bi.cfg_app,
  fn_ptr: bi.fn_ptr, call: bi.call, print: bi.print, closure: bi.closure, directive: bi.directive,
  v1_object: bi.v1_object, v1_service: bi.v1_service,
  sys_status: bi.sys_status, sys_predefined: bi.sys_predefined, sys_client_allowed: bi.sys_client_allowed,
};

/** Service methods cross to the host (a promise); everything else is an ordinary method, answered at once. */
function callMethodIo(x: EvalCtx, recv: Value, name: string, args: Value[], posId: number): [Value, Value] | Promise<[Value, Value]> {
  if (bi.isService(recv)) return bi.hostAsync(x, 'sys::service_call', [recv, name, args], posId).then((r): [Value, Value] => [r, recv]);
  return callMethod(x, recv, name, args);
}

const $ = {
  ...ops,
  copy: support.copy, freeze: support.freeze, thaw: support.thaw, map: support.map, char: support.char,
  catchable: support.catchable, caught: support.caught, throwValue: support.throwValue, tooDeep: support.tooDeep,
  callPtr: support.callPtr, callPtrSync: support.callPtrSync, settle: support.settle,
  addAssign: (a: Value, b: Value) => support.addAssign(a, b, ops.add),
  toStr, callMethod, callMethodIo, callGlobal,
  host: bi.host, hostAsync: bi.hostAsync,
  bi: intrinsics,
};

// ---------------------------------------------------------------- the policy

interface Module {
  G: Record<string, Value>;
  E: Record<string, Value>;
  F: Record<string, (x: EvalCtx, self: unknown, ...a: Value[]) => Value>;
  init(x: EvalCtx): Value;
}

let modules: Module[] = [];
const stageMap = new Map<string, support.Directive[]>();
const STAGES = ['connect', 'helo', 'authenticate', 'mail', 'rcpt', 'preq', 'postq', 'delivery'];
/** vSMTP 1.1 called the end-of-data stage `data`; it is preq (with both keys, their rules run in the order written). */
const STAGE_ALIASES: Record<string, string> = { data: 'preq' };

function loadCtx(stage: 'load' | 'config'): EvalCtx {
  return { id: 0, stage, si: -1, depth: 0, rule: '', ri: -1, c: null };
}

/**
 * Error description for the host, which maps the stack to vSL positions;
 * `posId` is the failing built-in call's position when the error knows it.
 */
function describe(e: unknown): { message: string; stack: string; fatal: string | null; posId?: number } {
  const posId = e instanceof bi.BuiltinError || e instanceof bi.BuiltinFault ? e.posId : undefined;
  if (e instanceof VslFatal) return { message: e.message, stack: String(e.stack ?? ''), fatal: e.reason, posId };
  if (e instanceof VslError) return { message: e.message, stack: String(e.stack ?? ''), fatal: null, posId };
  const err = e as { name?: string; message?: string; stack?: string };
  const name = err?.name ?? 'Error';
  // QuickJS's own limits. After an I/O wait the stage runs in promise jobs, where even these
  // reach the rejection handler (not the host directly): name them here.
  const text = String(err?.message);
  const fatal = name !== 'InternalError' ? 'internal'
    : text === 'interrupted' ? 'timeout' : text.includes('stack') ? 'stack' : text.includes('memory') ? 'memory' : 'internal';
  return { message: `${name}: ${err?.message ?? String(e)}`, stack: String(err?.stack ?? ''), fatal };
}

function install(program: (rt: typeof $) => Module[]): void {
  modules = program($);
}

function setServer(json: string): void {
  bi.setServer(JSON.parse(json) as ServerInfo);
}

/**
 * How often a stage tells the host that a new directive started (ms of wall
 * time since the last report). Every report costs a host crossing, so the
 * host gives each directive rule_timeout plus this slack instead of being
 * told about each one (see PolicySandbox).
 */
let reportEveryMs = 100;

function setLimits(json: string): void {
  reportEveryMs = (JSON.parse(json) as { reportEveryMs: number }).reportEveryMs;
}

function onConfig(moduleIndex: number, key: string, cfgJson: string): string {
  try {
    const cfg = decodeValue(cfgJson);
    const f = modules[moduleIndex]!.F[key]!;
    const r = f(loadCtx('config'), undefined, cfg);
    return JSON.stringify({ ok: toWire(r) });
  } catch (e) {
    return JSON.stringify({ err: describe(e) });
  }
}

type InitError =
  | { kind: 'runtime'; error: ReturnType<typeof describe> }
  | { kind: 'not_map'; type: string }
  | { kind: 'unknown_stage'; key: string }
  | { kind: 'not_array'; key: string; type: string }
  | { kind: 'bad_element'; key: string; type: string }
  | { kind: 'duplicate'; name: string; posId: number; firstPosId: number };

function init(orderJson: string, main: number): string {
  const order = JSON.parse(orderJson) as number[];
  let result: Value;
  try {
    for (const i of order) {
      const r = modules[i]!.init(loadCtx('load'));
      if (i === main) result = r;
    }
  } catch (e) {
    return JSON.stringify({ err: { kind: 'runtime', error: describe(e) } satisfies InitError });
  }
  const err = buildStageMap(result);
  if (err) return JSON.stringify({ err });
  const stages: Record<string, Array<{ name: string; kind: string; posId: number }>> = {};
  for (const [k, list] of stageMap) stages[k] = list.map((d) => ({ name: d.name, kind: d.type, posId: d.posId }));
  return JSON.stringify({ ok: stages });
}

function buildStageMap(v: Value): InitError | null {
  stageMap.clear();
  if (!(v instanceof Map)) return { kind: 'not_map', type: ops.typeOf(v) };
  const seen = new Map<string, support.Directive>();
  for (const [written, value] of v) {
    const key = Object.prototype.hasOwnProperty.call(STAGE_ALIASES, written) ? STAGE_ALIASES[written]! : written;
    if (!STAGES.includes(key)) return { kind: 'unknown_stage', key };
    if (!Array.isArray(value)) return { kind: 'not_array', key: written, type: ops.typeOf(value) };
    const list: support.Directive[] = stageMap.get(key) ?? [];
    const add = (items: Value[]): InitError | null => {
      for (const item of items) {
        if (Array.isArray(item)) {
          const e = add(item);
          if (e) return e;
        } else if (item instanceof support.Directive) {
          const first = seen.get(item.name);
          if (first) return { kind: 'duplicate', name: item.name, posId: item.posId, firstPosId: first.posId };
          seen.set(item.name, item);
          list.push(item);
        } else {
          return { kind: 'bad_element', key: written, type: ops.typeOf(item) };
        }
      }
      return null;
    };
    const e = add(value);
    if (e) return e;
    stageMap.set(key, list);
  }
  return null;
}

/**
 * Evaluates one stage (SPEC §3.3): runs directives in order until a status
 * other than next; actions count as next.
 *
 * Runs synchronously as far as it can and then returns the encoded result
 * (no promise, no host callback). Only when a directive waits for I/O does it
 * return undefined and report later through __vsl_done. The host has already
 * started the clock of directive 0; later directives announce themselves
 * through __vsl_rule_start, at most every `reportEveryMs`. An uncatchable
 * failure (interrupt, memory) reaches neither: the host sees the exception,
 * and asks ruleOf() which directive it hit.
 *
 * The result is `o<index>\u0001<kinds>\u0001<status wire text>\u0001<ms>`
 * (index -1 and an empty status when no rule decided; kinds and ms
 * comma-separated, one per directive evaluated) or `e<json>` for an error.
 */
function runStage(arg: string): string | undefined {
  // `<evalId>\u0001<stage>\u0001<context>`: one string crosses rather than three values.
  const a = arg.indexOf('\u0001');
  const b = arg.indexOf('\u0001', a + 1);
  const evalId = Number(arg.slice(0, a));
  const stage = arg.slice(a + 1, b);
  const ctxWire = arg.slice(b + 1);
  const x: EvalCtx = { id: evalId, stage, si: bi.stageIndex(stage), depth: 0, rule: '', ri: 0, c: decodeContext(ctxWire) };
  const now = Date.now();
  const run: StageState = { evalId, x, list: stageMap.get(stage) ?? [], index: 0, kinds: [], ms: [], ruleAt: now, reportedAt: now };
  let out: string | Promise<string>;
  active.set(evalId, run);
  try {
    out = stageLoop(run, false, undefined);
  } catch (e) {
    active.delete(evalId);
    return encodeError(run, e);
  }
  if (typeof out === 'string') {
    active.delete(evalId);
    return out;
  }
  out.then((r) => finish(run, r), (e: unknown) => finish(run, encodeError(run, e)));
  return undefined;
}

/** Stages under way, by evaluation: the host asks which directive a fatal failure hit. */
const active = new Map<number, StageState>();

function finish(run: StageState, result: string): void {
  active.delete(run.evalId);
  done(run.evalId, result);
}

/** The directive an evaluation was running (after an uncatchable failure); forgets the evaluation. */
function ruleOf(evalId: number): number {
  const run = active.get(evalId);
  active.delete(evalId);
  return run ? run.index : -1;
}

interface StageState {
  evalId: number;
  x: EvalCtx;
  list: support.Directive[];
  /** The directive running now. */
  index: number;
  /** Trace: the outcome of each directive evaluated, and its wall time in ms. */
  kinds: string[];
  ms: number[];
  /** When the current directive started, and when the host last heard of a start (Date.now()). */
  ruleAt: number;
  reportedAt: number;
}

/** Runs directives from `run.index`; `resumed` carries the value an awaited directive produced. */
function stageLoop(run: StageState, hasResumed: boolean, resumed: Value): string | Promise<string> {
  const { x, list } = run;
  for (;;) {
    let v: Value | Promise<Value>;
    if (hasResumed) {
      v = resumed;
      hasResumed = false;
    } else {
      if (run.index >= list.length) return `o-1\u0001${run.kinds.join(',')}\u0001\u0001${run.ms.join(',')}`;
      if (run.index > 0) {
        const now = Date.now();
        run.ruleAt = now;
        if (now - run.reportedAt >= reportEveryMs) {
          ruleStart(run.evalId, run.index);
          run.reportedAt = now;
        }
      }
      x.rule = list[run.index]!.name;
      x.ri = run.index;
      x.depth = 0;
      v = list[run.index]!.fn.impl(x) as Value | Promise<Value>;
      if (support.isGenerator(v)) v = support.drive(v);
      if (v instanceof Promise) return v.then((r) => stageLoop(run, true, r));
    }
    const d = list[run.index]!;
    run.ms.push(Date.now() - run.ruleAt);
    if (d.type === 'action') {
      run.kinds.push('action');
    } else {
      if (!(v instanceof Status)) throw new VslError(`rule '${d.name}' returned ${ops.typeOf(v)}, expected a status`);
      run.kinds.push(v.kind);
      if (v.kind !== 'next') return `o${run.index}\u0001${run.kinds.join(',')}\u0001${v.wireText}\u0001${run.ms.join(',')}`;
    }
    run.index++;
  }
}

function encodeError(run: StageState, e: unknown): string {
  return `e${JSON.stringify({ index: run.index, error: describe(e), trace: run.kinds, ms: run.ms })}`;
}

/** A module's exported value, wire-encoded (for tests and `mta check` tooling). */
function exported(moduleIndex: number, name: string): string {
  const m = modules[moduleIndex];
  if (!m || !(name in m.E)) return JSON.stringify({ err: `no export '${name}'` });
  try {
    return JSON.stringify({ ok: toWire(m.E[name]) });
  } catch (e) {
    return JSON.stringify({ err: (e as Error).message });
  }
}

/**
 * The version of the host–guest calls above. The bundle (dist/guest/runtime.js)
 * is built separately from the host code: PolicySandbox refuses a bundle whose
 * protocol differs instead of failing in every rule.
 */
export const GUEST_PROTOCOL = 2;

globalThis.$vsl = { protocol: GUEST_PROTOCOL, install, setServer, setLimits, onConfig, init, runStage, ruleOf, exported };
