// One QuickJS runtime holding one compiled policy version (SPEC §13).
//
// - Limits: memory (vsl.memory_limit), native stack (64 KiB: larger lets deep
//   recursion overflow the host's stack), script time per directive
//   (vsl.rule_timeout) enforced by the interrupt handler. Time spent waiting
//   for host I/O is not counted: the clock only runs while guest code does.
//   A stage does not report every directive it starts (a host crossing costs
//   more than a simple rule): it reports when `slack` (a tenth of the
//   timeout) has passed since its last report, and the host allows
//   rule_timeout + slack since the last report. So each directive gets at
//   least rule_timeout and at most rule_timeout + slack of script time.
// - Host calls: the guest calls __vsl_host_sync / __vsl_host_async with a
//   built-in name and wire-encoded arguments; async calls return a QuickJS
//   promise that the host settles when its own promise does (no asyncify).
// - Results: runStage reports through __vsl_done; the host decodes and
//   validates the status, never trusting the guest's shape.
// - Errors: guest stack traces are mapped back to vSL file:line:col through
//   the compiler's position marks.
// - Threads: with runSandboxesInThreads(true) (the server), stage
//   evaluations run in worker threads holding copies of this sandbox
//   (thread.ts, at most MAX_THREADS); loading, on_config and exported
//   values stay here.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  newQuickJSWASMModule, RELEASE_SYNC,
  type QuickJSContext, type QuickJSDeferredPromise, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule,
} from 'quickjs-emscripten';
import type { CompiledPolicy } from '../vsl/compiler.js';
import type { Pos } from '../vsl/ast.js';
import { decodeValue, toWire } from '../vsl/values/wire.js';
import { Status, statusFromWire } from '../vsl/values/status.js';
import { encodeContext } from '../vsl/values/context-wire.js';
import type { ContextData } from '../vsl/values/context-wire.js';
import type { Value } from '../vsl/values/value.js';
import { SandboxThread } from './thread.js';
import { answerAsync, answerSync, isWireHost, type GuestError, type HostHandler, type SandboxLimits, type StageRun, type WireHost } from './bridge.js';

/** Must equal GUEST_PROTOCOL in src/vsl/guest/guest-entry.ts (not imported: that module is the guest bundle's entry). */
const GUEST_PROTOCOL = 2;

/** Statuses decoded lately, by wire text: a policy returns the same few (immutable) statuses over and over. */
const decodedStatuses = new Map<string, Status>();
function statusOf(text: string): Status | null {
  let st = decodedStatuses.get(text);
  if (st === undefined) {
    const decoded = statusFromWire(text);
    if (decoded === null) return null;
    if (decodedStatuses.size >= 256) decodedStatuses.clear();
    decodedStatuses.set(text, (st = decoded));
  }
  return st;
}

/** What a directive's trace entry may say. */
const TRACE_KINDS = new Set(['action', 'next', 'accept', 'faccept', 'deny', 'reject', 'info', 'quarantine']);

export const STACK_LIMIT_BYTES = 64 * 1024;

let modulePromise: Promise<QuickJSWASMModule> | null = null;
function quickjs(): Promise<QuickJSWASMModule> {
  modulePromise ??= newQuickJSWASMModule(RELEASE_SYNC);
  return modulePromise;
}

let runtimeSourceCache: string | null = null;
/** The bundled guest runtime (dist/guest/runtime.js, built by `npm run build`). */
export function guestRuntimeSource(): string {
  if (runtimeSourceCache) return runtimeSourceCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'dist', 'guest', 'runtime.js');
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(candidate)) {
      runtimeSourceCache = fs.readFileSync(candidate, 'utf8');
      return runtimeSourceCache;
    }
    dir = path.dirname(dir);
  }
  throw new Error('the guest runtime bundle dist/guest/runtime.js is missing: run "npm run build"');
}

export { answerAsync, answerSync, type GuestError, type HostHandler, type SandboxLimits, type StageRun, type WireHost } from './bridge.js';

interface PendingEval {
  id: number;
  state: unknown;
  resolve: (r: StageRun) => void;
  /** Script time used since the stage last reported a directive start (ms). */
  used: number;
  /** The directive last reported (exact only after asking the guest, see failFromHandle). */
  ruleIndex: number;
  settled: boolean;
}

