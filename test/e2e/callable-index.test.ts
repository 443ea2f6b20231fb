// SPEC Appendix A, walked name by name (issue "Core built-ins", must-show 4):
// every callable name is compiled into one policy and run through the real
// runner (src/policy/runner.ts, the sandbox, the host bridge and the real
// built-ins, DNS from a loopback DNS server) in its documented stage, with
// sensible arguments, and its result is checked; a stage-bound name is also
// run one stage earlier, where it must raise E_TOO_EARLY.
//
// The names are read from ../shared/vsl/SPEC.md at test time (every
// backticked name of the Appendix A table, namespaces expanded, "v1 same"
// expanded), and every one of them must have an entry below: a name added to
// the SPEC without an implementation fails here.
//
// How one policy serves all entries: entry #n's rule only acts when
// ctx::client_port() == n, and the test runs each stage with a session whose
// client port is n. The rule returns accept() after its checks pass, so a
// verdict "accept by rule #n" means the name ran to the end.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { allBuiltins } from '../../src/builtins/registry.js';
import { loadPolicy, type PolicyVersion } from '../../src/policy/load.js';
import { serverEnv } from '../../src/policy/env.js';
import { PolicyRunner } from '../../src/policy/runner.js';
import { STAGES, type Session, type Stage, type Transaction } from '../../src/mail/types.js';
import { messageView } from '../../src/queue/message.js';
import { formatDiagnostic } from '../../src/vsl/diagnostics.js';
import { startDnsServer, type DnsTestServer } from '../helpers/dns-server.js';
import { REPO_ROOT, tempDir, writeFiles } from '../helpers/server.js';
import { addr, session as makeSession, txn as makeTxn } from '../helpers/vsl.js';

const SPEC_PATH = path.resolve(REPO_ROOT, '..', 'shared', 'vsl', 'SPEC.md');

/** One call to prove: `call` is a vSL expression; `check` a boolean over its value `r`. */
interface Entry {
  /** The Appendix A name this entry proves. */
  name: string;
  stage: Stage;
  call: string;
  check?: string;
  /** Statements run before the call. */
  pre?: string;
  /** Statements run after the call, before the check. */
  prep?: string;
  /** Not bound to a stage (values, constructors, pure helpers): no too-early run. */
  unbound?: boolean;
}

const e = (name: string, stage: Stage, call: string, check?: string, more: Partial<Entry> = {}): Entry => ({ name, stage, call, check, ...more });

// Expected replies of the predefined codes (SPEC §5.9).
const CODES: Record<string, string> = {
  c554_7_1: '554 5.7.1 Relay access denied',
  c550_7_20: '550 5.7.20 No passing DKIM signature found',
  c550_7_21: '550 5.7.21 No acceptable DKIM signature found',
  c550_7_22: '550 5.7.22 No valid author-matched DKIM signature found',
  c550_7_23: '550 5.7.23 SPF validation failed',
  c550_7_24: '550 5.7.24 SPF validation error',
  c451_7_24: '451 4.7.24 SPF validation error',
  c550_7_25: '550 5.7.25 Reverse DNS validation failed',
  c550_7_26: '550 5.7.26 Multiple authentication checks failed',
  c500_7_26: '550 5.7.26 Multiple authentication checks failed',
  c550_7_27: '550 5.7.27 Sender address has null MX',
  c556_1_10: '556 5.1.10 Recipient address has null MX',
  c451_7_1: '451 4.7.1 Sender is not authorized. Please try again.',
  c451_3_0: '451 4.3.0 Multiple destination domains per transaction is unsupported. Please try again.',
  c550_1_1: '550 5.1.1 The email account that you tried to reach does not exist. Please try again.',
};
const V1_CODES: Record<string, string> = {
  code554_7_1: CODES.c554_7_1!, code550_7_20: CODES.c550_7_20!, code550_7_21: CODES.c550_7_21!, code550_7_22: CODES.c550_7_22!,
  code550_7_23: CODES.c550_7_23!, code550_7_24: CODES.c550_7_24!, code451_7_24: CODES.c451_7_24!, code550_7_25: CODES.c550_7_25!,
  code550_7_26: CODES.c550_7_26!, code550_7_27: CODES.c550_7_27!, code556_1_10: CODES.c556_1_10!, code_greylist: CODES.c451_7_1!,
};

