// The state of one SMTP session besides the socket: the policy Session and
// Transaction (src/mail/types.ts) plus what the front keeps next to them.

import type { Header, ListenerKind, Remembered, Session, StageEffect, TlsInfo, Transaction } from '../mail/types.js';

/** Per-transaction data the policy types do not carry. */
export interface TxnExtra {
  /** MAIL had SMTPUTF8 (RCPT paths may then be non-ASCII). */
  smtputf8: boolean;
  /** RCPTs the client gave that were accepted (rules' add_rcpt are not counted, SPEC §7.4). */
  clientRcpts: number;
  /** From:/To: edits made at mail/rcpt, applied to the message at end of DATA. */
  messageEdits: StageEffect[];
}

export class SessionState {
  txn: Transaction | null = null;
  txx: TxnExtra | null = null;
  /** What the session looked like right after connect, restored by STARTTLS (SPEC §4.3). */
  private connectRemembered: Remembered | null = null;
  private connectPending: Header[] = [];
  /** Failed AUTH attempts in this session (SPEC §5.5 attempts_max). */
  authFailures = 0;

  constructor(public session: Session) {}

  /** Records the session as the connect stage left it. */
  markConnected(): void {
    this.connectRemembered = this.session.remembered;
    this.connectPending = this.session.pendingHeaders.map((h) => ({ ...h }));
  }

  /** Ends the transaction, if any (RSET, HELO/EHLO, end of DATA). */
  endTransaction(): void {
    this.txn = null;
    this.txx = null;
  }

  /**
   * After a successful STARTTLS: back to the state right after connect (HELO,
   * authentication, transaction and helo statuses discarded, SPEC §4.3).
   * The pipelining flag stays: it records what the client did.
   */
  resetAfterTls(fields: Pick<Session, 'tls' | 'serverName'>): void {
    this.endTransaction();
    this.session.helo = null;
    this.session.esmtp = false;
    this.session.auth = null;
    this.session.tls = fields.tls;
    this.session.serverName = fields.serverName;
    this.session.remembered = this.connectRemembered;
    this.session.pendingHeaders = this.connectPending.map((h) => ({ ...h }));
    this.authFailures = 0;
  }
}
