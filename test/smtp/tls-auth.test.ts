// STARTTLS, implicit TLS and AUTH (SPEC §4.3, §4.5, §5.5) with a
// certificate made at test time.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createFailureTracker } from '../../src/builtins/auth/failures.js';
import type { AuthCredentials } from '../../src/policy/credentials.js';
import { accept, faccept, next, type RunCall } from '../helpers/fake-runner.js';
import { startFront, withFront } from '../helpers/smtp-front.js';
import { makeTestCertificate } from '../helpers/tls-cert.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const PLAIN_GOOD = b64('\0alice\0s3cret-pw');
const PLAIN_BAD = b64('\0alice\0wrong-pw');

/** The authenticate stage of a policy that knows alice / s3cret-pw. */
const checkAlice = (call: RunCall) => (call.credentials?.authid === 'alice' && call.credentials.authpass === 's3cret-pw' ? accept() : next());

describe('STARTTLS', () => {
  test('without a certificate STARTTLS is not offered and gets 454 4.7.0', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      assert.ok(!(await c.ehlo()).texts.includes('STARTTLS'));
      assert.equal((await c.command('STARTTLS')).last, '454 4.7.0 TLS not available due to temporary reason');
      c.destroy();
    });
  });

  test('AUTH is offered only under TLS; before it AUTH gets 538 5.7.11', async () => {
    await withFront({ tls: true, script: { authenticate: checkAlice } }, async (h) => {
      const c = await h.client();
      const before = await c.ehlo();
      assert.ok(before.texts.includes('STARTTLS'));
      assert.ok(!before.texts.some((t) => t.startsWith('AUTH')), 'no AUTH in plaintext');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '538 5.7.11 Encryption required for requested authentication mechanism');
      assert.equal((await c.command('STARTTLS')).last, '220 2.0.0 Ready to start TLS');
      await c.startTls();
      const after = await c.ehlo();
      assert.ok(after.texts.includes('AUTH PLAIN LOGIN'));
      assert.ok(!after.texts.includes('STARTTLS'));
      assert.equal((await c.command('STARTTLS')).last, '503 5.5.1 TLS already active');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '235 2.7.0 Authentication succeeded');
      c.destroy();
    });
  });

  test('a successful STARTTLS resets the session to its state after connect', async () => {
    await withFront({
      tls: true,
      script: { connect: next(), helo: [faccept(), next()], authenticate: checkAlice, mail: next() },
      config: (c) => (c.server.auth.allow_plaintext = true),
    }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).code, 235);
      assert.equal((await c.command('STARTTLS')).code, 220);
      await c.startTls();
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '503 5.5.1 Bad sequence of commands', 'HELO forgotten');
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).code, 250);
      const mail = h.runner.callsOf('mail')[0]!;
      assert.equal(mail.session.auth, null, 'authentication forgotten');
      assert.equal(mail.session.tls?.protocol, 'TLSv1.3');
      assert.equal(mail.session.pipeliningViolation, false, 'a client that waited is not flagged');
      assert.equal(h.runner.callsOf('connect').length, 1, 'connect rules do not run again');
      assert.equal(h.runner.callsOf('helo').length, 2, 'the faccept remembered at helo was discarded');
      c.destroy();
    });
  });

  test('commands pipelined after STARTTLS in plaintext are never executed', async () => {
    await withFront({ tls: true, script: { mail: next() } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      c.write('STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n');
      assert.equal((await c.readReply()).last, '220 2.0.0 Ready to start TLS');
      await c.startTls();
      const ehlo = await c.ehlo();
      assert.equal(ehlo.lines[0], '250-mx.test.example', 'the first reply under TLS is the EHLO one');
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands', 'no transaction was started');
      assert.equal(h.runner.callsOf('mail').length, 0);
      await c.command('MAIL FROM:<real@remote.example>');
      assert.equal(h.runner.callsOf('mail')[0]!.session.pipeliningViolation, true, 'the injection is noted');
      c.destroy();
    });
  });

  test('STARTTLS in a transaction gets 503 5.5.1', async () => {
    await withFront({ tls: true }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('STARTTLS')).last, '503 5.5.1 Bad sequence of commands');
      c.destroy();
    });
  });
});

