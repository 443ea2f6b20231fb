// Built-ins implemented inside the sandbox (the `guest` entries of
// src/vsl/catalog.ts): context getters (SPEC §4.2), handles (§7.2), object
// constructors (§6.1), v1 declarations (§6.2), engine constants, and the
// primitives stdlib/ is written with. Everything that needs the outside world
// goes through the bridge to the host.

import { localDomainMatcher } from '../values/address.js';
import { platformGeneration } from '../values/platform.js';
import { code as makeCode, predefinedCode, Code } from '../values/code.js';
import { toJson } from './json.js';
import { Address, Fqdn, Ip4, Ip6, Rg4, Rg6, address, fqdn, identifier, ip4, ip6, regex, rg4, rg6, textOf, Regex, Identifier, ELEMENT_TYPES, OBJECT_TYPES } from '../values/objects.js';
import { contains, typeOf } from './ops.js';
import { makeStatus } from '../values/status.js';
import { closure, callPtr, directive, fnPtr, freeze } from './support.js';
import { ServiceHandle, decodeValue, encodeValue } from '../values/wire.js';
import { VObject, VslError, VslFatal, fnError, type Value, type VMap } from '../values/value.js';
import type { MailAddress, StatusKind } from '../../mail/types.js';
import type { ContextData } from '../values/context-wire.js';
import { contextRecord, timestampText } from '../values/context-record.js';

export type { ContextData };

// ---------------------------------------------------------------- the bridge

/** Host calls name their evaluation and the directive running in it (the host does not track it). */
export interface Bridge {
  sync(evalId: number, ruleIndex: number, name: string, argsJson: string, posId: number): string;
  async(evalId: number, ruleIndex: number, name: string, argsJson: string, posId: number): Promise<string>;
}

let bridge: Bridge | null = null;

export function setBridge(b: Bridge): void {
  bridge = b;
}

/**
 * A built-in's error, with the position of its call: after an await the
 * guest's stack no longer shows the calling script line (SPEC §5.7 names it).
 */
export class BuiltinError extends VslError {
  constructor(message: string, readonly posId: number) {
    super(message);
  }
}

/** A host fault (a bug, not a script error): uncatchable, like internal faults (SPEC §2.9). */
export class BuiltinFault extends VslFatal {
  constructor(message: string, readonly posId: number) {
    super(message, 'internal');
  }
}

/** Host answers are `{"ok": wire}` or `{"err": message}`; a fatal host fault is `{"fatal": message}`. */
function unwrapHost(json: string, posId: number): Value {
  const r = JSON.parse(json) as { ok?: unknown; err?: string; fatal?: string };
  if (r.fatal !== undefined) throw new BuiltinFault(r.fatal, posId);
  if (r.err !== undefined) throw new BuiltinError(r.err, posId);
  return decodeValue(JSON.stringify(r.ok ?? null));
}

export function host(x: EvalCtx, name: string, args: Value[], posId: number): Value {
  if (!bridge) throw new VslError(`${name}: no host available`);
  return unwrapHost(bridge.sync(x.id, x.ri, name, encodeValue(args), posId), posId);
}

export async function hostAsync(x: EvalCtx, name: string, args: Value[], posId: number): Promise<Value> {
  if (!bridge) throw new VslError(`${name}: no host available`);
  if (x.stage === 'load' || x.stage === 'config') throw new BuiltinError(`${name}: I/O built-ins cannot run at load`, posId);
  return unwrapHost(await bridge.async(x.id, x.ri, name, encodeValue(args), posId), posId);
}

// ---------------------------------------------------------------- evaluation context

export interface EvalCtx {
  /** Evaluation id (0 at load). */
  id: number;
  stage: string;
  /** Index of the stage in SMTP order; -1 at load. */
  si: number;
  depth: number;
  rule: string;
  /** Index of the directive running (-1 at load). */
  ri: number;
  c: ContextData | null;
}

const STAGE_ORDER = ['connect', 'helo', 'authenticate', 'mail', 'rcpt', 'preq', 'postq', 'delivery'];

