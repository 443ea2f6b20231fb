// `mta explain` (SPEC §11.4) on the doe-family example: for each stage and
// recipient it names the deciding rule with its file:line, the status and the
// reply; --json carries the same for tools; the exit code says whether the
// message would be queued (0), refused (3), or could not be explained (1, 2).

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { explainCommand } from '../../src/cli/explain.js';
import type { CliIo } from '../../src/cli/io.js';
import { ROOT } from '../helpers/paths.js';

const doeMain = path.join(ROOT, 'examples', 'doe-family', 'main.vsl');

/** Where `rule "relay rcpt"` is written in the example, as `line:col` (the example may be edited). */
function relayRcptPosition(): string {
  const lines = fs.readFileSync(doeMain, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes('rule "relay rcpt"'));
  assert.ok(i >= 0, 'the doe-family example has a "relay rcpt" rule');
  return `${i + 1}:${lines[i]!.indexOf('rule') + 1}`;
}

async function explain(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdin: new PassThrough(),
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  };
  const code = await explainCommand(argv, io);
  return { code, out, err };
}

const outsideRelay = ['--config', doeMain, '--client', '203.0.113.5', '--helo', 'client.example.org', '--from', 'someone@example.org', '--to', 'user@example.net', '--offline'];

describe('mta explain on the doe-family example', () => {
  test('an outside client relaying to example.net is refused by rule "relay rcpt" at its file:line with 554 5.7.1 and exit 3', async () => {
    const r = await explain(outsideRelay);
    assert.equal(r.code, 3, r.err);
    const rcpt = r.out.split('\n').find((l) => l.startsWith('rcpt'));
    assert.ok(rcpt, `a rcpt line in:\n${r.out}`);
    assert.match(rcpt, /user@example\.net/);
    assert.match(rcpt, new RegExp(`rule "relay rcpt" \\((?:[^)]*/)?main\\.vsl:${relayRcptPosition()}\\)`));
    assert.match(rcpt, /\breject\b/);
    assert.match(rcpt, /554 5\.7\.1 Relay access denied$/);
    assert.match(r.out, /^not queued$/m);
  });

  test('every stage before rcpt is listed with its decider, status and reply', async () => {
    const r = await explain(outsideRelay);
    const stages = r.out.split('\n').filter((l) => l !== '' && !l.startsWith(' ')).map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(stages.slice(0, 4), ['connect', 'helo', 'mail', 'rcpt']);
    assert.match(r.out, /^connect\s+no rules\s+next\s+220 mx\.doe-family\.com/m);
  });

  test('--json gives the rcpt row with rule, file:line, status, reply and the evaluated directives', async () => {
    const r = await explain([...outsideRelay, '--json']);
    assert.equal(r.code, 3);
    const doc = JSON.parse(r.out) as {
      version: string; queued_for: string[]; closed: boolean;
      stages: Array<{ stage: string; recipient?: string; decider: string; rule: string | null; at: string | null; status: string; reply: string; trace: Array<{ rule: string; at: string; status: string }> }>;
    };
    assert.match(doc.version, /^[0-9a-f]{12}$/);
    assert.deepEqual(doc.queued_for, []);
    assert.equal(doc.closed, false);
    const rcpt = doc.stages.find((s) => s.stage === 'rcpt');
    assert.ok(rcpt);
    assert.equal(rcpt.recipient, 'user@example.net');
    assert.equal(rcpt.rule, 'relay rcpt');
    assert.ok(rcpt.at?.endsWith(`main.vsl:${relayRcptPosition()}`), rcpt.at ?? 'no position');
    assert.equal(rcpt.status, 'reject');
    assert.equal(rcpt.reply, '554 5.7.1 Relay access denied');
    assert.deepEqual(rcpt.trace.map((t) => [t.rule, t.status]), [['relay rcpt', 'reject']]);
  });

  test('the internal network relaying to example.net would be queued: exit 0', async () => {
    const r = await explain(['--config', doeMain, '--client', '192.168.1.10', '--helo', 'pc.doe-family.com', '--from', 'john@doe-family.com', '--to', 'user@example.net', '--offline', '--json']);
    assert.equal(r.code, 0, r.out + r.err);
    const doc = JSON.parse(r.out) as { queued_for: string[]; stages: Array<{ stage: string; reply: string }> };
    assert.deepEqual(doc.queued_for, ['user@example.net']);
    assert.equal(doc.stages.find((s) => s.stage === 'rcpt')?.reply, '250 2.1.5 Ok');
    assert.match(doc.stages.find((s) => s.stage === 'preq')?.reply ?? '', /^250 2\.0\.0 Ok: queued as/);
  });

  test('one refused and one accepted recipient: queued for the accepted one, exit 0', async () => {
    const r = await explain([...outsideRelay, '--to', 'jane@doe-family.com']);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^queued for: jane@doe-family\.com$/m);
  });

  test('a policy that does not load is exit 1 with the diagnostic at file:line:col', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-explain-'));
    try {
      const main = path.join(dir, 'main.vsl');
      fs.writeFileSync(main, '#{\n  rcpt: [ rule "broken" || { accept( } ],\n}\n');
      const r = await explain(['--config', main, '--client', '203.0.113.5', '--from', 'a@example.org', '--to', 'b@example.net', '--offline']);
      assert.equal(r.code, 1);
      assert.match(r.err, /main\.vsl:2:\d+: error:/);
      assert.equal(r.out, '');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing --client is a usage error: exit 2', async () => {
    const r = await explain(['--config', doeMain, '--to', 'b@example.net']);
    assert.equal(r.code, 2);
    assert.match(r.err, /--client is required/);
  });
});