describe('implicit TLS and submission', () => {
  test('port 465 style: TLS from the first byte, AUTH offered, MAIL without AUTH gets 530 5.7.0', async () => {
    await withFront({ tls: true, listeners: ['submissions'], script: { authenticate: checkAlice, preq: next() } }, async (h) => {
      const c = await h.connect();
      assert.equal((await c.greeting()).last, '220 mx.test.example Service ready');
      assert.ok(c.tlsSocket, 'TLS socket');
      const ehlo = await c.ehlo();
      assert.ok(ehlo.texts.includes('AUTH PLAIN LOGIN'));
      assert.ok(!ehlo.texts.includes('STARTTLS'));
      assert.equal((await c.command('MAIL FROM:<a@test.example>')).last, '530 5.7.0 Authentication required');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '235 2.7.0 Authentication succeeded');
      assert.equal((await c.command('MAIL FROM:<a@test.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<friend@far.example>')).code, 250, 'authenticated clients relay');
      await c.command('DATA');
      await c.data('Subject: s\r\n\r\nb\r\n');
      const stored = h.sink.stored[0]!;
      assert.match(stored.data.toString().replace(/\r\n /g, ' '), /^Received: from client\.example \(unknown \[127\.0\.0\.1\]\) by mx\.test\.example with ESMTPSA id \S+ \(TLSv1\.3 with cipher \S+\) \(authenticated with PLAIN\);/);
      assert.equal(stored.session.listener, 'submissions');
      assert.equal(stored.session.auth?.authid, 'alice');
      c.destroy();
    });
  });

  test('port 587 style: STARTTLS then AUTH; MAIL without AUTH gets 530 5.7.0', async () => {
    await withFront({ tls: true, listeners: ['submission'], script: { authenticate: checkAlice } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<a@test.example>')).last, '530 5.7.0 Authentication required');
      await c.command('STARTTLS');
      await c.startTls();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).code, 235);
      assert.equal((await c.command('MAIL FROM:<a@test.example>')).code, 250);
      c.destroy();
    });
  });
});

