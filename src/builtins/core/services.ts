// Services (SPEC §7.12): csv tables and cmd programs declared by the policy
// (v1 `service NAME KIND = #{…}`, v2 `csv(#{…})`, `cmd::build(#{…})`).
//
// Creation runs at policy load: options are checked, relative paths resolved
// against the declaring file, and the service is registered under an id the
// script holds as an opaque handle (ServiceHandle). Method calls
// (`s.get(k)`, `s.run()`) come back as `sys::service_call(handle, method,
// args)`. The id is derived from the kind and the resolved options, so a
// reload that declares the same service gets the same id and replaces the
// entry (re-reading a csv file, as refresh "no" requires), and transactions
// pinned to the previous policy version keep working.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseDuration } from '../../config/units.js';
import { textOf } from '../../vsl/values/objects.js';
import { VChar, fnError, isArray, isMap, type Value, type VMap } from '../../vsl/values/value.js';
import { ServiceHandle } from '../../vsl/values/wire.js';
import { typeName } from '../dns/call-args.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { lookupGroup, lookupUser } from '../../host/accounts.js';
import { CMD_PATH, CmdService, type CmdOptions } from './cmd.js';
import { CsvService, type CsvAccess, type CsvOptions, type CsvRefresh, type FileTurns } from './csv.js';
import type { HostEnv } from '../../host/ports.js';
import { builtin } from './define.js';

export type Service = CsvService | CmdService;

/** The services of this process by handle id (kept on HostEnv.locals: servicesOf). */
export class ServiceRegistry {
  private readonly byId = new Map<string, Service>();
  /** Turns of the csv writers, by file, shared by every service on that file. */
  readonly fileTurns: FileTurns = new Map();
  get(id: string): Service | undefined {
    return this.byId.get(id);
  }
  /** Registers (or replaces: same declaration, re-created at reload) a service. */
  register(s: Service): ServiceHandle {
    this.byId.set(s.id, s);
    return new ServiceHandle(s.id, s.kind);
  }
  get size(): number {
    return this.byId.size;
  }
}

/** The services of the process `env` belongs to. */
export function servicesOf(env: HostEnv): ServiceRegistry {
  return env.locals.get('services', () => new ServiceRegistry());
}

function serviceId(kind: string, opts: object): string {
  return createHash('sha256').update(`${kind}\0${JSON.stringify(opts)}`).digest('hex').slice(0, 24);
}

// ---------------------------------------------------------------- options

class Options {
  private readonly used = new Set<string>();
  constructor(
    private readonly fn: string,
    private readonly map: VMap,
  ) {}

  private take(key: string): Value {
    this.used.add(key);
    return this.map.get(key);
  }

  string(key: string): string | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    const t = v instanceof VChar ? v.c : textOf(v);
    if (t === undefined) throw fnError(this.fn, `'${key}' must be a string, got ${typeName(v)}`);
    return t;
  }

  required(key: string): string {
    const s = this.string(key);
    if (s === undefined || s === '') throw fnError(this.fn, `'${key}' is required`);
    return s;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], dflt: T): T {
    const s = this.string(key);
    if (s === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(s)) {
      throw fnError(this.fn, `'${key}' must be ${allowed.map((a) => `"${a}"`).join(', ')}; got "${s}"`);
    }
    return s as T;
  }

  strings(key: string): string[] | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (!isArray(v)) throw fnError(this.fn, `'${key}' must be an array of strings, got ${typeName(v)}`);
    return v.map((e, i) => {
      const t = textOf(e);
      if (t === undefined) throw fnError(this.fn, `'${key}'[${i}] must be a string, got ${typeName(e)}`);
      return t;
    });
  }

  /** Every key was understood: a misspelt option must not silently fall back to its default. */
  done(): void {
    for (const k of this.map.keys()) if (!this.used.has(k)) throw fnError(this.fn, `unknown option '${k}'`);
  }
}

function optionsMap(fn: string, v: Value | undefined): VMap {
  if (v === undefined || !isMap(v)) throw fnError(fn, `expects a map of options, got ${typeName(v)}`);
  return v;
}

// ---------------------------------------------------------------- csv

