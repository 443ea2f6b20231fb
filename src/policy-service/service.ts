// `mta policy-server`: one Postfix policy request decided by the one stage
// machine. `protocol_state` selects the stage; the requests of one
// `instance` (one message) share a DecisionState, and the first request of
// an instance first runs the stages before it that did not run (connect,
// helo, mail), so remembered statuses (SPEC §5.4), session data and the
// relay guard behave as under `mta run`.
//
// Answers: next → DUNNO; accept/faccept → OK; quarantine → HOLD; a 5xx
// refusal → `action=<code> <enhanced> <text>`; a 4xx (a rule error or
// time-out among them) → `DEFER_IF_PERMIT <enhanced> <text>`. Nothing is
// ever answered OK by accident: an unreadable request gets DEFER_IF_PERMIT.

import type { Logger } from 'pino';
import type { FrontStage } from '../policy/apply.js';
import { decideStage, type DecisionState, type StageResult } from '../policy/stage-machine.js';
import { NORMAL_REPLY, type DecisionContext } from '../reload/runtime.js';
import { newSession, type MailAddress, type Reply, type Transaction } from '../mail/types.js';
import { replyFromString } from '../mail/reply.js';
import { normalizeIp, parsePath } from '../vsl/values/address.js';

export type PolicyServiceContext = DecisionContext;

/** protocol_state → the stage it decides; DATA has no stage of its own. */
const STATE_STAGE: Record<string, FrontStage | 'data'> = {
  CONNECT: 'connect',
  EHLO: 'helo',
  HELO: 'helo',
  MAIL: 'mail',
  RCPT: 'rcpt',
  DATA: 'data',
  'END-OF-MESSAGE': 'preq',
};

/** The stages that run once per instance, in order, before rcpt. */
const SESSION_STAGES = ['connect', 'helo', 'mail'] as const;

interface Instance {
  state: DecisionState;
  done: Set<FrontStage>;
  /** A refusal of connect, helo or mail, or a deny: every later request of the instance gets it. */
  refusal: Reply | null;
  touched: number;
}

/** Instances are forgotten after END-OF-MESSAGE, or when idle this long, or beyond this many. */
const INSTANCE_IDLE_MS = 60 * 60_000;
const MAX_INSTANCES = 10_000;

export const MALFORMED = 'DEFER_IF_PERMIT 4.3.0 Malformed policy request';

export class PolicyService {
  private readonly instances = new Map<string, Instance>();
  private lastSweep = 0;

  constructor(private readonly ctx: PolicyServiceContext) {}

  /** The action for one request's attributes. */
  async decide(attrs: Map<string, string>): Promise<string> {
    if (attrs.get('request') !== 'smtpd_access_policy') return MALFORMED;
    const target = STATE_STAGE[(attrs.get('protocol_state') ?? '').toUpperCase()];
    if (target === undefined) return MALFORMED;
    const key = attrs.get('instance') ?? '';
    const inst = this.instance(key, attrs);
    inst.touched = this.ctx.now();
    const log = this.ctx.log.child({ conn: inst.state.session.id, client_ip: inst.state.session.clientIp, instance: key });
    try {
      if (inst.refusal !== null) return actionFor(inst.refusal, null);
      updateSession(inst.state, attrs);
      for (const stage of SESSION_STAGES) {
        if (stage === target) break;
        const earlier = await this.once(inst, stage, attrs, log);
        if (inst.refusal !== null) return earlier!;
      }
      if (target === 'data') return 'DUNNO';
      if (target === 'connect' || target === 'helo' || target === 'mail') return (await this.once(inst, target, attrs, log)) ?? 'DUNNO';
      if (target === 'rcpt') return await this.rcpt(inst, attrs, log);
      return await this.preq(inst, attrs, log);
    } finally {
      if (target === 'preq' || key === '') this.instances.delete(key);
    }
  }

  private instance(key: string, attrs: Map<string, string>): Instance {
    const found = key === '' ? undefined : this.instances.get(key);
    if (found !== undefined) return found;
    this.sweep();
    const session = newSession({
      id: this.ctx.newId(),
      listener: 'smtp',
      clientIp: normalizeIp(attrs.get('client_address') ?? ''),
      clientPort: Number(attrs.get('client_port') ?? 0) || 0,
      serverIp: normalizeIp(attrs.get('server_address') ?? ''),
      serverPort: Number(attrs.get('server_port') ?? 0) || 0,
      serverName: this.ctx.server().name,
      connectedAt: new Date(this.ctx.now()),
      tls: null,
    });
    const name = attrs.get('client_name') ?? '';
    session.reverseName = name === '' || name === 'unknown' ? null : name.toLowerCase();
    const inst: Instance = { state: { session, txn: null, txx: null }, done: new Set(), refusal: null, touched: this.ctx.now() };
    if (key !== '') this.instances.set(key, inst);
    return inst;
  }

  private sweep(): void {
    const now = this.ctx.now();
    if (now - this.lastSweep > 60_000) {
      this.lastSweep = now;
      for (const [k, v] of this.instances) if (now - v.touched > INSTANCE_IDLE_MS) this.instances.delete(k);
    }
    while (this.instances.size >= MAX_INSTANCES) this.instances.delete(this.instances.keys().next().value!);
  }

