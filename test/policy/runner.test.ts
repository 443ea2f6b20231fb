// PolicyRunner, what the SMTP front calls for every stage: the canonical
// doe-family policy of SPEC §1.3 in both dialects, E_TOO_EARLY (SPEC §4.2),
// and the verdict's source, at and trace fields (SPEC §3.3, §5.7, §11.4).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { loadPolicy, type PolicyVersion } from '../../src/policy/load.js';
import { allBuiltins } from '../../src/builtins/registry.js';
import { PolicyRunner } from '../../src/policy/runner.js';
import { TestPolicy, loadFiles, describe as describeLoad, session, txn } from '../helpers/vsl.js';
import { fromRoot } from '../helpers/paths.js';
import type { Verdict } from '../../src/mail/types.js';


/** Loads a policy file with diagnostics relative to its own directory. */
async function loadExample(file: string): Promise<PolicyVersion> {
  const cwd = process.cwd();
  process.chdir(path.dirname(file));
  try {
    const r = await loadPolicy(file, { builtins: allBuiltins(), hostname: 'mx.test' });
    if (!r.ok) throw new Error(describeLoad(r));
    return r.version;
  } finally {
    process.chdir(cwd);
  }
}

const replyText = (v: Verdict) => (v.reply ? `${v.reply.code} ${v.reply.enhanced} ${v.reply.lines.join(' ')}` : null);

for (const main of ['main.vsl', 'main-v2.vsl']) {
  describe(`the doe-family policy, ${main} (SPEC §1.3)`, () => {
    let version: PolicyVersion;
    let runner: PolicyRunner;
    before(async () => {
      version = await loadExample(fromRoot('examples', 'doe-family', main));
      runner = new PolicyRunner({ current: () => version, log: pino({ level: 'silent' }) });
    });
    after(() => version.dispose());

    const outside = () => session({ clientIp: '203.0.113.9' });

    test('it loads without diagnostics and serves doe-family.com', () => {
      assert.deepEqual(version.warnings, []);
      assert.equal(version.config.server.domain, 'doe-family.com');
      assert.deepEqual(version.stages.mail.map((r) => [r.name, r.at]), [['relay mail from', `${main}:20:5`]]);
      assert.deepEqual(version.stages.rcpt.map((r) => [r.name, r.at]), [['relay rcpt', `${main}:24:5`]]);
      assert.equal(runner.hasRules('authenticate'), true);
      assert.equal(runner.hasRules('connect'), false);
    });

    test('an outside client claiming a local sender is denied 554 5.7.1 Relay access denied', async () => {
      const { verdict } = await runner.run('mail', outside(), txn('x@doe-family.com', null));
      assert.equal(verdict.status, 'deny');
      assert.equal(replyText(verdict), '554 5.7.1 Relay access denied');
      assert.equal(verdict.rule, 'relay mail from');
      assert.equal(verdict.at, `${main}:20:5`);
    });

    test('a foreign sender goes on; a local recipient goes on', async () => {
      const mail = (await runner.run('mail', outside(), txn('x@example.net', null))).verdict;
      assert.deepEqual([mail.status, mail.reply, mail.source], ['next', null, 'rules']);
      const rcpt = (await runner.run('rcpt', outside(), txn('x@example.net', 'u@doe-family.com'))).verdict;
      assert.deepEqual([rcpt.status, rcpt.reply, rcpt.source], ['next', null, 'rules']);
    });

    test('an external recipient from outside is rejected 554 5.7.1 (the session continues)', async () => {
      const { verdict } = await runner.run('rcpt', outside(), txn('x@example.net', 'u@external.test'));
      assert.equal(verdict.status, 'reject');
      assert.equal(replyText(verdict), '554 5.7.1 Relay access denied');
      assert.equal(verdict.rule, 'relay rcpt');
    });

    test('a client in 192.168.1.0/24 may relay and use local senders', async () => {
      const inside = session({ clientIp: '192.168.1.20' });
      assert.equal((await runner.run('mail', inside, txn('x@doe-family.com', null))).verdict.status, 'next');
      assert.equal((await runner.run('rcpt', inside, txn('x@doe-family.com', 'u@external.test'))).verdict.status, 'next');
      // 192.168.2.x is outside the /24.
      assert.equal((await runner.run('rcpt', session({ clientIp: '192.168.2.1' }), txn('x@example.net', 'u@external.test'))).verdict.status, 'reject');
    });

    test('an authenticated client may relay and use local senders', async () => {
      const authed = session({ auth: { mechanism: 'PLAIN', authid: 'jane' } });
      assert.equal((await runner.run('mail', authed, txn('x@doe-family.com', null))).verdict.status, 'next');
      assert.equal((await runner.run('rcpt', authed, txn('x@doe-family.com', 'u@external.test'))).verdict.status, 'next');
    });
  });
}

