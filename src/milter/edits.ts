// What the preq stage changed, as milter modification requests. The stage
// machine edits a MessageDraft and the transaction as it does for `mta run`;
// this module compares the result with what the MTA has (the headers and
// envelope it sent) and derives the requests, so no effect is interpreted
// twice. Header positions follow Postfix's reading of the protocol:
//
// - the MTA's own Received: header is not shown to the milter;
// - SMFIR_CHGHEADER's index is the n-th header of that name (1-based) among
//   the headers shown, and an empty value deletes it; a deleted header no
//   longer counts, so changes are sent from the bottom up;
// - SMFIR_INSHEADER's index 0 is above the MTA's Received:, index i ≥ 1
//   below it and above the i-th header shown.

import { sameAddress, sameHeaderName as sameName } from '../mail/effects.js';
import { addressText, type MailAddress } from '../mail/types.js';
import type { RawField } from '../reload/runtime.js';
import { ACTION } from './wire.js';

export type HeaderEdit =
  | { kind: 'change'; name: string; index: number; value: string }
  | { kind: 'add'; name: string; value: string }
  | { kind: 'insert'; index: number; name: string; value: string };

export type EnvelopeEdit =
  | { kind: 'from'; address: string }
  | { kind: 'add-rcpt'; address: string }
  | { kind: 'del-rcpt'; address: string };

/** The value of a raw field as sent to the MTA: after `Name:` and one space, folds as LF. */
function wireValue(f: RawField): string {
  const text = f.raw.toString('utf8');
  return text.slice(text.indexOf(':') + 1).replace(/^ /, '').replace(/\r\n/g, '\n');
}

/**
 * The requests that turn `shown` (the headers the MTA sent, in order) into
 * `edited` (the draft's fields after the stage). Fields the stage left
 * alone are the same objects in both lists; a replaced field sits where the
 * original was and has its name.
 */
export function headerEdits(shown: readonly RawField[], edited: readonly RawField[]): HeaderEdit[] {
  const kept = new Set(edited);
  const original = new Set(shown);
  // Pair each removed original with the new field of the same name that
  // replaced it between the same two kept neighbours (a changed value).
  const replacedBy = new Map<RawField, number>(); // new field -> index of the original it replaces
  const removed: number[] = [];
  let i = 0;
  let j = 0;
  for (;;) {
    const gone: number[] = [];
    while (i < shown.length && !kept.has(shown[i]!)) gone.push(i++);
    const added: RawField[] = [];
    while (j < edited.length && !original.has(edited[j]!)) added.push(edited[j++]!);
    for (const g of gone) {
      const match = added.find((a) => !replacedBy.has(a) && sameName(a.name, shown[g]!.name));
      if (match === undefined) removed.push(g);
      else replacedBy.set(match, g);
    }
    if (i >= shown.length || j >= edited.length) break;
    i++;
    j++;
  }

  const occurrence = (index: number): number => 1 + shown.slice(0, index).filter((f) => sameName(f.name, shown[index]!.name)).length;
  const out: HeaderEdit[] = [];
  // Changes and deletions, bottom up so the occurrence numbers stay right.
  const changes = [...removed.map((g) => ({ g, value: '', name: shown[g]!.name })), ...[...replacedBy].map(([f, g]) => ({ g, value: wireValue(f), name: f.name }))];
  for (const c of changes.sort((a, b) => b.g - a.g)) out.push({ kind: 'change', name: c.name, index: occurrence(c.g), value: c.value });

  // New fields: position = how many surviving originals precede them.
  const fresh: Array<{ field: RawField; before: number }> = [];
  let survivors = 0;
  for (const f of edited) {
    if (original.has(f) || replacedBy.has(f)) survivors++;
    else fresh.push({ field: f, before: survivors });
  }
  for (const n of fresh.filter((x) => x.before === survivors)) out.push({ kind: 'add', name: n.field.name, value: wireValue(n.field) });
  // Inserted from the last to the first, so each lands above the ones after it.
  for (const n of fresh.filter((x) => x.before < survivors).reverse()) out.push({ kind: 'insert', index: n.before + 1, name: n.field.name, value: wireValue(n.field) });
  return out;
}

/** Sender and recipient changes between what the MTA has and the transaction after the stage. */
export function envelopeEdits(before: { mailFrom: MailAddress; rcpts: readonly MailAddress[] }, after: { mailFrom: MailAddress; rcpts: readonly MailAddress[] }): EnvelopeEdit[] {
  const out: EnvelopeEdit[] = [];
  if (!sameAddress(before.mailFrom, after.mailFrom)) out.push({ kind: 'from', address: `<${addressText(after.mailFrom)}>` });
  for (const r of after.rcpts) if (!before.rcpts.some((b) => sameAddress(b, r))) out.push({ kind: 'add-rcpt', address: `<${addressText(r)}>` });
  for (const b of before.rcpts) if (!after.rcpts.some((r) => sameAddress(b, r))) out.push({ kind: 'del-rcpt', address: `<${addressText(b)}>` });
  return out;
}

/** The negotiated action a request needs. */
export function actionNeeded(e: HeaderEdit | EnvelopeEdit | { kind: 'body' } | { kind: 'quarantine' }): number {
  switch (e.kind) {
    case 'change': return ACTION.CHGHDRS;
    case 'add':
    case 'insert': return ACTION.ADDHDRS;
    case 'from': return ACTION.CHGFROM;
    case 'add-rcpt': return ACTION.ADDRCPT;
    case 'del-rcpt': return ACTION.DELRCPT;
    case 'body': return ACTION.CHGBODY;
    case 'quarantine': return ACTION.QUARANTINE;
  }
}