describe('AUTH', () => {
  const plaintext = (c: import('../../src/config/schema.js').Config): void => {
    c.server.auth.allow_plaintext = true;
  };

  test('AUTH is not offered when the policy has no authenticate rules, and gets 502', async () => {
    await withFront({ config: plaintext }, async (h) => {
      const c = await h.client();
      assert.ok(!(await c.ehlo()).texts.some((t) => t.startsWith('AUTH')));
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '502 5.5.1 Command not implemented');
      c.destroy();
    });
  });

  test('PLAIN with an initial response and after a 334 challenge; repeated AUTH gets 503', async () => {
    await withFront({ config: plaintext, script: { authenticate: checkAlice } }, async (h) => {
      let c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_BAD}`)).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '235 2.7.0 Authentication succeeded');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '503 5.5.1 Already authenticated');
      c.destroy();
      c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('AUTH PLAIN')).last, '334 ');
      assert.equal((await c.command(PLAIN_GOOD)).last, '235 2.7.0 Authentication succeeded');
      c.destroy();
    });
  });

  test('LOGIN asks for the user name and password and succeeds or fails', async () => {
    await withFront({ config: plaintext, script: { authenticate: checkAlice } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('AUTH LOGIN')).last, `334 ${b64('Username:')}`);
      assert.equal((await c.command(b64('alice'))).last, `334 ${b64('Password:')}`);
      assert.equal((await c.command(b64('nope'))).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal((await c.command(`AUTH LOGIN ${b64('alice')}`)).last, `334 ${b64('Password:')}`);
      assert.equal((await c.command(b64('s3cret-pw'))).last, '235 2.7.0 Authentication succeeded');
      assert.equal(h.runner.callsOf('authenticate')[1]!.credentials?.mechanism, 'LOGIN');
      c.destroy();
    });
  });

  test('cancel, unknown mechanism, bad base64, before EHLO and in a transaction get their replies', async () => {
    await withFront({ config: plaintext, script: { authenticate: checkAlice } }, async (h) => {
      const c = await h.client();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '503 5.5.1 Bad sequence of commands');
      await c.ehlo();
      assert.equal((await c.command('AUTH CRAM-MD5')).last, '504 5.5.4 Unrecognized authentication type');
      await c.command('AUTH LOGIN');
      assert.equal((await c.command('*')).last, '501 5.7.0 Authentication cancelled');
      assert.match((await c.command('AUTH PLAIN !!!notbase64')).last, /^501 5\.5\.4 /);
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '503 5.5.1 Bad sequence of commands');
      c.destroy();
    });
  });

  test('after attempts_max failures: 421 4.7.0 Too many authentication failures and close', async () => {
    await withFront({ config: plaintext, script: { authenticate: checkAlice } }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_BAD}`)).code, 535);
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_BAD}`)).code, 535);
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_BAD}`)).code, 535);
      assert.equal((await c.readReply()).last, '421 4.7.0 Too many authentication failures');
      assert.equal(await c.closedWithin(2000), true);
    });
  });

  test('the stage sees the credentials, the password is wiped after it and never logged', async () => {
    let seen: AuthCredentials | null = null;
    await withFront({
      config: plaintext,
      script: {
        authenticate: (call) => {
          seen = call.credentials;
          return checkAlice(call);
        },
      },
    }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).code, 235);
      const recorded = h.runner.callsOf('authenticate')[0]!.credentials!;
      assert.deepEqual(recorded, { type: 'Verify', mechanism: 'PLAIN', authid: 'alice', authpass: 's3cret-pw', anonymous_token: '' });
      assert.equal(seen!.authpass, '', 'wiped after the stage');
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal(JSON.stringify(h.runner.callsOf('mail')[0]!.session).includes('s3cret'), false, 'not on the session');
      const logs = h.logText();
      assert.ok(logs.includes('"authid":"alice"'), 'the login is logged');
      assert.equal(logs.includes('s3cret-pw'), false, 'the password is not');
      assert.equal(logs.includes(PLAIN_GOOD), false, 'nor the AUTH payload');
      c.destroy();
    });
  });

  test('a client blocked by the failure tracker gets 421 4.7.0 without a check', async () => {
    const tracker = createFailureTracker({ windowMs: 60_000, maxFailures: 2, baseDelayMs: 0 });
    await withFront({ config: plaintext, script: { authenticate: checkAlice }, authFailures: tracker }, async (h) => {
      let c = await h.client();
      await c.ehlo();
      await c.command(`AUTH PLAIN ${PLAIN_BAD}`);
      await c.command(`AUTH PLAIN ${PLAIN_BAD}`);
      c.destroy();
      c = await h.client();
      await c.ehlo();
      assert.equal((await c.command(`AUTH PLAIN ${PLAIN_GOOD}`)).last, '421 4.7.0 Too many authentication failures');
      assert.equal(await c.closedWithin(2000), true);
      assert.equal(h.runner.callsOf('authenticate').length, 2);
    });
  });
});

describe('TLS settings', () => {
  test('the connect stage of an implicit TLS listener sees TLS, and the SNI name when it is a local domain', async () => {
    await withFront({ tls: true, listeners: ['submissions'], script: { connect: next() } }, async (h) => {
      const a = await h.client({ servername: 'virtual.example' });
      const b = await h.client({ servername: 'elsewhere.example' });
      const [sa, sb] = h.runner.callsOf('connect').map((x) => x.session);
      assert.equal(sa!.tls?.servername, 'virtual.example');
      assert.equal(sa!.serverName, 'virtual.example');
      assert.equal(sb!.serverName, 'mx.test.example', 'a foreign SNI name is not the server name');
      a.destroy();
      b.destroy();
    });
  });

  test('server.tls.min_version refuses older clients', async () => {
    await withFront({ tls: true, config: (c) => (c.server.tls.min_version = 'TLSv1.3') }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('STARTTLS');
      await assert.rejects(c.startTls({ tlsOptions: { maxVersion: 'TLSv1.2' } }));
      c.destroy();
    });
  });

  test('reload() swaps the certificate for new handshakes', async () => {
    const h = await startFront({ tls: true });
    const other = await makeTestCertificate('mx2.test.example');
    try {
      const config = structuredClone(h.config);
      config.server.tls.certificate = other.certPath;
      config.server.tls.private_key = other.keyPath;
      await h.front.reload(config);
      const c = await h.client();
      await c.ehlo();
      await c.command('STARTTLS');
      await c.startTls();
      assert.equal(c.tlsSocket!.getPeerCertificate().subject.CN, 'mx2.test.example');
      c.destroy();
    } finally {
      await h.close();
      await other.cleanup();
    }
  });
});