export class SandboxBrokenError extends Error {}

let threadsOn = false;

/** Worker threads per policy version at most (each holds a copy of the sandbox, up to vsl.memory_limit). */
const MAX_THREADS = 2;

/**
 * Evaluates stages in a worker thread per policy version from now on
 * (thread.ts), so that a long rule does not hold the event loop. The server
 * turns it on; the offline tools (`mta test`, `mta explain`) evaluate inline.
 */
export function runSandboxesInThreads(on: boolean): void {
  threadsOn = on;
}

export class PolicySandbox {
  private readonly rt: QuickJSRuntime;
  private readonly vm: QuickJSContext;
  private readonly vsl: QuickJSHandle;
  private readonly fns: Record<'install' | 'setServer' | 'setLimits' | 'onConfig' | 'init' | 'runStage' | 'ruleOf' | 'exported', QuickJSHandle>;
  /** See the header: how often the guest reports directive starts, and the script time allowed since a report. */
  private readonly slackMs: number;
  private readonly budgetMs: number;
  private readonly evals = new Map<number, PendingEval>();
  /** Guest promises of host I/O still in flight; freed with the runtime (a live handle aborts QuickJS's teardown). */
  private readonly inFlight = new Set<QuickJSDeferredPromise>();
  private nextEvalId = 1;
  /** The evaluation whose guest code is running now (0 = load). */
  private current: PendingEval | null = null;
  private sliceStart = 0;
  private deadline = Infinity;
  private timedOut = false;
  broken = false;
  disposed = false;
  /** Host state for built-ins called at load (file(), services). */
  loadState: unknown = null;
  /** What setServer and a successful init received: a thread's copy is built from them. */
  private serverInfo: unknown = null;
  private initialised: { order: number[]; main: number } | null = null;
  /** The worker threads evaluating this version's stages (see evaluationThread). */
  private readonly threads: SandboxThread[] = [];

  private constructor(
    mod: QuickJSWASMModule,
    private readonly compiled: CompiledPolicy,
    private readonly limits: SandboxLimits,
    private readonly host: HostHandler | WireHost,
  ) {
    this.slackMs = Math.max(1, Math.round(limits.ruleTimeoutMs / 10));
    this.budgetMs = limits.ruleTimeoutMs + this.slackMs;
    this.rt = mod.newRuntime();
    this.rt.setMemoryLimit(limits.memoryBytes);
    this.rt.setMaxStackSize(STACK_LIMIT_BYTES);
    this.rt.setInterruptHandler(() => {
      if (performance.now() > this.deadline) {
        this.timedOut = true;
        return true;
      }
      return false;
    });
    this.vm = this.rt.newContext();
    this.installBridge();
    this.evalScript(guestRuntimeSource(), 'vsl-runtime.js');
    this.vsl = this.vm.getProp(this.vm.global, '$vsl');
    const protocol = this.vm.getProp(this.vsl, 'protocol').consume((h) => (this.vm.typeof(h) === 'number' ? this.vm.getNumber(h) : -1));
    if (protocol !== GUEST_PROTOCOL) {
      this.broken = true;
      this.vsl.dispose();
      this.vm.dispose();
      this.rt.dispose();
      throw new Error(`the guest runtime bundle (dist/guest/runtime.js) speaks protocol ${protocol}, this host ${GUEST_PROTOCOL}: run "npm run build"`);
    }
    this.fns = {
      install: this.vm.getProp(this.vsl, 'install'),
      setServer: this.vm.getProp(this.vsl, 'setServer'),
      onConfig: this.vm.getProp(this.vsl, 'onConfig'),
      init: this.vm.getProp(this.vsl, 'init'),
      runStage: this.vm.getProp(this.vsl, 'runStage'),
      setLimits: this.vm.getProp(this.vsl, 'setLimits'),
      ruleOf: this.vm.getProp(this.vsl, 'ruleOf'),
      exported: this.vm.getProp(this.vsl, 'exported'),
    };
    // Evaluate the policy program and hand it to the runtime.
    const prog = this.evalScript(compiled.js, 'policy.js', true)!;
    this.callGuest(this.fns.install, [prog]);
    prog.dispose();
    this.callGuest(this.fns.setLimits, [JSON.stringify({ reportEveryMs: this.slackMs })]);
    // No dynamic code after load (SPEC §13): drop eval and the Function constructors' reach.
    this.evalScript(
      `(function(){ const F = Function; delete globalThis.eval;
        for (const C of [F, Object.getPrototypeOf(async function(){}).constructor, Object.getPrototypeOf(function*(){}).constructor]) {
          Object.defineProperty(C.prototype, 'constructor', { value: undefined, writable: false, configurable: false });
        }
        delete globalThis.__vsl_host_sync; delete globalThis.__vsl_host_async; delete globalThis.__vsl_rule_start; delete globalThis.__vsl_done;
      })()`, 'lockdown.js');
  }

