// THE stage machine (SPEC §3.3, §5.2–§5.7): every front (SMTP, milter,
// Postfix policy service), `mta explain`, `mta test` and the queue decide a
// stage here, and nowhere else. Read top to bottom, one stage is:
//
//   remembered status (SPEC §5.4)   → or run the stage's rules
//   relay guard at rcpt (SPEC §5.6) → for a recipient the stage left at `next`
//   status → reply / disposition    → src/policy/apply.ts before the queue,
//                                      afterQueueAction() below after it
//   effects                          → applied by the caller's target only when
//                                      the command took effect
//   remember, log                    → here
//
// Before queueing the caller is a front: it sends `applied.reply` and acts on
// `applied.close`/`accept`. After queueing the caller is the queue runner
// (src/delivery/message-run.ts): it performs the AfterQueueAction.

import type { Logger } from 'pino';
import { logStageDecision } from '../log/logger.js';
import { applyVerdict, type Applied, type FrontStage } from './apply.js';
import { relayGuardVerdict, type RelayGuardConfig } from './relay-guard.js';
import { addressText, type AfterQueueAction, type AfterQueueDecision, type RememberedAfterQueue, type Remembered, type Reply, type Session, type StageEffect, type StageOutcome, type StageRunner, type Transaction, type Verdict } from '../mail/types.js';
import { runStage, type StageExtra } from './credentials.js';
import { applyEffects } from './front-effects.js';
import type { EditableMessage } from '../mail/effects.js';
import { replyText } from '../mail/reply.js';

/** One decision as made, for `mta explain` (the same fields the log line has, plus the trace and effects). */
export interface DecisionRecord {
  stage: FrontStage | AfterQueueStage;
  /** The recipient under evaluation at rcpt. */
  recipient: string | null;
  /** The transaction (= queue) id, from mail on. */
  messageId: string | null;
  verdict: Verdict;
  effects: StageEffect[];
  /** What the status amounted to (`accept` with a 5xx reply is a `reject`). */
  status: Applied['effective'];
  reply: string;
}

export type DecisionObserver = (d: DecisionRecord) => void;

/** What the stage machine needs from the front that calls it. */
export interface StageMachineEnv {
  runner: StageRunner;
  /** The current settings (a reload swaps them): the relay guard and `vsl.error_status`. */
  settings(): { relay: RelayGuardConfig; errorStatus: 'tempfail' | 'deny' };
  /** Sees every decision (mta explain); the front passes it through. */
  observe?: DecisionObserver;
}

/** The session and transaction a front keeps; a stage reads and updates them. */
export interface DecisionState {
  session: Session;
  txn: Transaction | null;
  /** From:/To: edits made before DATA, applied to the message at end of DATA. */
  txx?: { messageEdits: StageEffect[] } | null;
}

/** The part of a logger the decision line needs (pino's, or the queue's SpoolLogger). */
export interface StageLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface StageResult {
  applied: Applied;
  verdict: Verdict;
  /** The effects the stage asked for (applied to the state only when `applied.accept`). */
  effects: StageEffect[];
}

// ------------------------------------------------------------ remembered statuses

/**
 * The status remembered for a stage (SPEC §5.4): session statuses from
 * connect/helo apply from helo on, transaction statuses from mail/rcpt to
 * the end of the transaction. The authenticate stage always runs.
 */
export function rememberedFor(stage: FrontStage, state: DecisionState): Remembered | null {
  if (stage === 'connect' || stage === 'authenticate') return null;
  if (state.session.remembered !== null) return state.session.remembered;
  if (stage === 'rcpt' || stage === 'preq') return state.txn?.remembered ?? null;
  return null;
}

export function rememberedVerdict(r: Remembered): Verdict {
  const v: Verdict = { status: r.kind, reply: null, rule: r.rule, at: r.at, source: 'remembered', trace: [] };
  if (r.quarantine !== undefined) v.quarantine = r.quarantine;
  return v;
}

