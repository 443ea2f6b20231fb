// The transport of a recipient the server adds itself: a DSN's recipient
// (the original sender) or the target of an alias. Such recipients never
// went through RCPT, so the rcpt rules are asked now, as if the server had
// sent RCPT TO for them from its own address, and the transport they set is
// the one used (SPEC §7.6). This is routing's one answer for every queued
// message: a bounce to a local sender goes to the local mailbox the rules
// choose for that address, not to `delivery.default`. When the rules set no
// transport, refuse the address or fail, it is `default`.

import type { Config } from '../config/schema.js';
import type { MailAddress, Session, StageRunner, Transaction, Transport } from '../mail/types.js';
import { addressText } from '../mail/types.js';
import type { SpoolLogger } from '../queue/spool.js';

/** The transport for a recipient the server adds, for a message from `mailFrom`. */
export type ChooseTransport = (rcpt: MailAddress, mailFrom: MailAddress) => Promise<Transport>;

export const defaultOnly: ChooseTransport = async () => ({ kind: 'default' });

/** The session the server's own messages (DSNs, alias expansions) are evaluated in: from itself, on 127.0.0.1. */
export function ownSession(cfg: Config, id: string, now: Date): Session {
  return {
    id,
    listener: 'smtp',
    clientIp: '127.0.0.1',
    clientPort: 0,
    serverIp: '127.0.0.1',
    serverPort: 0,
    serverName: cfg.server.name,
    connectedAt: now,
    tls: null,
    helo: cfg.server.name,
    esmtp: true,
    auth: null,
    reverseName: null,
    pipeliningViolation: false,
    remembered: null,
    pendingHeaders: [],
  };
}

const sameAddress = (a: MailAddress, b: MailAddress) => addressText(a).toLowerCase() === addressText(b).toLowerCase();

/** Asks the rcpt rules of the current policy (through `runner`). */
export function transportByRcptRules(runner: StageRunner, config: () => Config, log: SpoolLogger): ChooseTransport {
  return async (rcpt, mailFrom) => {
    const now = new Date();
    const txn: Transaction = {
      id: 'ROUTE',
      mailFrom,
      mailAt: now,
      rcpts: [{ address: rcpt, transport: { kind: 'default' } }],
      currentRcpt: rcpt,
      remembered: null,
      pendingHeaders: [],
    };
    const who = addressText(rcpt);
    try {
      const { verdict, effects } = await runner.run('rcpt', ownSession(config(), 'route', now), txn);
      if (verdict.error || verdict.status === 'deny' || verdict.status === 'reject') {
        log.warn({ rcpt: who, status: verdict.status, rule: verdict.rule, error: verdict.error }, `routing: the rcpt rules refuse <${who}>; it goes by delivery.default`);
        return { kind: 'default' };
      }
      let chosen: Transport = { kind: 'default' };
      for (const e of effects) if (e.kind === 'transport' && sameAddress(e.rcpt, rcpt)) chosen = e.transport;
      return chosen;
    } catch (err) {
      log.warn({ rcpt: who, error: (err as Error).message }, `routing: the rcpt rules could not run for <${who}>: ${(err as Error).message}`);
      return { kind: 'default' };
    }
  };
}
