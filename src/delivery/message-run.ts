// One pass of the scheduler over one message it has claimed in active/:
//
//   finish an interrupted header edit or bounce
//   → remembered statuses (SPEC §5.4)
//   → postq stage, once            (SPEC §5.3)
//   → delivery stage, once, before the first attempt
//   → an attempt for every recipient still open, grouped by destination
//   → a DSN for the recipients that failed in this pass
//   → the message goes to deferred/, dead/, or is deleted.
//
// Every step is recorded in `<id>.json` before the next begins, so a crash
// at any point resumes from the last recorded step. The one window in which
// a recipient can get a message twice is between a remote server's final
// 250 and the rename of the record that says so (the record is written as
// soon as each destination answers, not at the end; once the last
// recipient is delivered, that rename is the message's removal). It lasts
// as long as the process takes to read the 250 and issue the rename: well
// under a millisecond when idle, tens under load.
// The other is that a DSN whose queueing was recorded as pending is queued
// again after a crash only if no message with its id exists (its id is
// derived from the original's), which fails only if the first copy was
// already delivered and removed in the meantime.

import type { Clock, Resolver } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import type { AfterQueueDecision, MailAddress, RememberedAfterQueue, StageEffect, Transport } from '../mail/types.js';
import { addressText } from '../mail/types.js';
import { type EnvelopeRecord, isOpen, newRecipientRecord, type RecipientRecord, type SessionSnapshot, snapshotSession } from '../queue/envelope.js';
import { type AliasTables, expandAlias } from './aliases.js';
import { applyMessageEffects, isMessageEffect } from '../queue/message.js';
import { ACTIVE, DEAD, DEFERRED, quarantinePlace, sha256Hex, type Spool, type SpoolLogger } from '../queue/spool.js';
import { buildDsn } from './dsn.js';
import { applyEnvelopeEffects } from './effects.js';
import { deferred, delivered, type RcptResult } from './outcome.js';
import type { DeliveryPool } from './pool.js';
import { isExpired, retryDelay, retrySchedule } from './retry.js';
import { type ChooseTransport, ownSession } from './recipient-transport.js';
import { defaultTransport, routeFor } from './routes.js';
import { logDeliveryAttempt, type AttemptStatus } from '../log/summary.js';
import type { TransportContext, TransportDef } from './transports/index.js';

/**
 * The policy's post-queue half (SPEC §5.3, §5.4), injected by whoever wires
 * the server (src/policy/after-queue.ts afterQueueStages): the queue runner
 * performs what it decides and decides nothing itself.
 */
export interface AfterQueueStages {
  /** What the statuses remembered before queueing do to the message. */
  remembered(record: EnvelopeRecord): RememberedAfterQueue | null;
  /** Runs and decides the postq or delivery stage on the queued message. */
  decide(stage: 'postq' | 'delivery', record: EnvelopeRecord, message: Buffer, errorStatus: 'tempfail' | 'deny', log: SpoolLogger): Promise<AfterQueueDecision>;
}

/**
 * What would have been delivered, instead of delivering it: `mta explain`'s
 * dry run and the differential tests replace every transport at this edge.
 */
export type DeliveryCapture = (d: { transport: string; destination: string | null; mailFrom: string; rcpts: string[]; data: Buffer }) => void;

export interface RunContext {
  spool: Spool;
  /** Set: record deliveries instead of making them (see DeliveryCapture). */
  capture?: DeliveryCapture;

  cfg: Config;
  clock: Clock;
  log: SpoolLogger;
  random: () => number;
  stages: AfterQueueStages;
  pool: DeliveryPool;
  resolver: Resolver;
  mxPort: number;
  /** The transport of a recipient the server adds (the DSN's recipient): what the rcpt rules choose. */
  chooseTransport: ChooseTransport;
  /** The alias tables of delivery.aliases and delivery.virtual_aliases (throws when a file cannot be read). */
  aliases: () => Promise<AliasTables>;
}

/** Where a pass left the message (the scheduler indexes deferred ones). */
export type RunResult =
  | { place: 'deferred'; nextAttempt: number }
  | { place: 'dead' | 'quarantine' | 'removed' | 'gone' };

const NULL_SENDER: MailAddress = { local: '', domain: '', raw: '<>', isNull: true };

const iso = (ms: number) => new Date(ms).toISOString();

function rcptKey(a: MailAddress): string {
  return addressText(a).toLowerCase();
}