function createCsv(call: HostCall, fn: string, map: VMap): ServiceHandle {
  const o = new Options(fn, map);
  const connector = o.required('connector');
  const access = o.oneOf<CsvAccess>('access', ['O_RDONLY', 'O_WRONLY', 'O_RDWR'], 'O_RDONLY');
  const refresh = o.oneOf<CsvRefresh>('refresh', ['no', 'always'], 'no');
  const delimiter = o.string('delimiter') ?? ',';
  o.done();
  if ([...delimiter].length !== 1 || /["\r\n]/.test(delimiter)) {
    throw fnError(fn, `'delimiter' must be one character other than '"', CR and LF`);
  }
  const opts: CsvOptions = { file: path.resolve(call.fileDir, connector), access, refresh, delimiter };
  try {
    const services = servicesOf(call.env);
    return services.register(new CsvService(serviceId('csv', opts), opts, services.fileTurns));
  } catch (err) {
    throw fnError(fn, (err as Error).message);
  }
}

// ---------------------------------------------------------------- cmd

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** An absolute program path: relative paths against the declaring file, bare names in CMD_PATH. */
function resolveCommand(fn: string, dir: string, command: string): string {
  if (command.includes('/')) {
    const full = path.resolve(dir, command);
    if (!isExecutable(full)) throw fnError(fn, `command ${full} is not an executable file`);
    return full;
  }
  for (const d of CMD_PATH.split(':')) {
    const full = path.join(d, command);
    if (isExecutable(full)) return full;
  }
  throw fnError(fn, `command '${command}' not found in ${CMD_PATH}`);
}

function createCmd(call: HostCall, fn: string, map: VMap): ServiceHandle {
  if (!call.env.config.vsl.allow_cmd) throw fnError(fn, 'cmd services are disabled: set vsl.allow_cmd');
  const o = new Options(fn, map);
  const command = o.required('command');
  const args = o.strings('args') ?? [];
  const timeout = o.string('timeout') ?? '30s';
  const user = o.string('user');
  const group = o.string('group');
  o.done();
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(timeout);
  } catch (err) {
    throw fnError(fn, `'timeout': ${(err as Error).message}`);
  }
  if (timeoutMs <= 0) throw fnError(fn, `'timeout' must be longer than 0`);
  const opts: CmdOptions = { command: resolveCommand(fn, call.fileDir, command), args, timeoutMs, cwd: call.fileDir };
  if (user !== undefined || group !== undefined) {
    if (process.getuid?.() !== 0) throw fnError(fn, `'user' and 'group' require running as root`);
    if (user !== undefined) {
      const u = lookupUser(user);
      if (!u) throw fnError(fn, `unknown user '${user}'`);
      opts.uid = u.uid;
      opts.gid = u.gid;
    }
    if (group !== undefined) {
      const g = lookupGroup(group);
      if (g === null) throw fnError(fn, `unknown group '${group}'`);
      opts.gid = g;
    }
  }
  return servicesOf(call.env).register(new CmdService(serviceId('cmd', opts), opts));
}

// ---------------------------------------------------------------- built-ins

/** v1 `service NAME KIND = #{…}`: kinds `db:csv` (or `csv`) and `cmd`. */
function declareService(call: HostCall, [kind, map]: Value[]): Value {
  const fn = 'service';
  const k = typeof kind === 'string' ? kind : undefined;
  if (k === 'db:csv' || k === 'csv') return createCsv(call, fn, optionsMap(fn, map));
  if (k === 'cmd') return createCmd(call, fn, optionsMap(fn, map));
  throw fnError(fn, `unknown service kind ${k === undefined ? typeName(kind) : `'${k}'`}: db:csv, csv or cmd expected`);
}

function scalarText(fn: string, what: string, v: Value | undefined): string {
  if (typeof v === 'bigint' || typeof v === 'boolean' || typeof v === 'number') return String(v);
  const t = v === undefined ? undefined : textOf(v);
  if (t === undefined) throw fnError(fn, `${what} must be a string, got ${typeName(v)}`);
  return t;
}

function checkCount(fn: string, args: Value[], min: number, max: number): void {
  if (args.length < min || args.length > max) {
    throw fnError(fn, `expected ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`);
  }
}

/** `s.method(args…)` on a service handle. */
async function callService(call: HostCall, [handle, method, args]: Value[]): Promise<Value> {
  if (!(handle instanceof ServiceHandle)) throw fnError('service', `not a service: ${typeName(handle)}`);
  const name = typeof method === 'string' ? method : '';
  const fn = `${handle.kind}.${name}`;
  const list = isArray(args!) ? args : [];
  const s = servicesOf(call.env).get(handle.id);
  if (!s) throw fnError(fn, 'this service no longer exists');
  if (s instanceof CsvService) {
    switch (name) {
      case 'get':
        checkCount(fn, list, 1, 1);
        return s.get(fn, scalarText(fn, 'key', list[0]));
      case 'set': {
        checkCount(fn, list, 1, 1);
        const fields = list[0];
        if (!isArray(fields!) || fields.length === 0) throw fnError(fn, `expects a non-empty array of fields, got ${typeName(fields)}`);
        return s.set(call, fn, fields.map((f, i) => scalarText(fn, `field ${i}`, f)));
      }
      case 'rm':
        checkCount(fn, list, 1, 1);
        return s.rm(call, fn, scalarText(fn, 'key', list[0]));
      default:
        throw fnError(fn, `a csv service has no method '${name}' (get, set, rm)`);
    }
  }
  if (name !== 'run') throw fnError(fn, `a cmd service has no method '${name}' (run)`);
  checkCount(fn, list, 0, 1);
  if (list.length === 0) return s.run(call, fn);
  const argv = list[0];
  if (!isArray(argv!)) throw fnError(fn, `expects an array of arguments, got ${typeName(argv)}`);
  return s.run(call, fn, argv.map((a, i) => scalarText(fn, `argument ${i}`, a)));
}

export const serviceBuiltins: HostBuiltin[] = [
  // Creation happens at load: no I/O wait, a file read at most.
  builtin({ name: 'sys::service', from: 'connect', io: false, arity: 2, fn: declareService }),
  builtin({ name: 'csv', from: 'connect', io: false, arity: 1, fn: (call, [m]) => createCsv(call, 'csv', optionsMap('csv', m)) }),
  builtin({ name: 'cmd', from: 'connect', io: false, arity: 1, fn: (call, [m]) => createCmd(call, 'cmd::build', optionsMap('cmd::build', m)) }),
  builtin({ name: 'sys::service_call', from: 'connect', io: true, arity: 3, fn: callService }),
];
