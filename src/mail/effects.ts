// The one place stage effects (SPEC §7.4–§7.6) are applied, with one set
// of address and header rules, before and after queueing:
//
//   header edits, From:/To: edits  → a HeaderBlock (the message being
//                                     received, a pending header list, or a
//                                     spooled message)
//   sender, recipients, transports → an EnvelopeTarget (the transaction being
//                                     received, or a queued message's record)
//
// The callers only adapt their data to these two interfaces: the SMTP front
// (src/policy/front-effects.ts), the queue (src/queue/message.ts) and the queue
// runner (src/delivery/effects.ts).

import { addressText, type MailAddress, type MessageView, type StageEffect, type Transport } from './types.js';

export type HeaderEffect = Extract<StageEffect, { kind: 'header' }>;
export type MessageEdit = Extract<StageEffect, { kind: 'msg_from' | 'msg_rcpt' }>;
export type EnvelopeEffect = Extract<StageEffect, { kind: 'mail_from' | 'add_rcpt' | 'rm_rcpt' | 'rw_rcpt' | 'transport' }>;

// ------------------------------------------------------------ the rules

/** Same mailbox: local part exact (RFC 5321 §2.4), domain case-insensitive. */
export function sameAddress(a: MailAddress, b: MailAddress): boolean {
  return a.isNull === b.isNull && a.local === b.local && a.domain.toLowerCase() === b.domain.toLowerCase();
}

/** Header names compare case-insensitively (RFC 5322). */
export function sameHeaderName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** A field name: printable ASCII without `:` (RFC 5322 §3.6.8, SPEC §7.5). */
const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

/** Splits an address list at commas outside quotes, angle brackets and comments. */
export function splitAddressList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let angle = 0;
  let paren = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < value.length) cur += value[++i];
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === '<') angle++;
    else if (c === '>') angle = Math.max(0, angle - 1);
    else if (c === '(') paren++;
    else if (c === ')') paren = Math.max(0, paren - 1);
    else if (c === ',' && angle === 0 && paren === 0) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** The addr-spec of one mailbox text (`"Name" <a@b>` → `a@b`). */
function mailboxAddress(mailbox: string): string {
  const m = /<([^<>]*)>\s*(?:\([^)]*\)\s*)?$/.exec(mailbox);
  if (m) return m[1]!.trim();
  return mailbox.replace(/\([^)]*\)/g, '').trim();
}

/** Whether a mailbox text names `a`, by the same rule as sameAddress. */
function mentions(mailbox: string, a: MailAddress): boolean {
  const addr = mailboxAddress(mailbox);
  const at = addr.lastIndexOf('@');
  return at > 0 && addr.slice(0, at) === a.local && addr.slice(at + 1).toLowerCase() === a.domain.toLowerCase();
}

/** Replaces the addr-spec of a mailbox, keeping its display name. */
function replaceMailbox(mailbox: string, address: string): string {
  const m = /<([^<>]*)>/.exec(mailbox);
  if (m) return mailbox.slice(0, m.index) + `<${address}>` + mailbox.slice(m.index + m[0].length);
  return address;
}

// ------------------------------------------------------------ headers

/** A header block as the effects see it; names compare case-insensitively. */
export interface HeaderBlock {
  /** The first value of `name`, unfolded; null when absent. */
  get(name: string): string | null;
  append(name: string, value: string): void;
  prepend(name: string, value: string): void;
  /** Replaces the first occurrence, or appends. */
  set(name: string, value: string): void;
  /** Renames every occurrence. */
  rename(name: string, newName: string): void;
  /** Removes every occurrence. */
  remove(name: string): void;
}

/** The message being received, from preq on, as the stage machine sees it: readable and editable. */
export type EditableMessage = MessageView & HeaderBlock;

export function applyHeaderEffect(block: HeaderBlock, e: HeaderEffect): void {
  switch (e.op) {
    case 'append':
      block.append(e.name, e.value);
      return;
    case 'prepend':
      block.prepend(e.name, e.value);
      return;
    case 'set':
      block.set(e.name, e.value);
      return;
    case 'rename':
      block.rename(e.name, e.newName);
      return;
    case 'remove':
      block.remove(e.name);
      return;
  }
}

