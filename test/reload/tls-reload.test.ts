// Replacing the TLS certificate of a running server (SPEC §12, §9.2
// server.tls): the reload manager watches the certificate and key files, and
// new handshakes — STARTTLS on port 25, implicit TLS on a submissions
// listener — present the new certificate without a restart, while the policy
// version stays the same.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from '../../src/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { captureLog, copyDir, tempDir } from '../helpers/server.js';
import { fromRoot } from '../helpers/paths.js';
import { makeTestCertificate, type TestCertificate } from '../helpers/tls-cert.js';

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** The certificate a new STARTTLS handshake on `port` presents. */
async function startTlsFingerprint(port: number): Promise<string> {
  const c = await SmtpClient.connect(port);
  try {
    await c.greeting();
    const ehlo = await c.ehlo('client.example.org');
    assert.ok(ehlo.texts.includes('STARTTLS'), 'STARTTLS is offered');
    assert.equal((await c.command('STARTTLS')).code, 220);
    await c.startTls();
    return c.tlsSocket!.getPeerCertificate().fingerprint256;
  } finally {
    c.destroy();
  }
}

/** The certificate a new implicit-TLS handshake on `port` presents. */
async function implicitTlsFingerprint(port: number): Promise<string> {
  const c = await SmtpClient.connect(port, { tls: true });
  try {
    assert.equal((await c.greeting()).code, 220);
    return c.tlsSocket!.getPeerCertificate().fingerprint256;
  } finally {
    c.destroy();
  }
}

/** Polls until `probe` returns `want`; fails after `withinMs`. */
async function until(probe: () => Promise<string>, want: string, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  let got = '';
  for (;;) {
    got = await probe();
    if (got === want) return;
    if (Date.now() > deadline) assert.fail(`after ${withinMs} ms the server still presents ${got}, not ${want}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function replaceByRename(file: string, text: string): void {
  const tmp = `${file}.new`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

describe('TLS certificate replacement without a restart', () => {
  let first: TestCertificate;
  let second: TestCertificate;
  before(async () => {
    first = await makeTestCertificate('mx-old.doe-family.com');
    second = await makeTestCertificate('mx-new.doe-family.com');
  });
  after(async () => {
    await first?.cleanup();
    await second?.cleanup();
  });

  test('new STARTTLS and implicit-TLS handshakes present the replaced certificate; the policy version is unchanged', async () => {
    const policyDir = tempDir('vsl-tls-reload-policy-');
    const queueDir = tempDir('vsl-tls-reload-queue-');
    copyDir(fromRoot('examples', 'doe-family'), policyDir);
    const certPath = path.join(policyDir, 'cert.pem');
    const keyPath = path.join(policyDir, 'key.pem');
    fs.writeFileSync(certPath, first.cert);
    fs.writeFileSync(keyPath, first.key);
    const { log, logs } = captureLog('info');
    const server = await startServer({
      mainPath: path.join(policyDir, 'main.vsl'),
      overrides: {
        listen: ['127.0.0.1:0'],
        queueDir,
        set: [
          `server.tls.certificate=${certPath}`, `server.tls.private_key=${keyPath}`,
          'server.interfaces.addr_submissions=[127.0.0.1:0]', `vsl.data_dir=${path.join(queueDir, 'data')}`,
        ],
      },
      log,
      deliver: false,
    });
    try {
      const smtpPort = server.listeners.find((l) => l.kind === 'smtp')!.port;
      const submissionsPort = server.listeners.find((l) => l.kind === 'submissions')!.port;
      const version = server.policy.current().id;
      assert.equal(await startTlsFingerprint(smtpPort), fingerprint(first.cert));
      assert.equal(await implicitTlsFingerprint(submissionsPort), fingerprint(first.cert));

      // A session under the old certificate stays up across the replacement.
      const open = await SmtpClient.connect(submissionsPort, { tls: true });
      await open.greeting();

      // Key first, then certificate, as a deploy script would; both within the debounce.
      replaceByRename(keyPath, second.key);
      replaceByRename(certPath, second.cert);
      await until(() => startTlsFingerprint(smtpPort), fingerprint(second.cert), 3000);
      assert.equal(await implicitTlsFingerprint(submissionsPort), fingerprint(second.cert));

      assert.equal((await open.ehlo('still.here.example')).code, 250);
      assert.equal(open.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(first.cert));
      open.destroy();

      assert.equal(server.policy.current().id, version, 'a certificate change alone does not make a new policy version');
      assert.ok(logs.some((l) => l.reload === 'tls'), 'the reload is logged');
    } finally {
      await server.stop(500);
      fs.rmSync(policyDir, { recursive: true, force: true });
      fs.rmSync(queueDir, { recursive: true, force: true });
    }
  });
});