const ENTRIES: Entry[] = [
  // §2.8 globals
  e('type_of', 'connect', 'type_of(42)', 'r == "i64"'),
  e('to_string', 'connect', '42.to_string()', 'r == "42"'),
  e('to_debug', 'connect', '"a".to_debug()', 'type_of(r) == "string" && r.contains("a")'),
  e('print', 'connect', 'print("callable index")', 'r == ()'),
  e('debug', 'connect', 'debug("callable index")', 'r == ()'),
  e('range', 'connect', 'range(0, 4)', 'n == 6', { prep: 'let n = 0; for i in r { n += i; }' }),
  e('Fn', 'connect', 'Fn("twice")', 'r.call(21) == 42'),
  e('call', 'connect', 'call(Fn("twice"), 4)', 'r == 8'),
  e('parse_int', 'connect', 'parse_int("42")', 'r == 42'),
  e('parse_float', 'connect', 'parse_float("1.5")', 'r == 1.5'),
  e('to_int', 'connect', 'to_int(1.9)', 'r == 1'),
  e('to_float', 'connect', 'to_float(2)', 'type_of(r) == "f64" && r == 2.0'),
  e('parse_json', 'connect', 'parse_json("{\\"a\\": [1, 2]}")', 'r.a[1] == 2'),
  e('to_json', 'connect', '#{ a: 1 }.to_json()', 'parse_json(r).a == 1'),
  // §5.1 statuses, v2 and v1
  ...(['next', 'accept', 'faccept', 'deny', 'reject'] as const).flatMap((k) => [
    e(`state::${k}`, 'connect', `state::${k}()`, `r.to_string() == "${k}"`),
    e(k, 'connect', `${k}()`, `r.to_string() == "${k}"`),
  ]),
  e('state::info', 'connect', 'state::info("451 4.7.1 later")', 'r.to_string() == "info"'),
  e('info', 'connect', 'info("451 4.7.1 later")', 'r.to_string() == "info"'),
  e('state::quarantine', 'connect', 'state::quarantine("held")', 'r.to_string() == "quarantine"'),
  e('quarantine', 'connect', 'quarantine("held")', 'r.to_string() == "quarantine"'),
  // §5.8–5.9 codes
  e('code', 'connect', 'code(550, "5.7.1", "go away")', 'r.to_string() == "550 5.7.1 go away"'),
  ...Object.entries(CODES).map(([n, reply]) => e(`code::${n}`, 'connect', `code::${n}()`, `r.to_string() == ${JSON.stringify(reply)}`)),
  ...Object.entries(V1_CODES).map(([n, reply]) => e(n, 'connect', n, `r.to_string() == ${JSON.stringify(reply)}`)),
  // §6.1–6.2 objects
  e('ip4', 'connect', 'ip4("192.0.2.1")', 'r.to_string() == "192.0.2.1" && type_of(r) == "ip4"'),
  e('ip6', 'connect', 'ip6("2001:DB8::1")', 'r.to_string() == "2001:db8::1"'),
  e('rg4', 'connect', 'rg4("192.0.2.0/24")', '"192.0.2.77" in r && !("192.0.3.1" in r)'),
  e('rg6', 'connect', 'rg6("2001:db8::/32")', '"2001:db8::5" in r'),
  e('address', 'connect', 'address("John@Example.ORG")', 'r.local_part == "John" && r.domain == "example.org"'),
  e('new_address', 'connect', 'new_address("a@b.example")', 'type_of(r) == "address"'),
  e('fqdn', 'connect', 'fqdn("Mail.Example.ORG")', 'r.to_string() == "mail.example.org"'),
  e('regex', 'connect', 'regex("^a+$")', 'r == "aaa" && r != "ab"'),
  e('identifier', 'connect', 'identifier("john")', 'r.to_string() == "john"'),
  e('file', 'connect', 'file("hosts.txt", "fqdn")', 'r.len() == 2 && "b.example" in r'),
  e('object', 'connect', 'global::callable_object', 'r == "192.0.2.9"'),
  // §7.2 globals
  e('log', 'connect', 'log("info", "callable index")', 'r == ()'),
  // A name outside vsl.env_allow is an error in the policy (fail closed), not a silent ().
  e('env', 'connect', 'env("CALLABLE_INDEX_VAR")', 'r == "yes" && refused', { prep: 'let refused = false; try { env("PATH"); } catch { refused = true; }' }),
  e('hostname', 'connect', 'hostname()', 'type_of(r) == "string" && r != ""'),
  e('user_exist', 'connect', '[user_exist("root"), user_exist("no-such-user-here")]', 'r[0] && !r[1]'),
  e('in_domain', 'connect', '[in_domain("a@test.example"), in_domain(fqdn("virtual.example")), in_domain("test.example.evil.test")]', 'r[0] && r[1] && !r[2]'),
  e('ctx', 'connect', 'ctx()', 'r.client_ip == "192.0.2.1"'),
  e('msg', 'preq', 'msg()', 'r.to_string().contains("Subject: callable index")'),
  e('srv', 'connect', 'srv()', 'r.domain == "test.example" && r.virtual == ["virtual.example"]'),
  e('net_192', 'connect', 'net_192', '"192.168.3.4" in r'),
  e('net_172', 'connect', 'net_172', '"172.16.0.1" in r'),
  e('net_10', 'connect', 'net_10', '"10.1.2.3" in r'),
  e('non_routable_net', 'connect', 'non_routable_net', '"10.1.2.3" in r && "192.168.0.1" in r && !("192.0.2.1" in r)'),
  // §4.2, §7.3 context and authentication
  ...([
    ['client_address', 'connect', 'r == "192.0.2.1:" + ctx::client_port()'],
    ['client_ip', 'connect', 'r == "192.0.2.1"'],
    ['client_port', 'connect', 'type_of(r) == "i64"'],
    ['server_address', 'connect', 'r == "127.0.0.1:25"'],
    ['server_ip', 'connect', 'r == "127.0.0.1"'],
    ['server_port', 'connect', 'r == 25'],
    ['server_name', 'connect', 'r == "callable.test.example"'],
    ['connection_timestamp', 'connect', 'r.to_string().starts_with("2026-01-01T00:00:00")'],
    ['is_secured', 'connect', 'r == false'],
    ['helo', 'helo', 'r == "client.test"'],
    ['mail_from', 'mail', 'r == "a@sender.test"'],
    ['rcpt', 'rcpt', 'r == "v@test.example"'],
    ['rcpt_list', 'rcpt', 'r.len() == 2 && r[1] == "v@test.example"'],
    ['mail_timestamp', 'mail', 'r.to_string().starts_with("2026-01-01T00:00:01")'],
    ['message_id', 'mail', 'r == "TXN1"'],
    ['to_string', 'connect', 'parse_json(r).client_ip == "192.0.2.1"'],
  ] as Array<[string, Stage, string]>).flatMap(([n, stage, check]) => [
    e(`ctx::${n}`, stage, `ctx::${n}()`, check),
    e(n, stage, `${n}()`, check),
  ]),
  e('auth::is_authenticated', 'connect', 'auth::is_authenticated()', 'r == false'),
  e('is_authenticated', 'connect', 'is_authenticated()', 'r == false'),
  e('auth::credentials', 'authenticate', 'auth::credentials()', 'r.authid == "john" && r.mechanism == "PLAIN" && r.type == "Verify"'),
  e('auth', 'authenticate', 'auth()', 'r.authid == "john"'),
  e('auth::unix_users', 'authenticate', 'auth::unix_users()', 'r == accept()'),
  e('authenticate', 'authenticate', 'authenticate()', 'r == accept()'),
  // §7.4 envelope
  e('envelop::rw_mail_from', 'mail', 'envelop::rw_mail_from("b@sender.test")', 'r == ()'),
  e('envelop::rw_rcpt', 'rcpt', 'envelop::rw_rcpt("u@test.example", "w@test.example")', 'r == ()'),
  e('envelop::add_rcpt', 'mail', 'envelop::add_rcpt("w@test.example")', 'r == ()'),
  e('envelop::bcc', 'mail', 'envelop::bcc("archive@test.example")', 'r == ()'),
  e('envelop::rm_rcpt', 'rcpt', 'envelop::rm_rcpt("u@test.example")', 'r == true'),
  e('rewrite_mail_from_envelop', 'mail', 'rewrite_mail_from_envelop("b@sender.test")'),
  e('rewrite_rcpt_envelop', 'rcpt', 'rewrite_rcpt_envelop("u@test.example", "w@test.example")'),
  e('add_rcpt_envelop', 'mail', 'add_rcpt_envelop("w@test.example")'),
  e('remove_rcpt_envelop', 'rcpt', 'remove_rcpt_envelop("u@test.example")', 'r == true'),
  e('bcc', 'mail', 'bcc("archive@test.example")'),
  e('rewrite_mail_from', 'mail', 'rewrite_mail_from("b@sender.test")'),
  e('rewrite_rcpt', 'rcpt', 'rewrite_rcpt("u@test.example", "w@test.example")'),
  e('add_rcpt', 'mail', 'add_rcpt("w@test.example")'),
  e('remove_rcpt', 'rcpt', 'remove_rcpt("u@test.example")', 'r == true'),
  // §7.5 message: reads from P, writes from C
  ...([
    ['has_header', 'preq', 'has_header("Subject")', 'r == true'],
    ['count_header', 'preq', 'count_header("Received")', 'r == 1'],
    ['get_header', 'preq', 'get_header("Subject")', 'r == "callable index"'],
    ['get_all_headers', 'preq', 'get_all_headers()', 'r.len() == 4 && r[0].starts_with("Received: ")'],
    ['get_header_untouched', 'preq', 'get_header_untouched("Subject")', 'r.len() == 1 && r[0].starts_with("Subject:")'],
    ['append_header', 'connect', 'append_header("X-Callable", "1")', 'r == ()'],
    ['prepend_header', 'connect', 'prepend_header("X-Callable", "1")', 'r == ()'],
    ['set_header', 'connect', 'set_header("X-Callable", "1")', 'r == ()'],
    ['rename_header', 'connect', 'rename_header("X-Old", "X-New")', 'r == ()'],
    ['mail', 'preq', 'mail()', 'r.contains("\\r\\n\\r\\nbody\\r\\n")'],
  ] as Array<[string, Stage, string, string]>).flatMap(([n, stage, call, check]) => [
    e(`msg::${n}`, stage, `msg::${call}`, check),
    e(n, stage, call, check),
  ]),
  e('msg::get_all_headers', 'preq', 'msg::get_all_headers("To")', 'r == ["<u@test.example>"]'),
  e('msg::to_string', 'preq', 'msg::to_string()', 'r.starts_with("Received: ")'),
  e('msg::rm_header', 'connect', 'msg::rm_header("X-Nothing")', 'type_of(r) == "bool"'),
  e('remove_header', 'connect', 'remove_header("X-Nothing")', 'type_of(r) == "bool"'),
  e('add_header', 'connect', 'add_header("X-Callable", "1")', 'r == ()'),
  // From:/To: edits. SPEC §7.5 says "writes from C"; these rewrite the
  // transaction's message, and the server takes them from mail on (at C/H/A
  // there is no transaction to attach them to). Reported, not hidden.
  ...([
    ['msg::rw_mail_from', 'msg::rw_mail_from("b@sender.test")'],
    ['msg::rw_rcpt', 'msg::rw_rcpt("u@test.example", "w@test.example")'],
    ['msg::add_rcpt', 'msg::add_rcpt("w@test.example")'],
    ['msg::rm_rcpt', 'msg::rm_rcpt("u@test.example")'],
    ['rewrite_mail_from_message', 'rewrite_mail_from_message("b@sender.test")'],
    ['rewrite_rcpt_message', 'rewrite_rcpt_message("u@test.example", "w@test.example")'],
    ['add_rcpt_message', 'add_rcpt_message("w@test.example")'],
    ['remove_rcpt_message', 'remove_rcpt_message("u@test.example")'],
    ['rewrite_to', 'rewrite_to("u@test.example", "w@test.example")'],
    ['add_to', 'add_to("w@test.example")'],
    ['remove_to', 'remove_to("u@test.example")'],
  ] as Array<[string, string]>).map(([n, call]) => e(n, 'mail', call)),
  // §7.6 transports
  ...([
    ['deliver', 'deliver(ctx::rcpt())'],
    ['deliver_all', 'deliver_all()'],
    ['forward', 'forward(ctx::rcpt(), "127.0.0.1:2525")'],
    ['forward_all', 'forward_all("smtp://relay.test.example:587?tls=required")'],
    ['maildir', 'maildir(ctx::rcpt())'],
    ['maildir_all', 'maildir_all()'],
    ['mbox', 'mbox(ctx::rcpt())'],
    ['mbox_all', 'mbox_all()'],
  ] as Array<[string, string]>).flatMap(([n, call]) => [e(`transport::${n}`, 'rcpt', `transport::${call}`, 'r == ()'), e(n, 'rcpt', call, 'r == ()')]),
  e('disable_delivery', 'rcpt', 'disable_delivery(ctx::rcpt())', 'r == ()'),
  e('disable_delivery_all', 'rcpt', 'disable_delivery_all()', 'r == ()'),
  // §7.7 DNS
  e('dns::lookup', 'connect', 'dns::lookup("host.test")', 'r == ["192.0.2.1"]'),
  e('dns::rlookup', 'connect', 'dns::rlookup("192.0.2.1")', 'r == ["host.test"]'),
  e('lookup', 'connect', 'lookup("host.test")', 'r == ["192.0.2.1"]'),
  e('rlookup', 'connect', 'rlookup("192.0.2.1")', 'r == ["host.test"]'),
  // §7.8 relay
  e('check_mail_relay', 'mail', 'check_mail_relay([])', 'r == next()'),
  e('check_rcpt_relay', 'rcpt', 'check_rcpt_relay([])', 'r == next()'),
  // §7.9 SPF (sender.test authorises 192.0.2.1)
  e('spf::check', 'mail', 'spf::check(#{ header: "none", policy: "soft" })', 'r == next()'),
  e('spf::check_raw', 'mail', 'spf::check_raw()', 'r.result == "pass" && r.mechanism == "ip4:192.0.2.1"'),
  e('check_spf', 'mail', 'check_spf("both", "soft")', 'r == next()'),
  e('check_spf_inner', 'mail', 'check_spf_inner()', 'r.result == "pass"'),
  // §7.10 DKIM, DMARC, files
  e('dkim::verify', 'preq', 'dkim::verify()', 'r.status == "none"'),
  e('dkim::result', 'preq', 'dkim::result()', 'r.status == "none"', { pre: 'dkim::verify();' }),
  e('dkim::has_result', 'preq', 'dkim::has_result()', '!r && after', { prep: 'dkim::verify(); let after = dkim::has_result();' }),
  e('dkim::store', 'preq', 'dkim::store(#{ status: "pass", sdid: "sender.test", auid: "@sender.test" })', 'dkim::result().status == "pass"'),
  e('dkim::get_private_keys', 'preq', 'dkim::get_private_keys("sender.test")', 'r.len() == 1 && r[0].selector == "s1"'),
  e('dkim::sign', 'preq', 'dkim::sign(#{ selector: "s1" })', 'r == ()'),
  e('dmarc::check', 'preq', 'dmarc::check()', 'r == next()'),
  e('fs::write', 'preq', 'fs::write("callable")', 'r == ()'),
  e('fs::dump', 'preq', 'fs::dump("callable")', 'r == ()'),
  e('verify_dkim', 'preq', 'verify_dkim()', 'r.status == "none"'),
  e('sign_dkim', 'preq', 'sign_dkim("s1")', 'r == ()'),
  e('check_dmarc', 'preq', 'check_dmarc()', 'r == next()'),
  e('write', 'preq', 'write("callable-v1")', 'r == ()'),
  e('dump', 'preq', 'dump("callable-v1")', 'r == ()'),
  // §7.11
  e('time::now', 'connect', 'time::now()', 'r.len() == 8 && r.split(":").len() == 3'),
  e('time::date', 'connect', 'time::date()', 'r.len() == 10 && r.split("-").len() == 3'),
  e('time', 'connect', 'time()', 'r.len() == 8'),
  e('date', 'connect', 'date()', 'r.len() == 10'),
  e('utils::get_root_domain', 'connect', 'utils::get_root_domain("a.b.example.co.uk")', 'r == "example.co.uk"'),
  e('get_root_domain', 'connect', 'get_root_domain("mail.example.org")', 'r == "example.org"'),
  e('utils::env', 'connect', 'utils::env("CALLABLE_INDEX_VAR")', 'r == "yes"'),
  e('unix::env', 'connect', 'unix::env("CALLABLE_INDEX_VAR")', 'r == "yes"'),
  e('unix::hostname', 'connect', 'unix::hostname()', 'r == hostname()'),
  e('unix::user_exist', 'connect', 'unix::user_exist("root")', 'r == true'),
  e('net::rg_192', 'connect', 'net::rg_192()', '"192.168.1.1" in r'),
  e('net::rg_172', 'connect', 'net::rg_172()', '"172.31.255.1" in r'),
  e('net::rg_10', 'connect', 'net::rg_10()', '"10.0.0.1" in r'),
  e('net::non_routable', 'connect', 'net::non_routable()', '"172.16.0.1" in r'),
  e('cfg::server', 'connect', 'cfg::server', 'r.domain == "test.example"'),
  e('cfg::app', 'connect', 'cfg::app', 'type_of(r.dirpath) == "string" && r.dirpath != ""'),
  e('toml::server', 'connect', 'toml::server', 'r.name == "callable.test.example"'),
  e('toml::app', 'connect', 'toml::app', 'r.dirpath == cfg::app.dirpath'),
  // §7.12 services (declared at the top level, below)
  e('cmd::build', 'connect', 'cmd::build(#{ command: "/bin/true" })', 'type_of(r) == "service"'),
  e('csv', 'connect', 'csv(#{ connector: "db.csv" })', 'type_of(r) == "service"'),
  e('run', 'connect', 'global::shell.run()', 'r.has_code && r.code == 0 && !r.has_signal'),
  e('get', 'connect', 'global::db.get("alice")', 'r == ["alice", "x"]'),
  e('set', 'connect', 'global::db.set(["carol", "z"])', 'global::db.get("carol") == ["carol", "z"]'),
  e('rm', 'connect', 'global::db.rm("bob")', 'global::db.get("bob") == []'),
  e('service', 'connect', 'global::db_v1.get("alice")', 'r == ["alice", "x"]'),
  // §8.1 DNSBL and RHSBL (192.0.2.1 and sender.test are listed)
  e('dnsbl::lookup', 'connect', 'dnsbl::lookup("bl.test")', 'r == ["127.0.0.2"]'),
  e('dnsbl::listed', 'connect', 'dnsbl::listed("bl.test")', 'r == true'),
  e('dnsbl::rhsbl', 'mail', 'dnsbl::rhsbl("rbl.test")', 'r == true'),
  e('check_rbl', 'connect', 'check_rbl("bl.test")', 'r == deny()'),
  e('check_rhsbl', 'mail', 'check_rhsbl("rbl.test")', 'r == deny()'),
  // §8.2 postfix:: restrictions
  e('postfix::permit_mynetworks', 'connect', 'postfix::permit_mynetworks()', 'r == accept()'),
  e('postfix::permit_sasl_authenticated', 'connect', 'postfix::permit_sasl_authenticated()', 'r == next()'),
  e('postfix::reject_unauth_destination', 'rcpt', 'postfix::reject_unauth_destination()', 'r == next()'),
  e('postfix::reject_non_fqdn_helo_hostname', 'helo', 'postfix::reject_non_fqdn_helo_hostname()', 'r == next()'),
  e('postfix::reject_invalid_helo_hostname', 'helo', 'postfix::reject_invalid_helo_hostname()', 'r == next()'),
  e('postfix::reject_unknown_helo_hostname', 'helo', 'postfix::reject_unknown_helo_hostname()', 'r == next()'),
  e('postfix::reject_non_fqdn_sender', 'mail', 'postfix::reject_non_fqdn_sender()', 'r == next()'),
  e('postfix::reject_unknown_sender_domain', 'mail', 'postfix::reject_unknown_sender_domain()', 'r == next()'),
  e('postfix::reject_non_fqdn_recipient', 'rcpt', 'postfix::reject_non_fqdn_recipient()', 'r == next()'),
  e('postfix::reject_unknown_recipient_domain', 'rcpt', 'postfix::reject_unknown_recipient_domain()', 'r == next()'),
  e('postfix::reject_unauth_pipelining', 'helo', 'postfix::reject_unauth_pipelining()', 'r == next()'),
  e('postfix::reject_rbl_client', 'connect', 'postfix::reject_rbl_client("bl.test")', 'r == reject()'),
  e('postfix::check_client_access', 'connect', 'postfix::check_client_access("client_access")', 'r == accept()'),
  e('postfix::check_helo_access', 'helo', 'postfix::check_helo_access("helo_access")', 'r == reject()'),
  e('postfix::check_sender_access', 'mail', 'postfix::check_sender_access("sender_access")', 'r == accept()'),
  e('postfix::check_recipient_access', 'rcpt', 'postfix::check_recipient_access("rcpt_access")', 'r == reject()'),
  // §8.3–8.5
  e('smtpd_check_rules', 'rcpt', 'smtpd_check_rules("check_rules")', 'r == accept()'),
  e('mapping::check', 'rcpt', 'mapping::check("mappings", "SEND_ACCESS")', 'r == accept()'),
  e('mapping::check', 'connect', 'mapping::check("mappings", "PORT_ACCESS")', 'r == deny()', { unbound: true }),
  e('greylist::check', 'rcpt', 'greylist::check()', 'r == reject()'),
  e('ratelimit::check', 'connect', 'ratelimit::check("callable", 10, "1h")', 'r == next()'),
  // §9.1: on_config ran (it set the server name read here)
  e('on_config', 'connect', 'cfg::server.name', 'r == "callable.test.example"'),
];

