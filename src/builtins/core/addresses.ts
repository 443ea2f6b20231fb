// Address arguments of the envelope, message and transport built-ins
// (SPEC §4.4, §7.4–§7.6), and the envelope as it stands at a call: the
// accepted recipients, the one under evaluation, and the changes recorded
// earlier in the same evaluation.

import { type MailAddress, addressText } from '../../mail/types.js';
import { parseMailbox, parsePath } from '../../vsl/values/address.js';
import { Address, textOf } from '../../vsl/values/objects.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { typeName } from '../dns/call-args.js';
import type { HostCall } from '../host.js';

/** Same mailbox: local part exact, domain as canonicalised (already lower-case). */
export function sameMailbox(a: MailAddress, b: MailAddress): boolean {
  if (a.isNull || b.isNull) return a.isNull === b.isNull;
  return a.local === b.local && a.domain.toLowerCase() === b.domain.toLowerCase();
}

function argString(fn: string, what: string, v: Value): string {
  const t = textOf(v);
  if (t === undefined) throw fnError(fn, `${what} must be an address or a string, got ${typeName(v)}`);
  return t;
}

/**
 * A sender-like address (envelope sender, `From:`): an address object or a
 * mailbox text (`u@d`, `<u@d>`; `""`/`"<>"` is the null sender).
 */
export function senderArg(fn: string, what: string, v: Value, allowNull: boolean): MailAddress {
  let m: MailAddress | null;
  if (v instanceof Address) m = v.mail;
  else m = parseMailbox(argString(fn, what, v));
  if (m === null) throw fnError(fn, `invalid ${what} ${JSON.stringify(textOf(v))}`);
  if (m.isNull && !allowNull) throw fnError(fn, `${what} cannot be the null sender`);
  return m;
}

/**
 * A recipient, checked as `RCPT TO` would check it (SPEC §4.4): no null
 * address, no source-routing characters in the local part, a bare
 * `postmaster` meaning postmaster@server.domain. An added or rewritten
 * recipient passes no relay check (§7.4), so it must at least not smuggle a
 * route to somewhere else.
 */
export function recipientArg(call: HostCall, fn: string, what: string, v: Value): MailAddress {
  const text = argString(fn, what, v).trim();
  const path = text.startsWith('<') ? text : `<${text}>`;
  const r = parsePath(path, { kind: 'rcpt', smtputf8: true, serverDomain: call.env.config.server.domain });
  if (!r.ok) throw fnError(fn, `invalid ${what} ${JSON.stringify(text)}`);
  return { ...r.address, raw: text };
}

/**
 * The recipients of the transaction at this point of the evaluation: those
 * accepted so far, the one under evaluation (rcpt stage), then every
 * add/rm/rw recorded earlier in the evaluation, in order.
 */
export function currentRecipients(call: HostCall): MailAddress[] {
  const list: MailAddress[] = [];
  const add = (a: MailAddress) => {
    if (!list.some((x) => sameMailbox(x, a))) list.push(a);
  };
  const remove = (a: MailAddress) => {
    const i = list.findIndex((x) => sameMailbox(x, a));
    if (i >= 0) list.splice(i, 1);
  };
  if (call.txn) {
    for (const r of call.txn.rcpts) add(r.address);
    if (call.txn.currentRcpt) add(call.txn.currentRcpt);
  }
  for (const e of call.effects.list()) {
    if (e.kind === 'add_rcpt') add(e.address);
    else if (e.kind === 'rm_rcpt') remove(e.address);
    else if (e.kind === 'rw_rcpt') {
      const i = list.findIndex((x) => sameMailbox(x, e.from));
      if (i < 0) continue;
      // Rewriting onto an address already present merges the two.
      if (list.some((x, j) => j !== i && sameMailbox(x, e.to))) list.splice(i, 1);
      else list[i] = e.to;
    }
  }
  return list;
}

/** `r` must be a recipient of the current envelope (SPEC §7.4 rw_rcpt, §7.6). */
export function requireRecipient(call: HostCall, fn: string, a: MailAddress): MailAddress {
  const found = currentRecipients(call).find((x) => sameMailbox(x, a));
  if (!found) throw fnError(fn, `${addressText(a)} is not a recipient of this transaction`);
  return found;
}

/** Transactions only exist from MAIL on; envelope edits need one. */
export function requireTxn(call: HostCall, fn: string): NonNullable<HostCall['txn']> {
  if (!call.txn) throw fnError(fn, 'there is no transaction');
  return call.txn;
}
