// Outgoing connections, shared per destination (SPEC §9.2 delivery.*).
//
// A destination is a recipient domain (MX delivery) or a relay target.
// Messages for it are queued here; up to `concurrency_per_destination`
// workers each hold one connection and send queued messages one after the
// other on it, so one connection carries many messages. All workers and
// local deliveries together hold at most `delivery.concurrency` slots. A
// worker with nothing to do lingers briefly for more work, unless someone is
// waiting for a slot. When a destination cannot be reached at all, every
// message waiting for it gets the same answer at once instead of each
// waiting through the same timeouts.

import { RouteError, type RcptResult } from './outcome.js';
import type { Endpoint } from './mx.js';
import { ConnectError, SmtpSession, type TlsMode } from './smtp-client.js';

export interface Destination {
  key: string;
  /** Endpoints to try in order; throws RouteError when there are none. */
  endpoints(): Promise<Endpoint[]>;
  tls: TlsMode;
  auth: { user: string; pass: string } | null;
}

export interface SmtpJob {
  /** Envelope sender as text ('' for the null sender). */
  mailFrom: string;
  rcpts: string[];
  data: Buffer;
}

export interface ConnectSettings {
  heloName: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  ca?: import('node:tls').SecureContextOptions['ca'];
}

export interface PoolOptions {
  concurrency: number;
  perDestination: number;
  /** Read for every new connection, so a reload applies. */
  settings(): ConnectSettings;
  /** How long an idle connection waits for another message (default 1 s). */
  idleMs?: number;
  /** Messages per connection before it is renewed (default 100). */
  maxMessagesPerConnection?: number;
  onConnectFailure?(dest: string, endpoint: Endpoint, err: Error): void;
}

/** Counting semaphore with a hook when someone starts waiting. */
export class Semaphore {
  private free: number;
  private readonly queue: Array<() => void> = [];
  onWait: (() => void) | null = null;

  constructor(size: number) {
    this.free = Math.max(1, size);
  }

  get waiting(): number {
    return this.queue.length;
  }

  async acquire(): Promise<() => void> {
    if (this.free > 0) {
      this.free--;
    } else {
      await new Promise<void>((resolve) => {
        this.queue.push(resolve);
        this.onWait?.();
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    };
  }
}

interface QueuedJob {
  job: SmtpJob;
  resolve(results: RcptResult[]): void;
}

interface DestState {
  dest: Destination;
  jobs: QueuedJob[];
  workers: number;
  /** Lingering workers: call to wake one (true = work arrived, false = leave). */
  idle: Array<(work: boolean) => void>;
}

export class DeliveryPool {
  private readonly dests = new Map<string, DestState>();
  private readonly sem: Semaphore;
  private closed = false;
  private readonly running = new Set<Promise<void>>();
  /** Connections opened (for tests and metrics). */
  connectionsOpened = 0;

  constructor(private readonly opts: PoolOptions) {
    this.sem = new Semaphore(opts.concurrency);
    this.sem.onWait = () => this.dismissIdle();
  }

  /** Queues a message for a destination; resolves with one result per recipient (never rejects). */
  submit(dest: Destination, job: SmtpJob): Promise<RcptResult[]> {
    if (this.closed) return Promise.resolve(job.rcpts.map((a) => new RouteError('451 4.3.2 delivery is shutting down', false, '4.3.2').resultFor(a)));
    let st = this.dests.get(dest.key);
    if (!st) {
      st = { dest, jobs: [], workers: 0, idle: [] };
      this.dests.set(dest.key, st);
    }
    const state = st;
    return new Promise<RcptResult[]>((resolve) => {
      state.jobs.push({ job, resolve });
      const waker = state.idle.shift();
      if (waker) waker(true);
      else if (state.workers < Math.max(1, this.opts.perDestination)) this.spawn(state);
    });
  }

  /** Runs a local delivery within the overall concurrency limit. */
  async runLocal<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.sem.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private spawn(st: DestState): void {
    st.workers++;
    const p = this.work(st).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private dismissIdle(): void {
    for (const st of this.dests.values()) {
      for (const w of st.idle.splice(0)) w(false);
    }
  }

  private linger(st: DestState): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const waker = (work: boolean) => {
        clearTimeout(timer);
        resolve(work);
      };
      const timer = setTimeout(() => {
        st.idle = st.idle.filter((w) => w !== waker);
        resolve(false);
      }, this.opts.idleMs ?? 1000);
      st.idle.push(waker);
    });
  }

  private async connect(dest: Destination): Promise<SmtpSession> {
    const endpoints = await dest.endpoints();
    const s = this.opts.settings();
    const problems: string[] = [];
    for (const ep of endpoints) {
      try {
        const session = await SmtpSession.open({
          ip: ep.ip,
          port: ep.port,
          hostname: ep.hostname,
          tls: dest.tls,
          heloName: s.heloName,
          timeoutMs: s.timeoutMs,
          connectTimeoutMs: s.connectTimeoutMs,
          auth: dest.auth,
          ca: s.ca,
        });
        this.connectionsOpened++;
        return session;
      } catch (err) {
        this.opts.onConnectFailure?.(dest.key, ep, err as Error);
        const reply = err instanceof ConnectError && err.reply ? ` (${err.reply.replace(/\s+/g, ' ').slice(0, 200)})` : '';
        problems.push(`${ep.hostname} [${ep.ip}]:${ep.port}: ${(err as Error).message.split('\n')[0]}${reply}`);
      }
    }
    throw new RouteError(`451 4.4.1 could not deliver to any host for ${dest.key}: ${problems.join('; ') || 'no hosts'}`, false, '4.4.1');
  }

  private async work(st: DestState): Promise<void> {
    const release = await this.sem.acquire();
    let session: SmtpSession | null = null;
    const maxPerConn = this.opts.maxMessagesPerConnection ?? 100;
    try {
      for (;;) {
        let item = st.jobs.shift();
        if (!item) {
          if (this.closed || !session || !session.usable || this.sem.waiting > 0) break;
          if (!(await this.linger(st))) break;
          item = st.jobs.shift();
          if (!item) continue;
        }
        if (session && session.messages > 0 && session.messages < maxPerConn && !(await session.probe())) {
          session = null;
        }
        if (!session || !session.usable || session.messages >= maxPerConn) {
          session?.quit();
          session = null;
          try {
            session = await this.connect(st.dest);
          } catch (err) {
            const routeErr = err instanceof RouteError ? err : new RouteError(`451 4.4.1 ${(err as Error).message}`, false, '4.4.1');
            for (const it of [item, ...st.jobs.splice(0)]) it.resolve(it.job.rcpts.map((a) => routeErr.resultFor(a)));
            break;
          }
        }
        item.resolve(await session.sendMessage(item.job.mailFrom, item.job.rcpts, item.job.data));
      }
    } finally {
      session?.quit();
      st.workers--;
      release();
      if (st.jobs.length > 0 && st.workers === 0 && !this.closed) this.spawn(st);
      else if (st.workers === 0 && st.jobs.length === 0 && this.dests.get(st.dest.key) === st) this.dests.delete(st.dest.key);
    }
  }

  /** Stops lingering connections and waits for the workers to finish their current message. */
  async close(): Promise<void> {
    this.closed = true;
    this.dismissIdle();
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}
