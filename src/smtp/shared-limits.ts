// Server-wide connection slots and AUTH attempt counts when worker processes
// share the listeners (`mta run --workers N`, src/cli/run.ts). The tables
// (client-slots.ts, src/builtins/auth/failures.ts) live in the primary
// process; each worker asks it over the cluster IPC channel:
//
//   worker                                   primary (serveSharedLimits)
//   slot-acquire {client, limits}   ──▶      ClientSlots.acquire → {ok …}
//   slot-release {client}           ──▶      (no answer)
//   auth-blocked {ip, options}      ──▶      FailureTracker.isBlocked
//   auth-begin {ip, options}        ──▶      FailureTracker.begin → {token, delayMs} | null
//   auth-end {token, outcome}       ──▶      (no answer)
//
// A worker that exits (or is killed) gives back everything it held. A
// question the primary does not answer within REQUEST_TIMEOUT_MS, or asked
// while the channel is down, rejects: the caller fails closed (421 for a
// connection, 454 for AUTH). In one process (`--workers 0`, the tests) the
// same tables are used directly (localLimits).

import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { createFailureTracker, type AuthOutcome, type AuthTicket, type FailureTracker, type FailureTrackerOptions } from '../builtins/auth/failures.js';
import { ClientSlots, type SlotAnswer, type SlotLimits } from './client-slots.js';

/** Connection slots as the front uses them. */
export interface SlotGate {
  acquire(client: string, limits: SlotLimits): Promise<SlotAnswer>;
  release(client: string): void;
}

/** Cross-session AUTH accounting as the front uses it (a FailureTracker in one process). */
export interface AuthAttemptGate {
  isBlocked(ip: string): boolean | Promise<boolean>;
  begin(ip: string): AuthTicket | null | Promise<AuthTicket | null>;
}

const MESSAGE_TAG = 'vsl-mta:limits';
export const REQUEST_TIMEOUT_MS = 2000;

type TrackerOptions = Pick<FailureTrackerOptions, 'windowMs' | 'maxFailures'>;

type Request =
  | { op: 'slot-acquire'; id: number; client: string; limits: SlotLimits }
  | { op: 'slot-release'; client: string }
  | { op: 'auth-blocked'; id: number; ip: string; options: TrackerOptions }
  | { op: 'auth-begin'; id: number; ip: string; options: TrackerOptions }
  | { op: 'auth-end'; token: number; outcome: AuthOutcome };

/** A question that gets an answer, before its id is given. */
type Question = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

interface Reply {
  tag: typeof MESSAGE_TAG;
  id: number;
  result: unknown;
}

/** Slots in this process. */
export function localSlots(): SlotGate {
  const slots = new ClientSlots();
  return {
    acquire: async (client, limits) => slots.acquire(client, limits),
    release: (client) => slots.release(client),
  };
}

// ---------------------------------------------------------------- worker side

/** A worker's view of the primary's tables, over process.send. */
export class PrimaryLink implements SlotGate, AuthAttemptGate {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly onMessage = (m: unknown): void => {
    const r = m as Partial<Reply> | null;
    if (r === null || typeof r !== 'object' || r.tag !== MESSAGE_TAG || typeof r.id !== 'number') return;
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    p.resolve(r.result);
  };

  constructor(
    /** The AUTH failure options of the current configuration. */
    private readonly authOptions: () => TrackerOptions,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    process.on('message', this.onMessage);
  }

