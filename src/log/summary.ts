// The two summary lines an operator greps for, one per event, in the spirit
// of Postfix's qmgr and smtp lines:
//
//   <queue_id>: queued from=<a@example.org> size=1234 nrcpt=2
//   <queue_id>: to=<b@example.net>, relay=mx.example.net[192.0.2.1]:25, delay=1.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)
//
// The same facts are fields of the JSON line (docs/logging.md), and each call
// moves its Prometheus counter (through src/log/observers.ts).

import { notify } from './observers.js';

/** What the summary lines need of a logger (pino's, or the queue's narrower one). */
export interface InfoLogger {
  info(fields: object, message: string): void;
}

export interface AcceptedMessage {
  queueId: string;
  /** The envelope sender as text, `""` for the null sender. */
  sender: string;
  size: number;
  nrcpt: number;
  /** The quarantine it went to, if the policy quarantined it. */
  quarantine?: string | null;
}

/** One line per message accepted with the end-of-data 250 (src/smtp/data.ts). */
export function logAccepted(log: InfoLogger, m: AcceptedMessage): void {
  notify('messageAccepted');
  const q = m.quarantine ? ` quarantine=${m.quarantine}` : '';
  log.info(
    { event: 'queued', queue_id: m.queueId, sender: m.sender, size: m.size, nrcpt: m.nrcpt, ...(m.quarantine ? { quarantine: m.quarantine } : {}) },
    `${m.queueId}: queued from=<${m.sender}> size=${m.size} nrcpt=${m.nrcpt}${q}`,
  );
}

/** Postfix's words for an attempt's outcome. */
export type AttemptStatus = 'sent' | 'deferred' | 'bounced' | 'expired';

export interface DeliveryAttempt {
  queueId: string;
  recipient: string;
  /** `mx` `forward` `maildir` `mbox` `none`: how this recipient was delivered. */
  transport: string;
  /** The host that answered, or the local transport; `none` when nothing answered. */
  relay: string | null;
  /** Seconds since the message was received. */
  delaySeconds: number;
  /** The enhanced status code (`2.0.0`, `4.4.1`, `5.1.1`). */
  dsn: string;
  status: AttemptStatus;
  /** The reply or local diagnosis, one line. */
  reply: string;
  attempts: number;
  /** When a deferred recipient is tried next (ISO time). */
  nextAttempt?: string | null;
}

/** One line per recipient per delivery attempt (src/delivery/message-run.ts). */
export function logDeliveryAttempt(log: InfoLogger, a: DeliveryAttempt): void {
  notify('deliveryAttempt', a.transport, a.status);
  const relay = a.relay ?? (a.transport === 'mx' || a.transport === 'forward' ? 'none' : a.transport);
  const delay = Math.round(a.delaySeconds * 10) / 10;
  log.info(
    {
      event: 'delivery', queue_id: a.queueId, recipient: a.recipient, transport: a.transport, relay, delay, dsn: a.dsn,
      status: a.status, reply: a.reply, attempts: a.attempts, ...(a.nextAttempt ? { next_attempt: a.nextAttempt } : {}),
    },
    `${a.queueId}: to=<${a.recipient}>, relay=${relay}, delay=${delay}, dsn=${a.dsn}, status=${a.status} (${a.reply})`,
  );
}
