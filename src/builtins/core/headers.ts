// The message header as a rule sees it (SPEC §7.5): the header fields of the
// message (from preq on) or the pending list (before DATA), with every header
// edit recorded earlier in the same evaluation already applied, so a read
// after a write sees the write. Also the helpers the SMTP front and the
// queue use to write headers into a message.
//
// Folding and the edits on a whole message are those of the spool
// (src/queue/message.ts), so what a rule reads after a write is exactly what
// ends up on disk.

import type { Header, StageEffect } from '../../mail/types.js';
import { applyMessageEffects, foldField, headerBlock, isMessageEffect, messageView } from '../../queue/message.js';
import { fnError } from '../../vsl/values/value.js';
import type { HostCall } from '../host.js';
import { applyHeaderEffect, isHeaderName, pendingHeaderBlock, sameHeaderName } from '../../mail/effects.js';

/** One header field: its name as written, the raw text (continuation lines included, no final CRLF), the value unfolded and trimmed. */
export interface HeaderField {
  name: string;
  raw: string;
  value: string;
}


/** Throws unless `name` is a valid field name: printable ASCII, no `:` (SPEC §7.5). */
export function checkHeaderName(fn: string, name: string): string {
  if (!isHeaderName(name)) throw fnError(fn, `invalid header name ${JSON.stringify(name)}: printable ASCII without ':' expected`);
  return name;
}

/** Throws if a value could break out of its field: CR or LF (SPEC §7.5), or NUL (never valid in a message). */
export function checkHeaderValue(fn: string, name: string, value: string): string {
  if (/[\r\n]/.test(value)) throw fnError(fn, `value of header ${name} contains CR or LF`);
  if (value.includes('\0')) throw fnError(fn, `value of header ${name} contains NUL`);
  return value;
}

export { sameHeaderName };

/**
 * `Name: value` as written into a message: folded at whitespace so lines
 * stay within 78 columns where the words allow (SPEC §7.5), CRLF line ends,
 * ending with CRLF. Throws on an invalid name or a value with CR/LF.
 */
export function foldHeader(name: string, value: string): string {
  return foldField(name, value).toString('utf8');
}

/**
 * Applies header edits (append, prepend, set, rename, remove) and the
 * From:/To: edits (msg_from, msg_rcpt; display names kept) to a whole
 * message, in order; other effects are ignored. The body is untouched.
 * Throws on an invalid header name or value.
 */
export function applyHeaderEffects(raw: Buffer, effects: readonly StageEffect[]): Buffer {
  const edits = effects.filter(isMessageEffect);
  return edits.length === 0 ? raw : applyMessageEffects(raw, edits);
}

/** The value as rules read it: continuation line breaks removed, blanks around trimmed. */
function unfold(raw: string): string {
  const colon = raw.indexOf(':');
  return raw.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, '').trim();
}

function field(name: string, raw: string): HeaderField {
  const r = raw.replace(/\r?\n$/, '');
  return { name, raw: r, value: unfold(r) };
}

/**
 * The pending list a header write acts on before DATA (SPEC §7.5): the
 * session's at connect/helo/authenticate, the transaction's at mail/rcpt.
 */
function pendingList(call: HostCall): readonly Header[] {
  const sessionWide = call.stage === 'connect' || call.stage === 'helo' || call.stage === 'authenticate';
  if (sessionWide || call.txn === null) return call.session.pendingHeaders;
  return call.txn.pendingHeaders;
}

/**
 * The header fields as they stand at this call: the message's (from preq on)
 * or the pending list's (before DATA), with the header edits recorded earlier
 * in this evaluation applied in order.
 */
export function currentHeaders(call: HostCall): HeaderField[] {
  const effects = call.effects.list();
  if (call.message) {
    const edits = effects.filter(isMessageEffect);
    if (edits.length === 0) return call.message.headers().map((h) => field(h.name, h.raw));
    // Only the header block is edited and re-read: the body may be large.
    const head = Buffer.concat([headerBlock(call.message.raw()), Buffer.from('\r\n')]);
    return messageView(applyMessageEffects(head, edits))
      .headers()
      .map((h) => field(h.name, h.raw));
  }
  const list = pendingList(call).map((h) => ({ ...h }));
  const block = pendingHeaderBlock(list);
  for (const e of effects) if (e.kind === 'header') applyHeaderEffect(block, e);
  return list.map((h) => field(h.name, `${h.name}: ${h.value}`));
}

/** The whole message with this evaluation's edits applied (from preq on). */
export function currentMessage(call: HostCall, fn: string): Buffer {
  if (!call.message) throw fnError(fn, 'there is no message before the preq stage');
  return applyHeaderEffects(call.message.raw(), call.effects.list());
}