test('the check_spf one-liner of SPEC §1.3 loads, its empty rcpt stage left to the relay guard', async () => {
  const r = await loadFiles({ 'main.vsl': '#{ mail: [ rule "check spf" || check_spf("both", "soft"), ] }' });
  try {
    assert.ok(r.ok, r.ok ? '' : describeLoad(r));
    assert.deepEqual(r.version.warnings.map((w) => w.message), ['no rcpt rules: the built-in relay guard applies']);
    assert.deepEqual(r.version.stages.rcpt, []);
  } finally {
    if (r.ok) r.version.dispose();
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
});

describe('E_TOO_EARLY (SPEC §4.2)', () => {
  let p: TestPolicy;
  before(async () => {
    p = await TestPolicy.load({
      'main.vsl': `#{
  helo: [
    rule "sender at helo" || if ctx::helo() == "v2.test" { ctx::mail_from(); next() } else { next() },
    rule "v1 sender at helo" || if ctx::helo() == "v1.test" { mail_from(); next() } else { next() },
    rule "v1 property at helo" || if ctx::helo() == "prop.test" { ctx().mail_from; next() } else { next() },
    rule "relay at helo" || check_mail_relay([]),
  ],
  mail: [ rule "recipient at mail" || { ctx::rcpt(); next() } ],
}`,
    });
  });
  after(() => p.close());

  test('ctx::mail_from() in a helo rule fails the rule with the SPEC message', async () => {
    const { verdict } = await p.run('helo', session({ helo: 'v2.test' }));
    assert.equal(verdict.source, 'error');
    assert.equal(verdict.rule, 'sender at helo');
    assert.equal(verdict.error, 'rule "sender at helo" failed at helo: E_TOO_EARLY: ctx::mail_from() is available from stage mail (called in helo) (main.vsl:3:60)');
  });

  test('the v1 name, the v1 property and a stdlib helper fail the same way', async () => {
    assert.match((await p.run('helo', session({ helo: 'v1.test' }))).verdict.error!, /E_TOO_EARLY: ctx::mail_from\(\) is available from stage mail \(called in helo\)/);
    assert.match((await p.run('helo', session({ helo: 'prop.test' }))).verdict.error!, /E_TOO_EARLY: ctx::mail_from\(\) is available from stage mail \(called in helo\)/);
    const relay = (await p.run('helo', session({ helo: 'other.test' }))).verdict;
    assert.equal(relay.rule, 'relay at helo');
    assert.match(relay.error!, /E_TOO_EARLY: ctx::mail_from\(\) is available from stage mail \(called in helo\)/);
  });

  test('ctx::rcpt() at mail is too early too', async () => {
    const { verdict } = await p.run('mail', session(), txn('a@b.test', null));
    assert.match(verdict.error!, /E_TOO_EARLY: ctx::rcpt\(\) is available from stage rcpt \(called in mail\)/);
  });
});

describe('verdict fields: source, rule, at, trace', () => {
  let p: TestPolicy;
  before(async () => {
    p = await TestPolicy.load({
      'main.vsl': `#{
  helo: [
    action "log" || { let seen = ctx::helo(); },
    rule "pass" || next(),
    rule "decide" || if ctx::helo() == "bad.test" { reject("550 5.7.1 go away") } else { next() },
    rule "fail" || if ctx::helo() == "boom.test" { throw "boom"; } else { next() },
    rule "after" || next(),
  ],
  rcpt: [],
}`,
    });
  });
  after(() => p.close());

  test('a deciding rule: status, reply, rule, at, and a trace of every directive evaluated', async () => {
    const { verdict, effects } = await p.run('helo', session({ helo: 'bad.test' }));
    assert.equal(verdict.source, 'rules');
    assert.equal(verdict.status, 'reject');
    assert.deepEqual(verdict.reply, { code: 550, enhanced: '5.7.1', lines: ['go away'] });
    assert.equal(verdict.rule, 'decide');
    assert.equal(verdict.at, 'main.vsl:5:5');
    assert.deepEqual(verdict.trace.map((t) => [t.rule, t.at, t.status]), [
      ['log', 'main.vsl:3:5', 'action'], ['pass', 'main.vsl:4:5', 'next'], ['decide', 'main.vsl:5:5', 'reject'],
    ]);
    assert.deepEqual(verdict.trace[2]!.reply, verdict.reply);
    for (const t of verdict.trace) assert.ok(t.ms >= 0 && Number.isFinite(t.ms));
    assert.deepEqual(effects, []);
  });

  test('only next: source rules, no rule, the whole trace', async () => {
    const { verdict } = await p.run('helo', session({ helo: 'fine.test' }));
    assert.deepEqual([verdict.status, verdict.source, verdict.rule, verdict.at, verdict.reply], ['next', 'rules', null, null, null]);
    assert.deepEqual(verdict.trace.map((t) => t.status), ['action', 'next', 'next', 'next', 'next']);
  });

  test('a failing rule: source error, the message with its position, the trace ending in error', async () => {
    const { verdict, effects } = await p.run('helo', session({ helo: 'boom.test' }));
    assert.equal(verdict.source, 'error');
    assert.equal(verdict.rule, 'fail');
    assert.equal(verdict.at, 'main.vsl:6:5');
    assert.equal(verdict.error, 'rule "fail" failed at helo: boom (main.vsl:6:52)');
    assert.deepEqual(verdict.trace.map((t) => [t.rule, t.status]), [['log', 'action'], ['pass', 'next'], ['decide', 'next'], ['fail', 'error']]);
    assert.deepEqual(effects, []);
  });

  test('a stage without directives: source no rules, nothing evaluated', async () => {
    for (const stage of ['connect', 'rcpt'] as const) {
      const { verdict } = await p.run(stage, session(), txn('a@b.test', 'c@d.test'));
      assert.deepEqual(verdict, { status: 'next', reply: null, rule: null, at: null, source: 'no rules', trace: [] });
    }
    assert.equal(p.runner.hasRules('rcpt'), false);
  });
});

test('every context getter sees the session and transaction the runner was given, stage after stage', async () => {
  // The context crosses into the sandbox in a compact form, partly cached by the guest:
  // each value must still arrive intact, and a changed session must not read a stale one.
  const p = await TestPolicy.load({
    'main.vsl': `
fn seen() {
  [ctx::client_ip(), ctx::client_port(), ctx::client_address(), ctx::server_ip(), ctx::server_port(), ctx::server_address(),
   ctx::server_name(), ctx::connection_timestamp().to_string(), ctx::is_secured(), ctx::helo(), auth::is_authenticated(),
   ctx::mail_from().to_string(), ctx::message_id(), ctx::mail_timestamp().to_string(), ctx::rcpt().to_string(),
   ctx::rcpt_list().map(|a| a.to_string())].map(|v| v.to_string()).join("|")
}
#{ rcpt: [ rule "echo" || reject(\`550 \${seen()}\`) ] }`,
  });
  try {
    const s = session({
      clientIp: '2001:db8::7', clientPort: 51000, serverIp: '192.0.2.25', serverPort: 587, serverName: 'mx.example.test',
      connectedAt: new Date('2026-03-04T05:06:07Z'), tls: { protocol: 'TLSv1.3', cipher: 'x' }, helo: 'client.example',
      auth: { mechanism: 'PLAIN', authid: 'jane' },
    });
    const t = txn('Jane.Doe@example.org', 'bob@example.net', {
      id: 'QID42', mailAt: new Date('2026-03-04T05:06:08Z'),
      rcpts: [{ address: { local: 'first', domain: 'example.com', raw: '<first@example.com>', isNull: false }, transport: { kind: 'default' } }],
    });
    const line = async (sess: typeof s, tr: typeof t) => (await p.run('rcpt', sess, tr)).verdict.reply!.lines[0];
    assert.equal(await line(s, t), [
      '2001:db8::7', '51000', '[2001:db8::7]:51000', '192.0.2.25', '587', '192.0.2.25:587', 'mx.example.test',
      '2026-03-04T05:06:07Z', 'true', 'client.example', 'true', 'Jane.Doe@example.org', 'QID42', '2026-03-04T05:06:08Z',
      'bob@example.net', '["first@example.com", "bob@example.net"]',
    ].join('|'));
    // The same session after a change (STARTTLS lost, no auth), and the next recipient.
    const changed = await line({ ...s, tls: null, auth: null }, { ...t, currentRcpt: { local: 'carol', domain: 'example.net', raw: '<carol@example.net>', isNull: false } });
    assert.match(changed!, /\|false\|client\.example\|false\|Jane\.Doe@example\.org\|QID42\|[^|]+\|carol@example\.net\|/);
  } finally {
    p.close();
  }
});
