// One milter connection: the MTA's steps (connect, helo, mail, rcpt, the
// headers and body, end of message) become the vSL stages of the same names,
// decided by the one stage machine (src/policy/stage-machine.ts) on a
// Session and Transaction built from what the MTA sends, its macros
// included. At end of message the preq stage edits a MessageDraft as under
// `mta run`, and the difference with what the MTA has becomes modification
// requests (src/milter/edits.ts). The MTA keeps the spool.

import type { Logger } from 'pino';
import { REPLY_TEMPFAIL, type Applied, type FrontStage } from '../policy/apply.js';
import { decideStage, type DecisionState } from '../policy/stage-machine.js';
import { NORMAL_REPLY, type DecisionContext, type DraftMessage, type RawField } from '../reload/runtime.js';
import { addressText, newSession, type MailAddress, type Reply, type StageEffect, type Transaction } from '../mail/types.js';
import { applyMessageEdit } from '../mail/effects.js';
import { makeReply, replyFromString } from '../mail/reply.js';
import { normalizeIp, parsePath } from '../vsl/values/address.js';
import { actionNeeded, envelopeEdits, headerEdits, type EnvelopeEdit, type HeaderEdit } from './edits.js';
import { CONTINUE, refusalPacket, stageReply } from './replies.js';
import { ACTION, BODY_CHUNK, CMD, cstr, cstrings, NO_REPLY, packet, PROTOCOL_VERSION, REPLY, STEP, uint32, type Packet } from './wire.js';

export type MilterContext = DecisionContext;

/** What the connection does with the session's output. */
export interface MilterOutput {
  write(buf: Buffer): void;
  close(): void;
}

/** The actions this milter may use; the MTA grants the subset it offers. */
const WANTED_ACTIONS = ACTION.ADDHDRS | ACTION.CHGBODY | ACTION.ADDRCPT | ACTION.DELRCPT | ACTION.CHGHDRS | ACTION.QUARANTINE | ACTION.CHGFROM;

/** A message body larger than this is refused at end of message rather than held in memory. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const REPLY_TOO_BIG = makeReply(552, '5.3.4', 'Message too big for the policy filter');

/** Macro names without their braces: `{auth_authen}` and `auth_authen` are one macro. */
function macroName(n: string): string {
  return n.startsWith('{') && n.endsWith('}') ? n.slice(1, -1) : n;
}

class BadPacket extends Error {}

/** The message the MTA is sending: what it has, to compare with the stage's result. */
interface MessageInProgress {
  /** Envelope as the MTA has it (sender as given, recipients it accepted). */
  mailFrom: MailAddress;
  rcpts: MailAddress[];
  headers: RawField[];
  body: Buffer[];
  bodyBytes: number;
}

export class MilterSession {
  private steps = 0;
  private actions = 0;
  private readonly macros = new Map<string, string>();
  private state: DecisionState | null = null;
  private message: MessageInProgress | null = null;
  /** A deny: the session is over for the policy, every later step gets this reply. */
  private refusal: Reply | null = null;

  private log: Logger;

  constructor(
    private readonly ctx: MilterContext,
    private readonly out: MilterOutput,
    private readonly baseLog: Logger,
  ) {
    this.log = baseLog;
  }

  /** Handles one packet; resolves once its reply (if any) is written. */
  async handle(p: Packet): Promise<void> {
    try {
      await this.dispatch(p);
    } catch (err) {
      if (!(err instanceof BadPacket)) throw err;
      // Framing was fine but the content is not what the command carries: a
      // temporary failure for this step, and the connection goes on.
      this.log.warn({ cmd: p.cmd, err: err.message }, 'malformed milter packet');
      if (this.expectsReply(p.cmd)) this.out.write(packet(REPLY.TEMPFAIL));
    }
  }