function storeRemembered(stage: FrontStage, state: DecisionState, r: Remembered): void {
  if (stage === 'connect' || stage === 'helo') state.session.remembered = r;
  else if (state.txn !== null) state.txn.remembered = r;
}

/** A stage that could not be evaluated at all (the runner threw): handled as a rule error (SPEC §5.7). */
function failedVerdict(err: unknown): Verdict {
  return { status: 'next', reply: null, rule: null, at: null, source: 'error', error: err instanceof Error ? err.message : String(err), trace: [] };
}

async function runRules(runner: StageRunner, stage: FrontStage, state: DecisionState, message: EditableMessage | null, extra: StageExtra | undefined): Promise<StageOutcome> {
  try {
    return await runStage(runner, stage, state.session, state.txn, message, extra);
  } catch (err) {
    return { verdict: failedVerdict(err), effects: [] };
  }
}

// ------------------------------------------------------------ the relay guard

/**
 * SPEC §5.6: a recipient whose rcpt stage ended in `next` (from the rules, no
 * rules, or a remembered faccept/quarantine) goes through the guard unless a
 * relay control cleared it during the stage. An explicit accept, faccept or
 * quarantine from a rule takes the recipient without it; a refusal or an
 * error stands as it is.
 */
function guardRecipient(env: StageMachineEnv, state: DecisionState, outcome: StageOutcome): StageOutcome {
  const v = outcome.verdict;
  if (v.source === 'error' || v.error !== undefined) return outcome;
  const endsInNext = v.status === 'next' || (v.source === 'remembered' && v.status !== 'deny');
  if (!endsInNext) return outcome;
  if (v.source !== 'remembered' && outcome.effects.some((e) => e.kind === 'relay_cleared')) return outcome;
  const rcpt = state.txn?.currentRcpt;
  if (rcpt === null || rcpt === undefined) throw new Error('rcpt stage without a current recipient');
  const guard = relayGuardVerdict(state.session, rcpt, env.settings().relay);
  if (guard.status !== 'next') return { verdict: { ...guard, trace: v.trace }, effects: [] };
  // The guard lets the recipient through: a remembered status still applies;
  // otherwise the guard is what decided, after the rules' trace.
  return v.source === 'remembered' ? outcome : { verdict: { ...guard, trace: v.trace }, effects: outcome.effects };
}

// ------------------------------------------------------------ before the queue

/**
 * Decides `stage` for a front and applies the result to `state`. `normal`
 * is the stage's own success reply; `message` the message from preq on;
 * `extra` carries the AUTH credentials at authenticate.
 */
export async function decideStage(env: StageMachineEnv, state: DecisionState, log: Logger, stage: FrontStage, normal: Reply, message: EditableMessage | null = null, extra?: StageExtra): Promise<StageResult> {
  const remembered = rememberedFor(stage, state);
  let outcome: StageOutcome = remembered !== null
    ? { verdict: rememberedVerdict(remembered), effects: [] }
    : await runRules(env.runner, stage, state, message, extra);
  if (stage === 'rcpt') outcome = guardRecipient(env, state, outcome);
  const { verdict, effects } = outcome;

  const applied = applyVerdict(stage, verdict, { errorStatus: env.settings().errorStatus, normal });
  if (applied.accept && effects.length > 0) {
    applyEffects(effects, { stage, session: state.session, txn: state.txn, draft: message, deferredMessageEdits: state.txx?.messageEdits ?? null }, log);
  }
  if (applied.remember !== null) storeRemembered(stage, state, applied.remember);
  const reply = replyText(applied.reply);
  logDecision(log, stage, state, verdict, applied.effective, reply);
  env.observe?.({ stage, recipient: stage === 'rcpt' && state.txn?.currentRcpt ? addressText(state.txn.currentRcpt) : null, messageId: state.txn?.id ?? null, verdict, effects, status: applied.effective, reply });
  return { applied, verdict, effects };
}

// ------------------------------------------------------------ after the queue

export type AfterQueueStage = 'postq' | 'delivery';

export type AfterQueueResult = AfterQueueDecision;

function byWhom(v: Verdict): string {
  return v.rule ? `rule "${v.rule}"${v.at ? ` (${v.at})` : ''}` : v.source;
}