export class MessageRun {
  private writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: RunContext,
    private record: EnvelopeRecord,
    private message: Buffer,
  ) {}

  private get id(): string {
    return this.record.id;
  }

  private now(): number {
    return this.ctx.clock.now();
  }

  /** Queues a write of the record as it is now; writes happen in order. */
  private save(): Promise<void> {
    const snapshot = structuredClone(this.record);
    this.writes = this.writes.then(() => this.ctx.spool.writeRecord(ACTIVE, snapshot));
    return this.writes;
  }

  async run(): Promise<RunResult> {
    if (this.record.pending_edit) await this.finishEdit();
    if (this.record.recipients.some((r) => r.dsn === 'pending')) {
      if (!(await this.bounce())) return this.toDeferredForBounce();
    }
    if (!this.record.recipients.some(isOpen)) return this.finish();

    const remembered = this.ctx.stages.remembered(this.record);
    if (remembered?.kind === 'deny') return this.toDead('denied by a remembered deny status');
    if (remembered?.kind === 'quarantine') return this.toQuarantine(remembered.name);
    if (remembered?.kind === 'faccept') {
      let changed = false;
      for (const s of ['postq', 'delivery'] as const) {
        if (this.record.stages[s] === 'pending') {
          this.record.stages[s] = 'skipped';
          changed = true;
        }
      }
      if (changed) await this.save();
    }

    for (const stage of ['postq', 'delivery'] as const) {
      if (this.record.stages[stage] !== 'pending') continue;
      const stop = await this.runStage(stage);
      if (stop) return stop;
      if (!this.record.recipients.some(isOpen)) {
        this.ctx.log.info({ queue_id: this.id, stage }, `queue: ${this.id} has no recipients left after ${stage}; dropped`);
        return this.finish();
      }
    }

    await this.expandAliases();
    await this.attempt();
    if (this.record.recipients.some((r) => r.dsn === 'pending')) {
      if (!(await this.bounce()) && !this.record.recipients.some(isOpen)) return this.toDeferredForBounce();
    }
    return this.finish();
  }

  // ---- stages ----

  /** Runs one post-queue stage; returns a result when the message leaves the active queue. */
  private async runStage(stage: 'postq' | 'delivery'): Promise<RunResult | null> {
    const { verdict: v, effects, action } = await this.ctx.stages.decide(stage, this.record, this.message, this.ctx.cfg.vsl.error_status, this.ctx.log);
    switch (action.kind) {
      case 'failed':
        return this.stageFailed(stage, action.why, action.toDead);
      case 'dead':
        return this.toDead(action.reason);
      case 'quarantine':
        return this.toQuarantine(action.name);
      case 'continue':
        break;
    }
    // next, accept, faccept: commit the changes, then go on.
    if (v.source === 'no rules' && effects.length === 0) {
      // Nothing to commit: the stage has no rules. Its "done" mark is not
      // worth an fsync'd record write (two per message, on the directory the
      // SMTP front also syncs): if it is lost in a crash, the stage runs
      // again and again does nothing.
      this.record.stages[stage] = 'done';
      return null;
    }
    try {
      await this.commitEffects(stage, effects, () => {
        this.record.stages[stage] = 'done';
        if (action.skipDelivery) this.record.stages.delivery = 'skipped';
      });
    } catch (err) {
      return this.stageFailed(stage, `its changes could not be applied: ${(err as Error).message}`, false);
    }
    return null;
  }

  /**
   * Commits a stage's effects. Envelope changes and the stage's "done" mark
   * go into the record in one write; header edits also rewrite the .eml,
   * bracketed by a pending_edit note so a crash between the two files is
   * resolved by comparing the file's hash (finishEdit).
   */
  private async commitEffects(stage: 'postq' | 'delivery', effects: StageEffect[], markDone: () => void): Promise<void> {
    const msgEffects = effects.filter(isMessageEffect);
    const edited = msgEffects.length > 0 ? applyMessageEffects(this.message, msgEffects) : this.message;
    applyEnvelopeEffects(this.record, effects);
    markDone();
    if (edited === this.message || edited.equals(this.message)) {
      await this.save();
      return;
    }
    const after = sha256Hex(edited);
    this.record.pending_edit = { stage, effects: msgEffects, sha256_before: this.record.sha256, sha256_after: after, size_after: edited.length };
    await this.save();
    await this.ctx.spool.writeMessage(ACTIVE, this.id, edited);
    this.message = edited;
    this.record.sha256 = after;
    this.record.size = edited.length;
    this.record.pending_edit = null;
    await this.save();
  }

  /** After a crash during a header edit: redo it if the file is still the old one, then clear the note. */
  private async finishEdit(): Promise<void> {
    const pe = this.record.pending_edit!;
    const hash = sha256Hex(this.message);
    if (hash === pe.sha256_before) {
      const edited = applyMessageEffects(this.message, pe.effects);
      if (sha256Hex(edited) !== pe.sha256_after) throw new Error(`${this.id}: replaying the header edit gave a different message`);
      await this.ctx.spool.writeMessage(ACTIVE, this.id, edited);
      this.message = edited;
    }
    this.record.sha256 = pe.sha256_after;
    this.record.size = pe.size_after;
    this.record.pending_edit = null;
    await this.save();
  }

  /** A stage failed (SPEC §5.3, §5.7): tempfail defers and re-runs it later; deny mode sends it to dead/. */
  private async stageFailed(stage: 'postq' | 'delivery', why: string, denyMode: boolean): Promise<RunResult> {
    this.ctx.log.error({ queue_id: this.id, stage, error: why }, `queue: ${this.id}: ${stage} stage failed: ${why}`);
    if (denyMode) return this.toDead(`${stage} stage failed (vsl.error_status = deny): ${why}`);
    const now = this.now();
    const text = `451 4.3.0 ${stage} stage failed: ${why}`;
    this.record.attempts++;
    this.record.last_error = text;
    if (isExpired(this.ctx.cfg, this.record.age_base, now)) {
      for (const r of this.record.recipients.filter(isOpen)) this.fail(r, `${text} (gave up: message older than delivery.max_age)`, '4.4.7', null);
      this.record.dead_reason = `${stage} stage kept failing until delivery.max_age`;
      await this.save();
      if (this.record.recipients.some((r) => r.dsn === 'pending')) await this.bounce();
      return this.moveTo('dead');
    }
    const next = now + retryDelay(retrySchedule(this.ctx.cfg), this.record.attempts, this.ctx.random);
    for (const r of this.record.recipients.filter(isOpen)) {
      r.state = 'deferred';
      r.next_attempt = iso(next);
      r.last_error = text;
    }
    this.record.next_attempt = iso(next);
    await this.save();
    return this.moveTo('deferred', next);
  }

  // ---- aliases ----

  /**
   * Replaces every open recipient that has an alias by the addresses it
   * expands to (each with the transport the rcpt rules choose for it); the
   * alias itself is done. An alias loop fails that recipient (5.4.6).
   */
  private async expandAliases(): Promise<void> {
    const tables = await this.ctx.aliases();
    if (tables.local.size === 0 && tables.virtual.size === 0) return;
    let changed = false;
    for (const r of this.record.recipients.filter((x) => isOpen(x) && x.alias_of === undefined)) {
      const x = expandAlias(r.address, tables, this.ctx.cfg);
      if (x.kind === 'none') continue;
      changed = true;
      const addr = addressText(r.address);
      if (x.kind === 'loop') {
        this.ctx.log.info({ queue_id: this.id, rcpt: addr, chain: x.chain }, `queue: ${this.id}: alias loop for ${addr}: ${x.chain.join(' -> ')}`);
        this.fail(r, `554 5.4.6 alias loop: ${x.chain.join(' -> ')}`, '5.4.6', null);
        continue;
      }
      r.state = 'delivered';
      r.status = '2.0.0';
      r.delivered_at = iso(this.now());
      r.next_attempt = null;
      for (const a of x.addresses) {
        if (this.record.recipients.some((o) => isOpen(o) && rcptKey(o.address) === rcptKey(a))) continue;
        const added = newRecipientRecord(a, await this.ctx.chooseTransport(a, this.record.mail_from));
        added.alias_of = addr;
        this.record.recipients.push(added);
      }
      this.ctx.log.info({ queue_id: this.id, rcpt: addr, to: x.addresses.map(addressText) }, `queue: ${this.id}: ${addr} is an alias of ${x.addresses.map(addressText).join(', ')}`);
    }
    if (changed) await this.save();
  }

  // ---- delivery ----

  private async attempt(): Promise<void> {
    const open = this.record.recipients.filter(isOpen);
    const tctx = this.transportContext();
    const groups = new Map<string, { def: TransportDef; transport: Transport; rcpts: RecipientRecord[] }>();
    const tasks: Array<Promise<void>> = [];
    const settle = (rcpts: RecipientRecord[], results: RcptResult[]) => {
      const byAddr = new Map(results.map((r) => [r.address.toLowerCase(), r]));
      for (const r of rcpts) {
        const res = byAddr.get(rcptKey(r.address));
        if (res) this.apply(r, res);
      }
      // Once every recipient is delivered the message is removed next, and
      // that rename is the record: skipping the fsynced write before it
      // narrows the window in which a crash makes a delivered message go
      // out again (scripts/crash-server.ts counts those duplicates).
      return this.allDelivered() ? this.writes : this.save();
    };
    for (const r of open) {
      const route = routeFor(r.transport, r.address, tctx);
      if ('error' in route) {
        tasks.push(settle([r], [route.error.resultFor(addressText(r.address))]));
        continue;
      }
      const g = groups.get(route.key) ?? { def: route.def, transport: route.transport, rcpts: [] };
      g.rcpts.push(r);
      groups.set(route.key, g);
    }
    for (const [key, g] of groups) {
      const job = { queueId: this.id, mailFrom: this.record.mail_from, rcpts: g.rcpts.map((r) => r.address), message: this.message };
      const capture = this.ctx.capture;
      if (capture !== undefined && g.def.delivers !== false) {
        const rcpts = job.rcpts.map(addressText);
        capture({ transport: g.def.kind, destination: key === g.def.kind ? null : key, mailFrom: addressText(job.mailFrom), rcpts, data: this.message });
        tasks.push(settle(g.rcpts, rcpts.map((a) => delivered(a, `captured for ${g.def.kind} (no delivery made)`))));
        continue;
      }
      const results = g.def.deliver(g.transport, job, tctx).catch((err: Error) =>
        job.rcpts.map((a) => deferred(addressText(a), `451 4.3.0 ${g.def.kind} delivery failed: ${err.message}`, '4.3.0')),
      );
      tasks.push(results.then((res) => settle(g.rcpts, res)));
    }
    await Promise.all(tasks);
    this.record.attempts++;
    const nexts = this.record.recipients
      .filter(isOpen)
      .map((r) => Date.parse(r.next_attempt ?? ''))
      .filter((n) => !Number.isNaN(n));
    this.record.next_attempt = nexts.length ? iso(Math.min(...nexts)) : null;
    if (!this.allDelivered()) await this.save();
  }

  private transportContext(): TransportContext {
    const c = this.ctx;
    return { cfg: c.cfg, pool: c.pool, resolver: c.resolver, mxPort: c.mxPort, random: c.random, now: () => this.now(), log: c.log };
  }

  private allDelivered(): boolean {
    return this.record.recipients.every((r) => r.state === 'delivered');
  }

  /** Records one recipient's result (the caller saves). */
  private apply(r: RecipientRecord, res: RcptResult): void {
    const now = this.now();
    r.attempts++;
    r.remote_mta = res.remoteMta;
    r.status = res.status;
    let status: AttemptStatus;
    if (res.outcome === 'delivered') {
      r.state = 'delivered';
      r.delivered_at = iso(now);
      r.next_attempt = null;
      r.last_error = null;
      status = 'sent';
    } else if (res.outcome === 'failed') {
      status = 'bounced';
      this.fail(r, res.reply, res.status, res.remoteMta);
    } else if (isExpired(this.ctx.cfg, this.record.age_base, now)) {
      status = 'expired';
      this.fail(r, `${res.reply} (gave up: message older than delivery.max_age)`, res.status.startsWith('4.') ? res.status : '4.4.7', res.remoteMta);
    } else {
      const next = now + retryDelay(retrySchedule(this.ctx.cfg), r.attempts, this.ctx.random);
      r.state = 'deferred';
      r.next_attempt = iso(next);
      r.last_error = res.reply;
      status = 'deferred';
    }
    logDeliveryAttempt(this.ctx.log, {
      queueId: this.id, recipient: addressText(r.address), transport: (r.transport.kind === 'default' ? defaultTransport(this.ctx.cfg, r.address) : r.transport).kind,
      relay: res.remoteMta, delaySeconds: (now - Date.parse(this.record.received_at)) / 1000, dsn: res.status, status, reply: res.reply, attempts: r.attempts, nextAttempt: r.next_attempt,
    });
  }

  private fail(r: RecipientRecord, why: string, status: string, remote: string | null): void {
    r.state = 'failed';
    r.next_attempt = null;
    r.last_error = why;
    r.status = status;
    r.remote_mta = remote;
    const bounceable = this.ctx.cfg.delivery.bounce && !this.record.mail_from.isNull && !this.record.is_bounce;
    r.dsn = bounceable ? 'pending' : 'none';
  }

  // ---- bounces ----

  private localSession(): SessionSnapshot {
    return snapshotSession(ownSession(this.ctx.cfg, `dsn-${this.id}`, new Date(this.now())));
  }

  /**
   * Queues one DSN for every recipient whose failure is not yet reported.
   * Its id is `<id>-B<n>`, so a retry after a crash finds the one already
   * queued. Returns false when it could not be queued (it is tried again).
   */
  private async bounce(): Promise<boolean> {
    const failedNow = this.record.recipients.filter((r) => r.dsn === 'pending');
    if (failedNow.length === 0) return true;
    const n = this.record.bounces + 1;
    const dsnId = `${this.id}-B${n}`;
    try {
      if (!(await this.ctx.spool.exists(dsnId))) {
        const data = buildDsn({
          record: this.record,
          message: this.message,
          failed: failedNow,
          serverName: this.ctx.cfg.server.name,
          serverDomain: this.ctx.cfg.server.domain,
          now: this.now(),
          dsnId,
        });
        await this.ctx.spool.enqueue({
          id: dsnId,
          mailFrom: NULL_SENDER,
          rcpts: [{ address: { ...this.record.mail_from }, transport: await this.ctx.chooseTransport(this.record.mail_from, NULL_SENDER) }],
          data,
          session: this.localSession(),
          txnRemembered: null,
          isBounce: true,
          receivedAt: new Date(this.now()),
        });
      }
    } catch (err) {
      this.ctx.log.error({ queue_id: this.id, error: (err as Error).message }, `queue: ${this.id}: could not queue the DSN: ${(err as Error).message}`);
      return false;
    }
    for (const r of failedNow) r.dsn = 'sent';
    this.record.bounces = n;
    await this.save();
    this.ctx.log.info({ queue_id: this.id, dsn_id: dsnId, rcpts: failedNow.length }, `queue: ${this.id}: DSN ${dsnId} queued to <${addressText(this.record.mail_from)}>`);
    return true;
  }

  private async toDeferredForBounce(): Promise<RunResult> {
    const next = this.now() + retryDelay(retrySchedule(this.ctx.cfg), Math.max(1, this.record.attempts), this.ctx.random);
    this.record.next_attempt = iso(next);
    await this.save();
    return this.moveTo('deferred', next);
  }

  // ---- where the message goes ----

  private async finish(): Promise<RunResult> {
    const open = this.record.recipients.filter(isOpen);
    if (open.length > 0) {
      const next = Math.min(...open.map((r) => Date.parse(r.next_attempt ?? '') || this.now()));
      return this.moveTo('deferred', next);
    }
    const failedCount = this.record.recipients.filter((r) => r.state === 'failed').length;
    if (failedCount > 0) {
      this.record.dead_reason ??= `delivery failed for ${failedCount} recipient(s)`;
      await this.save();
      return this.moveTo('dead');
    }
    await this.writes;
    await this.ctx.spool.remove(this.id, ACTIVE);
    return { place: 'removed' };
  }

  private async toDead(reason: string): Promise<RunResult> {
    this.record.dead_reason = reason;
    await this.save();
    return this.moveTo('dead');
  }

  private async toQuarantine(name: string): Promise<RunResult> {
    this.record.quarantine = name;
    await this.save();
    await this.ctx.spool.move(this.id, ACTIVE, quarantinePlace(name));
    return { place: 'quarantine' };
  }

  private async moveTo(where: 'deferred' | 'dead', next?: number): Promise<RunResult> {
    await this.writes;
    await this.ctx.spool.move(this.id, ACTIVE, where === 'deferred' ? DEFERRED : DEAD);
    if (where === 'dead') {
      this.ctx.log.info({ queue_id: this.id, reason: this.record.dead_reason }, `queue: ${this.id} moved to dead: ${this.record.dead_reason}`);
      return { place: 'dead' };
    }
    return { place: 'deferred', nextAttempt: next ?? this.now() };
  }
}

/** delivery.timeout in ms, and the shorter limit used for establishing TCP connections. */
export function deliveryTimeouts(cfg: Config): { timeoutMs: number; connectTimeoutMs: number } {
  const timeoutMs = Math.max(100, parseDuration(cfg.delivery.timeout));
  return { timeoutMs, connectTimeoutMs: Math.min(timeoutMs, 30_000) };
}
