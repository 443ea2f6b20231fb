// The data a stage evaluation works on: the session and transaction as the
// SMTP front builds them (SPEC §4.2–§4.3), and the verdict a stage returns.
// Plain data, no behaviour: smtp/ fills it, policy/ and builtins/ read it.

export type Stage = 'connect' | 'helo' | 'authenticate' | 'mail' | 'rcpt' | 'preq' | 'postq' | 'delivery';

/** Stages in SMTP order; a datum "available from stage X" is readable at X and later. */
export const STAGES: readonly Stage[] = [
  'connect', 'helo', 'authenticate', 'mail', 'rcpt', 'preq', 'postq', 'delivery',
];

export function stageIndex(stage: Stage): number {
  return STAGES.indexOf(stage);
}

/** A canonical mailbox (SPEC §4.4). The null sender has local = domain = ''. */
export interface MailAddress {
  /** Local part as it will be used (quotes removed when not needed). */
  local: string;
  /** Lower-case A-label domain, or an address literal kept as text (`[192.0.2.1]`). */
  domain: string;
  /** The path as the client wrote it, for logs only. */
  raw: string;
  isNull: boolean;
}

export function addressText(a: MailAddress): string {
  return a.isNull ? '' : `${a.local}@${a.domain}`;
}

export type ListenerKind = 'smtp' | 'submission' | 'submissions';

export interface TlsInfo {
  protocol: string;
  cipher: string;
  /** SNI name the client asked for, if any. */
  servername?: string;
}

export interface Header {
  name: string;
  value: string;
}

/** Statuses remembered across stages (SPEC §5.4). */
export type RememberedKind = 'faccept' | 'quarantine' | 'deny';
export interface Remembered {
  kind: RememberedKind;
  quarantine?: string;
  /** Rule and position that decided, for logs and `mta explain`. */
  rule: string;
  at: string;
}

/**
 * Transport chosen for one recipient (SPEC §7.6): `default` (delivery.default)
 * or a kind of the transport table (src/delivery/transports/), with its
 * target when it takes one. The table checks it; the delivery side acts on it.
 */
export interface Transport {
  kind: string;
  target?: string;
}

export interface Recipient {
  address: MailAddress;
  transport: Transport;
}

export interface Session {
  /** Connection id, also in every log line of the session. */
  id: string;
  listener: ListenerKind;
  clientIp: string; // IPv4-mapped IPv6 already normalised to IPv4
  clientPort: number;
  serverIp: string;
  serverPort: number;
  /** server.name, or the TLS SNI name when that is server.name or a local domain. */
  serverName: string;
  connectedAt: Date;
  tls: TlsInfo | null;
  helo: string | null;
  /** EHLO (true) or HELO (false); meaningful once helo is set. */
  esmtp: boolean;
  /** Set once AUTH succeeded. */
  auth: { mechanism: string; authid: string } | null;
  /** Forward-confirmed reverse DNS name: undefined = not looked up yet, null = none. */
  reverseName?: string | null;
  /** The client sent a command before a reply it had to wait for (reject_unauth_pipelining). */
  pipeliningViolation: boolean;
  /** connect/helo remembered status (faccept, quarantine). */
  remembered: Remembered | null;
  /** Headers written at connect/helo/authenticate: added to every message of the session. */
  pendingHeaders: Header[];
}

/** What a front knows of a session when it starts: the connection's addresses and names. */
export type NewSession = Pick<Session, 'id' | 'listener' | 'clientIp' | 'clientPort' | 'serverIp' | 'serverPort' | 'serverName' | 'connectedAt' | 'tls'>;

/** A session right after accept (or a milter's connect), before the connect stage. */
export function newSession(n: NewSession): Session {
  return {
    ...n,
    helo: null,
    esmtp: false,
    auth: null,
    pipeliningViolation: false,
    remembered: null,
    pendingHeaders: [],
  };
}

export interface Transaction {
  /** Transaction id, equal to the queue id. */
  id: string;
  mailFrom: MailAddress;
  mailAt: Date;
  /** Accepted recipients (only those whose RCPT got 2xx), with their transports. */
  rcpts: Recipient[];
  /** The recipient under evaluation in the rcpt stage. */
  currentRcpt: MailAddress | null;
  /** mail/rcpt/preq remembered status. */
  remembered: Remembered | null;
  /** Headers written at mail/rcpt, inserted at end of DATA below Received:. */
  pendingHeaders: Header[];
  /** Policy version pinned at MAIL (SPEC §12). */
  policyVersion?: string;
}

