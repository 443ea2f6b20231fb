// THE stage machine (SPEC §3.3, §5.4, §5.6): every front (SMTP, milter,
// Postfix policy service), `mta explain` and `mta test` decide a stage here.
// It decides whether rules run at all (a remembered status, the relay
// guard), calls the runner, turns its verdict into the reply
// (src/policy/apply.ts), applies its effects when the command took effect,
// remembers what has to be remembered, and logs the decision.

import type { Logger } from 'pino';
import { logStageDecision } from '../log/logger.js';
import { applyVerdict, type Applied, type FrontStage } from './apply.js';
import { relayGuardVerdict, type RelayGuardConfig } from './relay-guard.js';
import { addressText, type Remembered, type Reply, type Session, type StageEffect, type StageRunner, type Transaction, type Verdict } from './types.js';
import { runStage, type StageExtra } from '../smtp/credentials.js';
import { applyEffects } from '../smtp/effects.js';
import type { MessageDraft } from '../smtp/message.js';
import { replyText } from '../smtp/replies.js';

/** What the stage machine needs from the front that calls it. */
export interface StageMachineEnv {
  runner: StageRunner;
  /** The current settings (a reload swaps them): the relay guard and `vsl.error_status`. */
  settings(): { relay: RelayGuardConfig; errorStatus: 'tempfail' | 'deny' };
}

/** The session and transaction a front keeps; a stage reads and updates them. */
export interface DecisionState {
  session: Session;
  txn: Transaction | null;
  /** From:/To: edits made before DATA, applied to the message at end of DATA. */
  txx?: { messageEdits: StageEffect[] } | null;
}

export interface StageResult {
  applied: Applied;
  verdict: Verdict;
}

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

/** A stage that could not be evaluated at all (the runner threw): handled as a rule error (SPEC §5.7). */
function failedVerdict(err: unknown): Verdict {
  return { status: 'next', reply: null, rule: null, at: null, source: 'error', error: err instanceof Error ? err.message : String(err), trace: [] };
}

async function decide(ctx: StageMachineEnv, state: DecisionState, stage: FrontStage, message: MessageDraft | null, extra: StageExtra | undefined): Promise<{ verdict: Verdict; effects: StageEffect[] }> {
  const remembered = rememberedFor(stage, state);
  if (stage === 'rcpt' && !ctx.runner.hasRules('rcpt')) {
    // No rcpt directives: the built-in guard decides, and remembered statuses do not bypass it (SPEC §5.6).
    const rcpt = state.txn?.currentRcpt;
    if (rcpt === null || rcpt === undefined) throw new Error('rcpt stage without a current recipient');
    const guard = relayGuardVerdict(state.session, rcpt, ctx.settings().relay);
    if (guard.status === 'next' && remembered !== null) return { verdict: rememberedVerdict(remembered), effects: [] };
    return { verdict: guard, effects: [] };
  }
  if (remembered !== null) return { verdict: rememberedVerdict(remembered), effects: [] };
  try {
    const outcome = await runStage(ctx.runner, stage, state.session, state.txn, message, extra);
    return { verdict: outcome.verdict, effects: outcome.effects };
  } catch (err) {
    return { verdict: failedVerdict(err), effects: [] };
  }
}

function storeRemembered(stage: FrontStage, state: DecisionState, r: Remembered): void {
  if (stage === 'connect' || stage === 'helo') state.session.remembered = r;
  else if (state.txn !== null) state.txn.remembered = r;
}

/**
 * Runs `stage` and applies its verdict. `normal` is the stage's own success
 * reply; `extra` carries the AUTH credentials at authenticate. The caller
 * sends `applied.reply` and acts on `applied.close` and `applied.accept`.
 */
export async function decideStage(ctx: StageMachineEnv, state: DecisionState, log: Logger, stage: FrontStage, normal: Reply, message: MessageDraft | null = null, extra?: StageExtra): Promise<StageResult> {
  const { verdict, effects } = await decide(ctx, state, stage, message, extra);
  const applied = applyVerdict(stage, verdict, { errorStatus: ctx.settings().errorStatus, normal });
  if (applied.accept && effects.length > 0) {
    applyEffects(effects, { stage, session: state.session, txn: state.txn, draft: message, deferredMessageEdits: state.txx?.messageEdits ?? null }, log);
  }
  if (applied.remember !== null) storeRemembered(stage, state, applied.remember);
  const txn = state.txn;
  const decision = {
    stage,
    rule: verdict.rule ?? verdict.source,
    at: verdict.at,
    status: applied.effective,
    reply: replyText(applied.reply),
    clientIp: state.session.clientIp,
    helo: state.session.helo,
    sender: txn === null ? null : addressText(txn.mailFrom),
    recipient: txn?.currentRcpt ? addressText(txn.currentRcpt) : null,
    messageId: txn?.id ?? null,
  };
  logStageDecision(log, verdict.error === undefined ? decision : { ...decision, error: verdict.error });
  return { applied, verdict };
}
