// The queue manager: decides which messages are due and runs a MessageRun
// for each, within the delivery concurrency limits.
//
// It claims a message only by renaming it (deferred/ → active/), owns
// active/, and learns about work in three ways: its own spool's 'enqueued'
// events (messages accepted by this process), a rescan of active/ and
// deferred/ every `scanIntervalMs` (messages from other writer processes,
// and `mta queue retry/release` renames: noticed within that interval, at
// most 10 s, SPEC §11.5), and its in-memory index of deferred messages and
// their next attempt times.
//
// On Linux a watch on active/ (inotify) also wakes it as soon as another
// process renames a message in, so the scan is only the safety net.
//
// Time comes from the injected Clock. The production loop (start) uses real
// timers to wake up; tests drive it with `runDue()` and a manual clock, so
// they never sleep through a backoff.

import { type FSWatcher, promises as fs, watch } from 'node:fs';
import path from 'node:path';
import type { Clock, Resolver } from '../host/ports.js';
import { systemClock } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import { ACTIVE, CorruptMessageError, DEFERRED, type Place, type Spool, type SpoolLogger } from '../queue/spool.js';
import { errCode } from '../queue/durable.js';
import { isQueueId } from '../queue/id.js';
import { deliveryTimeouts, MessageRun, type AfterQueueStages, type RunResult } from './message-run.js';
import { AliasFiles } from './aliases.js';
import { expireDead } from './dead-expiry.js';
import { DeliveryPool } from './pool.js';
import { type ChooseTransport, defaultOnly } from './recipient-transport.js';

export type { AfterQueueStages } from './message-run.js';

export interface SchedulerOptions {
  spool: Spool;
  /** The current configuration (read at each pass, so a reload applies). */
  config: () => Config;
  resolver: Resolver;
  /** The policy's postq / delivery stages (wired by the server: src/policy/after-queue.ts). */
  stages: AfterQueueStages;
  clock?: Clock;
  log?: SpoolLogger;
  /** Randomness for retry jitter and MX tie order (tests pass () => 0). */
  random?: () => number;
  /** Port for MX delivery; default: delivery.mx_port of the configuration (25). */
  mxPort?: number;
  /** Rescan of the spool directories (default 5 s; SPEC §11.5 asks for ≤ 10 s). */
  scanIntervalMs?: number;
  /** Idle time of an outgoing connection waiting for another message (default 1 s). */
  idleMs?: number;
  /** Messages processed at once (default max(16, 2 × delivery.concurrency)). */
  maxInFlight?: number;
  /** The transport of recipients the server adds (DSNs): the rcpt rules' choice (default: delivery.default). */
  chooseTransport?: ChooseTransport;
  /** The policy's directory: relative alias file names are relative to it (default: the working directory). */
  policyDir?: string;
  /** Extra trust anchors for verified outgoing TLS. */
  tlsCa?: import('node:tls').SecureContextOptions['ca'];
  /** Record deliveries instead of making them (mta explain, differential tests). */
  capture?: import('./message-run.js').DeliveryCapture;
}

/** Back-off for a message whose pass threw unexpectedly (I/O error): it is retried, not spun on. */
const ERROR_COOLDOWN_MS = 60_000;
/** Stray `.eml` collection interval. */
const STRAY_INTERVAL_MS = 10 * 60_000;

export class Scheduler {
  readonly pool: DeliveryPool;
  private readonly clock: Clock;
  private readonly log: SpoolLogger;
  private readonly random: () => number;
  private readonly scanIntervalMs: number;
  /** Ids known to be in active/ and not being processed. */
  private readonly ready = new Set<string>();
  /** Deferred ids → next attempt (ms). */
  private readonly deferredIndex = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly cooldown = new Map<string, number>();
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private lastScan = 0;
  private lastStrayCollection = 0;
  private scanning: Promise<void> | null = null;
  private watcher: FSWatcher | null = null;
  private pumpQueued = false;
  private readonly aliasFiles: AliasFiles;
  private readonly onEnqueued = (id: string, place: Place) => {
    if (place.kind !== 'active') return;
    this.ready.add(id);
    if (this.running) this.pump();
  };

