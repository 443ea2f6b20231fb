// The envelope record: `<id>.json` beside `<id>.eml` in the spool (SPEC §10).
// It holds everything the queue needs after the SMTP session is gone: the
// envelope, per-recipient delivery state and transport, and a snapshot of the
// session so the postq and delivery stages can run later (SPEC §4.1, §5.3).
// Times are ISO 8601 strings so the file stays readable with `cat`.

import type { ListenerKind, MailAddress, Recipient, Remembered, Session, StageEffect, TlsInfo, Transaction, Transport } from '../mail/types.js';
import { isQuarantineName, isQueueId } from './id.js';

export const ENVELOPE_VERSION = 1;

export type RecipientState = 'pending' | 'delivered' | 'deferred' | 'failed';

/** Progress of a post-queue stage: not run yet, run and committed, or not to be run. */
export type StageState = 'pending' | 'done' | 'skipped';

export interface RecipientRecord {
  address: MailAddress;
  transport: Transport;
  state: RecipientState;
  /** Delivery attempts made for this recipient. */
  attempts: number;
  /** When a deferred recipient is due again (ISO), else null. */
  next_attempt: string | null;
  /** The last remote reply or local error, as text (`550 5.1.1 No such user`). */
  last_error: string | null;
  delivered_at: string | null;
  /** Enhanced status of the last outcome (`5.1.1`), used in DSNs. */
  status: string | null;
  /** The host that gave the last reply (`mx.example.org [192.0.2.1]`). */
  remote_mta: string | null;
  /** Bounce bookkeeping of a failed recipient: 'pending' until its DSN is queued. */
  dsn: 'none' | 'pending' | 'sent';
  /** Set on a recipient added by alias expansion: the address it came from (it is not expanded again). */
  alias_of?: string;
}

/** What the postq and delivery stages need from the SMTP session (SPEC §4.2). */
export interface SessionSnapshot {
  id: string;
  listener: ListenerKind;
  client_ip: string;
  client_port: number;
  server_ip: string;
  server_port: number;
  server_name: string;
  connected_at: string;
  tls: TlsInfo | null;
  helo: string | null;
  esmtp: boolean;
  auth: { mechanism: string; authid: string } | null;
  reverse_name: string | null;
  /** Status remembered at connect/helo (SPEC §5.4). */
  remembered: Remembered | null;
}

/**
 * Header edits being applied to the `.eml` (see Spool / scheduler): written
 * into the record before the message file is rewritten, so that after a
 * crash the hash of the file tells whether the edit happened.
 */
export interface PendingEdit {
  stage: 'postq' | 'delivery';
  effects: StageEffect[];
  sha256_before: string;
  sha256_after: string;
  size_after: number;
}

export interface EnvelopeRecord {
  version: typeof ENVELOPE_VERSION;
  id: string;
  received_at: string;
  mail_at: string;
  /** Start of the `delivery.max_age` clock: received_at, or the time an operator re-injected it. */
  age_base: string;
  mail_from: MailAddress;
  recipients: RecipientRecord[];
  session: SessionSnapshot;
  /** Status remembered at mail/rcpt/preq (SPEC §5.4). */
  txn_remembered: Remembered | null;
  quarantine: string | null;
  policy_version: string | null;
  /** Size and SHA-256 (hex) of `<id>.eml`: a truncated or damaged file is detected. */
  size: number;
  sha256: string;
  stages: { postq: StageState; delivery: StageState };
  pending_edit: PendingEdit | null;
  /** Delivery attempts of the message as a whole. */
  attempts: number;
  /** Earliest next_attempt of its deferred recipients (ISO), or null. */
  next_attempt: string | null;
  /** Last message-level error (a stage failure, an unreadable file). */
  last_error: string | null;
  /** Why the message is in dead/ (policy deny, expired, failed recipients). */
  dead_reason: string | null;
  /** DSNs queued so far for failure batches of this message (names the next one `<id>-B<n+1>`). */
  bounces: number;
  /** A DSN this message is: it never causes another. */
  is_bounce: boolean;
}

export class CorruptRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptRecordError';
  }
}

