// Issue 16 item 10: a rule computing until vsl.rule_timeout no longer holds
// the other sessions of its process. Before, stage evaluations ran on the
// event loop: another client's greeting waited 1.07 s behind a 1 s rule.
// Now they run in a worker thread per policy version (src/sandbox/thread.ts):
// while one client's RCPT spins, another client is greeted and its NOOP
// answered, and its own RCPT evaluated (in a second thread) — asserted by
// order (the spinning RCPT is still unanswered), not by a time threshold —
// and the spinning rule still ends in the 4xx of a rule timeout (SPEC §5.7).

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { policyText, startFullServer } from './full-server.js';

const SPIN = policyText(
  'rcpt: [ rule "spin" || if ctx::rcpt().local_part == "spin" { loop {} } else { next() } ],',
  'config.vsl.rule_timeout = "3s";',
);

describe('a slow rule does not stall other sessions, over real sockets', () => {
  test('another client is greeted, its NOOP answered and its RCPT evaluated while a rule spins; the spin ends in a 451 timeout', { timeout: 60_000 }, async () => {
    const s = await startFullServer({ policy: SPIN });
    try {
      const a = await s.client();
      await a.ehlo('a.example.net');
      await a.command('MAIL FROM:<a@example.net>');
      let rcptAnswered = false;
      const rcpt = a.command('RCPT TO:<spin@doe-family.com>').then((r) => {
        rcptAnswered = true;
        return r;
      });
      // Let the server start the rule (sequencing only: the rule runs for 3 s).
      await sleep(300);
      const b = await s.client();
      assert.equal(rcptAnswered, false, 'the spinning RCPT was answered before the other client was greeted');
      const noop = await b.command('NOOP');
      assert.equal(noop.code, 250);
      assert.equal(rcptAnswered, false, 'the NOOP was answered only after the spinning rule ended');
      // Its rules too: the version's second thread evaluates them.
      await b.ehlo('b.example.net');
      await b.command('MAIL FROM:<b@example.net>');
      assert.equal((await b.command('RCPT TO:<jdoe@doe-family.com>')).code, 250);
      assert.equal(rcptAnswered, false, 'the other client\'s RCPT was evaluated only after the spinning rule ended');
      const r = await rcpt;
      assert.match(r.last, /^451 /);
      assert.ok(s.logs.some((l) => /rule "spin" failed at rcpt: timeout/.test(String(l.msg))), 'no timeout logged for the spinning rule');
      // The session and the policy still work afterwards.
      assert.equal((await a.command('RCPT TO:<jdoe@doe-family.com>')).code, 250);
      a.destroy();
      b.destroy();
    } finally {
      await s.stop();
    }
  });
});
