// Policy evaluation off the main thread (issue 16 item 10). QuickJS cannot
// be paused and resumed from its interrupt handler, so a rule computing for
// up to `vsl.rule_timeout` used to hold the event loop of the whole process:
// every other session waited (a greeting 1.07 s behind a 1 s rule). Here the
// stage evaluations of a policy version run in a worker thread holding its
// own copy of the sandbox (same compiled policy, same limits, same top-level
// values), while sockets, timers and host built-ins stay on the main thread:
//
//   main thread (SandboxThread)              worker thread (thread-entry.ts)
//   evaluate ── eval {id, stage, ctx} ──▶    PolicySandbox.evaluate
//   HostHandler.callSync ◀── sync {…} ───    guest calls a host built-in:
//     answer on the answer port, notify ─▶     Atomics.wait, then read it
//   HostHandler.callAsync ◀── async {…} ──   guest awaits I/O (thread free)
//     ── async-answer ──────────────────▶     resumes the guest
//   resolve ◀── done {id, run} ──────────    StageRun (status as wire text)
//
// vsl.rule_timeout keeps its meaning (SPEC §5.7): the interrupt handler in
// the thread measures the script's time exactly as before, so a timeout is
// still the same runtime error and 4xx. Time the thread spends waiting for
// the main thread to answer a host call is not counted as script time.
// A version runs two threads and sends an evaluation to an idle one (see
// PolicySandbox.evaluationThread), so one long rule holds neither the main
// thread nor the evaluations of other sessions.

import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { CompiledPolicy } from '../vsl/compiler.js';
import type { ContextData } from '../vsl/values/context-wire.js';
import { Status, statusFromWire } from '../vsl/values/status.js';
import { answerAsync, answerSync, type HostHandler, type SandboxLimits, type StageRun } from './bridge.js';

/** What the thread needs to build its copy of the sandbox. */
export interface ThreadSetup {
  compiled: Pick<CompiledPolicy, 'js' | 'positions' | 'lineMarks'>;
  limits: SandboxLimits;
  serverInfo: unknown;
  order: number[];
  main: number;
}

/** StageRun as it crosses the thread boundary: the status as its wire text. */
export type RunOnWire = (Omit<Extract<StageRun, { ok: true }>, 'status'> & { status: string | null }) | Extract<StageRun, { ok: false }>;

export function runToWire(run: StageRun): RunOnWire {
  if (!run.ok) return run;
  const st = run.status as (Status & { wireText?: string }) | null;
  return { ...run, status: st === null ? null : st.wireText ?? null };
}

function runFromWire(w: RunOnWire): StageRun {
  if (!w.ok) return w;
  if (w.status === null) return { ...w, status: null };
  const status = statusFromWire(w.status);
  if (status === null) return { ok: false, index: w.index, error: { message: 'invalid result from the sandbox thread: not a status', at: null, chain: [], fatal: 'internal' }, trace: w.trace };
  return { ...w, status };
}

/** Messages from the thread. */
export type FromThread =
  | { t: 'ready' }
  | { t: 'failed'; message: string }
  | { t: 'sync'; evalId: number; ruleIndex: number; name: string; argsJson: string; posId: number }
  | { t: 'async'; reqId: number; evalId: number; ruleIndex: number; name: string; argsJson: string; posId: number }
  | { t: 'done'; id: number; run: RunOnWire; broken: boolean };

/** Messages to the thread. */
export type ToThread =
  | { t: 'eval'; id: number; stage: string; context: string | ContextData }
  | { t: 'async-answer'; reqId: number; answer: string };

/** The evaluation id the thread uses for host calls made while loading (top-level code). */
export const LOAD_EVAL_ID = -1;

export interface ThreadData {
  setup: ThreadSetup;
  /** Int32 flag: 1 once the answer to a synchronous host call is on `answers`. */
  flag: SharedArrayBuffer;
  answers: MessagePort;
}

