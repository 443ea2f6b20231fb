// What every connection of one SMTP front shares: the services it calls
// (runner, sink, logger, clock), the current settings, and the registry of
// live connections that the connection limits and the graceful stop use.

import type { Logger } from 'pino';
import type { Clock } from '../host/ports.js';
import type { ListenerKind, StageRunner } from '../mail/types.js';
import type { Settings } from './settings.js';
import type { AuthAttemptGate, SlotGate } from './shared-limits.js';
import type { MessageSink } from './sink.js';

/**
 * Cross-session AUTH accounting: a FailureTracker (src/builtins/auth/failures.ts)
 * in one process, the primary's over IPC with worker processes (shared-limits.ts).
 */
export type AuthFailureTracker = AuthAttemptGate;

export interface FrontContext {
  /** Current settings; a reload swaps them. */
  settings(): Settings;
  runner: StageRunner;
  sink: MessageSink;
  log: Logger;
  clock: Clock;
  /** Cross-session AUTH failures per client; null: only `attempts_max` per session applies. */
  authFailures: AuthFailureTracker | null;
  /** A new transaction (= queue) id. */
  newId(): string;
  registry: ConnectionRegistry;
  /** Connection slots, server-wide (client-slots.ts; the primary's with worker processes). */
  slots: SlotGate;
  /** Whether a certificate is loaded (STARTTLS offered, implicit TLS possible). */
  tlsAvailable(): boolean;
  /** Sees every stage decision (mta explain); see src/policy/stage-machine.ts. */
  observe?: import('../policy/stage-machine.js').DecisionObserver;
}

export interface ListenerContext {
  kind: ListenerKind;
  front: FrontContext;
}

/** What the registry needs from a connection. */
export interface Tracked {
  readonly clientIp: string;
  /** Graceful stop: finish the current transaction, then `421 4.3.2` and close. */
  requestShutdown(): void;
  /** End of the grace period: `421 4.3.2` and close now. */
  forceShutdown(): void;
}

/** Live connections of this front, for the graceful stop (the limits are `slots`). */
export class ConnectionRegistry {
  private readonly all = new Set<Tracked>();
  private readonly perIp = new Map<string, number>();
  private readonly waiters: Array<() => void> = [];

  /** Registers a connection; returns the counts including it. */
  add(c: Tracked): { total: number; sameIp: number } {
    this.all.add(c);
    const n = (this.perIp.get(c.clientIp) ?? 0) + 1;
    this.perIp.set(c.clientIp, n);
    return { total: this.all.size, sameIp: n };
  }

  remove(c: Tracked): void {
    if (!this.all.delete(c)) return;
    const n = (this.perIp.get(c.clientIp) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(c.clientIp);
    else this.perIp.set(c.clientIp, n);
    if (this.all.size === 0) for (const w of this.waiters.splice(0)) w();
  }

  get size(): number {
    return this.all.size;
  }

  countFor(ip: string): number {
    return this.perIp.get(ip) ?? 0;
  }

  forEach(fn: (c: Tracked) => void): void {
    for (const c of [...this.all]) fn(c);
  }

  /** Resolves once no connection is left. */
  whenEmpty(): Promise<void> {
    if (this.all.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
