// SPEC §4.3–§4.5 over a real socket: fixed replies, command sequence,
// addresses and parameters, limits on lines and recipients, error counting,
// the relay guard, remembered statuses and the per-decision log line.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accept, faccept, next, quarantine, reject } from '../helpers/fake-runner.js';
import { withFront } from '../helpers/smtp-front.js';

const EHLO_LINES = ['250-mx.test.example', '250-PIPELINING', '250-8BITMIME', '250-SMTPUTF8', '250-ENHANCEDSTATUSCODES', '250 SIZE 10240000'];

describe('fixed replies (SPEC §4.5)', () => {
  test('greeting, EHLO capabilities and HELO are exactly as specified', async () => {
    await withFront({}, async (h) => {
      const c = await h.connect();
      assert.equal((await c.greeting()).last, '220 mx.test.example Service ready');
      assert.deepEqual((await c.ehlo()).lines, EHLO_LINES);
      assert.deepEqual((await c.command('HELO client.example')).lines, ['250 mx.test.example']);
      c.destroy();
    });
  });

  test('RSET, NOOP, HELP and QUIT give their replies and QUIT closes', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('RSET')).last, '250 2.0.0 Ok');
      assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
      assert.match((await c.command('HELP')).last, /^214 2\.0\.0 /);
      assert.equal((await c.command('QUIT')).last, '221 2.0.0 Service closing transmission channel');
      assert.equal(await c.closedWithin(2000), true);
    });
  });

  test('VRFY EXPN BDAT ETRN TURN XCLIENT XFORWARD get 502 5.5.1 Command not implemented', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      for (const cmd of ['VRFY root', 'EXPN staff', 'BDAT 10 LAST', 'ETRN example.org', 'TURN', 'XCLIENT ADDR=10.0.0.1', 'XFORWARD ADDR=10.0.0.1']) {
        assert.equal((await c.command(cmd)).last, '502 5.5.1 Command not implemented', cmd);
      }
      c.destroy();
    });
  });

  test('an unknown command gets 500 5.5.2 and the session continues', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('FROB x')).last, '500 5.5.2 Syntax error, command unrecognized');
      assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
      c.destroy();
    });
  });

  test('a command line with a NUL byte is refused with 500 5.5.2', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      c.write(Buffer.from('MAIL FROM:<a@remote.example>\0 x\r\n', 'latin1'));
      assert.equal((await c.readReply()).last, '500 5.5.2 Syntax error, command unrecognized');
      assert.equal(h.runner.callsOf('mail').length, 0);
      c.destroy();
    });
  });

  test('a line over 2048 octets gets 500 5.5.6 Line too long and the session continues', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      assert.equal((await c.command(`NOOP ${'x'.repeat(3000)}`)).last, '500 5.5.6 Line too long');
      assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
      c.destroy();
    });
  });

  test('a line that never ends is cut off with 500 5.5.6 and the connection closes', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      c.write('NOOP ' + 'x'.repeat(200 * 1024));
      assert.equal((await c.readReply()).last, '500 5.5.6 Line too long');
      assert.equal(await c.closedWithin(2000), true);
    });
  });
});

describe('command sequence (SPEC §4.3)', () => {
  test('MAIL before EHLO, RCPT before MAIL, DATA before MAIL and a nested MAIL get 503 5.5.1', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '503 5.5.1 Bad sequence of commands');
      await c.ehlo();
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands');
      assert.equal((await c.command('DATA')).last, '503 5.5.1 Bad sequence of commands');
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '503 5.5.1 Bad sequence of commands');
      c.destroy();
    });
  });

  test('DATA without an accepted recipient gets 554 5.5.1 No valid recipients', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@elsewhere.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('DATA')).last, '554 5.5.1 No valid recipients');
      c.destroy();
    });
  });

  test('after a refused HELO, MAIL gets 503 until a HELO succeeds', async () => {
    await withFront({ script: { helo: [reject('550 5.7.1 bad helo'), next()] } }, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('EHLO bad.example')).last, '550 5.7.1 bad helo');
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '503 5.5.1 Bad sequence of commands');
      assert.equal((await c.command('EHLO good.example')).code, 250);
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
      c.destroy();
    });
  });

  test('RSET and a new EHLO end the transaction', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RSET')).last, '250 2.0.0 Ok');
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands');
      await c.command('MAIL FROM:<a@remote.example>');
      await c.ehlo();
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands');
      c.destroy();
    });
  });

  test('HELO with no argument or two arguments is 501 5.5.4 and runs no rules', async () => {
    await withFront({ script: { helo: next() } }, async (h) => {
      const c = await h.client();
      assert.match((await c.command('EHLO')).last, /^501 5\.5\.4 /);
      assert.match((await c.command('HELO a b')).last, /^501 5\.5\.4 /);
      assert.equal(h.runner.callsOf('helo').length, 0);
      c.destroy();
    });
  });
});

