// Message-ID and Date for submitted mail, as Postfix's cleanup adds them for
// its own clients (RFC 5322 §3.6: every message should have both): only for
// authenticated clients and clients in server.relay_networks, whose mail is
// ours to complete. Mail from outside is never changed here.

import { rfc5322Date } from '../delivery/dsn.js';
import type { NetworkList } from '../policy/relay-guard.js';
import type { Header, Session } from '../mail/types.js';

export interface SubmissionFieldsInput {
  session: Session;
  relayNetworks: NetworkList;
  /** The names of the message's header fields. */
  present: ReadonlyArray<{ name: string }>;
  /** The queue id (unique: it makes the Message-ID) and server.name. */
  id: string;
  serverName: string;
  now: Date;
}

/** The fields to append: Message-ID and Date when missing, for our own clients only. */
export function missingSubmissionFields(i: SubmissionFieldsInput): Header[] {
  const ours = i.session.auth !== null || i.relayNetworks.contains(i.session.clientIp);
  if (!ours) return [];
  const has = (name: string) => i.present.some((h) => h.name.toLowerCase() === name);
  const out: Header[] = [];
  if (!has('message-id')) out.push({ name: 'Message-ID', value: `<${i.id}@${i.serverName}>` });
  if (!has('date')) out.push({ name: 'Date', value: rfc5322Date(i.now.getTime()) });
  return out;
}
