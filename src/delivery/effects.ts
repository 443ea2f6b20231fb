// Envelope changes a post-queue stage commits (SPEC §5.3, §7.4, §7.6):
// sender, recipients and transports in the record, by the rules of
// src/mail/effects.ts. Only recipients still to be delivered are touched: a
// recipient already delivered or failed is history.

import { applyEnvelopeEffect, isEnvelopeEffect, type EnvelopeTarget } from '../mail/effects.js';
import type { StageEffect } from '../mail/types.js';
import { type EnvelopeRecord, isOpen, newRecipientRecord, type RecipientRecord } from '../queue/envelope.js';

function recordEnvelope(record: EnvelopeRecord): EnvelopeTarget<RecipientRecord> {
  return {
    setSender: (a) => void (record.mail_from = { ...a }),
    recipients: () => record.recipients.filter(isOpen),
    addressOf: (r) => r.address,
    add: (a) => void record.recipients.push(newRecipientRecord(a, { kind: 'default' })),
    remove: (r) => void (record.recipients = record.recipients.filter((x) => x !== r)),
    setAddress: (r, a) => void (r.address = { ...a }),
    setTransport: (r, t) => void (r.transport = { ...t } as RecipientRecord['transport']),
  };
}

/** Applies the envelope effects in order; message effects are applied to the spooled file (src/queue/message.ts). */
export function applyEnvelopeEffects(record: EnvelopeRecord, effects: StageEffect[]): void {
  const env = recordEnvelope(record);
  for (const e of effects) if (isEnvelopeEffect(e)) applyEnvelopeEffect(env, e, () => undefined);
}