  static async create(compiled: CompiledPolicy, limits: SandboxLimits, host: HostHandler | WireHost): Promise<PolicySandbox> {
    const mod = await quickjs();
    return new PolicySandbox(mod, compiled, limits, host);
  }

  // ------------------------------------------------------------ bridge

  private installBridge(): void {
    const vm = this.vm;
    const hostSync = vm.newFunction('__vsl_host_sync', (idH, ruleH, nameH, argsH, posH) => {
      const evalId = vm.getNumber(idH);
      const name = vm.getString(nameH);
      const posId = vm.getNumber(posH);
      return vm.newString(this.hostSync(evalId, vm.getNumber(ruleH), name, vm.getString(argsH), posId));
    });
    vm.setProp(vm.global, '__vsl_host_sync', hostSync);
    hostSync.dispose();

    const hostAsync = vm.newFunction('__vsl_host_async', (idH, ruleH, nameH, argsH, posH) => {
      const evalId = vm.getNumber(idH);
      const ruleIndex = vm.getNumber(ruleH);
      const name = vm.getString(nameH);
      const posId = vm.getNumber(posH);
      const argsJson = vm.getString(argsH);
      const deferred = vm.newPromise();
      this.inFlight.add(deferred);
      const pending = this.evals.get(evalId);
      // The I/O wait does not count against the rule's script time: the slice ends here.
      if (pending && pending === this.current) {
        const now = performance.now();
        pending.used += now - this.sliceStart;
        this.sliceStart = now;
      }
      void this.hostAsync(evalId, ruleIndex, name, argsJson, posId).then((answer) => {
        if (this.disposed) return;
        this.inFlight.delete(deferred);
        const s = vm.newString(answer);
        deferred.resolve(s);
        s.dispose();
        deferred.dispose();
        this.resume(evalId);
      });
      return deferred.handle;
    });
    vm.setProp(vm.global, '__vsl_host_async', hostAsync);
    hostAsync.dispose();

    const ruleStart = vm.newFunction('__vsl_rule_start', (idH, indexH) => {
      const p = this.evals.get(vm.getNumber(idH));
      if (!p) return;
      const now = performance.now();
      p.ruleIndex = vm.getNumber(indexH);
      p.used = 0;
      this.sliceStart = now;
      this.deadline = now + this.budgetMs;
    });
    vm.setProp(vm.global, '__vsl_rule_start', ruleStart);
    ruleStart.dispose();

    const done = vm.newFunction('__vsl_done', (idH, jsonH) => {
      const p = this.evals.get(vm.getNumber(idH));
      if (!p || p.settled) return;
      this.settle(p, this.decodeRun(p, vm.getString(jsonH)));
    });
    vm.setProp(vm.global, '__vsl_done', done);
    done.dispose();
  }

  private hostSync(evalId: number, ruleIndex: number, name: string, argsJson: string, posId: number): string {
    const p = this.evals.get(evalId);
    const state = p ? p.state : this.loadState;
    const rule = p ? ruleIndex : -1;
    if (!isWireHost(this.host)) return answerSync(this.host, state, rule, name, argsJson, posId);
    // In a worker thread the answer comes from the main thread, which may be
    // busy with other sessions: that wait is not the script's time.
    const t0 = performance.now();
    try {
      return this.host.wireSync(state, rule, name, argsJson, posId);
    } finally {
      const waited = performance.now() - t0;
      this.deadline += waited;
      this.sliceStart += waited;
    }
  }