describe('addresses and parameters (SPEC §4.4)', () => {
  test('path syntax errors, routing characters and postmaster get the replies of the table', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:a@remote.example')).last, '501 5.1.7 Bad sender address syntax');
      assert.equal((await c.command('MAIL FROM:<a@remote.example>x')).last, '501 5.5.4 Syntax error in parameters');
      assert.equal((await c.command('MAIL FROM:<a@remote.example> FOO=1')).last, '555 5.5.4 Unsupported parameter');
      assert.equal((await c.command('MAIL FROM:<@relay.example:a@remote.example>')).last, '250 2.1.0 Ok');
      assert.equal((await c.command('RCPT TO:<>')).last, '501 5.1.3 Bad recipient address syntax');
      assert.equal((await c.command('RCPT TO:<bob>')).last, '501 5.1.3 Bad recipient address syntax');
      assert.equal((await c.command('RCPT TO:<a%b@test.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<"a@b"@test.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<PostMaster>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data('Subject: x\r\n\r\nx\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      const msg = h.sink.stored[0]!;
      assert.deepEqual(msg.rcpts.map((r) => `${r.address.local}@${r.address.domain}`), ['postmaster@test.example']);
      assert.equal(`${msg.mailFrom.local}@${msg.mailFrom.domain}`, 'a@remote.example', 'source route dropped');
      c.destroy();
    });
  });

  test('a non-ASCII address without SMTPUTF8 gets 553 5.6.7, with SMTPUTF8 it is accepted', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<jöran@remote.example>')).last, '553 5.6.7 Non-ASCII address requires SMTPUTF8');
      assert.equal((await c.command('MAIL FROM:<jöran@remote.example> SMTPUTF8')).last, '250 2.1.0 Ok');
      assert.equal((await c.command('RCPT TO:<grüße@test.example>')).last, '250 2.1.5 Ok');
      c.destroy();
    });
  });

  test('MAIL SIZE over the limit gets 552 5.3.4; BODY and AUTH= are accepted', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<a@remote.example> SIZE=99999999999')).last, '552 5.3.4 Message size exceeds fixed maximum message size');
      assert.equal((await c.command('MAIL FROM:<a@remote.example> SIZE=1000 BODY=8BITMIME AUTH=<>')).last, '250 2.1.0 Ok');
      assert.equal((await c.command('RCPT TO:<u@test.example> NOTIFY=NEVER')).last, '555 5.5.4 Unsupported parameter');
      c.destroy();
    });
  });

  test('a recipient beyond rcpt_count_max gets 452 4.5.3 without running rules', async () => {
    await withFront({ script: { rcpt: next() }, config: (c) => (c.server.smtp.rcpt_count_max = 2) }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u1@test.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<u2@test.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<u3@test.example>')).last, '452 4.5.3 Too many recipients');
      assert.equal(h.runner.callsOf('rcpt').length, 2);
      c.destroy();
    });
  });
});

describe('error counting (SPEC §4.5)', () => {
  test('at error.hard_count the error reply is followed by 421 4.7.0 Too many errors and close', async () => {
    await withFront({ config: (c) => (c.server.smtp.error.hard_count = 3) }, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('FROB')).code, 500);
      assert.equal((await c.command('FROB')).code, 500);
      assert.equal((await c.command('FROB')).code, 500);
      assert.equal((await c.readReply()).last, '421 4.7.0 Too many errors');
      assert.equal(await c.closedWithin(2000), true);
    });
  });

  test('from error.soft_count errors on, every reply is delayed by error.delay', async () => {
    await withFront({
      config: (c) => {
        c.server.smtp.error.soft_count = 2;
        c.server.smtp.error.delay = '1500ms';
      },
    }, async (h) => {
      const c = await h.client();
      await c.command('FROB');
      assert.deepEqual(h.sleeps, []);
      await c.command('FROB');
      assert.deepEqual(h.sleeps, [], 'the reply that reaches soft_count is not delayed');
      assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
      assert.deepEqual(h.sleeps, [1500]);
      c.destroy();
    });
  });
});