// Stage-free names: constructors, values, pure helpers, statuses and codes.
for (const x of ENTRIES) if (x.stage === 'connect') x.unbound = true;

/** The policy: a header (on_config, declarations) and the rules of the entries not in `skip`. */
function policySource(dataDir: string, keyPath: string, dnsAddress: string, skip: Set<number>): { text: string; entryAt: Map<number, number> } {
  const header = `
fn on_config(config) {
  config.server.name = "callable.test.example";
  config.server.domain = "test.example";
  config.server.virtual = ["virtual.example"];
  config.server.relay_networks = ["192.0.2.0/24"];
  config.server.dns.servers = [${JSON.stringify(dnsAddress)}];
  config.server.dns.timeout = "2s";
  config.server.auth.backend = "file:passwd";
  config.vsl.allow_cmd = true;
  config.vsl.env_allow = ["CALLABLE_INDEX_VAR"];
  config.vsl.data_dir = ${JSON.stringify(dataDir)};
  config.dkim.keys = #{
    "sender.test": [#{ selector: "s1", private_key: ${JSON.stringify(keyPath)} }],
    "test.example": [#{ selector: "s1", private_key: ${JSON.stringify(keyPath)} }],
  };
  config
}

fn twice(x) { x * 2 }

object callable_object ip4 = "192.0.2.9";
service db_v1 db:csv = #{ connector: "db.csv" };
const db = csv(#{ connector: "db.csv", access: "O_RDWR", refresh: "always" });
const shell = cmd::build(#{ command: "/bin/true" });

#{`;
  const lines = header.split('\n');
  // Line number (1-based) → entry index, to tell which entry a load error belongs to.
  const entryAt = new Map<number, number>();
  const rule = (i: number, label: string): void => {
    const x = ENTRIES[i]!;
    const n = i + 1;
    const body = [
      `  rule "${label}" || if ctx::client_port() == ${n} {`,
      `    ${x.pre ?? ''}`,
      `    let r = ${x.call};`,
      `    ${x.prep ?? ''}`,
      `    if !(${x.check ?? 'true'}) { throw "${label} returned " + r.to_debug(); }`,
      '    accept()',
      '  } else { next() },',
    ];
    for (const l of body) {
      lines.push(l);
      entryAt.set(lines.length, i);
    }
  };
  for (const stage of STAGES) {
    const here: Array<() => void> = [];
    ENTRIES.forEach((x, i) => {
      if (skip.has(i)) return;
      if (!x.unbound && STAGES[STAGES.indexOf(x.stage) - 1] === stage) here.push(() => rule(i, `#${i + 1} ${x.name} (too early)`));
      if (x.stage === stage) here.push(() => rule(i, `#${i + 1} ${x.name}`));
    });
    if (here.length === 0) continue;
    lines.push(`${stage}: [`);
    for (const f of here) f();
    lines.push('],');
  }
  lines.push('}', '');
  return { text: lines.join('\n'), entryAt };
}