export function stageIndex(stage: string): number {
  return STAGE_ORDER.indexOf(stage);
}

function tooEarly(x: EvalCtx, what: string, from: string): never {
  const where = x.si < 0 ? 'at load' : `in ${x.stage}`;
  throw new VslError(`E_TOO_EARLY: ${what} is available from stage ${from} (called ${where})`);
}

function need(x: EvalCtx, what: string, from: string): ContextData {
  if (x.si < stageIndex(from) || !x.c) tooEarly(x, what, from);
  return x.c;
}

function needTxn(x: EvalCtx, what: string, from: string): NonNullable<ContextData['txn']> {
  const c = need(x, what, from);
  if (!c.txn) tooEarly(x, what, from);
  return c.txn;
}

// ---------------------------------------------------------------- server info

export interface ServerInfo {
  name: string;
  domain: string;
  virtual: string[];
  relayNetworks: string[];
  /** Effective server.* configuration without secrets (cfg::server). */
  cfgServer: unknown;
  dataDir: string;
  hostname: string;
}

let server: ServerInfo = {
  name: 'localhost', domain: 'localhost', virtual: [], relayNetworks: ['127.0.0.0/8', '::1/128'],
  cfgServer: null, dataDir: '/var/lib/mta', hostname: 'localhost',
};
let cfgServerValue: Value;

/** server.domain and server.virtual, canonicalised once per configuration rather than per call. */
let localMatcher = localDomainMatcher({ domain: server.domain, virtual: server.virtual });

export function setServer(info: ServerInfo): void {
  server = info;
  cfgServerValue = freeze(decodeValue(JSON.stringify(info.cfgServer ?? null)));
  localMatcher = localDomainMatcher({ domain: info.domain, virtual: info.virtual });
  localMemo.clear();
}

/** Recent answers of isLocal: the same few domains come back in every transaction. */
const localMemo = new Map<string, boolean>();

let localMemoGeneration = -1;

export function isLocal(domain: string): boolean {
  if (localMemoGeneration !== platformGeneration()) {
    localMemo.clear();
    localMemoGeneration = platformGeneration();
  }
  let r = localMemo.get(domain);
  if (r === undefined) {
    r = localMatcher(domain);
    if (localMemo.size >= 1024) localMemo.clear();
    localMemo.set(domain, r);
  }
  return r;
}

// ---------------------------------------------------------------- host-ish objects

/** A point in time; prints as RFC 3339 UTC. */
export class Timestamp extends VObject {
  readonly type = 'timestamp';
  constructor(readonly ms: number) {
    super();
  }
  text(): string {
    return timestampText(this.ms);
  }
  equals(other: Value): boolean {
    return other instanceof Timestamp && other.ms === this.ms;
  }
  get wireTag(): string {
    return 'string';
  }
}

/** SASL credentials during the authenticate stage (SPEC §7.3). */
export class Credentials extends VObject {
  readonly type = 'credentials';
  constructor(private readonly creds: { mechanism: string; authid: string; authpass: string }) {
    super();
  }
  text(): string {
    return `credentials(${this.creds.authid})`;
  }
  equals(other: Value): boolean {
    return other === this;
  }
  override getProp(name: string): Value {
    switch (name) {
      case 'type': return 'Verify';
      case 'mechanism': return this.creds.mechanism;
      case 'authid': return this.creds.authid;
      case 'authpass': return this.creds.authpass;
      case 'anonymous_token': return '';
      default: return super.getProp(name);
    }
  }
}