export function snapshotSession(s: Session): SessionSnapshot {
  return {
    id: s.id,
    listener: s.listener,
    client_ip: s.clientIp,
    client_port: s.clientPort,
    server_ip: s.serverIp,
    server_port: s.serverPort,
    server_name: s.serverName,
    connected_at: s.connectedAt.toISOString(),
    tls: s.tls ? { ...s.tls } : null,
    helo: s.helo,
    esmtp: s.esmtp,
    auth: s.auth ? { mechanism: s.auth.mechanism, authid: s.auth.authid } : null,
    reverse_name: s.reverseName ?? null,
    remembered: s.remembered ? { ...s.remembered } : null,
  };
}

/** The Session a post-queue stage sees (no pending headers: they are in the message). */
export function sessionFromRecord(r: EnvelopeRecord): Session {
  const s = r.session;
  return {
    id: s.id,
    listener: s.listener,
    clientIp: s.client_ip,
    clientPort: s.client_port,
    serverIp: s.server_ip,
    serverPort: s.server_port,
    serverName: s.server_name,
    connectedAt: new Date(s.connected_at),
    tls: s.tls ? { ...s.tls } : null,
    helo: s.helo,
    esmtp: s.esmtp,
    auth: s.auth ? { ...s.auth } : null,
    reverseName: s.reverse_name,
    pipeliningViolation: false,
    remembered: s.remembered ? { ...s.remembered } : null,
    pendingHeaders: [],
  };
}

/** The Transaction a post-queue stage sees: every recipient not yet final. */
export function transactionFromRecord(r: EnvelopeRecord): Transaction {
  const rcpts: Recipient[] = r.recipients
    .filter((x) => x.state === 'pending' || x.state === 'deferred')
    .map((x) => ({ address: { ...x.address }, transport: { ...x.transport } as Transport }));
  const txn: Transaction = {
    id: r.id,
    mailFrom: { ...r.mail_from },
    mailAt: new Date(r.mail_at),
    rcpts,
    currentRcpt: null,
    remembered: r.txn_remembered ? { ...r.txn_remembered } : null,
    pendingHeaders: [],
  };
  if (r.policy_version) txn.policyVersion = r.policy_version;
  return txn;
}

export function newRecipientRecord(address: MailAddress, transport: Transport): RecipientRecord {
  return {
    address: { ...address },
    transport: { ...transport } as Transport,
    state: 'pending',
    attempts: 0,
    next_attempt: null,
    last_error: null,
    delivered_at: null,
    status: null,
    remote_mta: null,
    dsn: 'none',
  };
}

/** Whether a recipient still needs delivery attempts. */
export function isOpen(r: RecipientRecord): boolean {
  return r.state === 'pending' || r.state === 'deferred';
}

export function serializeRecord(r: EnvelopeRecord): string {
  return JSON.stringify(r, null, 2) + '\n';
}