  constructor(private readonly opts: SchedulerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? { info() {}, warn() {}, error() {} };
    this.random = opts.random ?? Math.random;
    this.scanIntervalMs = Math.min(opts.scanIntervalMs ?? 5000, 10_000);
    this.aliasFiles = new AliasFiles((file, w) => this.log.warn({ file, line: w.line }, `aliases: ${file}:${w.line}: ${w.message}`), opts.policyDir);
    const cfg = opts.config();
    this.pool = new DeliveryPool({
      concurrency: cfg.delivery.concurrency,
      perDestination: cfg.delivery.concurrency_per_destination,
      idleMs: opts.idleMs ?? 1000,
      settings: () => {
        const c = opts.config();
        const t = deliveryTimeouts(c);
        return { heloName: c.server.name, timeoutMs: t.timeoutMs, connectTimeoutMs: t.connectTimeoutMs, ca: opts.tlsCa };
      },
      onConnectFailure: (dest, ep, err) =>
        this.log.warn({ destination: dest, host: ep.hostname, ip: ep.ip, port: ep.port, error: err.message }, `delivery: cannot use ${ep.hostname} [${ep.ip}]:${ep.port}: ${err.message}`),
    });
    opts.spool.on('enqueued', this.onEnqueued);
  }

  /** Messages being processed right now. */
  get busy(): number {
    return this.inFlight.size;
  }

  /** Deferred messages known, with their next attempt (ms). */
  deferred(): Map<string, number> {
    return new Map(this.deferredIndex);
  }

  /**
   * Crash recovery (Spool.recover) and indexing of what is queued: active/
   * messages become ready, deferred/ ones are indexed by next attempt.
   */
  async recover(): Promise<void> {
    const report = await this.opts.spool.recover();
    for (const id of report.active) this.ready.add(id);
    for (const d of report.deferred) this.deferredIndex.set(d.id, d.nextAttempt);
    this.lastScan = this.clock.now();
    this.lastStrayCollection = this.clock.now();
    await this.expireDead();
  }

  /** Removes what stayed in dead/ longer than queue.dead_max_age. */
  expireDead(): Promise<number> {
    return expireDead(this.opts.spool, this.opts.config(), this.clock.now(), this.log);
  }

  /** Takes the spool's scheduler lock, recovers, and starts delivering. */
  async start(): Promise<void> {
    await this.opts.spool.lockScheduler();
    try {
      await this.recover();
    } catch (err) {
      await this.opts.spool.unlockScheduler();
      throw err;
    }
    this.running = true;
    this.watchActive();
    this.pump();
    this.arm();
  }

  /** Wakes up when another process renames a message into active/ (best effort; scans cover the rest). */
  private watchActive(): void {
    const dir = this.opts.spool.dirOf(ACTIVE);
    try {
      this.watcher = watch(dir, (_event, name) => {
        const file = name?.toString() ?? '';
        if (!file.endsWith('.json')) return;
        const id = file.slice(0, -5);
        if (!isQueueId(id) || this.inFlight.has(id) || this.ready.has(id)) return;
        void fs.access(path.join(dir, file)).then(
          () => {
            if (!this.running || this.inFlight.has(id)) return;
            this.ready.add(id);
            this.pumpSoon();
          },
          () => undefined,
        );
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null;
    }
  }

  private pumpSoon(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      if (this.running) {
        this.pump();
        this.arm();
      }
    });
  }