  private hostAsync(evalId: number, ruleIndex: number, name: string, argsJson: string, posId: number): Promise<string> {
    const p = this.evals.get(evalId);
    if (isWireHost(this.host)) {
      if (!p) return Promise.resolve(JSON.stringify({ err: `${name}: I/O built-ins cannot run at load` }));
      return this.host.wireAsync(p.state, ruleIndex, name, argsJson, posId);
    }
    return answerAsync(this.host, p ? p.state : null, ruleIndex, name, argsJson, posId);
  }

  // ------------------------------------------------------------ running guest code

  private enter(p: PendingEval | null): void {
    this.current = p;
    this.timedOut = false;
    this.sliceStart = performance.now();
    const used = p ? p.used : 0;
    this.deadline = this.sliceStart + Math.max(0, this.budgetMs - used);
  }

  private leave(): void {
    if (this.current) this.current.used += performance.now() - this.sliceStart;
    this.deadline = Infinity;
    this.current = null;
  }

  private evalScript(code: string, filename: string, keep = false): QuickJSHandle | null {
    this.enter(null);
    this.deadline = performance.now() + Math.max(this.limits.ruleTimeoutMs * 10, 10_000);
    let r;
    try {
      r = this.vm.evalCode(code, filename);
    } catch (e) {
      this.broken = true;
      throw e;
    } finally {
      this.leave();
    }
    if (r.error) {
      const err = this.vm.dump(r.error) as { message?: string; stack?: string };
      r.error.dispose();
      throw new Error(`${filename}: ${err?.message ?? String(err)}\n${err?.stack ?? ''}`);
    }
    if (keep) return r.value;
    r.value.dispose();
    return null;
  }

  /** Calls a guest function at load time; returns the string result. */
  private callGuest(fn: QuickJSHandle, args: Array<QuickJSHandle | string | number>, budgetMs?: number): string | undefined {
    const handles = args.map((a) => (typeof a === 'string' ? this.vm.newString(a) : typeof a === 'number' ? this.vm.newNumber(a) : a));
    this.enter(null);
    this.deadline = performance.now() + (budgetMs ?? Math.max(this.limits.ruleTimeoutMs * 10, 10_000));
    let r;
    try {
      r = this.vm.callFunction(fn, this.vm.undefined, ...handles);
    } catch (e) {
      this.broken = true;
      throw e;
    } finally {
      this.leave();
      handles.forEach((h, i) => { if (typeof args[i] !== 'object') h.dispose(); });
    }
    if (r.error) {
      const err = this.vm.dump(r.error) as { name?: string; message?: string; stack?: string };
      r.error.dispose();
      const mapped = this.mapError(String(err?.message ?? err), String(err?.stack ?? ''), this.timedOut ? 'timeout' : err?.name === 'InternalError' ? 'internal' : null);
      throw new GuestFailure(mapped);
    }
    const v = this.vm.typeof(r.value) === 'string' ? this.vm.getString(r.value) : undefined;
    r.value.dispose();
    return v;
  }

  setServer(info: unknown): void {
    this.callGuest(this.fns.setServer, [JSON.stringify(info)]);
    this.serverInfo = info;
  }

  /** Runs on_config on the default configuration; returns the value it returned. */
  runOnConfig(module: number, key: string, cfg: Value): { ok: true; value: Value } | { ok: false; error: GuestError } {
    const out = this.callGuest(this.fns.onConfig, [module, key, JSON.stringify(toWire(cfg))])!;
    const r = JSON.parse(out) as { ok?: unknown; err?: RawGuestError };
    if (r.err) return { ok: false, error: this.mapError(r.err.message, r.err.stack, r.err.fatal, r.err.posId) };
    return { ok: true, value: decodeValue(JSON.stringify(r.ok ?? null)) };
  }

