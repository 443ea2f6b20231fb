// Hot reload (SPEC §12): holds the current policy version, watches every file
// it was built from (main.vsl, imports, data files, TLS files), recompiles in
// the background on change, and swaps atomically on success. A failed reload
// keeps the last good version and logs the diagnostics exactly as
// `mta check` prints them.
//
// Transactions pin the version current at their MAIL (SPEC §12). Superseded
// versions stay available to them for a grace period, then are disposed; a
// transaction whose version is gone continues on the current one.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { loadPolicy, type ConfigOverrides, type LoadOptions, type PolicyVersion } from '../policy/load.js';
import { formatDiagnostic } from '../vsl/diagnostics.js';
import { RESTART_KEYS, type Config } from '../config/schema.js';

export interface ReloadOutcome {
  ok: boolean;
  version: string;
  ms: number;
  diagnostics: string[];
}

export interface PolicyManagerOptions {
  mainPath: string;
  overrides: ConfigOverrides;
  load: Omit<LoadOptions, 'overrides'>;
  log: Logger;
  /** How long a superseded version stays available to pinned transactions. */
  graceMs?: number;
  debounceMs?: number;
  /** Extra files to watch besides the policy's own (TLS certificate and key). */
  extraFiles?: (config: Config) => string[];
  /** Called after each successful swap. */
  onSwap?: (next: PolicyVersion, previous: PolicyVersion) => void;
}

export class PolicyManager {
  private currentVersion: PolicyVersion;
  private readonly retired = new Map<string, { version: PolicyVersion; timer: NodeJS.Timeout }>();
  private watchers: fs.FSWatcher[] = [];
  private watched = new Map<string, string>(); // path -> content hash
  private debounce: NodeJS.Timeout | null = null;
  private reloading: Promise<ReloadOutcome> | null = null;
  private again = false;
  private closed = false;
  private extraSeen = '';
  private readonly swapListeners: Array<(next: PolicyVersion, previous: PolicyVersion) => void> = [];
  private readonly reloadListeners: Array<(outcome: ReloadOutcome) => void> = [];

  private constructor(
    private readonly opts: PolicyManagerOptions,
    first: PolicyVersion,
  ) {
    this.currentVersion = first;
  }

  /** Loads the first version; throws with the formatted diagnostics when it does not load. */
  static async start(opts: PolicyManagerOptions): Promise<PolicyManager> {
    const r = await loadPolicy(opts.mainPath, { ...opts.load, overrides: opts.overrides });
    if (!r.ok) {
      const text = r.diagnostics.map((d) => formatDiagnostic(d, r.sources.get(d.pos.file))).join('\n');
      throw new PolicyLoadError(text);
    }
    for (const w of r.version.warnings) opts.log.warn({ at: `${w.pos.file}:${w.pos.line}:${w.pos.col}` }, w.message);
    const m = new PolicyManager(opts, r.version);
    return m;
  }

  current(): PolicyVersion {
    return this.currentVersion;
  }

  /**
   * Called after each successful swap (the front re-reads TLS files and
   * settings), and with next === previous when only the extra files (the
   * TLS certificate or key) changed: the policy is the same, the files are not.
   */
  onSwap(fn: (next: PolicyVersion, previous: PolicyVersion) => void): void {
    this.swapListeners.push(fn);
  }

  /** Calls `fn` after every reload, failed ones included (the metrics count them). */
  onReload(fn: (outcome: ReloadOutcome) => void): void {
    this.reloadListeners.push(fn);
  }

  private reported(outcome: ReloadOutcome): ReloadOutcome {
    for (const fn of this.reloadListeners) fn(outcome);
    return outcome;
  }

  byId(id: string): PolicyVersion | undefined {
    if (this.currentVersion.id === id) return this.currentVersion;
    return this.retired.get(id)?.version;
  }

  /** Starts watching the policy's files (debounced, rename-safe). */
  watch(): void {
    this.rewatch();
  }

  private filesToWatch(): string[] {
    const v = this.currentVersion;
    const extra = this.opts.extraFiles ? this.opts.extraFiles(v.config) : [];
    return [...new Set([...v.files, ...v.bridge.runtimeDataFiles, ...extra])];
  }

  /** Content hash of the extra files (TLS), to notice a change the policy id does not cover. */
  private extraHash(): string {
    const extra = this.opts.extraFiles ? this.opts.extraFiles(this.currentVersion.config) : [];
    return extra.map((f) => hashFile(f)).join(',');
  }

