// The StageRunner the SMTP front and the queue call: runs one stage of a
// policy version in its sandbox and returns a validated Verdict plus the
// effects the rules recorded (SPEC §3.3, §5.7).

import type { Logger } from 'pino';
import type { MessageView, Session, Stage, StageOutcome, StageRunner, Transaction, Verdict } from '../mail/types.js';
import { toReply } from '../vsl/values/code.js';
import type { ContextData } from '../vsl/values/context-wire.js';
import { RecordingEffects, type EvalState } from './host-bridge.js';
import type { PolicyVersion } from './load.js';

export interface RunnerOptions {
  /** The current policy version (swapped by hot reload). */
  current(): PolicyVersion;
  /** A version by id, while transactions pinned to it are alive (SPEC §12). */
  byId?(id: string): PolicyVersion | undefined;
  log: Logger;
  dryRun?: boolean;
  now?(): number;
  /** Records the script time of each stage evaluation (src/stats.ts). */
  stats?: { recordStage(stage: string, ms: number): void };
}

/** Builds the per-evaluation context the guest reads (src/vsl/values/context-wire.ts ContextData). */
export function contextData(stage: Stage, s: Session, t: Transaction | null, now: number, creds?: ContextData['creds']): ContextData {
  return {
    now,
    session: {
      id: s.id,
      listener: s.listener,
      clientIp: s.clientIp,
      clientPort: s.clientPort,
      serverIp: s.serverIp,
      serverPort: s.serverPort,
      serverName: s.serverName,
      connectedAt: s.connectedAt.getTime(),
      tls: s.tls !== null,
      helo: s.helo,
      auth: s.auth,
    },
    creds: stage === 'authenticate' && creds ? creds : null,
    txn: t
      ? { id: t.id, mailFrom: t.mailFrom, mailAt: t.mailAt.getTime(), rcpts: t.rcpts.map((r) => r.address), current: stage === 'rcpt' ? t.currentRcpt : null }
      : null,
  };
}

/** Per-transaction (or per-session before MAIL) caches: SPF and DKIM results (SPEC §7.9). */
const caches = new WeakMap<object, Map<string, unknown>>();
function cacheFor(key: object): Map<string, unknown> {
  let c = caches.get(key);
  if (!c) caches.set(key, (c = new Map()));
  return c;
}

export class PolicyRunner implements StageRunner {
  constructor(private readonly opts: RunnerOptions) {}

  /** The version a stage runs on: pinned by the transaction from MAIL on, else the current one. */
  versionFor(txn: Transaction | null): PolicyVersion {
    if (txn?.policyVersion && this.opts.byId) {
      const v = this.opts.byId(txn.policyVersion);
      if (v) return v;
    }
    return this.opts.current();
  }

  hasRules(stage: Stage): boolean {
    return this.opts.current().stages[stage].length > 0;
  }

  async run(
    stage: Stage,
    session: Session,
    txn: Transaction | null,
    message?: MessageView | null,
    extra?: { credentials?: { mechanism: string; authid: string; authpass: string } },
  ): Promise<StageOutcome> {
    const version = this.versionFor(txn);
    // A transaction pins the version current at its MAIL (SPEC §12).
    if (txn && stage === 'mail' && !txn.policyVersion) txn.policyVersion = version.id;
    const rules = version.stages[stage];
    if (rules.length === 0) {
      return { verdict: { status: 'next', reply: null, rule: null, at: null, source: 'no rules', trace: [] }, effects: [] };
    }
    const effects = new RecordingEffects();
    const log = this.opts.log;
    const state: EvalState = {
      stage, session, txn, message: message ?? null, effects,
      cache: cacheFor(txn ?? session),
      credentials: extra?.credentials,
      log,
      dryRun: !!this.opts.dryRun,
      rules,
    };
    const ctx = contextData(stage, session, txn, this.opts.now ? this.opts.now() : Date.now(), extra?.credentials ?? null);
    let run;
    const t0 = performance.now();
    try {
      run = await version.evaluate(stage, ctx, state);
      this.opts.stats?.recordStage(stage, performance.now() - t0);
    } catch (e) {
      return { verdict: this.errorVerdict(stage, null, `policy engine unavailable: ${(e as Error).message}`, []), effects: [] };
    }
    const trace = run.trace.map((t) => ({
      rule: rules[t.index]?.name ?? '?',
      at: rules[t.index]?.at ?? '',
      status: t.kind as Verdict['trace'][number]['status'],
      reply: null as Verdict['trace'][number]['reply'],
      ms: t.ms,
    }));
    if (!run.ok) {
      const rule = rules[run.index];
      const where = run.error.at ? `${run.error.at.file}:${run.error.at.line}:${run.error.at.col}` : rule?.at ?? '';
      const reason = run.error.fatal === 'timeout' ? `timeout: the rule ran longer than ${version.config.vsl.rule_timeout}`
        : run.error.fatal === 'memory' ? 'memory limit exceeded'
        : run.error.fatal === 'stack' || run.error.fatal === 'depth' ? run.error.message
        : run.error.message;
      const message = `rule "${rule?.name ?? '?'}" failed at ${stage}: ${reason} (${where})`;
      log.error({
        stage, rule: rule?.name, at: where, chain: run.error.chain.map((p) => `${p.file}:${p.line}:${p.col}`),
        session: session.id, client: session.clientIp, msgid: txn?.id,
      }, message);
      trace.push({ rule: rule?.name ?? '?', at: rule?.at ?? '', status: 'error', reply: null, ms: 0 });
      return { verdict: this.errorVerdict(stage, rule ?? null, message, trace), effects: [] };
    }
    if (!run.status) {
      return { verdict: { status: 'next', reply: null, rule: null, at: null, source: 'rules', trace }, effects: effects.recorded };
    }
    const rule = rules[run.index]!;
    const code = run.status.effectiveCode();
    const reply = code ? toReply(code) : null;
    if (trace.length) trace[trace.length - 1]!.reply = reply;
    const verdict: Verdict = {
      status: run.status.kind,
      reply,
      quarantine: run.status.quarantine,
      rule: rule.name,
      at: rule.at,
      source: 'rules',
      trace,
    };
    return { verdict, effects: effects.recorded };
  }

  private errorVerdict(stage: Stage, rule: { name: string; at: string } | null, message: string, trace: Verdict['trace']): Verdict {
    void stage;
    return { status: 'next', reply: null, rule: rule?.name ?? null, at: rule?.at ?? null, source: 'error', error: message, trace };
  }
}