/** From:/To: edits (SPEC §7.5 msg::rw_mail_from, rw_rcpt, add_rcpt, rm_rcpt). */
export function applyMessageEdit(block: HeaderBlock, e: MessageEdit): void {
  if (e.kind === 'msg_from') {
    const value = block.get('From');
    const text = addressText(e.address);
    block.set('From', value === null ? text : replaceMailbox(value, text));
    return;
  }
  const entries = splitAddressList(block.get('To') ?? '');
  let next: string[];
  if (e.op === 'add') next = entries.some((x) => mentions(x, e.address)) ? entries : [...entries, addressText(e.address)];
  else if (e.op === 'rm') next = entries.filter((x) => !mentions(x, e.address));
  else {
    const to = addressText(e.to ?? e.address);
    next = entries.map((x) => (mentions(x, e.address) ? replaceMailbox(x, to) : x));
  }
  if (next.length === 0) block.remove('To');
  else block.set('To', next.join(', '));
}

export function isMessageEffect(e: StageEffect): e is HeaderEffect | MessageEdit {
  return e.kind === 'header' || e.kind === 'msg_from' || e.kind === 'msg_rcpt';
}

/** A pending header list (before DATA) as a HeaderBlock. */
export function pendingHeaderBlock(list: Array<{ name: string; value: string }>): HeaderBlock {
  const first = (name: string) => list.findIndex((h) => sameHeaderName(h.name, name));
  return {
    get: (name) => list[first(name)]?.value ?? null,
    append: (name, value) => void list.push({ name, value }),
    prepend: (name, value) => void list.unshift({ name, value }),
    set(name, value) {
      const i = first(name);
      if (i < 0) list.push({ name, value });
      else list[i] = { name, value };
    },
    rename(name, newName) {
      for (let i = 0; i < list.length; i++) if (sameHeaderName(list[i]!.name, name)) list[i] = { name: newName, value: list[i]!.value };
    },
    remove(name) {
      for (let i = list.length - 1; i >= 0; i--) if (sameHeaderName(list[i]!.name, name)) list.splice(i, 1);
    },
  };
}

// ------------------------------------------------------------ the envelope

/**
 * An envelope as the effects see it. `recipients()` lists those still to be
 * delivered (after queueing, a recipient already delivered or failed is
 * history and is never touched).
 */
export interface EnvelopeTarget<R> {
  setSender(a: MailAddress): void;
  recipients(): R[];
  addressOf(r: R): MailAddress;
  add(a: MailAddress): void;
  remove(r: R): void;
  setAddress(r: R, a: MailAddress): void;
  setTransport(r: R, t: Transport): void;
}

/** Applies one envelope effect; `warn` hears of an edit naming a recipient the envelope does not have. */
export function applyEnvelopeEffect<R>(env: EnvelopeTarget<R>, e: EnvelopeEffect, warn: (what: string, rcpt: MailAddress) => void): void {
  const find = (a: MailAddress) => env.recipients().find((r) => sameAddress(env.addressOf(r), a));
  switch (e.kind) {
    case 'mail_from':
      env.setSender(e.address);
      return;
    case 'add_rcpt':
      // Added recipients are not counted against rcpt_count_max and pass no relay check (SPEC §7.4).
      if (find(e.address) === undefined) env.add(e.address);
      return;
    case 'rm_rcpt': {
      for (const r of env.recipients().filter((x) => sameAddress(env.addressOf(x), e.address))) env.remove(r);
      return;
    }
    case 'rw_rcpt': {
      const r = find(e.from);
      if (r === undefined) return warn('rw_rcpt: recipient not in the envelope', e.from);
      // The new address is already a recipient: the rewrite merges them.
      if (env.recipients().some((x) => x !== r && sameAddress(env.addressOf(x), e.to))) env.remove(r);
      else env.setAddress(r, e.to);
      return;
    }
    case 'transport': {
      const matching = env.recipients().filter((x) => sameAddress(env.addressOf(x), e.rcpt));
      if (matching.length === 0) return warn('transport: recipient not in the envelope', e.rcpt);
      for (const r of matching) env.setTransport(r, e.transport);
      return;
    }
  }
}

export function isEnvelopeEffect(e: StageEffect): e is EnvelopeEffect {
  return e.kind === 'mail_from' || e.kind === 'add_rcpt' || e.kind === 'rm_rcpt' || e.kind === 'rw_rcpt' || e.kind === 'transport';
}