  close(): void {
    process.off('message', this.onMessage);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('shared limits: closed'));
    }
    this.pending.clear();
  }

  private post(req: Request): boolean {
    if (!process.send || !process.connected) return false;
    try {
      return process.send({ tag: MESSAGE_TAG, ...req });
    } catch {
      return false;
    }
  }

  private ask<T>(req: Question): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`shared limits: the primary process did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      if (!this.post({ ...req, id } as Request)) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new Error('shared limits: the channel to the primary process is down'));
      }
    });
  }

  acquire(client: string, limits: SlotLimits): Promise<SlotAnswer> {
    return this.ask<SlotAnswer>({ op: 'slot-acquire', client, limits });
  }

  release(client: string): void {
    // Lost only with the channel, and then the primary frees the worker's slots on its exit.
    this.post({ op: 'slot-release', client });
  }

  /** The numbers only: a clock (or anything else) does not survive the channel, the primary uses its own. */
  private options(): TrackerOptions {
    const { windowMs, maxFailures } = this.authOptions();
    return { windowMs, maxFailures };
  }

  isBlocked(ip: string): Promise<boolean> {
    return this.ask<boolean>({ op: 'auth-blocked', ip, options: this.options() });
  }

  async begin(ip: string): Promise<AuthTicket | null> {
    const r = await this.ask<{ token: number; delayMs: number } | null>({ op: 'auth-begin', ip, options: this.options() });
    if (r === null) return null;
    let ended = false;
    return {
      delayMs: r.delayMs,
      end: (outcome) => {
        if (ended) return;
        ended = true;
        this.post({ op: 'auth-end', token: r.token, outcome });
      },
    };
  }
}

// ---------------------------------------------------------------- primary side

/** What one worker holds, given back when it exits. */
interface Holdings {
  slots: Map<string, number>;
  tickets: Map<number, AuthTicket>;
}

/**
 * Answers the workers' questions from the primary's tables, for the life of
 * the process; returns a function that stops listening.
 */
export function serveSharedLimits(log: Logger): () => void {
  const slots = new ClientSlots();
  let tracker: { options: TrackerOptions; tracker: FailureTracker } | null = null;
  let nextToken = 1;
  const byWorker = new Map<number, Holdings>();

  const holdings = (w: Worker): Holdings => {
    let h = byWorker.get(w.id);
    if (!h) byWorker.set(w.id, (h = { slots: new Map(), tickets: new Map() }));
    return h;
  };
  /** The tracker for the options a worker sends; a reload that changes them starts a new table. */
  const trackerFor = (options: TrackerOptions): FailureTracker => {
    if (tracker === null || tracker.options.windowMs !== options.windowMs || tracker.options.maxFailures !== options.maxFailures) {
      tracker = { options, tracker: createFailureTracker({ windowMs: options.windowMs, maxFailures: options.maxFailures }) };
    }
    return tracker.tracker;
  };
  const answer = (w: Worker, id: number, result: unknown): void => {
    if (w.isConnected()) w.send({ tag: MESSAGE_TAG, id, result } satisfies Reply);
  };

  const onMessage = (w: Worker, m: unknown): void => {
    const msg = m as (Request & { tag?: string }) | null;
    if (msg === null || typeof msg !== 'object' || msg.tag !== MESSAGE_TAG) return;
    try {
      handle(w, msg);
    } catch (err) {
      // The worker's question goes unanswered and times out there (fail closed); the primary carries on.
      log.error({ err: (err as Error).message, worker: w.id, op: msg.op }, 'shared limits: bad request from a worker');
    }
  };

  const handle = (w: Worker, msg: Request): void => {
    const h = holdings(w);
    switch (msg.op) {
      case 'slot-acquire': {
        const r = slots.acquire(msg.client, msg.limits);
        if (r.ok) h.slots.set(msg.client, (h.slots.get(msg.client) ?? 0) + 1);
        answer(w, msg.id, r);
        break;
      }
      case 'slot-release': {
        const n = h.slots.get(msg.client) ?? 0;
        if (n === 0) break;
        slots.release(msg.client);
        if (n === 1) h.slots.delete(msg.client);
        else h.slots.set(msg.client, n - 1);
        break;
      }
      case 'auth-blocked':
        answer(w, msg.id, trackerFor(msg.options).isBlocked(msg.ip));
        break;
      case 'auth-begin': {
        const ticket = trackerFor(msg.options).begin(msg.ip);
        if (ticket === null) {
          answer(w, msg.id, null);
          break;
        }
        const token = nextToken++;
        h.tickets.set(token, ticket);
        answer(w, msg.id, { token, delayMs: ticket.delayMs });
        break;
      }
      case 'auth-end': {
        const ticket = h.tickets.get(msg.token);
        h.tickets.delete(msg.token);
        ticket?.end(msg.outcome);
        break;
      }
    }
  };

  const onExit = (w: Worker): void => {
    const h = byWorker.get(w.id);
    byWorker.delete(w.id);
    if (!h) return;
    let freed = 0;
    for (const [client, n] of h.slots) for (let i = 0; i < n; i++, freed++) slots.release(client);
    // A check cut off by the exit is not a failure of the client's.
    for (const t of h.tickets.values()) t.end('abandoned');
    if (freed > 0) log.info({ worker: w.id, slots: freed }, 'worker exited: its connection slots are free again');
  };

  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
  };
}
