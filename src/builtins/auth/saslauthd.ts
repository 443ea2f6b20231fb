// A client for saslauthd's UNIX-socket protocol (SPEC §7.3 `saslauthd:`).
//
// The request is four fields, each a 2-byte big-endian length followed by
// that many bytes: login, password, service, realm. The answer is one field
// of the same shape whose text starts with "OK" (valid) or "NO" (invalid,
// followed by a reason). saslauthd closes the connection after answering.
//
// An unreachable socket, a timeout or a malformed answer is an error (the
// caller turns it into a temporary failure); only an explicit "NO" is an
// invalid credential.

import { connect } from 'node:net';

export interface SaslauthdRequest {
  login: string;
  password: string;
  service: string;
  realm: string;
}

export const SASLAUTHD_TIMEOUT_MS = 5000;
/** saslauthd refuses longer fields; we refuse them before sending. */
const FIELD_MAX_BYTES = 256;
const ANSWER_MAX_BYTES = 1024;

function encodeField(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/**
 * Whether a credential can be sent at all. saslauthd works on C strings, so
 * a NUL would truncate the password ("secret\0junk" would check "secret");
 * such credentials and over-long fields are invalid, not sent.
 */
export function sendableField(text: string): boolean {
  return !text.includes('\0') && Buffer.byteLength(text, 'utf8') <= FIELD_MAX_BYTES;
}

/** Asks saslauthd at `socketPath`; true for "OK", false for "NO". */
export function saslauthdVerify(
  socketPath: string,
  req: SaslauthdRequest,
  timeoutMs = SASLAUTHD_TIMEOUT_MS,
): Promise<boolean> {
  if (![req.login, req.password, req.service, req.realm].every(sendableField)) {
    return Promise.resolve(false);
  }
  const request = Buffer.concat([
    encodeField(req.login),
    encodeField(req.password),
    encodeField(req.service),
    encodeField(req.realm),
  ]);
  return new Promise<boolean>((resolve, reject) => {
    let received = Buffer.alloc(0);
    let settled = false;
    const socket = connect({ path: socketPath });
    const finish = (err: Error | null, valid = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(valid);
    };
    const timer = setTimeout(
      () => finish(new Error(`saslauthd at ${socketPath}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const len = received.readUInt16BE(0);
      if (len > ANSWER_MAX_BYTES) {
        finish(new Error(`saslauthd at ${socketPath}: answer too long (${len} bytes)`));
        return;
      }
      if (received.length < 2 + len) return;
      const answer = received.subarray(2, 2 + len).toString('utf8');
      if (answer.startsWith('OK')) finish(null, true);
      else if (answer.startsWith('NO')) finish(null, false);
      else finish(new Error(`saslauthd at ${socketPath}: unexpected answer ${JSON.stringify(answer.slice(0, 80))}`));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish(new Error(`saslauthd at ${socketPath}: ${err.code ?? err.message}`));
    });
    socket.on('close', () => {
      finish(new Error(`saslauthd at ${socketPath}: connection closed before an answer`));
    });
  });
}
