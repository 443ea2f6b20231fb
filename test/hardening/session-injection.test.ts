// Commands that try to change the session from the outside, against the
// whole server (issue "Hardening", must-show 4; SPEC §4.3, §4.5): plaintext
// injected after STARTTLS, a reset session after the handshake, PROXY
// headers from anyone but server.interfaces.proxy_from, XCLIENT/XFORWARD,
// and BDAT. test/smtp/tls-auth.test.ts and limits.test.ts prove these on
// the front with a scripted runner; here the real engine and spool run.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { makeTestCertificate, type TestCertificate } from '../helpers/tls-cert.js';
import { DOE_FAMILY, startFullServer, type FullServer } from './full-server.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

describe('STARTTLS against the whole server (doe-family policy, a test certificate)', () => {
  let cert: TestCertificate | undefined;
  let s: FullServer;
  before(async () => {
    const c = (cert = await makeTestCertificate('mx.doe-family.com'));
    const passwd = path.join(c.dir, 'passwd');
    await writeFile(passwd, `jdoe:${await hashScrypt('s3cret-pw', { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n`);
    s = await startFullServer({
      policy: DOE_FAMILY(),
      set: [
        `server.tls.certificate=${JSON.stringify(c.certPath)}`,
        `server.tls.private_key=${JSON.stringify(c.keyPath)}`,
        `server.auth.backend=${JSON.stringify(`file:${passwd}`)}`,
        'server.auth.allow_plaintext=true',
      ],
    });
  });
  after(async () => {
    await s?.stop();
    await cert?.cleanup();
  });

  test('STARTTLS and MAIL in one packet: the MAIL is never executed, before or after the handshake', async () => {
    const c = await s.client();
    assert.ok((await c.ehlo('client.example.net')).texts.includes('STARTTLS'));
    c.write('STARTTLS\r\nMAIL FROM:<injected@example.net>\r\nRCPT TO:<jdoe@doe-family.com>\r\n');
    assert.equal((await c.readReply()).last, '220 2.0.0 Ready to start TLS');
    await c.startTls();
    assert.ok(c.tlsSocket);
    const ehlo = await c.ehlo('client.example.net');
    assert.equal(ehlo.lines[0], '250-mx.doe-family.com', 'the first reply under TLS answers EHLO, not an injected command');
    assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '503 5.5.1 Bad sequence of commands', 'no transaction was opened');
    assert.equal((await c.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok', 'not a nested MAIL');
    assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '250 2.1.5 Ok');
    assert.equal((await c.command('DATA')).code, 354);
    assert.match((await c.data('Subject: after tls\r\n\r\nbody\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal(c.pending, 0, 'no reply to anything injected is left over');
    c.destroy();
    const spooled = await s.spooled();
    assert.deepEqual(spooled.map((m) => `${m.record.mail_from.local}@${m.record.mail_from.domain}`), ['alice@example.net']);
    assert.equal(spooled[0]!.record.session.tls?.protocol !== undefined, true, 'the message was received under TLS');
  });

  test('the handshake resets HELO and AUTH: MAIL gets 503 until a new EHLO, and AUTH is asked for again', async () => {
    const c = await s.client();
    await c.ehlo('client.example.net');
    // allow_plaintext is set here; authenticate, then upgrade.
    assert.equal((await c.command(`AUTH PLAIN ${b64('\0jdoe\0s3cret-pw')}`)).last, '235 2.7.0 Authentication succeeded');
    assert.equal((await c.command('STARTTLS')).code, 220);
    await c.startTls();
    assert.equal((await c.command('MAIL FROM:<jdoe@doe-family.com>')).last, '503 5.5.1 Bad sequence of commands', 'HELO forgotten');
    const ehlo = await c.ehlo('client.example.net');
    assert.ok(ehlo.texts.includes('AUTH PLAIN LOGIN'), 'AUTH offered again: the authentication was forgotten');
    assert.ok(!ehlo.texts.includes('STARTTLS'));
    // Without AUTH, a local sender from this outside client is a relay attempt again (check_mail_relay).
    assert.equal((await c.command('MAIL FROM:<jdoe@doe-family.com>')).last, '554 5.7.1 Relay access denied');
    c.destroy();
  });

  test('a second STARTTLS under TLS gets 503 5.5.1', async () => {
    const c = await s.client();
    await c.ehlo();
    await c.command('STARTTLS');
    await c.startTls();
    await c.ehlo();
    assert.equal((await c.command('STARTTLS')).last, '503 5.5.1 TLS already active');
    c.destroy();
  });
});

describe('client address and session overrides (SPEC §4.3, §4.5)', () => {
  test('XCLIENT, XFORWARD, BDAT, VRFY, EXPN, ETRN and TURN get 502; BDAT/CHUNKING is not advertised', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY() });
    try {
      const c = await s.client();
      const ehlo = await c.ehlo('client.example.net');
      assert.ok(!ehlo.texts.some((t) => /^(CHUNKING|BINARYMIME|XCLIENT|XFORWARD|VRFY|ETRN)\b/.test(t)), ehlo.texts.join(', '));
      for (const cmd of ['XCLIENT ADDR=192.168.1.10', 'XFORWARD ADDR=192.168.1.10', 'BDAT 10 LAST', 'VRFY jdoe', 'EXPN staff', 'ETRN doe-family.com', 'TURN']) {
        assert.equal((await c.command(cmd)).last, '502 5.5.1 Command not implemented', cmd);
      }
      // XCLIENT did not make this client internal: relaying is still refused.
      await c.command('MAIL FROM:<alice@example.net>');
      assert.equal((await c.command('RCPT TO:<victim@example.org>')).last, '554 5.7.1 Relay access denied');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a PROXY header from a client outside proxy_from changes nothing: unknown command, still refused as outside', async () => {
    // proxy_from holds some other host; the test client (127.0.0.1) is not it.
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.interfaces.proxy_from=["192.0.2.7"]'] });
    try {
      const c = await SmtpClient.connect(s.port, { preamble: 'PROXY TCP4 192.168.1.10 192.0.2.25 40000 25\r\n' });
      assert.equal((await c.greeting()).code, 220);
      assert.equal((await c.readReply()).last, '500 5.5.2 Syntax error, command unrecognized');
      await c.ehlo('client.example.net');
      await c.command('MAIL FROM:<alice@example.net>');
      assert.equal((await c.command('RCPT TO:<victim@example.org>')).last, '554 5.7.1 Relay access denied', 'not taken for 192.168.1.10');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a PROXY header from proxy_from sets the client address the policy sees', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.interfaces.proxy_from=["127.0.0.1"]'] });
    try {
      // The proxy reports an internal client: doe-family lets it relay.
      const inside = await SmtpClient.connect(s.port, { preamble: 'PROXY TCP4 192.168.1.10 192.0.2.25 40000 25\r\n' });
      assert.equal((await inside.greeting()).code, 220);
      await inside.ehlo('client.example.net');
      await inside.command('MAIL FROM:<alice@example.net>');
      assert.equal((await inside.command('RCPT TO:<friend@example.org>')).last, '250 2.1.5 Ok');
      inside.destroy();
      // And an outside one is refused, though the TCP peer is the same.
      const outside = await SmtpClient.connect(s.port, { preamble: 'PROXY TCP4 203.0.113.9 192.0.2.25 40000 25\r\n' });
      assert.equal((await outside.greeting()).code, 220);
      await outside.ehlo('client.example.net');
      await outside.command('MAIL FROM:<alice@example.net>');
      assert.equal((await outside.command('RCPT TO:<friend@example.org>')).last, '554 5.7.1 Relay access denied');
      outside.destroy();
    } finally {
      await s.stop();
    }
  });
});