  /** Runs every module's top-level code in dependency order and builds the stage map. */
  init(order: number[], main: number): { ok: true; stages: Record<string, Array<{ name: string; kind: string; posId: number }>> } | { ok: false; error: InitFailure } {
    const out = this.callGuest(this.fns.init, [JSON.stringify(order), main], Math.max(this.limits.ruleTimeoutMs * 30, 30_000))!;
    const r = JSON.parse(out) as { ok?: Record<string, Array<{ name: string; kind: string; posId: number }>>; err?: RawInitError };
    if (r.err) {
      if (r.err.kind === 'runtime') return { ok: false, error: { kind: 'runtime', error: this.mapError(r.err.error.message, r.err.error.stack, r.err.error.fatal, r.err.error.posId) } };
      return { ok: false, error: r.err };
    }
    this.initialised = { order, main };
    this.startThreads();
    return { ok: true, stages: r.ok! };
  }

  /** The value a module exports under `name` (after init). */
  exported(module: number, name: string): Value {
    const out = this.callGuest(this.fns.exported, [module, name])!;
    const r = JSON.parse(out) as { ok?: unknown; err?: string };
    if (r.err !== undefined) throw new Error(r.err);
    return decodeValue(JSON.stringify(r.ok ?? null));
  }

  /**
   * Evaluates one stage with the given context data (src/vsl/guest/intrinsics.ts
   * ContextData). Directive 0's clock starts here; a stage that needs no I/O
   * completes inside the one guest call (see runStage in guest-entry.ts).
   */
  evaluate(stage: string, context: string | ContextData, state: unknown): Promise<StageRun> {
    if (this.broken || this.disposed) return Promise.reject(new SandboxBrokenError('sandbox is not usable'));
    const thread = this.evaluationThread();
    if (thread !== null) {
      return thread.evaluate(stage, context, state).then((run) => {
        // A fault in the thread's copy: the version rebuilds the sandbox, as after a fault here.
        if (thread.broken) this.broken = true;
        return run;
      });
    }
    // The guest gets the compact form (src/vsl/runtime/context-wire.ts); a caller holding the
    // ContextData object may pass it and save a JSON round trip.
    const contextWire = encodeContext(typeof context === 'string' ? JSON.parse(context) as ContextData : context);
    const id = this.nextEvalId++;
    return new Promise<StageRun>((resolve) => {
      const p: PendingEval = { id, state, resolve, used: 0, ruleIndex: 0, settled: false };
      this.evals.set(id, p);
      // One argument: every handle crossing costs (see runStage for the layout).
      const argH = this.vm.newString(`${id}\u0001${stage}\u0001${contextWire}`);
      this.enter(p);
      let r;
      let result: string | undefined;
      try {
        r = this.vm.callFunction(this.fns.runStage, this.vm.undefined, argH);
        if (!r.error) {
          if (this.vm.typeof(r.value) === 'string') result = this.vm.getString(r.value);
          r.value.dispose();
          // A stage that finished at once queued no jobs; one waiting for I/O may have.
          if (result === undefined) this.drainJobs(p);
        }
      } catch (e) {
        this.fault(e);
        return;
      } finally {
        this.leave();
        argH.dispose();
      }
      if (r.error) this.failFromHandle(p, r.error);
      else if (result !== undefined) this.settle(p, this.decodeRun(p, result));
      // Otherwise the stage waits for I/O and reports through __vsl_done.
    });
  }

  /**
   * With threads on, MAX_THREADS worker threads start as soon as the policy
   * has initialised here (so a new version's threads load while the reload
   * finishes, not on the path of its first session).
   */
  private startThreads(): void {
    if (!threadsOn || this.initialised === null || isWireHost(this.host) || this.threads.length > 0) return;
    const setup = {
      compiled: { js: this.compiled.js, positions: this.compiled.positions, lineMarks: this.compiled.lineMarks },
      limits: this.limits,
      serverInfo: this.serverInfo,
      order: this.initialised.order,
      main: this.initialised.main,
    };
    for (let i = 0; i < MAX_THREADS; i++) this.threads.push(new SandboxThread(setup, this.host, () => this.loadState));
  }