/** A reply as sent: code, enhanced code (may be empty), text lines. */
export interface Reply {
  code: number;
  enhanced: string;
  lines: string[];
}

export type StatusKind = 'next' | 'accept' | 'faccept' | 'deny' | 'reject' | 'info' | 'quarantine';

/** What a stage evaluation decided, validated on the host side. */
export interface Verdict {
  status: StatusKind;
  /** The reply the status carried, if any (applied per SPEC §5.2). */
  reply: Reply | null;
  quarantine?: string;
  /** Deciding directive, or how the decision was made without one. */
  rule: string | null;
  /** `file:line:col` of the deciding directive. */
  at: string | null;
  /** 'rules' | 'no rules' | 'remembered' | 'relay guard' | 'error' */
  source: 'rules' | 'no rules' | 'remembered' | 'relay guard' | 'error';
  /** Set when the stage failed (SPEC §5.7): message with position and call chain. */
  error?: string;
  /** Every directive evaluated, for `mta explain`. */
  trace: Array<{ rule: string; at: string; status: StatusKind | 'error' | 'action'; reply: Reply | null; ms: number }>;
}

/**
 * A change a stage asked for besides its verdict (SPEC §7.4–§7.6). Returned
 * with the verdict, applied by the caller only when the stage succeeded.
 * Header operations before DATA act on the pending list (session-wide when
 * made at connect/helo/authenticate, else the transaction's); from preq on,
 * on the message itself.
 */
export type StageEffect =
  | { kind: 'header'; op: 'append' | 'prepend'; name: string; value: string }
  | { kind: 'header'; op: 'set'; name: string; value: string }
  | { kind: 'header'; op: 'rename'; name: string; newName: string }
  | { kind: 'header'; op: 'remove'; name: string }
  | { kind: 'mail_from'; address: MailAddress }
  | { kind: 'add_rcpt'; address: MailAddress }
  | { kind: 'rm_rcpt'; address: MailAddress }
  | { kind: 'rw_rcpt'; from: MailAddress; to: MailAddress }
  | { kind: 'transport'; rcpt: MailAddress; transport: Transport }
  /** Rewrite the address in From: (keeping the display name) / in To:. */
  | { kind: 'msg_from'; address: MailAddress }
  | { kind: 'msg_rcpt'; op: 'add' | 'rm' | 'rw'; address: MailAddress; to?: MailAddress }
  /**
   * A relay control let the recipient under evaluation through (SPEC §5.6):
   * the stage may end in `next` without the relay guard deciding. Read by the
   * stage machine, never applied.
   */
  | { kind: 'relay_cleared' };

export interface StageOutcome {
  verdict: Verdict;
  effects: StageEffect[];
}

/**
 * What the SMTP front and the queue call to run one stage of the current
 * policy (implemented in src/policy/runner.ts on top of the sandbox).
 * `message` is set from preq on.
 */
export interface StageRunner {
  run(
    stage: Stage,
    session: Session,
    txn: Transaction | null,
    message?: MessageView | null,
    extra?: { credentials?: { mechanism: string; authid: string; authpass: string } },
  ): Promise<StageOutcome>;
  /** Whether the stage map has directives for a stage (empty rcpt → relay guard; AUTH advertised). */
  hasRules(stage: Stage): boolean;
}

/** The message under evaluation, from preq on. */
export interface MessageView {
  /** Header fields in order, as raw lines (continuations included). */
  headers(): Array<{ name: string; raw: string; value: string }>;
  /** The whole message as written to the spool (CRLF line ends). */
  raw(): Buffer;
}

/** What a post-queue stage does to the queued message (SPEC §5.3, §5.7), decided by src/policy/stage-machine.ts. */
export type AfterQueueAction =
  /** next, accept, faccept: commit the effects and go on; faccept at postq skips the delivery stage. */
  | { kind: 'continue'; skipDelivery: boolean }
  /** deny, reject, info, or an accept carrying a 4xx/5xx reply: the message goes to dead/. */
  | { kind: 'dead'; reason: string }
  | { kind: 'quarantine'; name: string }
  /** A rule error or time-out: deferred and run again later, or dead/ with `vsl.error_status = deny`. */
  | { kind: 'failed'; why: string; toDead: boolean };

export interface AfterQueueDecision {
  verdict: Verdict;
  effects: StageEffect[];
  action: AfterQueueAction;
}

/** What a status remembered before queueing does to a queued message (SPEC §5.4). */
export type RememberedAfterQueue = { kind: 'deny' } | { kind: 'quarantine'; name: string } | { kind: 'faccept' };
