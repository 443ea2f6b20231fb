// Envelope changes a post-queue stage commits (SPEC §5.3, §7.4, §7.6):
// sender, recipients and transports in the record. Message (header) edits
// are in src/queue/message.ts. Only recipients still to be delivered are
// touched: a recipient already delivered or failed is history.

import type { MailAddress, StageEffect } from '../policy/types.js';
import { addressText } from '../policy/types.js';
import { type EnvelopeRecord, isOpen, newRecipientRecord } from '../queue/envelope.js';

function key(a: MailAddress): string {
  return addressText(a).toLowerCase();
}

/** Applies the envelope effects in order; message effects are ignored here. */
export function applyEnvelopeEffects(record: EnvelopeRecord, effects: StageEffect[]): void {
  for (const e of effects) {
    switch (e.kind) {
      case 'mail_from':
        record.mail_from = { ...e.address };
        break;
      case 'add_rcpt':
        if (!record.recipients.some((r) => isOpen(r) && key(r.address) === key(e.address))) {
          record.recipients.push(newRecipientRecord(e.address, { kind: 'default' }));
        }
        break;
      case 'rm_rcpt':
        record.recipients = record.recipients.filter((r) => !(isOpen(r) && key(r.address) === key(e.address)));
        break;
      case 'rw_rcpt': {
        const target = record.recipients.find((r) => isOpen(r) && key(r.address) === key(e.from));
        if (!target) break;
        if (record.recipients.some((r) => r !== target && isOpen(r) && key(r.address) === key(e.to))) {
          // The new address is already a recipient: the rewrite merges them.
          record.recipients = record.recipients.filter((r) => r !== target);
        } else {
          target.address = { ...e.to };
        }
        break;
      }
      case 'transport':
        for (const r of record.recipients) {
          if (isOpen(r) && key(r.address) === key(e.rcpt)) r.transport = { ...e.transport } as typeof r.transport;
        }
        break;
      default:
        break;
    }
  }
}