  private async dispatch(p: Packet): Promise<void> {
    switch (p.cmd) {
      case CMD.OPTNEG: return this.negotiate(p.data);
      case CMD.MACRO: return this.storeMacros(p.data);
      case CMD.CONNECT: return this.answer(p.cmd, await this.connect(p.data));
      case CMD.HELO: return this.answer(p.cmd, await this.helo(p.data));
      case CMD.MAIL: return this.reply(await this.mail(p.data));
      case CMD.RCPT: return this.reply(await this.rcpt(p.data));
      case CMD.DATA:
      case CMD.EOH:
      case CMD.UNKNOWN:
        return this.answer(p.cmd, CONTINUE);
      case CMD.HEADER:
        this.header(p.data);
        return this.answer(p.cmd, CONTINUE);
      case CMD.BODY:
        this.bodyChunk(p.data);
        return this.answer(p.cmd, CONTINUE);
      case CMD.BODYEOB:
        this.bodyChunk(p.data);
        return this.endOfMessage();
      case CMD.ABORT:
        this.endTransaction();
        return;
      case CMD.QUIT_NC:
        // The MTA reuses this connection for a new SMTP session.
        this.endTransaction();
        this.state = null;
        this.refusal = null;
        this.macros.clear();
        return;
      case CMD.QUIT:
        this.out.close();
        return;
      default:
        // Whether it wants a reply is unknown: the only safe answer is to hang up.
        this.log.warn({ cmd: p.cmd.charCodeAt(0) }, 'unknown milter command, closing');
        this.out.close();
    }
  }

  /** Whether the MTA waits for an answer to this command (macros, abort, quit and no-reply steps get none). */
  private expectsReply(cmd: string): boolean {
    const nr = NO_REPLY[cmd];
    if (nr !== undefined) return (this.steps & nr) === 0;
    return cmd !== CMD.MACRO && cmd !== CMD.ABORT && cmd !== CMD.QUIT && cmd !== CMD.QUIT_NC;
  }

  /**
   * The answer to a step that may have been negotiated without a reply. A
   * refusal there (possible only after a reload added rules to a stage that
   * had none at negotiation) is kept and given to the next step that replies.
   */
  private answer(cmd: string, buf: Buffer): void {
    if (this.expectsReply(cmd)) return this.reply(buf);
    if (buf !== CONTINUE && this.refusal === null) {
      this.log.warn({ cmd }, 'refusal at a step without a reply: given at the next step');
      this.refusal = makeReply(451, '4.3.0', 'Temporary local problem, try again later');
    }
  }

  private reply(buf: Buffer): void {
    this.out.write(buf);
  }

  private negotiate(data: Buffer): void {
    if (data.length < 12) throw new BadPacket('option negotiation shorter than 12 bytes');
    const version = data.readUInt32BE(0);
    const offeredActions = data.readUInt32BE(4);
    const offeredSteps = data.readUInt32BE(8);
    if (version < 2) {
      this.log.warn({ version }, 'milter protocol version too old, closing');
      this.out.close();
      return;
    }
    this.actions = WANTED_ACTIONS & offeredActions;
    this.steps = this.skippedSteps() & offeredSteps;
    this.out.write(packet(REPLY.OPTNEG, uint32(Math.min(version, PROTOCOL_VERSION)), uint32(this.actions), uint32(this.steps)));
  }

  /**
   * Steps the MTA need not send: HELO when no stage from helo on has rules
   * (the relay guard reads the client, the authentication and the
   * recipient, not the HELO name), the message content when preq has no
   * rules, and never-used steps (DATA, unknown commands). Connect, MAIL and
   * RCPT are always needed: the relay guard decides recipients when the
   * policy has no rcpt rules. Steps that decide nothing — connect and helo
   * without rules, headers, end of headers, body chunks — get no reply, which
   * saves the MTA a round trip each.
   */
  private skippedSteps(): number {
    const has = (s: FrontStage): boolean => this.ctx.env.runner.hasRules(s);
    let steps = STEP.NODATA | STEP.NOUNKNOWN | STEP.NR_HDR | STEP.NR_EOH | STEP.NR_BODY | STEP.NR_DATA | STEP.NR_UNKN;
    if (!has('connect')) steps |= STEP.NR_CONN;
    if (!has('helo')) steps |= STEP.NR_HELO;
    if (!has('preq')) steps |= STEP.NOHDRS | STEP.NOEOH | STEP.NOBODY;
    if (!has('helo') && !has('mail') && !has('rcpt') && !has('preq')) steps |= STEP.NOHELO;
    return steps;
  }