/** SPEC §5.3: a post-queue verdict, as the queue acts on it. */
export function afterQueueAction(stage: AfterQueueStage, v: Verdict, errorStatus: 'tempfail' | 'deny'): AfterQueueAction {
  if (v.source === 'error' || v.error !== undefined) return { kind: 'failed', why: v.error ?? 'rule error', toDead: errorStatus === 'deny' };
  const reply = v.reply ? ` ${replyText(v.reply)}` : '';
  const refusedByCode = v.reply !== null && v.reply.code >= 400 && (v.status === 'accept' || v.status === 'faccept' || v.status === 'next');
  if (v.status === 'deny' || v.status === 'reject' || v.status === 'info' || refusedByCode) {
    return { kind: 'dead', reason: `${v.status} at ${stage} by ${byWhom(v)}${reply}` };
  }
  if (v.status === 'quarantine') {
    if (!v.quarantine) return { kind: 'failed', why: 'quarantine status without a name', toDead: false };
    return { kind: 'quarantine', name: v.quarantine };
  }
  return { kind: 'continue', skipDelivery: stage === 'postq' && v.status === 'faccept' };
}

/**
 * What the statuses remembered before queueing do to a queued message
 * (SPEC §5.4): deny → dead/, quarantine → its quarantine, faccept → the
 * post-queue stages are skipped.
 */
export function rememberedAfterQueue(session: Remembered | null | undefined, txn: Remembered | null | undefined): RememberedAfterQueue | null {
  const all = [txn, session];
  if (all.some((r) => r?.kind === 'deny')) return { kind: 'deny' };
  const q = all.find((r) => r?.kind === 'quarantine' && r.quarantine);
  if (q) return { kind: 'quarantine', name: q.quarantine! };
  if (all.some((r) => r?.kind === 'faccept')) return { kind: 'faccept' };
  return null;
}

/**
 * Decides a post-queue stage for the queue runner, which performs `action`.
 * `run` evaluates the stage's rules on the queued message; `state` is the
 * queued message's session and transaction, for the log line.
 */
export async function decideAfterQueue(run: () => Promise<StageOutcome>, stage: AfterQueueStage, state: DecisionState, errorStatus: 'tempfail' | 'deny', log: StageLog, observe?: DecisionObserver): Promise<AfterQueueResult> {
  let outcome: StageOutcome;
  try {
    outcome = await run();
  } catch (err) {
    outcome = { verdict: failedVerdict(err), effects: [] };
  }
  const { verdict, effects } = outcome;
  const action = afterQueueAction(stage, verdict, errorStatus);
  const status: Applied['effective'] = action.kind === 'failed' ? 'error' : action.kind === 'dead' && verdict.status !== 'deny' && verdict.status !== 'info' ? 'reject' : verdict.status;
  const reply = verdict.reply ? replyText(verdict.reply) : '';
  logDecision(log, stage, state, verdict, status, reply);
  observe?.({ stage, recipient: null, messageId: state.txn?.id ?? null, verdict, effects, status, reply });
  return { verdict, effects, action };
}

// ------------------------------------------------------------ the log line

function logDecision(log: StageLog, stage: FrontStage | AfterQueueStage, state: DecisionState, verdict: Verdict, status: Applied['effective'], reply: string): void {
  const txn = state.txn;
  const decision = {
    stage,
    rule: verdict.rule ?? verdict.source,
    at: verdict.at,
    status,
    reply,
    clientIp: state.session.clientIp,
    helo: state.session.helo,
    sender: txn === null ? null : addressText(txn.mailFrom),
    // Only the rcpt stage decides for one recipient (the front keeps the last one set afterwards).
    recipient: stage === 'rcpt' && txn?.currentRcpt ? addressText(txn.currentRcpt) : null,
    messageId: txn?.id ?? null,
  };
  // logStageDecision uses only info() and error(), which every StageLog has.
  logStageDecision(log as Logger, verdict.error === undefined ? decision : { ...decision, error: verdict.error });
}
