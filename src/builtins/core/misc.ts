// Globals of SPEC §7.2 implemented on the host: log(level, msg),
// env(name) (v1 utils::env, unix::env) and user_exist(name) (v1
// unix::user_exist). hostname() is a guest intrinsic; utils::get_root_domain
// lives in src/builtins/psl.ts.

import type { Level } from 'pino';
import { toStr } from '../../vsl/values/format.js';
import { textOf } from '../../vsl/values/objects.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { typeName } from '../dns/call-args.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { lookupUser } from '../../host/accounts.js';
import { builtin } from './define.js';

const LEVELS: readonly Level[] = ['trace', 'debug', 'info', 'warn', 'error'];

function log(call: HostCall, [level, msg]: Value[]): Value {
  const text = typeof msg === 'string' ? msg : toStr(msg);
  // The call's logger may already carry these bindings; repeat none of them.
  const bound = call.log.bindings();
  const fields: Record<string, unknown> = { at: call.at };
  if (bound.rule === undefined) fields.rule = call.rule;
  if (bound.stage === undefined) fields.stage = call.stage;
  const name = typeof level === 'string' ? level.toLowerCase() : undefined;
  if (name !== undefined && (LEVELS as readonly string[]).includes(name)) {
    call.log[name as Level](fields, text);
  } else {
    const shown = typeof level === 'string' ? level : toStr(level);
    call.log.warn({ ...fields, level_given: shown }, text);
  }
  return undefined;
}

/**
 * `env(name)`: an environment variable, or `()` when unset. Unrestricted in
 * on_config (the caller passes the pseudo-stage 'config'); elsewhere only the
 * names listed in `vsl.env_allow` (SPEC §7.2, §13).
 */
function env(call: HostCall, [name]: Value[]): Value {
  const n = textOf(name);
  if (n === undefined || n === '') throw fnError('env', `variable name must be a non-empty string, got ${typeName(name)}`);
  const inOnConfig = (call.stage as string) === 'config';
  if (!inOnConfig && !call.env.config.vsl.env_allow.includes(n)) throw fnError('env', `'${n}' is not in vsl.env_allow`);
  return process.env[n];
}

function userExist(_call: HostCall, [name]: Value[]): Value {
  const n = textOf(name);
  if (n === undefined) throw fnError('user_exist', `user name must be a string, got ${typeName(name)}`);
  // A name with ':' or a newline cannot be a passwd entry; don't let it match a field boundary.
  if (n === '' || /[:\n]/.test(n)) return false;
  const u = lookupUser(n);
  return u !== null && u.name === n;
}

export const miscBuiltins: HostBuiltin[] = [
  builtin({ name: 'log', from: 'connect', io: false, arity: 2, fn: log }),
  builtin({ name: 'env', from: 'connect', io: false, arity: 1, fn: env }),
  builtin({ name: 'user_exist', from: 'connect', io: false, arity: 1, fn: userExist }),
];
