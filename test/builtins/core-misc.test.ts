import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { coreBuiltins } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import type { Stage } from '../../src/mail/types.js';
import { HOST_ALIASES } from '../../src/vsl/catalog.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { makeHostCall, type HostCallInit } from '../helpers/host-call.js';

function run(c: HostCall, name: string, ...args: Value[]): Value {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return b.fn(c, args) as Value;
}

function isVsl(re: RegExp) {
  return (e: unknown) => e instanceof VslError && re.test(e.message);
}

describe('env', () => {
  const allow = (names: string[]): HostCallInit => ({ stage: 'connect', configure: (c) => { c.vsl.env_allow = names; } });

  test('reads a variable listed in vsl.env_allow, or () when it is unset', () => {
    process.env.CORE_MISC_ALLOWED = 'value';
    try {
      const c = makeHostCall(allow(['CORE_MISC_ALLOWED', 'CORE_MISC_UNSET']));
      assert.equal(run(c, 'env', 'CORE_MISC_ALLOWED'), 'value');
      assert.equal(run(c, 'env', 'CORE_MISC_UNSET'), undefined);
    } finally {
      delete process.env.CORE_MISC_ALLOWED;
    }
  });

  test('a variable not in vsl.env_allow is an error in the policy', () => {
    process.env.CORE_MISC_SECRET = 'secret';
    try {
      const c = makeHostCall(allow([]));
      assert.throws(() => run(c, 'env', 'CORE_MISC_SECRET'), isVsl(/^env: 'CORE_MISC_SECRET' is not in vsl\.env_allow$/));
    } finally {
      delete process.env.CORE_MISC_SECRET;
    }
  });

  test('is unrestricted while on_config runs (pseudo-stage "config")', () => {
    process.env.CORE_MISC_CONFIG = 'cfg';
    try {
      const c = makeHostCall({ ...allow([]), stage: 'config' as Stage });
      assert.equal(run(c, 'env', 'CORE_MISC_CONFIG'), 'cfg');
    } finally {
      delete process.env.CORE_MISC_CONFIG;
    }
  });

  test('a name that is not a string is an error', () => {
    assert.throws(() => run(makeHostCall(allow([])), 'env', 1n), isVsl(/^env: variable name must be a non-empty string/));
  });
});

describe('user_exist', () => {
  test('knows system users from /etc/passwd', () => {
    const c = makeHostCall({ stage: 'connect' });
    assert.equal(run(c, 'user_exist', 'root'), true);
    assert.equal(run(c, 'user_exist', 'no-such-user-core-misc'), false);
    assert.equal(run(c, 'user_exist', ''), false);
    assert.equal(run(c, 'user_exist', 'root:x'), false);
    assert.equal(run(c, 'user_exist', '0'), false, 'a uid is not a user name');
  });
});

describe('log', () => {
  test('logs at the given level with the rule and stage', () => {
    const c = makeHostCall({ stage: 'rcpt', rule: 'my rule', at: 'main.vsl:3:5' });
    for (const level of ['trace', 'debug', 'info', 'warn', 'error']) run(c, 'log', level, `at ${level}`);
    assert.deepEqual(
      c.logs.map((l) => [l.level, l.msg, l.rule, l.stage, l.at]),
      ['trace', 'debug', 'info', 'warn', 'error'].map((l) => [l, `at ${l}`, 'my rule', 'rcpt', 'main.vsl:3:5']),
    );
  });

  test('an unknown level logs a warning; non-string messages are printed', () => {
    const c = makeHostCall({ stage: 'connect' });
    run(c, 'log', 'loud', 'hello');
    run(c, 'log', 'info', 42n);
    assert.equal(c.logs[0]!.level, 'warn');
    assert.equal(c.logs[0]!.msg, 'hello');
    assert.equal(c.logs[0]!.level_given, 'loud');
    assert.equal(c.logs[1]!.msg, '42');
  });
});

describe('registration', () => {
  test('every v1 alias of a core built-in points at a registered v2 name', () => {
    const names = new Set(coreBuiltins.map((b) => b.name));
    const mine = Object.entries(HOST_ALIASES).filter(([, v2]) => /^(msg|envelop|transport|fs)::|^(env|user_exist|cmd)$/.test(v2));
    assert.ok(mine.length > 40);
    for (const [alias, v2] of mine) assert.ok(names.has(v2), `${alias} -> ${v2}`);
  });

  test('names are unique and every Appendix A name of §7.4–§7.6 is present', () => {
    const names = coreBuiltins.map((b) => b.name);
    assert.equal(new Set(names).size, names.length);
    const expected = [
      'envelop::rw_mail_from', 'envelop::rw_rcpt', 'envelop::add_rcpt', 'envelop::bcc', 'envelop::rm_rcpt', 'rewrite_mail_from',
      ...'has_header count_header get_header get_all_headers get_header_untouched append_header prepend_header set_header rename_header rm_header mail to_string rw_mail_from rw_rcpt add_rcpt rm_rcpt'
        .split(' ')
        .map((n) => `msg::${n}`),
      ...'deliver deliver_all forward forward_all maildir maildir_all mbox mbox_all disable_delivery disable_delivery_all'.split(' ').map((n) => `transport::${n}`),
      'fs::write', 'fs::dump', 'csv', 'cmd', 'sys::service', 'sys::service_call', 'env', 'user_exist', 'log',
    ];
    for (const n of expected) assert.ok(names.includes(n), n);
  });

  test('the wrong number of arguments is an error naming the function', () => {
    const c = makeHostCall({ stage: 'preq', message: 'Subject: x\r\n\r\n' });
    assert.throws(() => run(c, 'msg::get_header'), isVsl(/^msg::get_header: expected 1 argument/));
    assert.throws(() => run(c, 'log', 'info'), isVsl(/^log: expected 2 argument/));
  });
});