  /**
   * The worker thread to evaluate the next stage in (thread.ts), or null:
   * evaluate on this thread (threads off, or this is a thread's copy). An
   * idle loaded thread is preferred, so one long rule holds neither the
   * main thread nor the evaluations of other sessions.
   */
  private evaluationThread(): SandboxThread | null {
    this.startThreads();
    if (this.threads.length === 0) return null;
    const idle = this.threads.find((t) => t.started && t.computing === 0);
    if (idle) return idle;
    // Every loaded one is busy, or none has loaded yet: the least loaded, preferring loaded ones.
    return this.threads.reduce((a, b) => (b.computing < a.computing || (b.started && !a.started) ? b : a));
  }

  /** Continues an evaluation after one of its host promises settled. */
  private resume(evalId: number): void {
    const p = this.evals.get(evalId);
    if (!p || p.settled) {
      // Still run jobs so the QuickJS promise machinery does not accumulate.
      if (!this.broken && !this.disposed) this.drainJobs(null);
      return;
    }
    this.enter(p);
    try {
      this.drainJobs(p);
    } catch (e) {
      this.fault(e);
    } finally {
      this.leave();
    }
  }

  private drainJobs(p: PendingEval | null): void {
    for (;;) {
      const r = this.rt.executePendingJobs();
      if (r.error) {
        if (p && !p.settled) this.failFromHandle(p, r.error);
        else r.error.dispose();
        continue;
      }
      const n = r.value;
      if (n === 0) break;
    }
  }

  private failFromHandle(p: PendingEval, h: QuickJSHandle): void {
    const err = this.vm.dump(h) as { name?: string; message?: string; stack?: string };
    h.dispose();
    const msg = String(err?.message ?? err);
    const fatal = this.timedOut ? 'timeout' : /out of memory/.test(msg) ? 'memory' : /stack overflow/.test(msg) ? 'stack' : 'internal';
    const mapped = this.mapError(fatal === 'timeout' ? `timeout: the rule ran longer than ${this.limits.ruleTimeoutMs} ms` : msg, String(err?.stack ?? ''), fatal);
    this.settle(p, { ok: false, index: this.failedRule(p), error: mapped, trace: [] });
  }

  /** The directive an uncatchable failure hit: the guest knows; the last report is the fallback. */
  private failedRule(p: PendingEval): number {
    const deadline = this.deadline;
    this.deadline = Infinity; // the interrupt that caused the failure must not stop this question
    const idH = this.vm.newNumber(p.id);
    try {
      const r = this.vm.callFunction(this.fns.ruleOf, this.vm.undefined, idH);
      if (r.error) {
        r.error.dispose();
        return p.ruleIndex;
      }
      const index = r.value.consume((h) => this.vm.getNumber(h));
      return index >= 0 ? index : p.ruleIndex;
    } catch {
      return p.ruleIndex;
    } finally {
      idH.dispose();
      this.deadline = deadline;
    }
  }

  /** A WebAssembly fault: this runtime is discarded (SPEC §13); pending evaluations fail. */
  private fault(e: unknown): void {
    this.broken = true;
    for (const p of this.evals.values()) {
      if (!p.settled) {
        this.settle(p, { ok: false, index: p.ruleIndex, error: { message: `sandbox fault: ${(e as Error).message}`, at: null, chain: [], fatal: 'internal' }, trace: [] });
      }
    }
  }

  private settle(p: PendingEval, run: StageRun): void {
    if (p.settled) return;
    p.settled = true;
    this.evals.delete(p.id);
    p.resolve(run);
  }

