// SPEC §5.6 as the issue "Deployable as the MX …" found it broken: rcpt
// rules that only log made every recipient acceptable from anywhere. The
// relay guard decides every recipient whose rcpt stage ends in `next` unless
// a relay control cleared it, so such a policy refuses foreign recipients
// from outside — through `mta explain`, `mta relay-test --config` and the
// server over a socket alike.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { allBuiltins } from '../../src/builtins/registry.js';
import { relayTestCommand } from '../../src/cli/relay-test.js';
import { loadPolicy, type PolicyVersion } from '../../src/policy/load.js';
import { offlineEnv } from '../../src/policy/env.js';
import { explain } from '../../src/tools/explain.js';
import { policyText, startFullServer, type FullServer } from '../hardening/full-server.js';
import { tempDir } from '../helpers/server.js';

const LOGGING_ONLY = policyText('  rcpt: [ action "log rcpt" || log("info", `rcpt ${ctx::rcpt()}`) ],');
const TAGGING_THEN_NEXT = policyText('  rcpt: [ action "tag" || msg::append_header("X-Seen", "yes"), rule "then next" || next() ],');
const RELAY_CONTROL_THEN_LOG = policyText('  rcpt: [ rule "relay" || check_rcpt_relay(["192.0.2.0/24"]), action "log" || log("info", "after the relay check") ],');

async function load(text: string): Promise<{ version: PolicyVersion; dir: string }> {
  const dir = tempDir('vsl-guard-rules-');
  const main = path.join(dir, 'main.vsl');
  fs.writeFileSync(main, text);
  const log = pino({ level: 'silent' });
  const r = await loadPolicy(main, { builtins: allBuiltins(), env: (config) => offlineEnv(config, main, log) });
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return { version: r.version, dir };
}

async function rcptRows(text: string, client: string, to: string): Promise<Array<{ status: string; reply: string; decider: string }>> {
  const { version, dir } = await load(text);
  try {
    const r = await explain(version, { client, helo: 'c.test', from: 'a@example.org', to: [to] }, pino({ level: 'silent' }));
    return r.rows.filter((x) => x.stage === 'rcpt').map((x) => ({ status: x.status, reply: x.reply, decider: x.decider }));
  } finally {
    version.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('the relay guard decides recipients the rcpt rules leave at next (SPEC §5.6)', () => {
  test('a logging-only rcpt stage refuses a foreign recipient from outside', async () => {
    assert.deepEqual(await rcptRows(LOGGING_ONLY, '203.0.113.9', 'x@example.net'), [{ status: 'reject', reply: '554 5.7.1 Relay access denied', decider: 'relay guard' }]);
  });

  test('a logging-only rcpt stage still takes a local recipient, by the guard', async () => {
    assert.deepEqual(await rcptRows(LOGGING_ONLY, '203.0.113.9', 'jane@doe-family.com'), [{ status: 'next', reply: '250 2.1.5 Ok', decider: 'relay guard (local domain)' }]);
  });

  test('rules that tag and return next() do not open the relay', async () => {
    assert.equal((await rcptRows(TAGGING_THEN_NEXT, '203.0.113.9', 'x@example.net'))[0]!.reply, '554 5.7.1 Relay access denied');
  });

  test('a relay control that lets the recipient through clears it; the rules after it still run', async () => {
    const rows = await rcptRows(RELAY_CONTROL_THEN_LOG, '192.0.2.7', 'x@example.net');
    assert.deepEqual(rows.map((r) => [r.status, r.reply]), [['next', '250 2.1.5 Ok']]);
    assert.equal(rows[0]!.decider, 'rules: all next', 'the rules decided, not the guard');
  });

  test('the same relay control refuses from outside', async () => {
    assert.equal((await rcptRows(RELAY_CONTROL_THEN_LOG, '203.0.113.9', 'x@example.net'))[0]!.reply, '554 5.7.1 Relay access denied');
  });

  test('mta relay-test --config finds no open probe for the logging-only policy', async () => {
    const dir = tempDir('vsl-guard-relaytest-');
    const main = path.join(dir, 'main.vsl');
    fs.writeFileSync(main, LOGGING_ONLY);
    let out = '';
    const io = { stdin: process.stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (out += s) } };
    try {
      const code = await relayTestCommand(['--config', main, '--json'], io);
      const report = JSON.parse(out) as { summary: { accepted: number; open_relay: boolean; total: number } };
      assert.equal(report.summary.accepted, 0, out);
      assert.equal(report.summary.open_relay, false);
      assert.ok(report.summary.total >= 30);
      assert.equal(code, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('over a socket', () => {
    let s: FullServer;
    before(async () => {
      // Loopback is a relay network by default; this client must be an outsider.
      s = await startFullServer({ policy: LOGGING_ONLY, set: ['server.relay_networks=[]'] });
    });
    after(() => s.stop());

    test('the server refuses the foreign recipient and takes the local one', async () => {
      const c = await s.client();
      await c.ehlo('c.test');
      await c.command('MAIL FROM:<a@example.org>');
      assert.equal((await c.command('RCPT TO:<x@example.net>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<jane@doe-family.com>')).last, '250 2.1.5 Ok');
      c.destroy();
    });
  });
});