/** `ctx()`: the v1 property view of the context; `${ctx()}` is its JSON. */
export class ContextHandle extends VObject {
  readonly type = 'context';
  constructor(private readonly x: EvalCtx) {
    super();
  }
  text(): string {
    return contextJson(this.x);
  }
  equals(other: Value): boolean {
    return other === this;
  }
  override getProp(name: string): Value {
    const x = this.x;
    switch (name) {
      case 'client_ip': return ctx_client_ip(x);
      case 'client_port': return ctx_client_port(x);
      case 'client_address': return ctx_client_address(x);
      case 'server_ip': return ctx_server_ip(x);
      case 'server_port': return ctx_server_port(x);
      case 'server_address': return ctx_server_address(x);
      case 'server_name': return ctx_server_name(x);
      case 'connection_timestamp': return ctx_connection_timestamp(x);
      case 'is_secured': return ctx_is_secured(x);
      case 'helo': return ctx_helo(x);
      case 'mail_from': return ctx_mail_from(x);
      case 'mail_timestamp': return ctx_mail_timestamp(x);
      case 'rcpt': {
        const t = needTxn(x, 'ctx().rcpt', 'rcpt');
        const last = t.current ?? t.rcpts[t.rcpts.length - 1];
        if (!last) tooEarly(x, 'ctx().rcpt', 'rcpt');
        return new Address(last);
      }
      case 'rcpt_list': return ctx_rcpt_list(x);
      case 'is_authenticated': return auth_is_authenticated(x);
      case 'auth': return auth_credentials(x);
      case 'message_id': return ctx_message_id(x);
      default: return super.getProp(name);
    }
  }
}

/** `msg()`: the message from preq on; `${msg()}` is the whole .eml. */
export class MessageHandle extends VObject {
  readonly type = 'message';
  constructor(private readonly x: EvalCtx) {
    super();
  }
  text(): string {
    return String(host(this.x, 'msg::to_string', [], -1));
  }
  equals(other: Value): boolean {
    return other === this;
  }
}

// ---------------------------------------------------------------- §4.2 getters

export function ctx_client_ip(x: EvalCtx): string {
  return need(x, 'ctx::client_ip()', 'connect').session.clientIp;
}
export function ctx_client_port(x: EvalCtx): bigint {
  return BigInt(need(x, 'ctx::client_port()', 'connect').session.clientPort);
}
function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
export function ctx_client_address(x: EvalCtx): string {
  const s = need(x, 'ctx::client_address()', 'connect').session;
  return hostPort(s.clientIp, s.clientPort);
}
export function ctx_server_ip(x: EvalCtx): string {
  return need(x, 'ctx::server_ip()', 'connect').session.serverIp;
}
export function ctx_server_port(x: EvalCtx): bigint {
  return BigInt(need(x, 'ctx::server_port()', 'connect').session.serverPort);
}
export function ctx_server_address(x: EvalCtx): string {
  const s = need(x, 'ctx::server_address()', 'connect').session;
  return hostPort(s.serverIp, s.serverPort);
}
export function ctx_server_name(x: EvalCtx): string {
  return need(x, 'ctx::server_name()', 'connect').session.serverName;
}
export function ctx_connection_timestamp(x: EvalCtx): Timestamp {
  return new Timestamp(need(x, 'ctx::connection_timestamp()', 'connect').session.connectedAt);
}
export function ctx_is_secured(x: EvalCtx): boolean {
  return need(x, 'ctx::is_secured()', 'connect').session.tls;
}
export function ctx_helo(x: EvalCtx): string {
  const c = need(x, 'ctx::helo()', 'helo');
  if (c.session.helo === null) tooEarly(x, 'ctx::helo()', 'helo');
  return c.session.helo;
}
/** Address objects by the (shared, decoded once) context address they show; both are immutable. */
const addressObjects = new WeakMap<MailAddress, Address>();
function addressObject(a: MailAddress): Address {
  let o = addressObjects.get(a);
  if (o === undefined) addressObjects.set(a, (o = new Address(a)));
  return o;
}