  /** Decodes runStage's result (format in guest-entry.ts), trusting nothing but what it validates. */
  private decodeRun(p: PendingEval, text: string): StageRun {
    const invalid = (what: string): StageRun => ({ ok: false, index: p.ruleIndex, error: { message: `invalid result from the sandbox: ${what}`, at: null, chain: [], fatal: 'internal' }, trace: [] });
    const traceOf = (kinds: string[], ms: number[]) => kinds.map((kind, index) => ({ index, kind, ms: Number.isFinite(ms[index]) ? ms[index]! : 0 }));
    if (text.startsWith('e')) {
      let raw: { index: number; error: RawGuestError; trace: string[]; ms: number[] };
      try {
        raw = JSON.parse(text.slice(1)) as typeof raw;
      } catch {
        return invalid('not JSON');
      }
      if (!Array.isArray(raw.trace) || raw.trace.some((k) => !TRACE_KINDS.has(k))) return invalid('bad trace');
      const message = raw.error.fatal === 'timeout' ? `timeout: the rule ran longer than ${this.limits.ruleTimeoutMs} ms` : raw.error.message;
      return { ok: false, index: raw.index, error: this.mapError(message, raw.error.stack, raw.error.fatal, raw.error.posId), trace: traceOf(raw.trace, raw.ms ?? []) };
    }
    const parts = text.slice(1).split('\u0001');
    if (!text.startsWith('o') || parts.length !== 4) return invalid('bad shape');
    const index = Number(parts[0]);
    const kinds = parts[1] === '' ? [] : parts[1]!.split(',');
    const ms = parts[3] === '' ? [] : parts[3]!.split(',').map(Number);
    if (!Number.isInteger(index) || index < -1 || kinds.some((k) => !TRACE_KINDS.has(k))) return invalid('bad trace');
    let status: Status | null = null;
    if (parts[2] !== '') {
      status = statusOf(parts[2]!);
      if (!status) return invalid('not a status');
    }
    return { ok: true, index, status, trace: traceOf(kinds, ms) };
  }

  // ------------------------------------------------------------ positions

  /**
   * Maps a guest stack trace to vSL positions (innermost first). A failing
   * built-in's own call position (`posId`) comes first: after an I/O wait
   * the guest stack no longer reaches the script.
   */
  mapError(message: string, stack: string, fatal: string | null, posId?: number): GuestError {
    const chain: Pos[] = [];
    const re = /policy\.js:(\d+):(\d+)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(stack)) !== null) {
      const pos = this.positionAt(Number(m[1]), Number(m[2]));
      if (pos) chain.push(pos);
    }
    const call = posId !== undefined ? this.posOf(posId) : null;
    if (call && !(chain[0] && samePos(chain[0], call))) chain.unshift(call);
    return { message, at: chain[0] ?? null, chain, fatal };
  }

  positionAt(line: number, col: number): Pos | null {
    const marks = this.compiled.lineMarks;
    for (let l = line - 1; l >= 0 && l >= line - 50; l--) {
      const lm = marks[l];
      if (!lm || lm.length === 0) continue;
      let best: [number, number] | null = null;
      for (const mk of lm) {
        if (l < line - 1 || mk[0] <= col) best = mk;
      }
      if (best) return this.compiled.positions[best[1]] ?? null;
    }
    return null;
  }

  posOf(posId: number): Pos | null {
    return posId >= 0 ? this.compiled.positions[posId] ?? null : null;
  }

  get pendingEvaluations(): number {
    return this.evals.size + this.threads.reduce((n, t) => n + t.pendingEvaluations, 0);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.threads) t.dispose();
    for (const p of this.evals.values()) {
      if (!p.settled) this.settle(p, { ok: false, index: p.ruleIndex, error: { message: 'policy unloaded', at: null, chain: [], fatal: 'internal' }, trace: [] });
    }
    try {
      for (const d of this.inFlight) d.dispose();
      this.inFlight.clear();
      for (const h of Object.values(this.fns)) h.dispose();
      this.vsl.dispose();
      this.vm.dispose();
      this.rt.dispose();
    } catch {
      // A faulted runtime may not dispose cleanly; it is unreachable either way.
    }
  }
}

function samePos(a: Pos, b: Pos): boolean {
  return a.file === b.file && a.line === b.line && a.col === b.col;
}

/** An error as the guest describes it (src/vsl/guest/guest-entry.ts describe()). */
interface RawGuestError {
  message: string;
  stack: string;
  fatal: string | null;
  posId?: number;
}

export type RawInitError =
  | { kind: 'runtime'; error: RawGuestError }
  | { kind: 'not_map'; type: string }
  | { kind: 'unknown_stage'; key: string }
  | { kind: 'not_array'; key: string; type: string }
  | { kind: 'bad_element'; key: string; type: string }
  | { kind: 'duplicate'; name: string; posId: number; firstPosId: number };

export type InitFailure = Exclude<RawInitError, { kind: 'runtime' }> | { kind: 'runtime'; error: GuestError };

export class GuestFailure extends Error {
  constructor(readonly error: GuestError) {
    super(error.message);
  }
}
