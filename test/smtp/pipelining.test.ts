// RFC 2920 pipelining through the front: commands sent in one packet are
// run one after the other, in order, each with its own reply; and
// session.pipeliningViolation records a client that did not wait where it
// had to (postfix::reject_unauth_pipelining).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accept, next } from '../helpers/fake-runner.js';
import { withFront } from '../helpers/smtp-front.js';

describe('pipelining', () => {
  test('EHLO, MAIL, RCPT and DATA in one packet keep their order and their replies', async () => {
    await withFront({ script: { helo: next(), mail: next(), rcpt: next(), preq: next() } }, async (h) => {
      const c = await h.client();
      const replies = await c.pipeline(['EHLO client.example', 'MAIL FROM:<a@remote.example>', 'RCPT TO:<u@test.example>', 'RCPT TO:<v@test.example>', 'DATA']);
      assert.deepEqual(replies.map((r) => r.last), ['250 SIZE 10240000', '250 2.1.0 Ok', '250 2.1.5 Ok', '250 2.1.5 Ok', '354 Start mail input; end with <CRLF>.<CRLF>']);
      assert.equal(replies[0]!.lines[0], '250-mx.test.example');
      assert.match((await c.data('Subject: x\r\n\r\nx\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      assert.deepEqual(h.runner.calls.map((x) => x.stage), ['connect', 'helo', 'mail', 'rcpt', 'rcpt', 'preq']);
      assert.deepEqual(h.runner.callsOf('rcpt').map((x) => x.txn?.currentRcpt?.local), ['u', 'v']);
      // MAIL was sent before the EHLO reply it had to wait for.
      assert.equal(h.runner.callsOf('mail')[0]!.session.pipeliningViolation, true);
      c.destroy();
    });
  });

  test('a whole transaction pipelined after the EHLO reply is not a violation', async () => {
    // accept() at rcpt: an explicit accept takes even the foreign recipient without the relay guard (SPEC §5.6).
    await withFront({ script: { rcpt: accept(), preq: next() } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      const replies = await c.pipeline(['MAIL FROM:<a@remote.example>', 'RCPT TO:<u@test.example>', 'RCPT TO:<nobody@far.example>', 'RCPT TO:<w@test.example>', 'DATA']);
      assert.deepEqual(replies.map((r) => r.code), [250, 250, 250, 250, 354]);
      assert.match((await c.data('Subject: x\r\n\r\nx\r\n')).last, /^250 /);
      // Commands after the final dot, pipelined with RSET and QUIT.
      const after = await c.pipeline(['RSET', 'NOOP']);
      assert.deepEqual(after.map((r) => r.last), ['250 2.0.0 Ok', '250 2.0.0 Ok']);
      assert.equal(h.runner.callsOf('preq')[0]!.session.pipeliningViolation, false);
      c.destroy();
    });
  });

  test('a refused command in a pipelined group does not disturb the others', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      const replies = await c.pipeline(['MAIL FROM:<a@remote.example>', 'RCPT TO:<x@far.example>', 'RCPT TO:<u@test.example>', 'DATA']);
      assert.deepEqual(replies.map((r) => r.last), ['250 2.1.0 Ok', '554 5.7.1 Relay access denied', '250 2.1.5 Ok', '354 Start mail input; end with <CRLF>.<CRLF>']);
      await c.data('Subject: x\r\n\r\nx\r\n');
      assert.deepEqual(h.sink.stored[0]!.rcpts.map((r) => r.address.local), ['u'], 'the refused recipient is not in the envelope');
      c.destroy();
    });
  });

  test('message text sent together with DATA, before the 354, is a violation', async () => {
    await withFront({ script: { preq: next() } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      c.write('DATA\r\nSubject: early\r\n\r\nearly body\r\n.\r\n');
      assert.equal((await c.readReply()).code, 354);
      assert.match((await c.readReply()).last, /^250 2\.0\.0 Ok: queued as /);
      assert.equal(h.runner.callsOf('preq')[0]!.session.pipeliningViolation, true);
      assert.match(h.sink.stored[0]!.data.toString(), /\r\nSubject: early\r\n\r\nearly body\r\n$/);
      c.destroy();
    });
  });

  test('pipelining after HELO (PIPELINING was never offered) is a violation', async () => {
    await withFront({ script: { rcpt: next() } }, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('HELO client.example')).code, 250);
      const replies = await c.pipeline(['MAIL FROM:<a@remote.example>', 'RCPT TO:<u@test.example>']);
      assert.deepEqual(replies.map((r) => r.code), [250, 250]);
      assert.equal(h.runner.callsOf('rcpt')[0]!.session.pipeliningViolation, true);
      c.destroy();
    });
  });

  test('a client that waits for every reply is never flagged', async () => {
    await withFront({ script: { rcpt: next(), preq: next() } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      await c.command('DATA');
      await c.data('Subject: x\r\n\r\nx\r\n');
      assert.equal(h.runner.callsOf('preq')[0]!.session.pipeliningViolation, false);
      c.destroy();
    });
  });

  test('a command sent before the greeting (greeting_delay 0) waits for it and is flagged', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    await withFront({
      script: {
        connect: async () => {
          await gate;
          return next();
        },
        helo: next(),
      },
    }, async (h) => {
      const c = await h.connect();
      c.send('EHLO early.example');
      // Give the line time to reach the server while the connect stage runs.
      await new Promise((r) => setTimeout(r, 50));
      release();
      assert.equal((await c.readReply()).last, '220 mx.test.example Service ready');
      assert.equal((await c.readReply()).code, 250);
      assert.equal(h.runner.callsOf('helo')[0]!.session.pipeliningViolation, true);
      c.destroy();
    });
  });
});
