// The seed flow with real authentication backends (issue "Core built-ins",
// must-show 1): the doe-family example, whose authenticate rule calls
// `authenticate()`, served by the real server on a real socket.
//
// - saslauthd: the real daemon (test/helpers/saslauthd.ts runs it with the
//   rimap mechanism against a small IMAP responder, since Debian's sasldb
//   mechanism reads only /etc/sasldb2); our client speaks its wire protocol
//   over the UNIX socket configured as `server.auth.backend`.
// - credentials file: the example's own `file:passwd`, where `mta passwd`
//   adds the account while the server runs; AUTH is offered only after
//   STARTTLS here, as in production.

import assert from 'node:assert/strict';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { passwdCommand } from '../../src/cli/passwd.js';
import { startSaslauthd, type TestSaslauthd } from '../helpers/saslauthd.js';
import type { SmtpClient } from '../helpers/smtp-client.js';
import { makeTestCertificate, type TestCertificate } from '../helpers/tls-cert.js';
import { headerValues, queuedId, recipientsOf, REPO_ROOT, sampleMessage, sendData, startTestServer, type TestServer } from '../helpers/server.js';

const DOE = path.join(REPO_ROOT, 'examples', 'doe-family');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const plain = (user: string, pass: string): string => `AUTH PLAIN ${b64(`\0${user}\0${pass}`)}`;

/** After a successful AUTH: john may use his own address and relay; the message is queued for example.net. */
async function relaysAfterAuth(s: TestServer, c: SmtpClient): Promise<void> {
  assert.equal((await c.command('MAIL FROM:<john@doe-family.com>')).last, '250 2.1.0 Ok');
  assert.equal((await c.command('RCPT TO:<x@example.net>')).last, '250 2.1.5 Ok');
  const { end } = await sendData(c, sampleMessage('john@doe-family.com', 'x@example.net'));
  assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
  const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
  assert.deepEqual(recipientsOf(m), ['x@example.net']);
  assert.equal(m.record.session.auth?.authid, 'john');
  assert.match(headerValues(m.eml, 'Received')[0]!, / with ESMTPS?A id /, 'the Received: header says the client authenticated');
}

/** After a failed AUTH: the session goes on unauthenticated, and relaying is refused. */
async function refusedAfterFailure(c: SmtpClient): Promise<void> {
  assert.equal((await c.command('MAIL FROM:<a@example.org>')).last, '250 2.1.0 Ok');
  assert.equal((await c.command('RCPT TO:<x@example.net>')).last, '554 5.7.1 Relay access denied');
  assert.equal((await c.command('RCPT TO:<jane@doe-family.com>')).last, '250 2.1.5 Ok', 'inbound mail still works');
}

describe('doe-family with a real saslauthd (server.auth.backend = "saslauthd:<socket>")', () => {
  let sasl: TestSaslauthd | null = null;
  let s: TestServer;
  before(async () => {
    sasl = await startSaslauthd({ john: 'doe-family-secret' });
    if (!sasl) return;
    s = await startTestServer({ copyFrom: DOE, set: ['server.relay_networks=[]', `server.auth.backend=saslauthd:${sasl.socket}`, 'server.auth.allow_plaintext=true'] });
  });
  after(async () => {
    await s?.stop();
    await sasl?.stop();
  });
  const skip = (): string | false => (sasl ? false : 'saslauthd is not installed (apt-get install sasl2-bin)');

  test('AUTH PLAIN with the right password gets 235, then relaying to example.net is accepted', async (t) => {
    if (skip()) return t.skip(skip() as string);
    const c = await s.client();
    assert.ok((await c.ehlo()).texts.includes('AUTH PLAIN LOGIN'), 'AUTH without TLS (allow_plaintext)');
    assert.equal((await c.command(plain('john', 'doe-family-secret'))).last, '235 2.7.0 Authentication succeeded');
    assert.deepEqual(sasl!.logins, ['john'], 'saslauthd checked the login');
    await relaysAfterAuth(s, c);
    c.destroy();
  });

  test('a wrong password gets 535 5.7.8, and relaying is refused with 554 5.7.1', async (t) => {
    if (skip()) return t.skip(skip() as string);
    const c = await s.client();
    await c.ehlo();
    assert.equal((await c.command(plain('john', 'not-the-password'))).last, '535 5.7.8 Authentication credentials invalid');
    await refusedAfterFailure(c);
    c.destroy();
    assert.ok(!JSON.stringify(s.logs).includes('not-the-password'), 'the password is never logged');
  });
});

/** Runs `mta passwd FILE USER` with the password piped on stdin. */
async function mtaPasswd(file: string, user: string, password: string): Promise<{ code: number; out: string }> {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const stdin = Readable.from([`${password}\n`]).pipe(new PassThrough());
  const code = await passwdCommand([file, user], { stdin, stdout: sink, stderr: sink });
  return { code, out };
}

describe('doe-family with its credentials file (file:passwd) behind STARTTLS', () => {
  let cert: TestCertificate;
  let s: TestServer;
  before(async () => {
    cert = await makeTestCertificate('mx.doe-family.com');
    s = await startTestServer({
      copyFrom: DOE,
      set: [
        'server.relay_networks=[]',
        'server.auth.allow_plaintext=false',
        `server.tls.certificate=${cert.certPath}`,
        `server.tls.private_key=${cert.keyPath}`,
      ],
    });
  });
  after(async () => {
    await s?.stop();
    await cert?.cleanup();
  });

  /** Connects, STARTTLS, EHLO again. */
  const secured = async (): Promise<SmtpClient> => {
    const c = await s.client();
    const plainEhlo = await c.ehlo();
    assert.ok(plainEhlo.texts.includes('STARTTLS'));
    assert.ok(!plainEhlo.texts.some((x) => x.startsWith('AUTH')), 'AUTH is not offered before TLS');
    assert.equal((await c.command('STARTTLS')).last, '220 2.0.0 Ready to start TLS');
    await c.startTls();
    assert.ok((await c.ehlo()).texts.includes('AUTH PLAIN LOGIN'), 'AUTH is offered under TLS');
    return c;
  };

  test('an account added with mta passwd while the server runs: AUTH LOGIN gets 235, then relaying is accepted', async () => {
    const file = path.join(s.policyDir, 'passwd');
    const added = await mtaPasswd(file, 'john', 'doe-family-secret');
    assert.equal(added.code, 0, added.out);
    const c = await secured();
    assert.equal((await c.command('AUTH LOGIN')).last, `334 ${b64('Username:')}`);
    assert.equal((await c.command(b64('john'))).last, `334 ${b64('Password:')}`);
    assert.equal((await c.command(b64('doe-family-secret'))).last, '235 2.7.0 Authentication succeeded');
    await relaysAfterAuth(s, c);
    c.destroy();
  });

  test('before TLS AUTH gets 538 5.7.11; under TLS a wrong password gets 535 5.7.8 and relaying is refused', async () => {
    const c = await s.client();
    await c.ehlo();
    assert.equal((await c.command(plain('john', 'doe-family-secret'))).last, '538 5.7.11 Encryption required for requested authentication mechanism');
    c.destroy();
    const d = await secured();
    assert.equal((await d.command(plain('john', 'wrong'))).last, '535 5.7.8 Authentication credentials invalid');
    await refusedAfterFailure(d);
    d.destroy();
  });
});