/** The data files the entries use. */
function dataFiles(): Record<string, string> {
  return {
    'hosts.txt': 'a.example\n# a comment\n\nb.example\n',
    'db.csv': 'alice,x\nbob,y\n',
    client_access: '192.0.2.1 OK\n',
    helo_access: 'client.test REJECT no thanks\n',
    sender_access: 'sender.test OK\n',
    rcpt_access: 'v@test.example REJECT\n',
    check_rules: 'allow:ALL:ALL:ALL\n',
    mappings: 'PORT_ACCESS\n\n  *  $N\n\nSEND_ACCESS\n\n  *  $Y\n',
  };
}

// ---------------------------------------------------------------- Appendix A

/** Every name of SPEC Appendix A: backticked names, namespaces carried over, "v1 same" expanded. */
function appendixNames(spec: string): Set<string> {
  const start = spec.indexOf('## Appendix A');
  assert.ok(start >= 0, 'SPEC has an Appendix A');
  const names = new Set<string>();
  for (const line of spec.slice(start).split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !/^\d/.test(cells[1]!)) continue;
    const text = cells.slice(2, -1).join('|');
    const groups = [...text.matchAll(/`([^`]+)`/g)];
    groups.forEach((m, gi) => {
      let ns: string | null = null;
      const group: string[] = [];
      for (const token of m[1]!.split(/\s+/).filter(Boolean)) {
        if (token.includes('::')) {
          ns = token.slice(0, token.indexOf('::'));
          group.push(token);
        } else group.push(ns ? `${ns}::${token}` : token);
      }
      for (const n of group) names.add(n);
      // "(v1 same)" / "; v1 same" after a group: the bare names are global too ("v1 same except …" lists its own).
      const after = text.slice(m.index! + m[0].length, gi + 1 < groups.length ? groups[gi + 1]!.index : undefined);
      if (/v1 same(?! except)/.test(after)) for (const n of group) if (n.includes('::')) names.add(n.slice(n.indexOf('::') + 2));
    });
  }
  return names;
}

// ---------------------------------------------------------------- running

describe('SPEC Appendix A: every callable name, in its stage, through the real runner', () => {
  let dns: DnsTestServer;
  let dir: string;
  let dataDir: string;
  let version: PolicyVersion;
  let runner: PolicyRunner;
  /** Entries whose call does not compile: index → the load error. */
  const compileErrors = new Map<number, string>();

  before(async () => {
    process.env.CALLABLE_INDEX_VAR = 'yes';
    dns = await startDnsServer({
      'host.test': { A: ['192.0.2.1'] },
      '1.2.0.192.in-addr.arpa': { PTR: ['host.test'] },
      'client.test': { A: ['192.0.2.50'] },
      'sender.test': { A: ['192.0.2.60'], TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
      '1.2.0.192.bl.test': { A: ['127.0.0.2'] },
      'sender.test.rbl.test': { A: ['127.0.0.2'] },
    });
    dir = tempDir('vsl-e2e-callable-');
    dataDir = tempDir('vsl-e2e-callable-data-');
    const keyPath = path.join(dir, 'dkim.pem');
    fs.writeFileSync(keyPath, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFiles(dir, { ...dataFiles(), passwd: `john:${await hashScrypt('secret', { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n` });
    const log = pino({ level: 'silent' });
    const mainPath = path.join(dir, 'main.vsl');
    // A name the compiler does not resolve is a load error for the whole
    // policy: set that entry aside with its message and load again, so one
    // run reports every such name.
    for (;;) {
      const { text, entryAt } = policySource(dataDir, keyPath, dns.address, new Set(compileErrors.keys()));
      fs.writeFileSync(mainPath, text);
      const loaded = await loadPolicy(mainPath, { builtins: allBuiltins(), hostname: 'mx.test', env: (config) => serverEnv(config, mainPath, log) });
      if (loaded.ok) {
        version = loaded.version;
        break;
      }
      const d = loaded.diagnostics.find((x) => x.severity === 'error')!;
      const i = path.resolve(d.pos.file) === mainPath ? entryAt.get(d.pos.line) : undefined;
      if (i === undefined) assert.fail(loaded.diagnostics.map((x) => formatDiagnostic(x, loaded.sources.get(x.pos.file))).join('\n'));
      compileErrors.set(i, `${d.pos.line}:${d.pos.col}: ${d.message}`);
    }
    runner = new PolicyRunner({ current: () => version, log });
  });
  after(async () => {
    version?.dispose();
    await dns?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
    delete process.env.CALLABLE_INDEX_VAR;
  });

  const MESSAGE = Buffer.from(
    'Received: from client.test (host.test [192.0.2.1]) by callable.test.example with ESMTP id TXN1; Thu, 1 Jan 2026 00:00:02 +0000\r\n' +
      'From: <a@sender.test>\r\nTo: <u@test.example>\r\nSubject: callable index\r\n\r\nbody\r\n',
  );

  /** Session and transaction as they are when `stage` runs; the client port selects the entry. */
  function contextFor(stage: Stage, port: number): { s: Session; t: Transaction | null } {
    const i = STAGES.indexOf(stage);
    const s = makeSession({
      clientIp: '192.0.2.1', clientPort: port, serverName: 'callable.test.example',
      helo: i >= STAGES.indexOf('helo') ? 'client.test' : null,
    });
    if (i < STAGES.indexOf('mail')) return { s, t: null };
    const t = makeTxn('a@sender.test', stage === 'rcpt' ? 'v@test.example' : null);
    if (i >= STAGES.indexOf('rcpt')) t.rcpts.push({ address: addr('u@test.example'), transport: { kind: 'default' } });
    if (i > STAGES.indexOf('rcpt')) t.rcpts.push({ address: addr('v@test.example'), transport: { kind: 'default' } });
    return { s, t };
  }

  async function run(stage: Stage, port: number) {
    const { s, t } = contextFor(stage, port);
    const message = STAGES.indexOf(stage) >= STAGES.indexOf('preq') ? messageView(MESSAGE) : null;
    const credentials = stage === 'authenticate' ? { mechanism: 'PLAIN', authid: 'john', authpass: 'secret' } : undefined;
    return (await runner.run(stage, s, t, message, { credentials })).verdict;
  }

  test('every name of SPEC Appendix A has an entry here', (t) => {
    if (!fs.existsSync(SPEC_PATH)) return t.skip(`${SPEC_PATH} not found`);
    const listed = appendixNames(fs.readFileSync(SPEC_PATH, 'utf8'));
    assert.ok(listed.size > 200, `parsed ${listed.size} names`);
    const covered = new Set(ENTRIES.map((x) => x.name));
    const missing = [...listed].filter((n) => !covered.has(n));
    assert.deepEqual(missing, [], 'Appendix A names without an entry');
  });

  ENTRIES.forEach((x, i) => {
    const port = i + 1;
    test(`${x.name} at ${x.stage}: ${x.call}`, async () => {
      assert.equal(compileErrors.get(i), undefined, `#${port} ${x.name} does not compile`);
      const v = await run(x.stage, port);
      assert.equal(v.error, undefined, `#${port} ${x.name} failed: ${v.error}`);
      assert.equal(v.rule, `#${port} ${x.name}`, `#${port} ${x.name} did not run to its end: ${JSON.stringify(v)}`);
      assert.equal(v.status, 'accept');
    });
    if (!x.unbound) {
      const earlier = STAGES[STAGES.indexOf(x.stage) - 1]!;
      test(`${x.name} at ${earlier} raises E_TOO_EARLY`, async () => {
        assert.equal(compileErrors.get(i), undefined, `#${port} ${x.name} does not compile`);
        const v = await run(earlier, port);
        assert.match(String(v.error), /E_TOO_EARLY/, `#${port} ${x.name} at ${earlier}: ${JSON.stringify(v)}`);
      });
    }
  });
});
