// Every name a script can call without defining it: the built-in catalog the
// compiler resolves calls against (SPEC §2.8, §5, §6, §7, §8, Appendix A).
//
// Three kinds of implementation:
//   guest   – pure code inside the sandbox (src/vsl/guest/intrinsics.ts), e.g.
//             ctx:: getters, object constructors. No boundary crossing.
//   host    – a HostBuiltin registered by src/builtins/ (I/O or host data),
//             reached through the sandbox bridge.
//   stdlib  – a function written in vSL under stdlib/ (state::deny,
//             check_rcpt_relay, …), compiled with the policy.
// The runtime globals of §2.8 (type_of, parse_int, …) are resolved by
// src/vsl/guest/methods.ts and need no entry here.

import type { Stage } from '../mail/types.js';

export type Arity = number | [number, number];

export interface GuestBuiltin {
  kind: 'guest';
  /** Name of the function in the guest intrinsics table. */
  js: string;
  arity: Arity;
  /** May return a promise (awaited in async code). */
  async?: boolean;
}

export interface HostBuiltinRef {
  kind: 'host';
  name: string;
  io: boolean;
  arity: Arity;
  from: Stage;
}

export type BuiltinRef = GuestBuiltin | HostBuiltinRef;

export function arityOk(arity: Arity, n: number): boolean {
  return typeof arity === 'number' ? arity === n : n >= arity[0] && n <= arity[1];
}

export function arityText(arity: Arity): string {
  return typeof arity === 'number' ? String(arity) : `${arity[0]}..${arity[1]}`;
}

const g = (js: string, arity: Arity, async = false): GuestBuiltin => ({ kind: 'guest', js, arity, async });

/** Guest intrinsics by vSL name (SPEC §4.2, §6, §7.2, §7.3, §7.11). */
export const GUEST_BUILTINS: Record<string, GuestBuiltin> = {
  // §4.2 context getters (v2; v1 names are aliases below)
  'ctx::client_address': g('ctx_client_address', 0),
  'ctx::client_ip': g('ctx_client_ip', 0),
  'ctx::client_port': g('ctx_client_port', 0),
  'ctx::server_address': g('ctx_server_address', 0),
  'ctx::server_ip': g('ctx_server_ip', 0),
  'ctx::server_port': g('ctx_server_port', 0),
  'ctx::server_name': g('ctx_server_name', 0),
  'ctx::connection_timestamp': g('ctx_connection_timestamp', 0),
  'ctx::is_secured': g('ctx_is_secured', 0),
  'ctx::helo': g('ctx_helo', 0),
  'ctx::mail_from': g('ctx_mail_from', 0),
  'ctx::rcpt': g('ctx_rcpt', 0),
  'ctx::rcpt_list': g('ctx_rcpt_list', 0),
  'ctx::mail_timestamp': g('ctx_mail_timestamp', 0),
  'ctx::message_id': g('ctx_message_id', 0),
  'ctx::to_string': g('ctx_to_string', 0),
  'auth::is_authenticated': g('auth_is_authenticated', 0),
  'auth::credentials': g('auth_credentials', 0),
  // §7.2 globals
  ctx: g('ctx_handle', 0),
  msg: g('msg_handle', 0),
  srv: g('srv_handle', 0),
  in_domain: g('in_domain', 1),
  hostname: g('hostname', 0),
  // §6.1 constructors
  ip4: g('ip4', 1),
  ip6: g('ip6', 1),
  rg4: g('rg4', 1),
  rg6: g('rg6', 1),
  address: g('address', 1),
  new_address: g('address', 1),
  fqdn: g('fqdn', 1),
  regex: g('regex', 1),
  identifier: g('identifier', 1),
  code: g('code', [1, 3]),
  file: g('file', 2),
  // vSMTP 2.2 spells the constructors obj::ip4(…), obj::code(…), …
  'obj::ip4': g('ip4', 1),
  'obj::ip6': g('ip6', 1),
  'obj::rg4': g('rg4', 1),
  'obj::rg6': g('rg6', 1),
  'obj::address': g('address', 1),
  'obj::fqdn': g('fqdn', 1),
  'obj::regex': g('regex', 1),
  'obj::identifier': g('identifier', 1),
  'obj::code': g('code', [1, 3]),
  // §7.11
  'time::now': g('time_now', 0),
  'time::date': g('time_date', 0),
  time: g('time_now', 0),
  date: g('time_date', 0),
  'net::rg_192': g('net_rg_192', 0),
  'net::rg_172': g('net_rg_172', 0),
  'net::rg_10': g('net_rg_10', 0),
  'net::non_routable': g('net_non_routable', 0),
  'unix::hostname': g('hostname', 0),
  // function pointers
  Fn: g('fn_ptr', 1),
  call: g('call', [1, 64], true),
  // internal primitives for stdlib/ only (the compiler refuses sys:: elsewhere)
  'sys::status': g('sys_status', 2),
  'sys::predefined': g('sys_predefined', 1),
  'sys::client_allowed': g('sys_client_allowed', 1, true),
};

/** v1 un-namespaced names of context getters (SPEC §4.2 "v1: the same names, un-namespaced"). */
for (const name of [
  'client_address', 'client_ip', 'client_port', 'server_address', 'server_ip', 'server_port', 'server_name',
  'connection_timestamp', 'is_secured', 'helo', 'mail_from', 'rcpt', 'rcpt_list', 'mail_timestamp', 'message_id',
]) {
  GUEST_BUILTINS[name] = GUEST_BUILTINS[`ctx::${name}`]!;
}
// v1 `to_string()` with no argument is the context as JSON (SPEC §4.2, Appendix A "v1 same");
// with one argument `to_string(x)` stays the §2.8 global (resolution is by arity).
GUEST_BUILTINS['to_string'] = GUEST_BUILTINS['ctx::to_string']!;
GUEST_BUILTINS['is_authenticated'] = GUEST_BUILTINS['auth::is_authenticated']!;
GUEST_BUILTINS['auth'] = GUEST_BUILTINS['auth::credentials']!;

