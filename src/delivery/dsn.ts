// Delivery status notifications (SPEC §10, RFC 3464): one multipart/report
// per failure batch of a message, from the null sender, with a human
// explanation, the machine-readable status of each failed recipient
// (quoting the remote reply) and the original header.

import { randomBytes } from 'node:crypto';
import type { EnvelopeRecord, RecipientRecord } from '../queue/envelope.js';
import { headerBlock } from '../queue/message.js';
import { addressText } from '../mail/types.js';
import { oneLine } from './outcome.js';

export interface DsnInput {
  record: EnvelopeRecord;
  /** The original message (only its header is included). */
  message: Buffer;
  failed: RecipientRecord[];
  /** server.name (Reporting-MTA) and server.domain (MAILER-DAEMON address). */
  serverName: string;
  serverDomain: string;
  now: number;
  /** The DSN's own queue id (Message-ID). */
  dsnId: string;
}

/** RFC 5322 date (`Sat, 22 Nov 2025 03:54:00 +0000`). */
export function rfc5322Date(ms: number): string {
  return new Date(ms).toUTCString().replace(/GMT$/, '+0000');
}

/** Folds a `Name: value` line at spaces to stay within 78 columns. */
function fold(line: string): string {
  const out: string[] = [];
  let rest = line;
  while (rest.length > 78) {
    let cut = rest.lastIndexOf(' ', 78);
    if (cut <= 0) cut = rest.indexOf(' ', 78);
    if (cut <= 0) break;
    out.push(rest.slice(0, cut));
    rest = ` ${rest.slice(cut + 1)}`;
  }
  out.push(rest);
  return out.join('\r\n');
}

/** An address for a DSN field: printable ASCII only (xtext-like escaping of anything else). */
function ascii(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.codePointAt(0)!.toString(16)}`);
}

function remoteMtaName(remote: string | null): string | null {
  if (!remote) return null;
  // "mx.example.org [192.0.2.1]" → "mx.example.org"; "[192.0.2.1]" → "192.0.2.1"
  const m = /^([^\s[]+)/.exec(remote) ?? /^\[([^\]]+)\]/.exec(remote);
  return m ? m[1]! : null;
}

/** Builds the DSN message (CRLF line ends). */
export function buildDsn(d: DsnInput): Buffer {
  const boundary = `${d.dsnId}/${randomBytes(6).toString('hex')}`;
  const sender = addressText(d.record.mail_from);
  const daemon = `MAILER-DAEMON@${d.serverDomain}`;
  const lines: string[] = [];
  lines.push(`From: Mail Delivery System <${daemon}>`);
  lines.push(`To: <${ascii(sender)}>`);
  lines.push('Subject: Undelivered Mail Returned to Sender');
  lines.push(`Date: ${rfc5322Date(d.now)}`);
  lines.push(`Message-ID: <${d.dsnId}@${d.serverName}>`);
  lines.push('Auto-Submitted: auto-replied');
  lines.push('MIME-Version: 1.0');
  lines.push(`Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="${boundary}"`);
  lines.push('');
  lines.push('This is a MIME-encapsulated message.');
  lines.push('');
  // 1. The human-readable part.
  lines.push(`--${boundary}`);
  lines.push('Content-Type: text/plain; charset=us-ascii');
  lines.push('Content-Description: Notification');
  lines.push('');
  lines.push(`This is the mail system at host ${d.serverName}.`);
  lines.push('');
  lines.push("I'm sorry to have to inform you that your message could not");
  lines.push('be delivered to one or more recipients. The details are below.');
  lines.push('');
  for (const r of d.failed) {
    const why = oneLine(r.last_error ?? 'delivery failed');
    lines.push(fold(`<${ascii(addressText(r.address))}>: ${ascii(why)}`));
  }
  lines.push('');
  // 2. The machine-readable part.
  lines.push(`--${boundary}`);
  lines.push('Content-Type: message/delivery-status');
  lines.push('Content-Description: Delivery report');
  lines.push('');
  lines.push(`Reporting-MTA: dns; ${d.serverName}`);
  lines.push(`X-Queue-ID: ${d.record.id}`);
  lines.push(`Arrival-Date: ${rfc5322Date(Date.parse(d.record.received_at))}`);
  for (const r of d.failed) {
    lines.push('');
    lines.push(`Final-Recipient: rfc822; ${ascii(addressText(r.address))}`);
    lines.push('Action: failed');
    lines.push(`Status: ${/^[245]\.\d{1,3}\.\d{1,3}$/.test(r.status ?? '') ? r.status : '5.0.0'}`);
    const remote = remoteMtaName(r.remote_mta);
    if (remote) lines.push(`Remote-MTA: dns; ${ascii(remote)}`);
    const reply = oneLine(r.last_error ?? '');
    if (reply) lines.push(fold(`Diagnostic-Code: ${/^\d{3}\b/.test(reply) ? 'smtp' : 'x-unix'}; ${ascii(reply)}`));
    lines.push(`Last-Attempt-Date: ${rfc5322Date(d.now)}`);
  }
  lines.push('');
  // 3. The original header.
  lines.push(`--${boundary}`);
  lines.push('Content-Type: text/rfc822-headers');
  lines.push('Content-Description: Undelivered Message Headers');
  lines.push('');
  const head = headerBlock(d.message).toString('latin1').replace(/\r?\n$/, '');
  const body = lines.join('\r\n') + '\r\n' + head + '\r\n\r\n' + `--${boundary}--\r\n`;
  return Buffer.from(body, 'latin1');
}
