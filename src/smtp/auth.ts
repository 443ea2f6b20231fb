// SASL PLAIN and LOGIN (RFC 4616, RFC 4954) and the authenticate stage
// (SPEC §4.3, §5.5): reading the credentials, running the stage with them,
// counting failures (attempts_max per session, the failure tracker across
// sessions). The password is only ever held in the credentials object handed
// to the stage, wiped afterwards; nothing here logs it.

import type { Reply } from '../mail/types.js';
import { REPLY_AUTH_SUCCESS } from '../policy/apply.js';
import { withCredentials, type AuthCredentials } from '../policy/credentials.js';
import { makeReply } from '../mail/reply.js';
import { R } from './replies.js';
import type { SmtpProtocol } from './protocol.js';
import { decideStage } from '../policy/stage-machine.js';

/** Where a multi-line exchange stands: the next client line answers this challenge. */
export type SaslState = { mechanism: 'PLAIN'; step: 'response' } | { mechanism: 'LOGIN'; step: 'username' } | { mechanism: 'LOGIN'; step: 'password'; username: string };

const CHALLENGE_EMPTY = makeReply(334, '', '');
const CHALLENGE_USERNAME = makeReply(334, '', Buffer.from('Username:').toString('base64'));
const CHALLENGE_PASSWORD = makeReply(334, '', Buffer.from('Password:').toString('base64'));

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x1f\x7f]/;

/** Strict base64 to UTF-8 text; null when the input is not base64 or not UTF-8. */
function decodeBase64(text: string): string | null {
  if (!BASE64.test(text)) return null;
  const buf = Buffer.from(text, 'base64');
  const s = buf.toString('utf8');
  return Buffer.from(s, 'utf8').equals(buf) ? s : null;
}

/** RFC 4616 message: authzid NUL authcid NUL passwd. */
function decodePlain(text: string): { authzid: string; authcid: string; password: string } | null {
  const decoded = decodeBase64(text);
  if (decoded === null) return null;
  const parts = decoded.split('\0');
  if (parts.length !== 3) return null;
  const [authzid, authcid, password] = parts as [string, string, string];
  if (authcid === '' || CONTROLS.test(authcid) || CONTROLS.test(authzid)) return null;
  return { authzid, authcid, password };
}

/** Why AUTH cannot start, or null when it may (SPEC §4.3, §4.5); `mechanism` null: not given. */
function refusal(p: SmtpProtocol, mechanism: string | null): Reply | null {
  const s = p.settings;
  const session = p.state.session;
  if (s.authMechanisms.length === 0 || !p.front.runner.hasRules('authenticate')) return R.notImplemented;
  if (session.helo === null || !session.esmtp || p.state.txn !== null) return R.badSequence;
  if (session.auth !== null) return R.authAlready;
  if (s.authRequiresTls && session.tls === null) return R.authEncryptionRequired;
  if (mechanism === null) return R.badArguments('Syntax: AUTH mechanism [initial-response]');
  if (!s.authMechanisms.includes(mechanism)) return R.authUnknownMechanism;
  return null;
}

/** `AUTH <mechanism> [initial-response]`. */
export async function handleAuth(p: SmtpProtocol, args: string): Promise<void> {
  p.wire.markAwaited();
  const words = args.trim().split(/ +/);
  const mechanism = (words[0] ?? '').toUpperCase();
  const initial = words[1];
  const refused = refusal(p, mechanism === '' || words.length > 2 ? null : mechanism);
  if (refused !== null) {
    await p.wire.reply(refused);
    return;
  }
  const tracker = p.front.authFailures;
  if (tracker !== null && (await tracker.isBlocked(p.state.session.clientIp))) {
    p.log.warn('AUTH refused: too many failures from this client');
    p.wire.replyAndClose(R.authTooManyFailures);
    return;
  }
  if (initial === '*') {
    await p.wire.reply(R.authCancelled);
    return;
  }
  if (mechanism === 'PLAIN') {
    // RFC 4954: "=" is an empty initial response, which PLAIN cannot use.
    if (initial === undefined) {
      p.sasl = { mechanism: 'PLAIN', step: 'response' };
      await p.wire.reply(CHALLENGE_EMPTY);
      return;
    }
    await plainResponse(p, initial);
    return;
  }
  if (initial === undefined) {
    p.sasl = { mechanism: 'LOGIN', step: 'username' };
    await p.wire.reply(CHALLENGE_USERNAME);
    return;
  }
  await loginUsername(p, initial);
}