/** Predefined reply codes as v2 functions `code::cNNN_X_Y()` (SPEC §5.9). */
export const V2_CODE_NAMES = [
  'c554_7_1', 'c550_7_20', 'c550_7_21', 'c550_7_22', 'c550_7_23', 'c550_7_24', 'c451_7_24', 'c550_7_25',
  'c550_7_26', 'c500_7_26', 'c550_7_27', 'c556_1_10', 'c451_7_1', 'c451_3_0', 'c550_1_1',
];

/** Engine constants visible everywhere as bare names (SPEC §7.2). */
export const ENGINE_CONSTANTS = [
  'code554_7_1', 'code550_7_20', 'code550_7_21', 'code550_7_22', 'code550_7_23', 'code550_7_24', 'code451_7_24',
  'code550_7_25', 'code550_7_26', 'code550_7_27', 'code556_1_10', 'code_greylist',
  'net_192', 'net_172', 'net_10', 'non_routable_net',
  // vSMTP 1.x: the time and date of the evaluation as values (SPEC §7.11 time::now(), time::date())
  'time', 'date',
];

/**
 * vSMTP 1.x namespaces of the global API: `vsl::accept()`, `sys::deny()`,
 * `sys::new_address(…)` are the global names without the namespace.
 * (In stdlib/ files `sys::` stays the namespace of internal primitives.)
 */
export const V1_GLOBAL_NAMESPACES = ['vsl', 'sys'];

/** vSMTP 1.0–1.1 read the handles as variables: `ctx.helo` is `ctx().helo` (SPEC §4.2, §7.2). */
export const V1_HANDLE_VALUES: Record<string, string> = {
  ctx: 'ctx_handle',
  msg: 'msg_handle',
  srv: 'srv_handle',
};

/** Engine values reached by path (SPEC §7.11): `cfg::server`, `cfg::app`, v1 `toml::server`, `toml::app`. */
export const ENGINE_PATHS: Record<string, string> = {
  'cfg::server': 'cfg_server',
  'cfg::app': 'cfg_app',
  'toml::server': 'cfg_server',
  'toml::app': 'cfg_app',
};

/** Namespaces whose functions are written in vSL under stdlib/<ns>.vsl. */
export const STDLIB_NAMESPACES = ['state', 'code', 'envelop'];

/**
 * v1 global aliases of namespaced host built-ins (SPEC Appendix A). The
 * compiler rewrites the alias to the namespaced name before lookup.
 */
export const HOST_ALIASES: Record<string, string> = {
  lookup: 'dns::lookup',
  rlookup: 'dns::rlookup',
  check_spf_inner: 'spf::check_raw',
  verify_dkim: 'dkim::verify',
  check_dmarc: 'dmarc::check',
  write: 'fs::write',
  dump: 'fs::dump',
  get_root_domain: 'utils::get_root_domain',
  'utils::env': 'env',
  'unix::env': 'env',
  'unix::user_exist': 'user_exist',
  authenticate: 'auth::unix_users',
  // §7.4 envelope (v1.3 and v1.0–1.1 names)
  rewrite_mail_from_envelop: 'envelop::rw_mail_from',
  rewrite_rcpt_envelop: 'envelop::rw_rcpt',
  rewrite_rcpt: 'envelop::rw_rcpt',
  add_rcpt_envelop: 'envelop::add_rcpt',
  add_rcpt: 'envelop::add_rcpt',
  bcc: 'envelop::bcc',
  remove_rcpt_envelop: 'envelop::rm_rcpt',
  remove_rcpt: 'envelop::rm_rcpt',
  // §7.5 message (v1 same names without namespace, with exceptions)
  has_header: 'msg::has_header',
  count_header: 'msg::count_header',
  get_header: 'msg::get_header',
  get_all_headers: 'msg::get_all_headers',
  get_header_untouched: 'msg::get_header_untouched',
  append_header: 'msg::append_header',
  add_header: 'msg::append_header',
  prepend_header: 'msg::prepend_header',
  set_header: 'msg::set_header',
  rename_header: 'msg::rename_header',
  remove_header: 'msg::rm_header',
  mail: 'msg::mail',
  rewrite_mail_from_message: 'msg::rw_mail_from',
  rewrite_rcpt_message: 'msg::rw_rcpt',
  add_rcpt_message: 'msg::add_rcpt',
  remove_rcpt_message: 'msg::rm_rcpt',
  rewrite_to: 'msg::rw_rcpt',
  add_to: 'msg::add_rcpt',
  remove_to: 'msg::rm_rcpt',
  // §7.6 transports (v1 same names)
  deliver: 'transport::deliver',
  deliver_all: 'transport::deliver_all',
  forward: 'transport::forward',
  forward_all: 'transport::forward_all',
  maildir: 'transport::maildir',
  maildir_all: 'transport::maildir_all',
  mbox: 'transport::mbox',
  mbox_all: 'transport::mbox_all',
  disable_delivery: 'transport::disable_delivery',
  disable_delivery_all: 'transport::disable_delivery_all',
  // §7.12
  'cmd::build': 'cmd',
};