export function ctx_mail_from(x: EvalCtx): Address {
  return addressObject(needTxn(x, 'ctx::mail_from()', 'mail').mailFrom);
}
export function ctx_mail_timestamp(x: EvalCtx): Timestamp {
  return new Timestamp(needTxn(x, 'ctx::mail_timestamp()', 'mail').mailAt);
}
export function ctx_message_id(x: EvalCtx): string {
  return needTxn(x, 'ctx::message_id()', 'mail').id;
}
export function ctx_rcpt(x: EvalCtx): Address {
  const t = needTxn(x, 'ctx::rcpt()', 'rcpt');
  const r = t.current ?? (x.si > stageIndex('rcpt') ? t.rcpts[t.rcpts.length - 1] : undefined);
  if (!r) tooEarly(x, 'ctx::rcpt()', 'rcpt');
  return addressObject(r);
}
export function ctx_rcpt_list(x: EvalCtx): Address[] {
  const t = needTxn(x, 'ctx::rcpt_list()', 'rcpt');
  const list = t.rcpts.map((r) => new Address(r));
  if (t.current && !t.rcpts.some((r) => r.local === t.current!.local && r.domain === t.current!.domain)) {
    list.push(new Address(t.current));
  }
  return list;
}
export function ctx_to_string(x: EvalCtx): string {
  return contextJson(x);
}
export function auth_is_authenticated(x: EvalCtx): boolean {
  return need(x, 'auth::is_authenticated()', 'connect').session.auth !== null;
}
export function auth_credentials(x: EvalCtx): Credentials {
  const c = need(x, 'auth::credentials()', 'authenticate');
  if (c.creds) return new Credentials(c.creds);
  if (c.session.auth) return new Credentials({ mechanism: c.session.auth.mechanism, authid: c.session.auth.authid, authpass: '' });
  throw new VslError('auth::credentials: the client has not authenticated');
}

function contextJson(x: EvalCtx): string {
  const c = x.c;
  if (!c) return '{}';
  const s = c.session;
  const addr = (a: MailAddress) => (a.isNull ? '' : `${a.local}@${a.domain}`);
  return JSON.stringify(contextRecord({
    stage: x.stage,
    session: {
      id: s.id, clientIp: s.clientIp, clientPort: s.clientPort, serverIp: s.serverIp, serverPort: s.serverPort, serverName: s.serverName,
      connectedAtMs: s.connectedAt, secured: s.tls, helo: s.helo, authid: s.auth?.authid ?? null,
    },
    txn: c.txn ? { id: c.txn.id, mailFrom: addr(c.txn.mailFrom), mailAtMs: c.txn.mailAt, rcpts: c.txn.rcpts.map(addr) } : null,
  }));
}

// ---------------------------------------------------------------- §7.2 globals

export function ctx_handle(x: EvalCtx): ContextHandle {
  return new ContextHandle(x);
}
export function msg_handle(x: EvalCtx): MessageHandle {
  if (x.si < stageIndex('preq')) tooEarly(x, 'msg()', 'preq');
  return new MessageHandle(x);
}
export function srv_handle(_x: EvalCtx): VMap {
  return new Map<string, Value>([
    ['name', server.name],
    ['domain', server.domain],
    ['virtual', [...server.virtual]],
  ]);
}
export function hostname(_x: EvalCtx): string {
  return server.hostname;
}

