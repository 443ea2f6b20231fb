// Protocol replies given outside rules (SPEC §4.5), in one table, and the
// one function that turns a Reply into the lines written to the socket.
//
// smtp-server has its own texts for all of these; the connection class
// (connection.ts) never lets the library answer a command, so these are the
// only replies a client sees besides those decided by the policy.

import { makeReply } from '../mail/reply.js';
import { REPLY_AUTH_INVALID } from '../policy/apply.js';
import type { Reply } from '../mail/types.js';


export const R = {
  ok: makeReply(250, '2.0.0', 'Ok'),
  mailOk: makeReply(250, '2.1.0', 'Ok'),
  rcptOk: makeReply(250, '2.1.5', 'Ok'),
  dataGo: makeReply(354, '', 'Start mail input; end with <CRLF>.<CRLF>'),
  queued: (id: string): Reply => makeReply(250, '2.0.0', `Ok: queued as ${id}`),
  quit: makeReply(221, '2.0.0', 'Service closing transmission channel'),
  help: makeReply(214, '2.0.0', 'See RFC 5321 (commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP STARTTLS AUTH)'),
  notImplemented: makeReply(502, '5.5.1', 'Command not implemented'),
  unknownCommand: makeReply(500, '5.5.2', 'Syntax error, command unrecognized'),
  badSequence: makeReply(503, '5.5.1', 'Bad sequence of commands'),
  badArguments: (text = 'Syntax error in parameters'): Reply => makeReply(501, '5.5.4', text),
  unsupportedParameter: makeReply(555, '5.5.4', 'Unsupported parameter'),
  lineTooLong: makeReply(500, '5.5.6', 'Line too long'),
  tooBig: makeReply(552, '5.3.4', 'Message size exceeds fixed maximum message size'),
  headerTooBig: makeReply(552, '5.3.4', 'Message header size exceeds fixed maximum size'),
  tooManyRcpts: makeReply(452, '4.5.3', 'Too many recipients'),
  noValidRcpts: makeReply(554, '5.5.1', 'No valid recipients'),
  bareCrLf: makeReply(554, '5.5.2', 'Message contains bare CR or LF'),
  nulInMessage: makeReply(554, '5.6.0', 'Message contains NUL characters'),
  tooManyHops: makeReply(554, '5.4.6', 'Too many hops'),
  authInvalid: REPLY_AUTH_INVALID,
  authRequired: makeReply(530, '5.7.0', 'Authentication required'),
  authEncryptionRequired: makeReply(538, '5.7.11', 'Encryption required for requested authentication mechanism'),
  authUnknownMechanism: makeReply(504, '5.5.4', 'Unrecognized authentication type'),
  authCancelled: makeReply(501, '5.7.0', 'Authentication cancelled'),
  authUndecodable: makeReply(501, '5.5.4', 'Cannot decode authentication response'),
  authAlready: makeReply(503, '5.5.1', 'Already authenticated'),
  authTooManyFailures: makeReply(421, '4.7.0', 'Too many authentication failures'),
  tlsReady: makeReply(220, '2.0.0', 'Ready to start TLS'),
  tlsUnavailable: makeReply(454, '4.7.0', 'TLS not available due to temporary reason'),
  tlsActive: makeReply(503, '5.5.1', 'TLS already active'),
  talkedEarly: makeReply(554, '5.5.0', 'Protocol error: talking before greeting'),
  tooManyErrors: makeReply(421, '4.7.0', 'Too many errors'),
  tempFail: makeReply(451, '4.3.0', 'Temporary local problem, try again later'),
  shuttingDown: makeReply(421, '4.3.2', 'Service shutting down'),
  greeting: (name: string): Reply => makeReply(220, '', `${name} Service ready`),
  tooManyConnections: (name: string): Reply => makeReply(421, '4.7.0', `${name} Too many connections, try again later`),
  timeout: (name: string): Reply => makeReply(421, '4.4.2', `${name} Timeout, closing connection`),
} as const;

// Control characters other than tab have no place in a reply (SPEC §5.8).
