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
import { toStr } from './format.js';
import * as support from './support.js';
import * as bi from './intrinsics.js';
import { Status } from './status.js';
import { encodeValue, decodeValue, toWire } from './wire.js';
import { setPlatform } from './platform.js';
import { VslError, VslFatal, type Value } from './value.js';
import type { EvalCtx, ContextData, ServerInfo } from './intrinsics.js';

declare const globalThis: Record<string, unknown>;
type HostSync = (evalId: number, name: string, args: string, posId: number) => string;
type HostAsync = (evalId: number, name: string, args: string, posId: number) => Promise<string>;
const hostSync = globalThis.__vsl_host_sync as HostSync;
const hostAsyncFn = globalThis.__vsl_host_async as HostAsync;
const ruleStart = globalThis.__vsl_rule_start as (evalId: number, index: number) => void;
const done = globalThis.__vsl_done as (evalId: number, json: string) => void;

bi.setBridge({ sync: hostSync, async: hostAsyncFn });
// IDN conversion needs the host's IDNA tables (SPEC §4.4).
setPlatform({
  toASCII(domain: string): string {
    if (/^[\x00-\x7f]*$/.test(domain)) return domain.toLowerCase();
    const r = JSON.parse(hostSync(0, 'sys::idna', JSON.stringify([domain]), -1)) as { ok?: string; err?: string };
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
  sys_status: bi.sys_status, sys_client_allowed: bi.sys_client_allowed,
};

/** Service methods cross to the host; everything else is an ordinary method. */
async function callMethodIo(x: EvalCtx, recv: Value, name: string, args: Value[], posId: number): Promise<[Value, Value]> {
  if (bi.isService(recv)) return [await bi.hostAsync(x, 'sys::service_call', [recv, name, args], posId), recv];
  return callMethod(x, recv, name, args);
}

const $ = {
  ...ops,
  copy: support.copy, freeze: support.freeze, thaw: support.thaw, map: support.map, char: support.char,
  catchable: support.catchable, caught: support.caught, throwValue: support.throwValue, tooDeep: support.tooDeep,
  callPtr: support.callPtr,
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

function loadCtx(stage: 'load' | 'config'): EvalCtx {
  return { id: 0, stage, si: -1, depth: 0, rule: '', c: null };
}

/** Error description for the host, which maps the stack to vSL positions. */
function describe(e: unknown): { message: string; stack: string; fatal: string | null } {
  if (e instanceof VslFatal) return { message: e.message, stack: String(e.stack ?? ''), fatal: e.reason };
  if (e instanceof VslError) return { message: e.message, stack: String(e.stack ?? ''), fatal: null };
  const err = e as { name?: string; message?: string; stack?: string };
  const name = err?.name ?? 'Error';
  const fatal = name === 'InternalError' ? (String(err.message).includes('stack') ? 'stack' : String(err.message).includes('memory') ? 'memory' : 'internal') : 'internal';
  return { message: `${name}: ${err?.message ?? String(e)}`, stack: String(err?.stack ?? ''), fatal };
}

function install(program: (rt: typeof $) => Module[]): void {
  modules = program($);
}

function setServer(json: string): void {
  bi.setServer(JSON.parse(json) as ServerInfo);
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
  for (const [key, value] of v) {
    if (!STAGES.includes(key)) return { kind: 'unknown_stage', key };
    if (!Array.isArray(value)) return { kind: 'not_array', key, type: ops.typeOf(value) };
    const list: support.Directive[] = [];
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
          return { kind: 'bad_element', key, type: ops.typeOf(item) };
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
 * Evaluates one stage. Runs directives in order until a status other than
 * next (SPEC §3.3); actions count as next. Reports through __vsl_done; an
 * uncatchable failure (interrupt, memory) never reaches it and the host sees
 * the exception instead.
 */
async function runStage(evalId: number, stage: string, ctxJson: string): Promise<void> {
  const x: EvalCtx = { id: evalId, stage, si: bi.stageIndex(stage), depth: 0, rule: '', c: JSON.parse(ctxJson) as ContextData };
  const trace: Array<[number, string]> = [];
  const list = stageMap.get(stage) ?? [];
  let index = -1;
  try {
    for (index = 0; index < list.length; index++) {
      const d = list[index]!;
      ruleStart(evalId, index);
      x.rule = d.name;
      x.depth = 0;
      let v = d.fn.impl(x) as Value | Promise<Value>;
      if (v instanceof Promise) v = await v;
      if (d.type === 'action') {
        trace.push([index, 'action']);
        continue;
      }
      if (!(v instanceof Status)) {
        throw new VslError(`rule '${d.name}' returned ${ops.typeOf(v as Value)}, expected a status`);
      }
      trace.push([index, v.kind]);
      if (v.kind !== 'next') {
        done(evalId, JSON.stringify({ ok: { index, status: encodeValue(v), trace } }));
        return;
      }
    }
    ruleStart(evalId, -1);
    done(evalId, JSON.stringify({ ok: { index: -1, status: null, trace } }));
  } catch (e) {
    done(evalId, JSON.stringify({ err: { index, error: describe(e), trace } }));
  }
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

globalThis.$vsl = { install, setServer, onConfig, init, runStage, exported };