/** `in_domain(x)`: an address, fqdn, or string (domain after any `@`) that is a local domain (SPEC §4.4). */
export function in_domain(_x: EvalCtx, v: Value): boolean {
  if (v instanceof Address) return !v.isNull && !v.isLiteral && isLocal(v.domain);
  if (v instanceof Fqdn) return isLocal(v.name);
  const t = textOf(v);
  if (t === undefined) throw fnError('in_domain', `expects an address, fqdn or string, got ${typeOf(v)}`);
  const at = t.lastIndexOf('@');
  const d = at >= 0 ? t.slice(at + 1) : t;
  if (d === '' || d.startsWith('[')) return false;
  try {
    return isLocal(d);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- §6.1 constructors

function ctor<T>(f: (s: Value) => T) {
  return (_x: EvalCtx, s: Value): T => f(s);
}
export const ctorIp4 = ctor(ip4);
export const ctorIp6 = ctor(ip6);
export const ctorRg4 = ctor(rg4);
export const ctorRg6 = ctor(rg6);
export const ctorAddress = ctor((s) => address(s));
export const ctorFqdn = ctor(fqdn);
export const ctorRegex = ctor(regex);
export const ctorIdentifier = ctor(identifier);
export function ctorCode(_x: EvalCtx, ...args: Value[]): Code {
  return makeCode(...args);
}

// ---------------------------------------------------------------- §7.11, constants

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}
export function time_now(x: EvalCtx): string {
  const d = new Date(x.c?.now ?? 0);
  return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
}
export function time_date(x: EvalCtx): string {
  const d = new Date(x.c?.now ?? 0);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
}

const NET_192 = rg4('192.168.0.0/16');
const NET_172 = rg4('172.16.0.0/12');
const NET_10 = rg4('10.0.0.0/8');
export const net_rg_192 = (): Rg4 => NET_192;
export const net_rg_172 = (): Rg4 => NET_172;
export const net_rg_10 = (): Rg4 => NET_10;
export const net_non_routable = (): Rg4[] => [NET_192, NET_172, NET_10];

export function constant(x: EvalCtx, name: string): Value {
  switch (name) {
    // vSMTP 1.x read the clock through the variables `time` and `date` (v2: time::now(), time::date()).
    case 'time': return time_now(x);
    case 'date': return time_date(x);
    case 'net_192': return NET_192;
    case 'net_172': return NET_172;
    case 'net_10': return NET_10;
    case 'non_routable_net': return [NET_192, NET_172, NET_10];
    default: {
      const c = predefinedCode(name);
      if (!c) throw new VslError(`unknown constant ${name}`);
      return c;
    }
  }
}

export function cfg_server(_x: EvalCtx): Value {
  return cfgServerValue;
}
export function cfg_app(_x: EvalCtx): Value {
  return new Map<string, Value>([['dirpath', server.dataDir]]);
}

// ---------------------------------------------------------------- functions, logging

export function fn_ptr(_x: EvalCtx, name: string, overloads: Parameters<typeof fnPtr>[1]) {
  return fnPtr(name, overloads);
}

export function call(x: EvalCtx, f: Value, ...args: Value[]): Value | Promise<Value> {
  return callPtr(x, f, args);
}

export function print(x: EvalCtx, kind: string, v: Value, posId: number): undefined {
  host(x, 'sys::print', [kind, v === undefined ? '()' : (textOf(v) ?? toJsonSafe(v))], posId);
  return undefined;
}

function toJsonSafe(v: Value): string {
  try {
    return toJson(v);
  } catch {
    return typeOf(v);
  }
}

export { closure, directive };

// ---------------------------------------------------------------- §6.2 v1 declarations


export function makeTyped(type: string, s: Value, fn: string): Value {
  switch (type) {
    case 'ip4': return ip4(s);
    case 'ip6': return ip6(s);
    case 'rg4': return rg4(s);
    case 'rg6': return rg6(s);
    case 'fqdn': return fqdn(s);
    case 'address': return address(s, fn);
    case 'identifier': return identifier(s);
    case 'regex': return regex(s);
    case 'string': {
      const t = textOf(s);
      if (t === undefined) throw fnError(fn, `expects a string, got ${typeOf(s)}`);
      return t;
    }
    default: throw fnError(fn, `unknown type '${type}'`);
  }
}

export function v1_object(x: EvalCtx, type: string, element: string | null, value: Value, posId: number): Value {
  if (!OBJECT_TYPES.has(type)) {
    throw new VslError(`object: unknown type '${type}' (expected one of ${[...OBJECT_TYPES].join(' ')})`);
  }
  let v = value;
  if (v instanceof Map && type !== 'code') {
    if (!v.has('value')) throw new VslError(`object: a map declaration needs a 'value' key`);
    v = v.get('value');
  }
  if (type === 'file') {
    if (!element) throw new VslError('object: type file needs an element type, e.g. file:fqdn');
    if (!ELEMENT_TYPES.has(element)) throw new VslError(`object: unknown element type '${element}'`);
    return freeze(file(x, v, element, posId));
  }
  if (element) throw new VslError(`object: type ${type} takes no element type`);
  if (type === 'group') {
    if (!Array.isArray(v)) throw new VslError('object: a group is an array');
    return freeze(v);
  }
  if (type === 'code') {
    if (v instanceof Map) return makeCode(v);
    return makeCode(v);
  }
  return makeTyped(type, v, 'object');
}

/** `file(path, type)`: one value per trimmed line (SPEC §6.1, §7.1). */
export function file(x: EvalCtx, path: Value, type: Value, posId: number): Value[] {
  if (typeof path !== 'string') throw fnError('file', `expects a path string, got ${typeOf(path)}`);
  if (typeof type !== 'string' || !ELEMENT_TYPES.has(type)) {
    throw fnError('file', `unknown element type ${typeof type === 'string' ? `'${type}'` : typeOf(type)}`);
  }
  const lines = host(x, 'sys::read_lines', [path], posId);
  if (!Array.isArray(lines)) throw fnError('file', 'could not read the file');
  const out: Value[] = [];
  for (const [i, l] of (lines as Value[]).entries()) {
    try {
      out.push(makeTyped(type, l, 'file'));
    } catch (e) {
      throw fnError('file', `${path}: line ${i + 1}: ${(e as Error).message}`);
    }
  }
  return out;
}

export function ctorFile(x: EvalCtx, path: Value, type: Value, posId = -1): Value[] {
  return freeze(file(x, path, type, posId)) as Value[];
}

export function v1_service(x: EvalCtx, kind: string, value: Value, posId: number): Value {
  return host(x, 'sys::service', [kind, value], posId);
}

// ---------------------------------------------------------------- stdlib primitives

/** A predefined reply by name (SPEC §5.9); the table lives in code.ts only. */
export function sys_predefined(_x: EvalCtx, name: Value): Code {
  const c = typeof name === 'string' ? predefinedCode(name) : undefined;
  if (!c) throw new VslError(`no predefined code ${typeof name === 'string' ? name : typeOf(name)}`);
  return c;
}

export function sys_status(_x: EvalCtx, kind: Value, arg: Value): Value {
  return makeStatus(kind as StatusKind, arg);
}

/**
 * `client_ip() in allowed` for the relay helpers (SPEC §7.8). An fqdn
 * element matches the client's forward-confirmed reverse name, looked up only
 * when no address or network matched.
 */
export function sys_client_allowed(x: EvalCtx, allowed: Value): boolean | Promise<boolean> {
  const ip = ctx_client_ip(x);
  // The common case first: one network object (`check_rcpt_relay(internal_net)`).
  if (allowed instanceof Rg4 || allowed instanceof Rg6) return allowed.contains(ip);
  const names: string[] = [];
  if (clientIn(ip, allowed, names)) return true;
  if (names.length === 0) return false;
  return hostAsync(x, 'sys::fcrdns', [], -1).then((name) => typeof name === 'string' && names.includes(name.toLowerCase()));
}

/** Whether `ip` is in `a` by address or network; fqdn elements are collected in `names` for the caller. */
function clientIn(ip: string, a: Value, names: string[]): boolean {
  if (a instanceof Fqdn) {
    names.push(a.name);
    return false;
  }
  if (Array.isArray(a)) {
    for (const e of a) if (clientIn(ip, e, names)) return true;
    return false;
  }
  if (a instanceof Rg4 || a instanceof Rg6 || a instanceof Regex) return a.contains(ip);
  if (a instanceof Ip4 || a instanceof Ip6) return a.equals(ip);
  if (typeof a === 'string') {
    if (a.includes('/')) {
      try {
        return contains(a.includes(':') ? rg6(a) : rg4(a), ip);
      } catch {
        return false;
      }
    }
    return a === ip || (a.includes(':') ? safeEq(() => ip6(a).equals(ip)) : safeEq(() => ip4(a).equals(ip)));
  }
  if (a instanceof Identifier || a instanceof Address || a === undefined) return false;
  throw fnError('check_relay', `cannot test a client against ${typeOf(a)}`);
}

function safeEq(f: () => boolean): boolean {
  try {
    return f();
  } catch {
    return false;
  }
}

/** Service methods (csv get/set/rm, cmd run) cross to the host; other receivers use the ordinary methods. */
export function isService(v: Value): v is ServiceHandle {
  return v instanceof ServiceHandle;
}
