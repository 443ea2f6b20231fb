// The certificate `mta test` presents for STARTTLS and implicit TLS (SPEC
// §11.3: "STARTTLS uses a test certificate"). A fixed, self-signed EC P-256
// certificate for `mta-test.invalid`, made for this project with openssl and
// valid until 2126; its key is public on purpose, like any test fixture: it
// never protects anything, it only lets transcripts exercise TLS sessions on
// a machine without openssl. The transcript client does not verify it.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';

export const TEST_CERTIFICATE_PEM = `-----BEGIN CERTIFICATE-----
MIIBtTCCAVugAwIBAgIUXdfsPib8AuchxN8qGagiNann2jcwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQbXRhLXRlc3QuaW52YWxpZDAgFw0yNjExMjIwNDMzMzlaGA8y
MTI2MTAyOTA0MzMzOVowGzEZMBcGA1UEAwwQbXRhLXRlc3QuaW52YWxpZDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABEavyCK42UalqcsXnF2QebKjxjCvBKNARLRu
X9UjMYwE66uEWQtSH/dbkFZ7+7PDxTv9WObY/sx83zitjaD4WHyjezB5MB0GA1Ud
DgQWBBQXSk46lCduxjByrgpxfHFcIYm+bDAfBgNVHSMEGDAWgBQXSk46lCduxjBy
rgpxfHFcIYm+bDAPBgNVHRMBAf8EBTADAQH/MCYGA1UdEQQfMB2CEG10YS10ZXN0
LmludmFsaWSCCWxvY2FsaG9zdDAKBggqhkjOPQQDAgNIADBFAiEAo/TbGt7ncupc
nDJMkXeCdDDvEAzOchNAJ2S7sEpkqZgCIBxGVkaU2AhAFeflOBpMfGztcC7+W41a
1GsncSp7UbK6
-----END CERTIFICATE-----
`;

export const TEST_PRIVATE_KEY_PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4qVXIWi3KBAFBGzD
ahrS/e+U1HX948gKUGcFWpwAUiahRANCAARGr8giuNlGpanLF5xdkHmyo8YwrwSj
QES0bl/VIzGMBOurhFkLUh/3W5BWe/uzw8U7/Vjm2P7MfN84rY2g+Fh8
-----END PRIVATE KEY-----
`;

/** Writes the test certificate and key into `dir` (the front reads TLS material from files). */
export async function writeTestCertificate(dir: string): Promise<{ certPath: string; keyPath: string }> {
  const certPath = path.join(dir, 'test-cert.pem');
  const keyPath = path.join(dir, 'test-key.pem');
  await writeFile(certPath, TEST_CERTIFICATE_PEM);
  await writeFile(keyPath, TEST_PRIVATE_KEY_PEM, { mode: 0o600 });
  return { certPath, keyPath };
}