  private storeMacros(data: Buffer): void {
    const parts = cstrings(data, 1);
    if (parts === null) throw new BadPacket('macro list not NUL-terminated');
    for (let i = 0; i + 1 < parts.length; i += 2) this.macros.set(macroName(parts[i]!), parts[i + 1]!);
  }

  private macro(name: string): string | undefined {
    const v = this.macros.get(name);
    return v === undefined || v === '' ? undefined : v;
  }

  /** Runs a stage and answers as the refusal of a denied session would. */
  private async decide(stage: FrontStage, normal: Reply, draft: DraftMessage | null = null): Promise<Applied> {
    const applied = (await decideStage(this.ctx.env, this.state!, this.log, stage, normal, draft)).applied;
    // deny ends the session under `mta run`; here the MTA keeps it, so the
    // refusal is repeated for every later step (SPEC §5.2 deny row).
    if (applied.close && !applied.accept) this.refusal = applied.reply;
    return applied;
  }

  private async connect(data: Buffer): Promise<Buffer> {
    const host = data.indexOf(0);
    if (host < 0 || host + 1 >= data.length) throw new BadPacket('connect without host name and family');
    const hostname = data.toString('utf8', 0, host);
    const family = String.fromCharCode(data[host + 1]!);
    let clientIp = this.macro('client_addr') ?? '';
    let clientPort = 0;
    if (family === '4' || family === '6') {
      if (data.length < host + 5) throw new BadPacket('connect without port and address');
      clientPort = data.readUInt16BE(host + 2);
      const addr = cstrings(data, host + 4);
      if (addr === null || addr.length === 0) throw new BadPacket('connect address not NUL-terminated');
      clientIp = addr[0]!.replace(/^IPv6:/i, '');
    }
    const server = this.ctx.server();
    const session = newSession({
      id: this.ctx.newId(),
      listener: listenerOf(this.macro('daemon_name')),
      clientIp: normalizeIp(clientIp),
      clientPort,
      serverIp: normalizeIp(this.macro('daemon_addr') ?? ''),
      serverPort: Number(this.macro('daemon_port') ?? 0),
      serverName: this.macro('j') ?? server.name,
      connectedAt: new Date(this.ctx.now()),
      tls: null,
    });
    // The MTA's name for the client is its forward-confirmed reverse name, or "unknown" / "[ip]".
    session.reverseName = hostname === '' || hostname === 'unknown' || hostname.startsWith('[') ? null : hostname.toLowerCase();
    this.log = this.baseLog.child({ conn: session.id, client_ip: session.clientIp });
    this.state = { session, txn: null, txx: null };
    this.refusal = null;
    const applied = await this.decide('connect', NORMAL_REPLY.greeting(session.serverName));
    return stageReply(applied);
  }

  /** The session the connect step started. */
  private session(): DecisionState {
    if (this.state === null) throw new BadPacket('command before connect');
    return this.state;
  }

  private async helo(data: Buffer): Promise<Buffer> {
    const state = this.session();
    if (this.refusal !== null) return refusalPacket(this.refusal);
    const args = cstrings(data);
    if (args === null || args.length === 0) throw new BadPacket('helo name not NUL-terminated');
    this.endTransaction();
    const s = state.session;
    s.helo = args[0]!;
    s.esmtp = true;
    const protocol = this.macro('tls_version');
    if (protocol !== undefined) s.tls = { protocol, cipher: this.macro('cipher') ?? '' };
    const applied = await this.decide('helo', NORMAL_REPLY.helo(s.serverName));
    if (!applied.accept) s.helo = null;
    return stageReply(applied);
  }

