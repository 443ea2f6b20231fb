// The Received: header the server prepends before preq (SPEC §10):
//
//   Received: from <helo> (<name|unknown> [<ip>]) by <server.name>
//    with <SMTP|ESMTP|ESMTPS|ESMTPA|ESMTPSA> id <id>; <RFC 5322 date>
//
// TLS and AUTH details go in comments after the id, so the fixed part reads
// exactly as the SPEC writes it. The authenticated user name is left out
// (as Postfix does by default): the header travels with the message.
// The value is one line; the message writer folds it (unfolding gives this
// line back).

import type { Header, Session } from './types.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** RFC 5322 date-time in UTC: `Sat, 22 Nov 2025 04:00:00 +0000`. */
export function rfc5322Date(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`;
}

/** The `with` keyword of RFC 3848: HELO gives SMTP; EHLO gives ESMTP plus S (TLS) and A (AUTH). */
export function protocolName(session: Pick<Session, 'esmtp' | 'tls' | 'auth'>): 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA' {
  if (!session.esmtp) return 'SMTP';
  const s = session.tls !== null ? 'S' : '';
  const a = session.auth !== null ? 'A' : '';
  return `ESMTP${s}${a}` as 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA';
}

// Header text must not carry what would break the header: CR, LF, other controls.
function clean(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}

export interface ReceivedOptions {
  /** `server.name` */
  serverName: string;
  /** Transaction (= queue) id. */
  id: string;
  date: Date;
}

/** The Received: header for a message of this session (SPEC §10). */
export function receivedHeader(session: Pick<Session, 'helo' | 'esmtp' | 'tls' | 'auth' | 'clientIp' | 'reverseName'>, opts: ReceivedOptions): Header {
  const helo = clean(session.helo ?? 'unknown');
  const name = clean(session.reverseName ?? 'unknown');
  const clauses = [
    'from', helo, `(${name}`, `[${clean(session.clientIp)}])`,
    'by', clean(opts.serverName),
    'with', protocolName(session),
    'id', opts.id,
  ];
  if (session.tls !== null) clauses.push(`(${clean(session.tls.protocol)}`, 'with', 'cipher', `${clean(session.tls.cipher)})`);
  if (session.auth !== null) clauses.push('(authenticated', 'with', `${clean(session.auth.mechanism)})`);
  clauses[clauses.length - 1] += ';';
  clauses.push(rfc5322Date(opts.date));
  return { name: 'Received', value: clauses.join(' ') };
}
