// Applying what a stage changed besides its verdict (StageEffect, SPEC
// §7.4–§7.6): header edits go to the session's or the transaction's pending
// list before DATA and to the message from preq on; envelope edits and
// transports go to the transaction. Called only after the stage's command
// took effect (a refused command keeps nothing of what its stage wrote).

import type { Logger } from 'pino';
import type { FrontStage } from '../policy/apply.js';
import { addressText, type Header, type MailAddress, type Session, type StageEffect, type Transaction } from '../policy/types.js';
import { sameName, type MessageDraft } from './message.js';
import { editPendingHeaders, type HeaderEffect } from '../policy/pending-headers.js';

export interface EffectTarget {
  stage: FrontStage;
  session: Session;
  txn: Transaction | null;
  /** From preq on: the message itself. */
  draft: MessageDraft | null;
  /** From:/To: edits made before DATA, applied to the message at end of DATA. */
  deferredMessageEdits: StageEffect[] | null;
}

type MessageEdit = Extract<StageEffect, { kind: 'msg_from' | 'msg_rcpt' }>;

/** Same mailbox: local part exact, domain case-insensitive (domains are already canonical). */
export function sameAddress(a: MailAddress, b: MailAddress): boolean {
  return a.isNull === b.isNull && a.local === b.local && a.domain.toLowerCase() === b.domain.toLowerCase();
}

function editDraftHeader(draft: MessageDraft, e: HeaderEffect): void {
  switch (e.op) {
    case 'append':
      draft.append(e.name, e.value);
      return;
    case 'prepend':
      draft.prepend(e.name, e.value);
      return;
    case 'set':
      draft.set(e.name, e.value);
      return;
    case 'rename':
      draft.rename(e.name, e.newName);
      return;
    case 'remove':
      draft.remove(e.name);
      return;
  }
}

/** Replaces the address in From:, keeping a display name (`Name <addr>`). */
function rewriteFrom(draft: MessageDraft, to: MailAddress): void {
  const value = draft.get('From');
  const text = addressText(to);
  if (value === null) {
    draft.set('From', text);
    return;
  }
  const lt = value.lastIndexOf('<');
  const gt = value.indexOf('>', lt);
  draft.set('From', lt >= 0 && gt > lt ? `${value.slice(0, lt + 1)}${text}${value.slice(gt)}` : text);
}

// To: as a comma-separated list; commas inside quotes or angle brackets are kept.
function splitAddressList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let angle = 0;
  for (const ch of value) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === '<') angle++;
    else if (!quoted && ch === '>') angle = Math.max(0, angle - 1);
    if (ch === ',' && !quoted && angle === 0) {
      if (cur.trim() !== '') out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out;
}

function mentions(entry: string, a: MailAddress): boolean {
  const m = /<([^>]*)>/.exec(entry);
  const addr = (m ? m[1]! : entry).trim();
  const at = addr.lastIndexOf('@');
  return at > 0 && addr.slice(0, at) === a.local && addr.slice(at + 1).toLowerCase() === a.domain.toLowerCase();
}

/** add/rm/rw of an address in To: (SPEC §7.5 msg::add_rcpt, rm_rcpt, rw_rcpt). */
function editTo(draft: MessageDraft, e: Extract<StageEffect, { kind: 'msg_rcpt' }>): void {
  const entries = splitAddressList(draft.get('To') ?? '');
  let next: string[];
  if (e.op === 'add') next = entries.some((x) => mentions(x, e.address)) ? entries : [...entries, addressText(e.address)];
  else if (e.op === 'rm') next = entries.filter((x) => !mentions(x, e.address));
  else {
    const to = e.to;
    next = to === undefined ? entries : entries.map((x) => (mentions(x, e.address) ? x.replace(addressText(e.address), addressText(to)) : x));
  }
  if (next.length === 0) draft.remove('To');
  else draft.set('To', next.join(', '));
}

/** Applies From:/To: edits to the message. */
export function applyMessageEdit(draft: MessageDraft, e: MessageEdit): void {
  if (e.kind === 'msg_from') rewriteFrom(draft, e.address);
  else editTo(draft, e);
}

function editEnvelope(txn: Transaction, e: Exclude<StageEffect, HeaderEffect | MessageEdit>, log: Logger): void {
  switch (e.kind) {
    case 'mail_from':
      txn.mailFrom = e.address;
      return;
    case 'add_rcpt':
      // Added recipients are not counted against rcpt_count_max and pass no relay check (SPEC §7.4).
      if (!txn.rcpts.some((r) => sameAddress(r.address, e.address))) txn.rcpts.push({ address: e.address, transport: { kind: 'default' } });
      return;
    case 'rm_rcpt':
      txn.rcpts = txn.rcpts.filter((r) => !sameAddress(r.address, e.address));
      return;
    case 'rw_rcpt': {
      const r = txn.rcpts.find((x) => sameAddress(x.address, e.from));
      if (r === undefined) {
        log.warn({ from: addressText(e.from) }, 'rw_rcpt: recipient not in the envelope');
        return;
      }
      if (txn.rcpts.some((x) => x !== r && sameAddress(x.address, e.to))) txn.rcpts = txn.rcpts.filter((x) => x !== r);
      else r.address = e.to;
      return;
    }
    case 'transport': {
      const r = txn.rcpts.find((x) => sameAddress(x.address, e.rcpt));
      if (r === undefined) log.warn({ rcpt: addressText(e.rcpt) }, 'transport: recipient not in the envelope');
      else r.transport = e.transport;
      return;
    }
  }
}

/** Applies a successful stage's effects where SPEC §7.4–§7.6 puts them. */
export function applyEffects(effects: readonly StageEffect[], t: EffectTarget, log: Logger): void {
  const sessionWide = t.stage === 'connect' || t.stage === 'helo' || t.stage === 'authenticate';
  for (const e of effects) {
    if (e.kind === 'header') {
      if (t.draft !== null) editDraftHeader(t.draft, e);
      else if (sessionWide || t.txn === null) editPendingHeaders(t.session.pendingHeaders, e);
      else editPendingHeaders(t.txn.pendingHeaders, e);
      continue;
    }
    if (e.kind === 'msg_from' || e.kind === 'msg_rcpt') {
      if (t.draft !== null) applyMessageEdit(t.draft, e);
      else if (t.deferredMessageEdits !== null) t.deferredMessageEdits.push(e);
      else log.warn({ effect: e.kind, stage: t.stage }, 'message edit outside a transaction ignored');
      continue;
    }
    if (t.txn === null) {
      log.warn({ effect: e.kind, stage: t.stage }, 'envelope change outside a transaction ignored');
      continue;
    }
    editEnvelope(t.txn, e, log);
  }
}