  private async mail(data: Buffer): Promise<Buffer> {
    const state = this.session();
    if (this.refusal !== null) return refusalPacket(this.refusal);
    const args = cstrings(data);
    if (args === null || args.length === 0) throw new BadPacket('sender not NUL-terminated');
    this.endTransaction();
    const s = state.session;
    const authid = this.macro('auth_authen');
    s.auth = authid === undefined ? null : { mechanism: (this.macro('auth_type') ?? 'unknown').toUpperCase(), authid };
    const smtputf8 = args.slice(1).some((a) => a.toUpperCase() === 'SMTPUTF8');
    const path = parsePath(bracketed(args[0]!), { kind: 'mail', smtputf8, serverDomain: this.ctx.server().domain });
    if (!path.ok) return refusalPacket(replyFromString(path.reply));
    const txn: Transaction = {
      id: this.macro('i') ?? this.ctx.newId(),
      mailFrom: path.address,
      mailAt: new Date(this.ctx.now()),
      rcpts: [],
      currentRcpt: null,
      remembered: null,
      pendingHeaders: [],
    };
    state.txn = txn;
    state.txx = { messageEdits: [] as StageEffect[] };
    this.message = { mailFrom: path.address, rcpts: [], headers: [], body: [], bodyBytes: 0 };
    const applied = await this.decide('mail', NORMAL_REPLY.mail);
    if (!applied.accept) this.endTransaction();
    return stageReply(applied);
  }

  private async rcpt(data: Buffer): Promise<Buffer> {
    const state = this.session();
    if (this.refusal !== null) return refusalPacket(this.refusal);
    const txn = state.txn;
    const message = this.message;
    if (txn === null || message === null) throw new BadPacket('recipient outside a transaction');
    const args = cstrings(data);
    if (args === null || args.length === 0) throw new BadPacket('recipient not NUL-terminated');
    const path = parsePath(bracketed(args[0]!), { kind: 'rcpt', smtputf8: true, serverDomain: this.ctx.server().domain });
    if (!path.ok) return refusalPacket(replyFromString(path.reply));
    const address = path.address;
    // As under `mta run`: the recipient is tentatively in the list while its stage runs.
    const tentative = { address, transport: { kind: 'default' as const } };
    const previous = txn.currentRcpt;
    txn.rcpts.push(tentative);
    txn.currentRcpt = address;
    const applied = await this.decide('rcpt', NORMAL_REPLY.rcpt);
    if (applied.accept) message.rcpts.push(address);
    else {
      txn.rcpts = txn.rcpts.filter((r) => r !== tentative);
      txn.currentRcpt = previous;
    }
    return stageReply(applied);
  }

  private header(data: Buffer): void {
    const parts = cstrings(data);
    if (parts === null || parts.length < 2) throw new BadPacket('header without name and value');
    const [name, value] = parts as [string, string];
    this.message?.headers.push({ name, raw: Buffer.from(`${name}: ${value.replace(/\r?\n/g, '\r\n')}`, 'utf8') });
  }

  /** Keeps a body chunk, up to MAX_BODY_BYTES (beyond, only counted). */
  private bodyChunk(data: Buffer): void {
    const m = this.message;
    if (m === null || data.length === 0) return;
    m.bodyBytes += data.length;
    if (m.bodyBytes <= MAX_BODY_BYTES) m.body.push(data);
  }

  private async endOfMessage(): Promise<void> {
    const state = this.session();
    const message = this.message;
    const txn = state.txn;
    try {
      if (this.refusal !== null) return this.reply(refusalPacket(this.refusal));
      if (txn === null || message === null) throw new BadPacket('end of message outside a transaction');
      if (message.bodyBytes > MAX_BODY_BYTES) return this.reply(refusalPacket(REPLY_TOO_BIG));
      this.reply(await this.preq(state, txn, message));
    } finally {
      this.endTransaction();
    }
  }