  /** Runs connect, helo or mail once per instance; its action, or null when it had run already. */
  private async once(inst: Instance, stage: 'connect' | 'helo' | 'mail', attrs: Map<string, string>, log: Logger): Promise<string | null> {
    if (inst.done.has(stage)) return null;
    inst.done.add(stage);
    const state = inst.state;
    const s = state.session;
    let result: StageResult;
    if (stage === 'connect') result = await decideStage(this.ctx.env, state, log, 'connect', NORMAL_REPLY.greeting(s.serverName));
    else if (stage === 'helo') {
      const helo = attrs.get('helo_name') ?? '';
      if (helo === '') return null;
      s.helo = helo;
      result = await decideStage(this.ctx.env, state, log, 'helo', NORMAL_REPLY.helo(s.serverName));
    } else {
      const txn = this.transaction(attrs);
      if (!txn.ok) return this.refuse(inst, txn.reply);
      state.txn = txn.txn;
      state.txx = { messageEdits: [] };
      result = await decideStage(this.ctx.env, state, log, 'mail', NORMAL_REPLY.mail);
    }
    if (!result.applied.accept) return this.refuse(inst, result.applied.reply);
    return this.outcome(inst, result);
  }

  private refuse(inst: Instance, reply: Reply): string {
    inst.refusal = reply;
    return actionFor(reply, null);
  }

  private transaction(attrs: Map<string, string>): { ok: true; txn: Transaction } | { ok: false; reply: Reply } {
    const mailFrom = this.path(attrs.get('sender') ?? '', 'mail');
    if (!mailFrom.ok) return mailFrom;
    const txn: Transaction = {
      id: attrs.get('queue_id') || this.ctx.newId(),
      mailFrom: mailFrom.address,
      mailAt: new Date(this.ctx.now()),
      rcpts: [],
      currentRcpt: null,
      remembered: null,
      pendingHeaders: [],
    };
    return { ok: true, txn };
  }

  private path(text: string, kind: 'mail' | 'rcpt'): { ok: true; address: MailAddress } | { ok: false; reply: Reply } {
    const r = parsePath(`<${text}>`, { kind, smtputf8: true, serverDomain: this.ctx.server().domain });
    return r.ok ? r : { ok: false, reply: replyFromString(r.reply) };
  }

  private async rcpt(inst: Instance, attrs: Map<string, string>, log: Logger): Promise<string> {
    const txn = inst.state.txn;
    if (txn === null) return MALFORMED;
    const rcpt = this.path(attrs.get('recipient') ?? '', 'rcpt');
    if (!rcpt.ok) return actionFor(rcpt.reply, null);
    const tentative = { address: rcpt.address, transport: { kind: 'default' as const } };
    txn.rcpts.push(tentative);
    txn.currentRcpt = rcpt.address;
    const result = await decideStage(this.ctx.env, inst.state, log, 'rcpt', NORMAL_REPLY.rcpt);
    if (!result.applied.accept) txn.rcpts = txn.rcpts.filter((r) => r !== tentative);
    return this.outcome(inst, result);
  }

  /** END-OF-MESSAGE: preq on a message without content (the protocol carries none). */
  private async preq(inst: Instance, _attrs: Map<string, string>, log: Logger): Promise<string> {
    const txn = inst.state.txn;
    if (txn === null) return MALFORMED;
    const draft = this.ctx.newDraft([], [], Buffer.alloc(0));
    return this.outcome(inst, await decideStage(this.ctx.env, inst.state, log, 'preq', NORMAL_REPLY.queued(txn.id), draft));
  }

  private outcome(inst: Instance, result: StageResult): string {
    const { applied, verdict } = result;
    if (!applied.accept && applied.close) inst.refusal = applied.reply;
    return actionFor(applied.accept ? null : applied.reply, applied.effective === 'quarantine' ? (applied.quarantine ?? verdict.quarantine ?? 'quarantine') : null, applied.effective);
  }
}

/** What Postfix may have learnt since the instance's first request (SASL login, TLS, HELO). */
function updateSession(state: DecisionState, attrs: Map<string, string>): void {
  const s = state.session;
  const user = attrs.get('sasl_username') ?? '';
  s.auth = user === '' ? null : { mechanism: (attrs.get('sasl_method') || 'unknown').toUpperCase(), authid: user };
  const protocol = attrs.get('encryption_protocol') ?? '';
  s.tls = protocol === '' ? null : { protocol, cipher: attrs.get('encryption_cipher') ?? '' };
  s.esmtp = (attrs.get('protocol_name') ?? 'ESMTP').toUpperCase() !== 'SMTP';
}

/**
 * The `action=` value: a refusal with the policy's code, HOLD for a
 * quarantine, OK for an accept, else DUNNO (let Postfix's other restrictions decide).
 */
export function actionFor(refusal: Reply | null, quarantine: string | null, effective?: string): string {
  if (refusal !== null) {
    const text = refusal.lines.join(' ').trim();
    const enhanced = refusal.enhanced === '' ? '' : `${refusal.enhanced} `;
    if (refusal.code >= 400 && refusal.code < 500) return `DEFER_IF_PERMIT ${enhanced}${text}`;
    return `${refusal.code} ${enhanced}${text}`;
  }
  if (quarantine !== null) return `HOLD ${quarantine}`;
  if (effective === 'accept' || effective === 'faccept') return 'OK';
  return 'DUNNO';
}