// ---- validation: a record read from disk is untrusted until checked ----

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function fail(msg: string): never {
  throw new CorruptRecordError(msg);
}
function str(o: Obj, k: string, path: string): string {
  const v = o[k];
  if (typeof v !== 'string') fail(`${path}.${k}: expected a string`);
  return v;
}
function strOrNull(o: Obj, k: string, path: string): string | null {
  const v = o[k];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') fail(`${path}.${k}: expected a string or null`);
  return v;
}
function num(o: Obj, k: string, path: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${path}.${k}: expected a number`);
  return v;
}
function time(o: Obj, k: string, path: string): string {
  const v = str(o, k, path);
  if (Number.isNaN(Date.parse(v))) fail(`${path}.${k}: not a time`);
  return v;
}
function timeOrNull(o: Obj, k: string, path: string): string | null {
  const v = strOrNull(o, k, path);
  if (v !== null && Number.isNaN(Date.parse(v))) fail(`${path}.${k}: not a time`);
  return v;
}

function checkAddress(v: unknown, path: string): MailAddress {
  if (!isObj(v)) fail(`${path}: expected an address object`);
  const isNull = v.isNull;
  if (typeof isNull !== 'boolean') fail(`${path}.isNull: expected a boolean`);
  const a = { local: str(v, 'local', path), domain: str(v, 'domain', path), raw: str(v, 'raw', path), isNull };
  if (/[\r\n<>]/.test(a.local + a.domain)) fail(`${path}: address contains CR, LF, < or >`);
  if (!isNull && (a.local === '' || a.domain === '')) fail(`${path}: empty local part or domain`);
  return a;
}

/**
 * The shape of a transport: a kind and an optional target. Which kinds
 * exist is the delivery side's table (src/delivery/transports/): a record
 * naming a kind this version lacks is held by routing, not treated as corrupt.
 */
function checkTransport(v: unknown, path: string): Transport {
  if (!isObj(v)) fail(`${path}: expected a transport object`);
  const kind = str(v, 'kind', path);
  if (!/^[a-z][a-z0-9_]*$/.test(kind)) fail(`${path}.kind: invalid transport ${JSON.stringify(kind)}`);
  const target = strOrNull(v, 'target', path);
  return target === null ? { kind } : { kind, target };
}

function checkRemembered(v: unknown, path: string): Remembered | null {
  if (v === null || v === undefined) return null;
  if (!isObj(v)) fail(`${path}: expected an object or null`);
  const kind = v.kind;
  if (kind !== 'faccept' && kind !== 'quarantine' && kind !== 'deny') fail(`${path}.kind: unknown status`);
  const r: Remembered = { kind, rule: str(v, 'rule', path), at: str(v, 'at', path) };
  const q = strOrNull(v, 'quarantine', path);
  if (q !== null) r.quarantine = q;
  return r;
}

const RCPT_STATES = new Set(['pending', 'delivered', 'deferred', 'failed']);
const STAGE_STATES = new Set(['pending', 'done', 'skipped']);

function checkRecipient(v: unknown, path: string): RecipientRecord {
  if (!isObj(v)) fail(`${path}: expected an object`);
  const state = str(v, 'state', path);
  if (!RCPT_STATES.has(state)) fail(`${path}.state: unknown state ${state}`);
  const dsn = v.dsn ?? 'none';
  if (dsn !== 'none' && dsn !== 'pending' && dsn !== 'sent') fail(`${path}.dsn: unknown value`);
  return {
    address: checkAddress(v.address, `${path}.address`),
    transport: checkTransport(v.transport, `${path}.transport`),
    state: state as RecipientState,
    attempts: num(v, 'attempts', path),
    next_attempt: timeOrNull(v, 'next_attempt', path),
    last_error: strOrNull(v, 'last_error', path),
    delivered_at: timeOrNull(v, 'delivered_at', path),
    status: strOrNull(v, 'status', path),
    remote_mta: strOrNull(v, 'remote_mta', path),
    dsn,
    ...(typeof v.alias_of === 'string' ? { alias_of: v.alias_of } : {}),
  };
}

function checkSession(v: unknown, path: string): SessionSnapshot {
  if (!isObj(v)) fail(`${path}: expected an object`);
  const listener = str(v, 'listener', path);
  if (listener !== 'smtp' && listener !== 'submission' && listener !== 'submissions') fail(`${path}.listener: unknown`);
  let tls: TlsInfo | null = null;
  if (v.tls !== null && v.tls !== undefined) {
    if (!isObj(v.tls)) fail(`${path}.tls: expected an object or null`);
    tls = { protocol: str(v.tls, 'protocol', `${path}.tls`), cipher: str(v.tls, 'cipher', `${path}.tls`) };
    const sn = strOrNull(v.tls, 'servername', `${path}.tls`);
    if (sn !== null) tls.servername = sn;
  }
  let auth: SessionSnapshot['auth'] = null;
  if (v.auth !== null && v.auth !== undefined) {
    if (!isObj(v.auth)) fail(`${path}.auth: expected an object or null`);
    auth = { mechanism: str(v.auth, 'mechanism', `${path}.auth`), authid: str(v.auth, 'authid', `${path}.auth`) };
  }
  if (typeof v.esmtp !== 'boolean') fail(`${path}.esmtp: expected a boolean`);
  return {
    id: str(v, 'id', path),
    listener,
    client_ip: str(v, 'client_ip', path),
    client_port: num(v, 'client_port', path),
    server_ip: str(v, 'server_ip', path),
    server_port: num(v, 'server_port', path),
    server_name: str(v, 'server_name', path),
    connected_at: time(v, 'connected_at', path),
    tls,
    helo: strOrNull(v, 'helo', path),
    esmtp: v.esmtp,
    auth,
    reverse_name: strOrNull(v, 'reverse_name', path),
    remembered: checkRemembered(v.remembered, `${path}.remembered`),
  };
}

function checkPendingEdit(v: unknown, path: string): PendingEdit | null {
  if (v === null || v === undefined) return null;
  if (!isObj(v)) fail(`${path}: expected an object or null`);
  const stage = str(v, 'stage', path);
  if (stage !== 'postq' && stage !== 'delivery') fail(`${path}.stage: unknown stage`);
  if (!Array.isArray(v.effects)) fail(`${path}.effects: expected an array`);
  return {
    stage,
    // Effects were produced by this program and are replayed through the
    // same validating editor, so their shape is checked there.
    effects: v.effects as StageEffect[],
    sha256_before: str(v, 'sha256_before', path),
    sha256_after: str(v, 'sha256_after', path),
    size_after: num(v, 'size_after', path),
  };
}

/** Parses and checks `<id>.json`; throws CorruptRecordError naming the first problem. */
export function parseRecord(text: string, expectedId?: string): EnvelopeRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    fail(`not JSON (${(err as Error).message})`);
  }
  if (!isObj(v)) fail('not an object');
  if (v.version !== ENVELOPE_VERSION) fail(`unsupported version ${JSON.stringify(v.version)}`);
  const id = str(v, 'id', 'record');
  if (!isQueueId(id)) fail(`record.id: invalid queue id ${JSON.stringify(id)}`);
  if (expectedId !== undefined && id !== expectedId) fail(`record.id ${id} does not match the file name ${expectedId}`);
  if (!Array.isArray(v.recipients)) fail('record.recipients: expected an array');
  if (!isObj(v.stages)) fail('record.stages: expected an object');
  const postq = str(v.stages, 'postq', 'record.stages');
  const delivery = str(v.stages, 'delivery', 'record.stages');
  if (!STAGE_STATES.has(postq) || !STAGE_STATES.has(delivery)) fail('record.stages: unknown state');
  const quarantine = strOrNull(v, 'quarantine', 'record');
  if (quarantine !== null && !isQuarantineName(quarantine)) fail('record.quarantine: invalid name');
  const size = num(v, 'size', 'record');
  if (size < 0 || !Number.isSafeInteger(size)) fail('record.size: invalid');
  const sha256 = str(v, 'sha256', 'record');
  if (!/^[0-9a-f]{64}$/.test(sha256)) fail('record.sha256: invalid');
  return {
    version: ENVELOPE_VERSION,
    id,
    received_at: time(v, 'received_at', 'record'),
    mail_at: time(v, 'mail_at', 'record'),
    age_base: time(v, 'age_base', 'record'),
    mail_from: checkAddress(v.mail_from, 'record.mail_from'),
    recipients: v.recipients.map((r, i) => checkRecipient(r, `record.recipients[${i}]`)),
    session: checkSession(v.session, 'record.session'),
    txn_remembered: checkRemembered(v.txn_remembered, 'record.txn_remembered'),
    quarantine,
    policy_version: strOrNull(v, 'policy_version', 'record'),
    size,
    sha256,
    stages: { postq: postq as StageState, delivery: delivery as StageState },
    pending_edit: checkPendingEdit(v.pending_edit, 'record.pending_edit'),
    attempts: num(v, 'attempts', 'record'),
    next_attempt: timeOrNull(v, 'next_attempt', 'record'),
    last_error: strOrNull(v, 'last_error', 'record'),
    dead_reason: strOrNull(v, 'dead_reason', 'record'),
    bounces: num(v, 'bounces', 'record'),
    is_bounce: v.is_bounce === true,
  };
}
