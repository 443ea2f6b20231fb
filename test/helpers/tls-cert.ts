// A throw-away self-signed certificate for TLS tests, made with the openssl
// CLI at test time (nothing secret is stored in the repository).
//
//   const cert = await makeTestCertificate();   // { certPath, keyPath, cert, key, cleanup }
//   ... config.server.tls.certificate = cert.certPath ...
//   await cert.cleanup();

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  dir: string;
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
  cleanup(): Promise<void>;
}

/** An EC P-256 certificate for `commonName` (and localhost, 127.0.0.1), valid one day. */
export async function makeTestCertificate(commonName = 'mx.test.example'): Promise<TestCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'vsl-mta-cert-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', `/CN=${commonName}`,
      '-addext', `subjectAltName=DNS:${commonName},DNS:localhost,IP:127.0.0.1`,
    ], { timeout: 20_000 });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`openssl could not make a test certificate: ${(err as Error).message}`);
  }
  const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  return { dir, certPath, keyPath, cert, key, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