  /** Stops starting new work, waits for messages in progress, closes connections. */
  async stop(): Promise<void> {
    this.running = false;
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.opts.spool.off('enqueued', this.onEnqueued);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight.values()]);
    if (this.scanning) await this.scanning.catch(() => undefined);
    await this.pool.close();
    await this.opts.spool.unlockScheduler();
  }

  /**
   * Re-reads active/ and deferred/: picks up messages other processes put
   * there (other writers, `mta queue retry` / `release`) and forgets those
   * that left (`mta queue remove`).
   */
  async scan(): Promise<void> {
    if (this.scanning) return this.scanning;
    this.scanning = this.doScan().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  private async doScan(): Promise<void> {
    const spool = this.opts.spool;
    this.lastScan = this.clock.now();
    const active = new Set(await spool.list(ACTIVE));
    for (const id of active) if (!this.inFlight.has(id)) this.ready.add(id);
    for (const id of this.ready) if (!active.has(id)) this.ready.delete(id);
    const deferred = new Set(await spool.list(DEFERRED));
    for (const id of this.deferredIndex.keys()) if (!deferred.has(id)) this.deferredIndex.delete(id);
    for (const id of deferred) {
      if (this.deferredIndex.has(id) || this.inFlight.has(id)) continue;
      try {
        const r = await spool.readRecord(DEFERRED, id);
        this.deferredIndex.set(id, r.next_attempt ? Date.parse(r.next_attempt) : this.clock.now());
      } catch (err) {
        if (err instanceof CorruptMessageError) await spool.moveAside(DEFERRED, id, err.message);
        else if (errCode(err) !== 'ENOENT') throw err;
      }
    }
    if (this.clock.now() - this.lastStrayCollection >= STRAY_INTERVAL_MS) {
      this.lastStrayCollection = this.clock.now();
      await spool.sweep();
      await this.expireDead();
    }
  }

  private capacity(): number {
    return this.opts.maxInFlight ?? Math.max(16, 2 * this.opts.config().delivery.concurrency);
  }

  /** Starts every due message there is room for; returns how many it started. */
  pump(): number {
    const now = this.clock.now();
    let started = 0;
    for (const [id, until] of this.cooldown) if (until <= now) this.cooldown.delete(id);
    for (const id of [...this.ready]) {
      if (this.inFlight.size >= this.capacity()) return started;
      if (this.inFlight.has(id) || this.cooldown.has(id)) continue;
      this.ready.delete(id);
      this.launch(id, false);
      started++;
    }
    const due = [...this.deferredIndex].filter(([, t]) => t <= now).sort((a, b) => a[1] - b[1]);
    for (const [id] of due) {
      if (this.inFlight.size >= this.capacity()) return started;
      if (this.inFlight.has(id) || this.cooldown.has(id)) continue;
      this.deferredIndex.delete(id);
      this.launch(id, true);
      started++;
    }
    return started;
  }

  private launch(id: string, fromDeferred: boolean): void {
    const p = this.process(id, fromDeferred)
      .catch((err) => {
        this.log.error({ queue_id: id, error: (err as Error).message }, `queue: ${id}: delivery pass failed: ${(err as Error).message}`);
        this.cooldown.set(id, this.clock.now() + ERROR_COOLDOWN_MS);
        // Wherever it is now, a later scan will find it again.
      })
      .finally(() => {
        this.inFlight.delete(id);
        if (this.running) {
          this.pump();
          this.arm();
        }
      });
    this.inFlight.set(id, p);
  }

  private async process(id: string, fromDeferred: boolean): Promise<void> {
    const spool = this.opts.spool;
    if (fromDeferred && !(await spool.move(id, DEFERRED, ACTIVE))) return; // taken or removed by someone else
    let loaded;
    try {
      loaded = await spool.read(ACTIVE, id);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return;
      if (err instanceof CorruptMessageError) {
        await spool.moveAside(ACTIVE, id, err.message);
        return;
      }
      throw err;
    }
    const cfg = this.opts.config();
    const run = new MessageRun(
      {
        spool,
        cfg,
        clock: this.clock,
        log: this.log,
        random: this.random,
        stages: this.opts.stages,
        pool: this.pool,
        capture: this.opts.capture,
        resolver: this.opts.resolver,
        mxPort: this.opts.mxPort ?? cfg.delivery.mx_port,
        chooseTransport: this.opts.chooseTransport ?? defaultOnly,
        aliases: () => this.aliasFiles.tables(cfg),
      },
      loaded.record,
      loaded.message,
    );
    const result: RunResult = await run.run();
    if (result.place === 'deferred') this.deferredIndex.set(id, result.nextAttempt);
  }

  /**
   * Processes everything due now, including what that produces (DSNs),
   * and returns when nothing due is left and nothing is in flight.
   */
  async runDue(): Promise<void> {
    for (let rounds = 0; rounds < 100_000; rounds++) {
      this.pump();
      if (this.inFlight.size === 0) return;
      await Promise.race(this.inFlight.values());
    }
  }

  /** Arms the wake-up timer for the next due message or scan. */
  private arm(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    const now = this.clock.now();
    let wake = this.lastScan + this.scanIntervalMs;
    // When full, completions call pump(); otherwise wake for the next due
    // message that is not cooling down after an error.
    if (this.inFlight.size < this.capacity()) {
      for (const [id, t] of this.deferredIndex) if (!this.inFlight.has(id)) wake = Math.min(wake, Math.max(t, this.cooldown.get(id) ?? 0));
      for (const id of this.ready) if (!this.inFlight.has(id)) wake = Math.min(wake, this.cooldown.get(id) ?? now);
    }
    const delay = Math.max(0, Math.min(wake - now, this.scanIntervalMs));
    this.timer = setTimeout(() => void this.tick(), delay);
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (!this.running) return;
    try {
      if (this.clock.now() - this.lastScan >= this.scanIntervalMs) await this.scan();
    } catch (err) {
      this.log.error({ error: (err as Error).message }, `queue: scan failed: ${(err as Error).message}`);
    }
    if (!this.running) return;
    this.pump();
    this.arm();
  }
}