  /**
   * `loaded`: the hashes taken just before the load that produced the current
   * version. Recording those, not a fresh read, means a change made while
   * the load ran is still seen as a change afterwards.
   */
  private rewatch(loaded?: Map<string, string>): void {
    this.extraSeen = this.extraHash();
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.watched.clear();
    const dirs = new Map<string, Set<string>>();
    for (const f of this.filesToWatch()) {
      this.watched.set(f, loaded?.get(f) ?? hashFile(f));
      const d = path.dirname(f);
      if (!dirs.has(d)) dirs.set(d, new Set());
      dirs.get(d)!.add(path.basename(f));
    }
    // Watching directories, not files: editors that save by writing a new
    // file and renaming it over the old one replace the inode a file watch
    // would be attached to.
    for (const [dir, names] of dirs) {
      try {
        const w = fs.watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(String(name))) this.schedule();
        });
        w.on('error', () => this.schedule());
        this.watchers.push(w);
      } catch (e) {
        this.opts.log.warn({ dir, err: (e as Error).message }, 'cannot watch directory; use SIGHUP to reload');
      }
    }
  }

  /**
   * After a reload: a file that changed while the load ran may have had its
   * event swallowed (the watchers were replaced, or the event loop was busy
   * compiling); compare with the hashes of what was loaded and check again.
   */
  private recheck(): void {
    if (this.closed || this.watchers.length === 0) return;
    if ([...this.watched].some(([f, h]) => hashFile(f) !== h)) this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      // Compare by content hash: touching a file or a no-op save does nothing.
      const changed = [...this.watched].some(([f, h]) => hashFile(f) !== h);
      if (changed) void this.reload('file change');
    }, this.opts.debounceMs ?? 200);
  }

  /** Reloads now (SIGHUP, or a detected change). Concurrent requests coalesce. */
  reload(reason = 'signal'): Promise<ReloadOutcome> {
    if (this.reloading) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = this.doReload(reason).then((o) => this.reported(o)).finally(() => {
      this.reloading = null;
      if (this.again && !this.closed) {
        this.again = false;
        void this.reload(reason);
      }
    });
    return this.reloading;
  }

  private async doReload(reason: string): Promise<ReloadOutcome> {
    const t0 = performance.now();
    const log = this.opts.log;
    // The files as they are now, before the load reads them (see rewatch).
    const before = new Map([...this.watched.keys()].map((f) => [f, hashFile(f)] as const));
    const r = await loadPolicy(this.opts.mainPath, { ...this.opts.load, overrides: this.opts.overrides });
    const ms = Math.round(performance.now() - t0);
    if (!r.ok) {
      const diagnostics = r.diagnostics.filter((d) => d.severity === 'error').map((d) => formatDiagnostic(d, r.sources.get(d.pos.file)));
      for (const d of r.diagnostics.filter((x) => x.severity === 'error')) {
        log.error({ reload: 'failed', at: `${d.pos.file}:${d.pos.line}:${d.pos.col}`, diagnostic: formatDiagnostic(d, r.sources.get(d.pos.file)) },
          `reload failed, keeping policy ${this.currentVersion.id}: ${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.message}`);
      }
      log.warn({ reload: 'failed', version: this.currentVersion.id, ms, reason }, 'policy reload failed; the previous version stays in force');
      // Keep watching, so fixing the file triggers the next reload. A file
      // caught half-written by an in-place save is reloaded once complete.
      this.refreshHashes(before);
      this.recheck();
      return { ok: false, version: this.currentVersion.id, ms, diagnostics };
    }
    const next = r.version;
    const prev = this.currentVersion;
    keepRestartKeys(prev.config, next.config, log);
    if (next.id === prev.id) {
      next.dispose();
      this.refreshHashes(before);
      const extra = this.extraHash();
      if (extra !== this.extraSeen) {
        // The version id covers the policy and its data files, not the TLS
        // files: a new certificate alone must still reach the listeners.
        this.extraSeen = extra;
        log.info({ reload: 'tls', version: prev.id, ms, reason }, 'policy unchanged; TLS files changed and are re-read');
        this.opts.onSwap?.(prev, prev);
        for (const fn of this.swapListeners) fn(prev, prev);
        this.recheck();
        return { ok: true, version: prev.id, ms, diagnostics: [] };
      }
      log.info({ reload: 'unchanged', version: prev.id, ms, reason }, 'policy unchanged');
      this.recheck();
      return { ok: true, version: prev.id, ms, diagnostics: [] };
    }
    this.currentVersion = next;
    this.retire(prev);
    for (const w of next.warnings) log.warn({ at: `${w.pos.file}:${w.pos.line}:${w.pos.col}` }, w.message);
    log.info({ reload: 'ok', version: next.id, previous: prev.id, ms, reason }, `policy ${next.id} loaded in ${ms} ms`);
    this.opts.onSwap?.(next, prev);
    for (const fn of this.swapListeners) fn(next, prev);
    this.rewatch(before);
    this.recheck();
    return { ok: true, version: next.id, ms, diagnostics: [] };
  }

  private refreshHashes(loaded: Map<string, string>): void {
    for (const f of this.watched.keys()) this.watched.set(f, loaded.get(f) ?? hashFile(f));
  }

  private retire(v: PolicyVersion): void {
    const grace = this.opts.graceMs ?? 10 * 60_000;
    const timer = setTimeout(() => {
      this.retired.delete(v.id);
      v.dispose();
    }, grace);
    timer.unref();
    this.retired.set(v.id, { version: v, timer });
  }

  close(): void {
    this.closed = true;
    if (this.debounce) clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    for (const { version, timer } of this.retired.values()) {
      clearTimeout(timer);
      version.dispose();
    }
    this.retired.clear();
    this.currentVersion.dispose();
  }
}

export class PolicyLoadError extends Error {}

function hashFile(f: string): string {
  try {
    return crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  } catch {
    return 'missing';
  }
}

/** Keys marked R in SPEC §9.2 keep their old value on reload; a change is logged. */
function keepRestartKeys(prev: Config, next: Config, log: Logger): void {
  for (const key of RESTART_KEYS) {
    const parts = key.split('.');
    let a: Record<string, unknown> = prev as unknown as Record<string, unknown>;
    let b: Record<string, unknown> = next as unknown as Record<string, unknown>;
    for (let i = 0; i < parts.length - 1; i++) {
      a = a[parts[i]!] as Record<string, unknown>;
      b = b[parts[i]!] as Record<string, unknown>;
    }
    const last = parts[parts.length - 1]!;
    if (JSON.stringify(a[last]) !== JSON.stringify(b[last])) {
      log.warn({ key, running: a[last], wanted: b[last] }, `${key} changed: it needs a restart; the running value stays`);
      b[last] = a[last];
    }
  }
}