/** A worker running thread-entry; from the sources (tests under tsx) through tsx's loader, which threads do not inherit. */
function startWorker(data: ThreadData, transfer: MessagePort): Worker {
  if (!import.meta.url.endsWith('.ts')) {
    return new Worker(fileURLToPath(new URL('./thread-entry.js', import.meta.url)), { workerData: data, transferList: [transfer] });
  }
  const entry = new URL('./thread-entry.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => m.register()).then(() => import(${JSON.stringify(entry)}))`;
  return new Worker(boot, { eval: true, workerData: data, transferList: [transfer] });
}

function failed(message: string): StageRun {
  return { ok: false, index: 0, error: { message, at: null, chain: [], fatal: 'internal' }, trace: [] };
}

/** One worker thread evaluating the stages of one policy version. */
export class SandboxThread {
  private readonly worker: Worker;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private readonly answers: MessagePort;
  private readonly evals = new Map<number, { state: unknown; resolve: (r: StageRun) => void }>();
  private readonly ready: Promise<void>;
  private nextId = 1;
  /**
   * Pieces of guest work sent and not yet ended: an evaluation or an I/O
   * answer starts one; the guest's next I/O wait or its result ends it. 0:
   * the thread is idle (its evaluations, if any, wait for I/O).
   */
  private work = 0;
  /** The thread's copy of the sandbox is loaded. */
  started = false;
  /** The thread stopped or its sandbox faulted: the version must build a new sandbox (SPEC §13). */
  broken = false;

  constructor(
    setup: ThreadSetup,
    private readonly host: HostHandler,
    private readonly loadState: () => unknown,
  ) {
    const channel = new MessageChannel();
    this.answers = channel.port1;
    const data: ThreadData = { setup, flag: this.flag.buffer as SharedArrayBuffer, answers: channel.port2 };
    this.worker = startWorker(data, channel.port2);
    // Never what keeps the process alive.
    this.worker.unref();
    this.answers.unref();
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    // A rejection nobody awaits yet must not be "unhandled".
    this.ready.catch(() => undefined);
    this.worker.on('message', (m: FromThread) => {
      switch (m.t) {
        case 'ready':
          this.started = true;
          onReady();
          break;
        case 'failed':
          this.stop(`the sandbox thread could not load the policy: ${m.message}`);
          onFail(new Error(m.message));
          break;
        case 'sync':
          this.answerSync(m);
          break;
        case 'async':
          this.workEnded();
          this.answerAsync(m);
          break;
        case 'done': {
          this.workEnded();
          const e = this.evals.get(m.id);
          this.evals.delete(m.id);
          if (m.broken) this.broken = true;
          e?.resolve(runFromWire(m.run));
          break;
        }
      }
    });
    const gone = (why: string): void => {
      this.stop(why);
      onFail(new Error(why));
    };
    this.worker.on('error', (err) => gone(`sandbox thread failed: ${err.message}`));
    this.worker.on('exit', (code) => gone(`sandbox thread exited (${code})`));
  }

  private stateOf(evalId: number): unknown {
    return evalId === LOAD_EVAL_ID ? this.loadState() : this.evals.get(evalId)?.state ?? null;
  }

  private answerSync(m: Extract<FromThread, { t: 'sync' }>): void {
    const answer = answerSync(this.host, this.stateOf(m.evalId), m.ruleIndex, m.name, m.argsJson, m.posId);
    this.answers.postMessage(answer);
    Atomics.store(this.flag, 0, 1);
    Atomics.notify(this.flag, 0);
  }

  private answerAsync(m: Extract<FromThread, { t: 'async' }>): void {
    const state = m.evalId === LOAD_EVAL_ID ? null : this.stateOf(m.evalId);
    void answerAsync(this.host, state, m.ruleIndex, m.name, m.argsJson, m.posId).then((answer) => {
      if (this.broken) return;
      this.work++;
      this.post({ t: 'async-answer', reqId: m.reqId, answer });
    });
  }

  private post(m: ToThread): void {
    this.worker.postMessage(m);
  }

  private workEnded(): void {
    this.work = Math.max(0, this.work - 1);
  }

  /** Whether (and how much) guest code is running or queued in the thread. */
  get computing(): number {
    return this.work;
  }

  evaluate(stage: string, context: string | ContextData, state: unknown): Promise<StageRun> {
    if (this.broken) return Promise.resolve(failed('the sandbox thread is not usable'));
    const id = this.nextId++;
    // Counted from now: while the thread starts, what waits for it is its work too.
    this.work++;
    return new Promise<StageRun>((resolve) => {
      this.evals.set(id, { state, resolve });
      this.ready.then(
        () => this.post({ t: 'eval', id, stage, context }),
        (err: Error) => {
          this.evals.delete(id);
          this.workEnded();
          resolve(failed(`policy engine unavailable: ${err.message}`));
        },
      );
    });
  }

  get pendingEvaluations(): number {
    return this.evals.size;
  }

  /** Fails what is pending and ends the thread. */
  private stop(why: string): void {
    this.broken = true;
    this.work = 0;
    for (const e of this.evals.values()) e.resolve(failed(why));
    this.evals.clear();
    void this.worker.terminate().catch(() => undefined);
  }

  dispose(): void {
    this.stop('policy unloaded');
  }
}