/** A line answering a 334 challenge. */
export async function handleAuthContinuation(p: SmtpProtocol, line: string): Promise<void> {
  p.wire.markAwaited();
  const state = p.sasl;
  p.sasl = null;
  if (state === null) return;
  const text = line.trim();
  if (text === '*') {
    await p.wire.reply(R.authCancelled);
    return;
  }
  if (state.mechanism === 'PLAIN') await plainResponse(p, text);
  else if (state.step === 'username') await loginUsername(p, text);
  else await loginPassword(p, state.username, text);
}

async function plainResponse(p: SmtpProtocol, text: string): Promise<void> {
  const creds = decodePlain(text);
  if (creds === null) {
    await p.wire.reply(R.authUndecodable);
    return;
  }
  // Acting as another identity (authzid) is not supported: only one's own.
  if (creds.authzid !== '' && creds.authzid !== creds.authcid) {
    await verdictReply(p, false, R.authInvalid);
    return;
  }
  await authenticate(p, 'PLAIN', creds.authcid, creds.password);
}

async function loginUsername(p: SmtpProtocol, text: string): Promise<void> {
  const username = decodeBase64(text);
  if (username === null || username === '' || CONTROLS.test(username)) {
    await p.wire.reply(R.authUndecodable);
    return;
  }
  p.sasl = { mechanism: 'LOGIN', step: 'password', username };
  await p.wire.reply(CHALLENGE_PASSWORD);
}

async function loginPassword(p: SmtpProtocol, username: string, text: string): Promise<void> {
  const password = decodeBase64(text);
  if (password === null) {
    await p.wire.reply(R.authUndecodable);
    return;
  }
  await authenticate(p, 'LOGIN', username, password);
}

/** Runs the authenticate stage with the credentials and answers 235, 535, 454 (SPEC §5.2, §5.5). */
async function authenticate(p: SmtpProtocol, mechanism: string, authid: string, password: string): Promise<void> {
  const session = p.state.session;
  const creds: AuthCredentials = { type: 'Verify', mechanism, authid, authpass: password, anonymous_token: '' };
  const tracker = p.front.authFailures;
  // Counted as in flight from here, so parallel sessions cannot start more checks than the cap.
  const ticket = tracker === null ? null : await tracker.begin(session.clientIp);
  if (tracker !== null && ticket === null) {
    p.log.warn('AUTH refused: too many failures from this client');
    p.wire.replyAndClose(R.authTooManyFailures);
    return;
  }
  let applied;
  try {
    ({ applied } = await withCredentials(creds, (extra) => decideStage(p.front, p.state, p.log, 'authenticate', REPLY_AUTH_SUCCESS, null, extra)));
  } catch (err) {
    ticket?.end('abandoned');
    throw err;
  }
  // Slows down guessing spread over many sessions (src/builtins/auth/failures.ts).
  if (ticket !== null && ticket.delayMs > 0) await p.front.clock.sleep(ticket.delayMs);
  ticket?.end(applied.accept ? 'success' : 'failure');
  if (applied.accept) {
    session.auth = { mechanism, authid };
    p.log.info({ mechanism, authid }, 'authenticated');
    await p.wire.reply(applied.reply);
    return;
  }
  await verdictReply(p, applied.close, applied.reply);
}

/** A failed attempt: its reply, then `421 4.7.0` once `attempts_max` failures are reached. */
async function verdictReply(p: SmtpProtocol, close: boolean, reply: Reply): Promise<void> {
  p.state.authFailures++;
  await p.wire.reply(reply, { close });
  if (!close && !p.wire.gone && p.state.authFailures >= p.settings.authAttemptsMax) {
    p.log.warn({ failures: p.state.authFailures }, 'too many authentication failures');
    p.wire.replyAndClose(R.authTooManyFailures);
  }
}