describe('relay guard (SPEC §5.6)', () => {
  test('without rcpt rules: local and virtual domains pass, others get 554 5.7.1 and the session continues', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<u@VIRTUAL.example>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<u@sub.test.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<u@test.example.evil.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<u@[127.0.0.1]>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('DATA')).code, 354);
      await c.data('Subject: x\r\n\r\nx\r\n');
      assert.deepEqual(h.sink.stored[0]!.rcpts.map((r) => r.address.domain), ['test.example', 'virtual.example']);
      c.destroy();
    });
  });

  test('clients in relay_networks and authenticated clients may relay', async () => {
    await withFront({
      script: { authenticate: accept() },
      config: (c) => {
        c.server.auth.allow_plaintext = true;
      },
    }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '554 5.7.1 Relay access denied');
      await c.command('RSET');
      assert.equal((await c.command(`AUTH PLAIN ${Buffer.from('\0alice\0pw').toString('base64')}`)).code, 235);
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '250 2.1.5 Ok');
      c.destroy();
    });
    await withFront({ config: (c) => (c.server.relay_networks = ['127.0.0.0/8']) }, async (h2) => {
      const c = await h2.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '250 2.1.5 Ok');
      c.destroy();
    });
  });

  test('a remembered faccept does not bypass the relay guard', async () => {
    await withFront({ script: { connect: faccept() } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '250 2.1.5 Ok');
      c.destroy();
    });
  });
});

describe('remembered statuses (SPEC §5.4)', () => {
  test('faccept at connect: later stages run no rules and send their normal replies', async () => {
    await withFront({ script: { connect: faccept(), helo: reject('550 no'), mail: reject('550 no'), rcpt: reject('550 no'), preq: reject('550 no') } }, async (h) => {
      const c = await h.client();
      assert.equal((await c.ehlo()).code, 250);
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
      // A remembered faccept does not bypass the relay guard (SPEC §5.6): the local recipient passes, the foreign one does not.
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '554 5.7.1 Relay access denied');
      await c.command('DATA');
      assert.match((await c.data('Subject: x\r\n\r\nx\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      assert.deepEqual(h.runner.calls.map((x) => x.stage), ['connect']);
      assert.equal(h.sink.stored[0]!.txnRemembered?.kind, 'faccept');
      c.destroy();
    });
  });

  test('quarantine at mail is remembered for the transaction and the message goes to that quarantine', async () => {
    await withFront({ script: { mail: [quarantine('suspect'), next()], preq: reject('550 no') } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      await c.command('DATA');
      assert.match((await c.data('Subject: x\r\n\r\nx\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      assert.equal(h.sink.stored[0]!.quarantine, 'suspect');
      assert.equal(h.runner.callsOf('preq').length, 0);
      // The next transaction starts afresh.
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      await c.command('DATA');
      assert.equal((await c.data('Subject: y\r\n\r\ny\r\n')).last, '550 no');
      c.destroy();
    });
  });

  test('the authenticate stage always runs, even after a remembered faccept', async () => {
    await withFront({ script: { connect: faccept(), authenticate: next() }, config: (c) => (c.server.auth.allow_plaintext = true) }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${Buffer.from('\0alice\0pw').toString('base64')}`)).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal(h.runner.callsOf('authenticate').length, 1);
      c.destroy();
    });
  });
});

describe('decision log (SPEC §3.3)', () => {
  test('each stage decision is one info line with stage, rule, position, status, reply, client, helo, sender, recipient and id', async () => {
    await withFront({ script: { rcpt: reject('550 5.1.1 unknown user') } }, async (h) => {
      const c = await h.client();
      await c.ehlo('client.example');
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<nobody@test.example>');
      c.destroy();
      const line = h.logs.find((l) => l.stage === 'rcpt');
      assert.ok(line, 'a rcpt decision was logged');
      assert.equal(line.level, 30);
      assert.equal(line.rule, 'fake reject');
      assert.equal(line.at, 'fake.vsl:1:1');
      assert.equal(line.status, 'reject');
      assert.equal(line.reply, '550 5.1.1 unknown user');
      assert.equal(line.client_ip, '127.0.0.1');
      assert.equal(line.helo, 'client.example');
      assert.equal(line.sender, 'a@remote.example');
      assert.equal(line.recipient, 'nobody@test.example');
      assert.equal(typeof line.queue_id, 'string');
      assert.equal(typeof line.conn, 'string');
    });
  });
});
