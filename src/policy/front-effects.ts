// Applying a successful stage's effects before queueing (SPEC §7.4–§7.6):
// header edits go to the session's or the transaction's pending list before
// DATA and to the message from preq on; From:/To: edits made before DATA
// wait for the message; envelope edits and transports go to the
// transaction. The rules themselves are src/mail/effects.ts, shared with
// the queue. Called only after the stage's command took effect (a refused
// command keeps nothing of what its stage wrote).

import type { Logger } from 'pino';
import type { FrontStage } from './apply.js';
import { addressText, type Recipient, type Session, type StageEffect, type Transaction } from '../mail/types.js';
import { applyEnvelopeEffect, applyHeaderEffect, applyMessageEdit, isEnvelopeEffect, pendingHeaderBlock, type EditableMessage, type EnvelopeTarget } from '../mail/effects.js';

export interface EffectTarget {
  stage: FrontStage;
  session: Session;
  txn: Transaction | null;
  /** From preq on: the message itself. */
  draft: EditableMessage | null;
  /** From:/To: edits made before DATA, applied to the message at end of DATA. */
  deferredMessageEdits: StageEffect[] | null;
}

/** The transaction being received, as an envelope the effects edit. */
function transactionEnvelope(txn: Transaction): EnvelopeTarget<Recipient> {
  return {
    setSender: (a) => void (txn.mailFrom = a),
    recipients: () => txn.rcpts,
    addressOf: (r) => r.address,
    add: (a) => void txn.rcpts.push({ address: a, transport: { kind: 'default' } }),
    remove: (r) => void (txn.rcpts = txn.rcpts.filter((x) => x !== r)),
    setAddress: (r, a) => void (r.address = a),
    setTransport: (r, t) => void (r.transport = t),
  };
}

/** Applies a successful stage's effects where SPEC §7.4–§7.6 puts them. */
export function applyEffects(effects: readonly StageEffect[], t: EffectTarget, log: Logger): void {
  const sessionWide = t.stage === 'connect' || t.stage === 'helo' || t.stage === 'authenticate';
  for (const e of effects) {
    if (e.kind === 'header') {
      if (t.draft !== null) applyHeaderEffect(t.draft, e);
      else applyHeaderEffect(pendingHeaderBlock(sessionWide || t.txn === null ? t.session.pendingHeaders : t.txn.pendingHeaders), e);
    } else if (e.kind === 'msg_from' || e.kind === 'msg_rcpt') {
      if (t.draft !== null) applyMessageEdit(t.draft, e);
      else if (t.deferredMessageEdits !== null) t.deferredMessageEdits.push(e);
      else log.warn({ effect: e.kind, stage: t.stage }, 'message edit outside a transaction ignored');
    } else if (isEnvelopeEffect(e)) {
      if (t.txn === null) log.warn({ effect: e.kind, stage: t.stage }, 'envelope change outside a transaction ignored');
      else applyEnvelopeEffect(transactionEnvelope(t.txn), e, (what, rcpt) => log.warn({ rcpt: addressText(rcpt) }, what));
    }
    // relay_cleared is read by the stage machine, never applied.
  }
}
