// TEST DOUBLE of the policy engine's StageRunner (src/mail/types.ts): no
// vSL, no sandbox — each stage's verdicts are scripted by the test. It lets
// the SMTP front be tested alone; the end-to-end tests with the real policy
// engine are separate.
//
//   const runner = new FakeRunner({
//     connect: accept('220 hello there'),                 // every call
//     rcpt: [next(), reject('550 5.1.1 no such user')],   // in turn; the last repeats
//     authenticate: (call) => (call.credentials?.authpass === 'secret' ? accept() : next()),
//   });
//
// A stage "has rules" (hasRules) exactly when the script names it, unless
// `rules` says otherwise. Every call is recorded (stage, copies of the
// session and transaction, the message headers) for assertions.

import type { MessageView } from '../../src/mail/types.js';
import type { Reply, Session, Stage, StageEffect, StageOutcome, StageRunner, StatusKind, Transaction, Verdict } from '../../src/mail/types.js';
import type { AuthCredentials, StageExtra } from '../../src/policy/credentials.js';

export interface RunCall {
  stage: Stage;
  session: Session;
  txn: Transaction | null;
  message: MessageView | null;
  /** The AUTH credentials as the runner sees them during the authenticate stage. */
  credentials: AuthCredentials | null;
}

export type Scripted = Verdict | StageOutcome;
export type StageScript = Scripted | Scripted[] | ((call: RunCall) => Scripted | Promise<Scripted>);

export interface RecordedCall {
  stage: Stage;
  session: Session;
  txn: Transaction | null;
  headers: Array<{ name: string; value: string }> | null;
  raw: string | null;
  /** Copy of the credentials at the time of the call (authpass included). */
  credentials: AuthCredentials | null;
}

/** `"550 5.7.1 text"` (or `"250 ok"`) as a Reply. */
export function reply(text: string): Reply {
  const m = /^(\d{3})(?: (\d\.\d{1,3}\.\d{1,3}))?(?: (.*))?$/s.exec(text);
  if (m === null) throw new Error(`bad reply text '${text}'`);
  return { code: Number(m[1]), enhanced: m[2] ?? '', lines: (m[3] ?? '').split('\n') };
}

function verdict(status: StatusKind, code?: string, extra: Partial<Verdict> = {}): Verdict {
  return { status, reply: code === undefined ? null : reply(code), rule: `fake ${status}`, at: 'fake.vsl:1:1', source: 'rules', trace: [], ...extra };
}

export const next = (): Verdict => verdict('next');
export const accept = (code?: string): Verdict => verdict('accept', code);
export const faccept = (code?: string): Verdict => verdict('faccept', code);
export const deny = (code?: string): Verdict => verdict('deny', code);
export const reject = (code?: string): Verdict => verdict('reject', code);
export const info = (code: string): Verdict => verdict('info', code);
export const quarantine = (name: string): Verdict => verdict('quarantine', undefined, { quarantine: name });
/** A rule that failed (SPEC §5.7): what the runner returns for an uncaught error. */
export const ruleError = (message = 'boom (fake.vsl:1:1)'): Verdict => verdict('next', undefined, { source: 'error', error: message, rule: 'fake error' });
/** A verdict with effects. */
export const withEffects = (v: Verdict, effects: StageEffect[]): StageOutcome => ({ verdict: v, effects });

function isOutcome(s: Scripted): s is StageOutcome {
  return (s as StageOutcome).verdict !== undefined;
}

export class FakeRunner implements StageRunner {
  readonly calls: RecordedCall[] = [];
  private readonly counters = new Map<Stage, number>();

  constructor(
    private readonly script: Partial<Record<Stage, StageScript>> = {},
    private readonly rules?: readonly Stage[],
  ) {}

  hasRules(stage: Stage): boolean {
    return this.rules !== undefined ? this.rules.includes(stage) : this.script[stage] !== undefined;
  }

  /** Calls recorded for one stage. */
  callsOf(stage: Stage): RecordedCall[] {
    return this.calls.filter((c) => c.stage === stage);
  }

  /** `extra.credentials` as the policy runner takes them (src/policy/credentials.ts). */
  async run(stage: Stage, session: Session, txn: Transaction | null, message?: MessageView | null, extra?: StageExtra): Promise<StageOutcome> {
    const credentials = extra?.credentials ?? null;
    this.calls.push({
      stage,
      session: structuredClone(session),
      txn: txn === null ? null : structuredClone(txn),
      headers: message ? message.headers().map((h) => ({ name: h.name, value: h.value })) : null,
      raw: message ? message.raw().toString('utf8') : null,
      credentials: credentials === null ? null : { ...credentials },
    });
    const entry = this.script[stage];
    let scripted: Scripted;
    if (entry === undefined) scripted = next();
    else if (typeof entry === 'function') scripted = await entry({ stage, session, txn, message: message ?? null, credentials });
    else if (Array.isArray(entry)) {
      const n = this.counters.get(stage) ?? 0;
      this.counters.set(stage, n + 1);
      scripted = entry[Math.min(n, entry.length - 1)]!;
    } else scripted = entry;
    return isOutcome(scripted) ? scripted : { verdict: scripted, effects: [] };
  }
}
