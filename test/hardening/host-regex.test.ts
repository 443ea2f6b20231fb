// Issue 16 item 3: patterns written by policy authors and matched on the
// host (regexp:/pcre: access maps, `/re/` in smtpd_check_rules) run in
// linear time (RE2, src/builtins/legacy/linear-regex.ts). Before, the map
// line `/^([a-z0-9]+)+$/ REJECT` and a 32-character sender held the event
// loop 26 s; a 64-character one would hold it for ages. Here the client with
// that sender gets its answer and another client's NOOP is answered; the
// test's timeout only keeps a regression from hanging the suite.
// Backreferences and lookaround, which RE2 cannot run, are load errors at
// the file's line.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { checkFile } from '../../src/cli/check.js';
import { writePolicy } from '../helpers/vsl.js';
import { policyText, startFullServer } from './full-server.js';

const EVIL = '/^([a-z0-9]+)+@example\\.net$/ REJECT catastrophic pattern matched\n';
// 64 characters that almost match: a backtracking engine tries 2^63 ways.
const SENDER_LOCAL = `${'a'.repeat(63)}!`;

describe('catastrophic patterns on the host, over a real socket', () => {
  test('regexp: access map: the sender is answered and another client\'s NOOP too', { timeout: 60_000 }, async () => {
    const policy = policyText('mail: [ rule "sender map" || postfix::check_sender_access("regexp:senders.regexp") ],');
    const s = await startFullServer({ policy, files: { 'senders.regexp': EVIL } });
    try {
      const a = await s.client();
      const b = await s.client();
      await a.ehlo('a.example.net');
      await b.ehlo('b.example.net');
      const mail = a.command(`MAIL FROM:<${SENDER_LOCAL}@example.net>`);
      const noop = await b.command('NOOP');
      assert.equal(noop.code, 250);
      // The `!` keeps the pattern from matching.
      assert.equal((await mail).code, 250);
      // The map still works: a plain sender matching the pattern is rejected.
      const hit = await b.command('MAIL FROM:<aaaa@example.net>');
      assert.match(hit.last, /^5\d\d .*catastrophic pattern matched/);
      a.destroy();
      b.destroy();
    } finally {
      await s.stop();
    }
  });

  test('/re/ in smtpd_check_rules: the recipient is answered and another client\'s NOOP too', { timeout: 60_000 }, async () => {
    const rules = 'noto:ALL:/^([a-z0-9]+)+@example\\.net$/:ALL:550 catastrophic pattern matched\n';
    const policy = policyText('rcpt: [ rule "rules" || smtpd_check_rules("rules.txt") ],');
    const s = await startFullServer({ policy, files: { 'rules.txt': rules } });
    try {
      const a = await s.client();
      const b = await s.client();
      await a.ehlo('a.example.net');
      await b.ehlo('b.example.net');
      await a.command(`MAIL FROM:<${SENDER_LOCAL}@example.net>`);
      const rcpt = a.command('RCPT TO:<jdoe@doe-family.com>');
      const noop = await b.command('NOOP');
      assert.equal(noop.code, 250);
      assert.notEqual((await rcpt).code, 550);
      await b.command('MAIL FROM:<aaaa@example.net>');
      assert.match((await b.command('RCPT TO:<jdoe@doe-family.com>')).last, /^550 .*catastrophic pattern matched/);
      a.destroy();
      b.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('patterns RE2 cannot run are refused at load, at their line', () => {
  async function checkLines(files: Record<string, string>): Promise<string[]> {
    const dir = writePolicy(files);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const r = await checkFile('main.vsl');
      assert.equal(r.ok, false);
      return r.diagnostics.map((d) => `${d.pos.file}:${d.pos.line}: ${d.message}`);
    } finally {
      process.chdir(cwd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test('a backreference in a regexp: map', async () => {
    const lines = await checkLines({
      'main.vsl': policyText('mail: [ rule "sender map" || postfix::check_sender_access("regexp:senders.regexp") ],'),
      'senders.regexp': '# doubled letters\n/^(.)\\1/ REJECT\n',
    });
    assert.ok(lines.some((l) => /^senders\.regexp:2: .*uses a backreference, which the linear-time matcher \(RE2\) cannot run: rewrite it/.test(l)), lines.join('\n'));
  });

  test('lookahead in smtpd_check_rules', async () => {
    const lines = await checkLines({
      'main.vsl': policyText('rcpt: [ rule "rules" || smtpd_check_rules("rules.txt") ],'),
      'rules.txt': 'allow:ALL:ALL:ALL\nnoto:ALL:/^(?!postmaster)/:ALL:550 no\n',
    });
    assert.ok(lines.some((l) => /^rules\.txt:2: .*uses lookaround .*cannot run: rewrite it/.test(l)), lines.join('\n'));
  });
});