  /** The preq stage on the message the MTA sent; the modifications, then the final reply. */
  private async preq(state: DecisionState, txn: Transaction, message: MessageInProgress): Promise<Buffer> {
    const body = Buffer.concat(message.body);
    const shown = message.headers;
    // The MTA added its own Received: already; headers written by earlier stages go right below it.
    const draft = this.ctx.newDraft([...state.session.pendingHeaders, ...txn.pendingHeaders], [...shown], body);
    for (const e of state.txx?.messageEdits ?? []) if (e.kind === 'msg_from' || e.kind === 'msg_rcpt') applyMessageEdit(draft, e);
    const applied = await this.decide('preq', NORMAL_REPLY.queued(txn.id), draft);
    if (!applied.accept) return refusalPacket(applied.reply);
    if (txn.rcpts.length === 0) {
      this.log.info({ id: txn.id }, 'no recipient left after preq: message discarded');
      return packet(REPLY.DISCARD);
    }
    const headers = headerEdits(shown, draft.fields);
    const envelope = envelopeEdits(message, { mailFrom: txn.mailFrom, rcpts: txn.rcpts.map((r) => r.address) });
    const newBody = draftBody(draft);
    const bodyChanged = !newBody.equals(body);
    const needed = [...headers, ...envelope, ...(bodyChanged ? [{ kind: 'body' as const }] : []), ...(applied.quarantine !== null ? [{ kind: 'quarantine' as const }] : [])];
    const missing = needed.filter((e) => (this.actions & actionNeeded(e)) === 0);
    if (missing.length > 0) {
      // The policy's changes cannot all be made: accepting without them would be a different message.
      this.log.error({ id: txn.id, missing: [...new Set(missing.map((m) => m.kind))] }, 'the MTA did not grant the milter actions this message needs');
      return refusalPacket(REPLY_TEMPFAIL);
    }
    for (const e of headers) this.reply(headerPacket(e));
    for (const e of envelope) this.reply(envelopePacket(e));
    if (bodyChanged) for (let i = 0; i < newBody.length || i === 0; i += BODY_CHUNK) this.reply(packet(REPLY.REPLBODY, newBody.subarray(i, i + BODY_CHUNK)));
    if (applied.quarantine !== null) this.reply(packet(REPLY.QUARANTINE, cstr(applied.quarantine)));
    if (needed.length > 0) {
      this.log.info({ id: txn.id, headers: headers.length, envelope: envelope.map((e) => `${e.kind} ${e.address}`), body: bodyChanged, quarantine: applied.quarantine, sender: addressText(txn.mailFrom) }, 'message modified');
    }
    return CONTINUE;
  }

  private endTransaction(): void {
    this.message = null;
    if (this.state !== null) {
      this.state.txn = null;
      this.state.txx = null;
    }
  }
}

function headerPacket(e: HeaderEdit): Buffer {
  switch (e.kind) {
    case 'change': return packet(REPLY.CHGHEADER, uint32(e.index), cstr(e.name), cstr(e.value));
    case 'add': return packet(REPLY.ADDHEADER, cstr(e.name), cstr(e.value));
    case 'insert': return packet(REPLY.INSHEADER, uint32(e.index), cstr(e.name), cstr(e.value));
  }
}

function envelopePacket(e: EnvelopeEdit): Buffer {
  switch (e.kind) {
    case 'from': return packet(REPLY.CHGFROM, cstr(e.address));
    case 'add-rcpt': return packet(REPLY.ADDRCPT, cstr(e.address));
    case 'del-rcpt': return packet(REPLY.DELRCPT, cstr(e.address));
  }
}

/** The body of the draft as it would be written. */
function draftBody(draft: DraftMessage): Buffer {
  const headerBytes = draft.fields.reduce((n, f) => n + f.raw.length + 2, 0) + 2;
  return draft.raw().subarray(headerBytes);
}

function bracketed(path: string): string {
  const p = path.trim();
  return p.startsWith('<') ? p : `<${p}>`;
}

/** `{daemon_name}` tells which Postfix service took the connection. */
function listenerOf(daemon: string | undefined): 'smtp' | 'submission' | 'submissions' {
  if (daemon === undefined) return 'smtp';
  if (/submissions|smtps/i.test(daemon)) return 'submissions';
  if (/submission/i.test(daemon)) return 'submission';
  return 'smtp';
}
