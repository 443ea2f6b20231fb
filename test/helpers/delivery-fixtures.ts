// Fixtures shared by the delivery and queue tests: addresses and a session
// to enqueue with, a stage outcome that changes nothing, a resolver with no
// DNS, a clock that moves only when told to, and a real spool in a temporary
// directory with a Scheduler over it.
//
//   const q = await openDeliveryFixture({ prefix: 'retry-test-', tune: (c) => (c.delivery.default = sink.address) });
//   const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
//   await q.sched.runDue();
//   q.clock.advance(5 * MIN);
//   await q.close();

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Clock } from '../../src/host/ports.js';
import { type Config, defaultConfig } from '../../src/config/schema.js';
import { afterQueueStages } from '../../src/policy/after-queue.js';
import { Scheduler, type SchedulerOptions } from '../../src/delivery/scheduler.js';
import type { MailAddress, Remembered, Session, StageOutcome, Transport } from '../../src/mail/types.js';
import { newQueueId } from '../../src/queue/id.js';
import { Spool, type SpoolLogger } from '../../src/queue/spool.js';
import { offlineResolver } from './host-call.js';

/** `alice@example.net` as a parsed address; `''` is the null sender `<>`. */
export function addr(text: string): MailAddress {
  if (text === '') return { local: '', domain: '', raw: '<>', isNull: true };
  const at = text.lastIndexOf('@');
  return { local: text.slice(0, at), domain: text.slice(at + 1), raw: `<${text}>`, isNull: false };
}

/** A plain SMTP session (no TLS, no AUTH) from 192.0.2.10; `overrides` replace single fields. */
export function session(overrides: Partial<Session> = {}): Session {
  return {
    id: 's1', listener: 'smtp', clientIp: '192.0.2.10', clientPort: 40000, serverIp: '192.0.2.1', serverPort: 25,
    serverName: 'mx.example.org', connectedAt: new Date(), tls: null, helo: 'client.example.net', esmtp: true,
    auth: null, pipeliningViolation: false, remembered: null, pendingHeaders: [],
    ...overrides,
  };
}

/** The outcome of a stage without rules: no verdict, no effects. */
export const NEXT: StageOutcome = { verdict: { status: 'next', reply: null, rule: null, at: null, source: 'no rules', trace: [] }, effects: [] };

/** A resolver for which no name exists (tests that deliver to IP addresses need no DNS). */
export { offlineResolver as noDnsResolver };

/** A clock that only moves when told to; sleeping moves it at once. */
export class ManualClock implements Clock {
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.t += ms;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Where a fixture's ManualClock starts. */
export const T0 = Date.parse('2025-03-01T10:00:00Z');
export const MIN = 60_000;

/** The message most tests enqueue: its Subject and Message-ID carry the queue id. */
export function testMessage(from: string, id: string): Buffer {
  return Buffer.from(`From: <${from}>\r\nSubject: test ${id}\r\nMessage-ID: <${id}@example.net>\r\n\r\nbody\r\n`);
}

/** Enqueues one message (testMessage() unless e.data says otherwise); resolves to its queue id. */
export async function enqueueTestMessage(spool: Spool, from: string, to: string[], e: EnqueueOptions = {}): Promise<string> {
  const id = newQueueId();
  const data = e.data === undefined ? testMessage(from, id) : typeof e.data === 'function' ? e.data(id) : e.data;
  await spool.enqueue({
    id,
    mailFrom: addr(from),
    rcpts: to.map((t) => ({ address: addr(t), transport: e.transport ?? { kind: 'default' } })),
    data,
    session: session(),
    txnRemembered: e.txnRemembered ?? null,
    ...(e.quarantine !== undefined ? { quarantine: e.quarantine } : {}),
  });
  return id;
}

export interface DeliveryFixtureOptions<C extends Clock> {
  /** Prefix of the temporary spool directory's name. */
  prefix: string;
  /** Adjusts the configuration (delivery.default = a sink's address, say). */
  tune: (c: Config) => void;
  /** Opens this spool directory again (a restart) instead of a new temporary one. */
  dir?: string;
  /** Clock of the spool and the scheduler; default a new ManualClock at T0. */
  clock?: C;
  /** Logger of the spool (the scheduler's goes in `scheduler.log`). */
  spoolLog?: SpoolLogger;
  /** Scheduler options over the defaults: noDnsResolver, stages that return NEXT, random 0, idleMs 50. */
  scheduler?: Partial<Omit<SchedulerOptions, 'spool' | 'config' | 'clock'>>;
}

export interface EnqueueOptions {
  /** Transport of every recipient; default `{ kind: 'default' }`. */
  transport?: Transport;
  /** The message, or how to make it from the queue id; default testMessage(). */
  data?: Buffer | ((id: string) => Buffer);
  txnRemembered?: Remembered | null;
  quarantine?: string | null;
}

export interface DeliveryFixture<C extends Clock> {
  dir: string;
  cfg: Config;
  spool: Spool;
  sched: Scheduler;
  clock: C;
  /** Enqueues a message from `from` to `to` (addresses as text) with session(); returns its queue id. */
  enqueue(from: string, to: string[], opts?: EnqueueOptions): Promise<string>;
  /** Stops the scheduler and removes the spool directory, unless `keep` (to open it again). */
  close(keep?: boolean): Promise<void>;
}

/**
 * A real spool in a temporary directory (or `opts.dir`) and a Scheduler
 * over it. The configuration is the default one for mx.example.org, domain
 * example.org, delivery.timeout 5s, then `opts.tune`; it is read at each
 * pass, so a test may change `cfg` later.
 */
export async function openDeliveryFixture<C extends Clock = ManualClock>(opts: DeliveryFixtureOptions<C>): Promise<DeliveryFixture<C>> {
  const dir = opts.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), opts.prefix)));
  const clock = opts.clock ?? (new ManualClock(T0) as Clock as C);
  const cfg = defaultConfig('mx.example.org');
  cfg.server.domain = 'example.org';
  cfg.delivery.timeout = '5s';
  opts.tune(cfg);
  const spool = await Spool.open(dir, { clock, log: opts.spoolLog });
  const sched = new Scheduler({
    spool,
    config: () => cfg,
    resolver: offlineResolver,
    stages: afterQueueStages(async () => NEXT),
    clock,
    random: () => 0,
    idleMs: 50,
    ...opts.scheduler,
  });
  return {
    dir,
    cfg,
    spool,
    sched,
    clock,
    enqueue: (from, to, e = {}) => enqueueTestMessage(spool, from, to, e),
    async close(keep = false) {
      await sched.stop();
      if (!keep) await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
