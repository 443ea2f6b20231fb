// Running one stage for the SMTP front (SPEC §3.3, §5.4, §5.6): decide
// whether rules run at all (a remembered status, the relay guard), call the
// runner, turn its verdict into the reply (src/policy/apply.ts), apply its
// effects when the command took effect, remember what has to be remembered,
// and log the decision.

import type { Logger } from 'pino';
import { logStageDecision } from '../log/logger.js';
import { applyVerdict, type Applied, type FrontStage } from '../policy/apply.js';
import { relayGuardVerdict } from '../policy/relay-guard.js';
import { addressText, type Remembered, type Reply, type StageEffect, type Verdict } from '../policy/types.js';
import type { FrontContext } from './context.js';
import { runStage, type StageExtra } from './credentials.js';
import { applyEffects } from './effects.js';
import type { MessageDraft } from './message.js';
import { replyText } from './replies.js';
import type { SessionState } from './state.js';

export interface StageResult {
  applied: Applied;
  verdict: Verdict;
}

/**
 * The status remembered for a stage (SPEC §5.4): session statuses from
 * connect/helo apply from helo on, transaction statuses from mail/rcpt to
 * the end of the transaction. The authenticate stage always runs.
 */
export function rememberedFor(stage: FrontStage, state: SessionState): Remembered | null {
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

async function decide(ctx: FrontContext, state: SessionState, stage: FrontStage, message: MessageDraft | null, extra: StageExtra | undefined): Promise<{ verdict: Verdict; effects: StageEffect[] }> {
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

function storeRemembered(stage: FrontStage, state: SessionState, r: Remembered): void {
  if (stage === 'connect' || stage === 'helo') state.session.remembered = r;
  else if (state.txn !== null) state.txn.remembered = r;
}

/**
 * Runs `stage` and applies its verdict. `normal` is the stage's own success
 * reply; `extra` carries the AUTH credentials at authenticate. The caller
 * sends `applied.reply` and acts on `applied.close` and `applied.accept`.
 */
export async function callStage(ctx: FrontContext, state: SessionState, log: Logger, stage: FrontStage, normal: Reply, message: MessageDraft | null = null, extra?: StageExtra): Promise<StageResult> {
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
