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
import type { AfterQueueDecision, MailAddress, RememberedAfterQueue, StageEffect } from '../mail/types.js';
import { addressText } from '../mail/types.js';
import { type EnvelopeRecord, isOpen, type RecipientRecord, type SessionSnapshot } from '../queue/envelope.js';
import { applyMessageEffects, isMessageEffect } from '../queue/message.js';
import { ACTIVE, DEAD, DEFERRED, quarantinePlace, sha256Hex, type Spool, type SpoolLogger } from '../queue/spool.js';
import { buildDsn } from './dsn.js';
import { applyEnvelopeEffects } from './effects.js';
import { deliverMaildir, deliverMbox } from './local.js';
import { delivered, type RcptResult } from './outcome.js';
import type { DeliveryPool } from './pool.js';
import { isExpired, retryDelay, retrySchedule } from './retry.js';
import { routeFor } from './routes.js';

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
export type DeliveryCapture = (d: { transport: 'smtp' | 'maildir' | 'mbox'; destination: string | null; mailFrom: string; rcpts: string[]; data: Buffer }) => void;

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

  // ---- delivery ----

  private async attempt(): Promise<void> {
    const cfg = this.ctx.cfg;
    const open = this.record.recipients.filter(isOpen);
    const mailFrom = addressText(this.record.mail_from);
    const deps = { resolver: this.ctx.resolver, mxPort: this.ctx.mxPort, random: this.ctx.random };
    const smtpGroups = new Map<string, { dest: import('./pool.js').Destination; rcpts: RecipientRecord[] }>();
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
      const route = routeFor(r.transport, r.address, cfg, deps);
      const addr = addressText(r.address);
      const capture = this.ctx.capture;
      if (capture !== undefined && (route.kind === 'smtp' || route.kind === 'maildir' || route.kind === 'mbox')) {
        capture({ transport: route.kind, destination: route.kind === 'smtp' ? route.dest.key : null, mailFrom, rcpts: [addr], data: this.message });
        tasks.push(settle([r], [delivered(addr, `captured for ${route.kind} (no delivery made)`)]));
        continue;
      }
      switch (route.kind) {
        case 'none':
          this.ctx.log.info({ queue_id: this.id, rcpt: addr }, `queue: ${this.id}: delivery disabled for ${addr}`);
          tasks.push(settle([r], [delivered(addr, 'delivery disabled by policy (no delivery made)')]));
          break;
        case 'error':
          tasks.push(settle([r], [route.error.resultFor(addr)]));
          break;
        case 'maildir':
        case 'mbox': {
          const fn = route.kind === 'maildir' ? deliverMaildir : deliverMbox;
          const template = route.kind === 'maildir' ? cfg.delivery.maildir : cfg.delivery.mbox;
          tasks.push(
            this.ctx.pool
              .runLocal(() => fn(template, this.record.mail_from, r.address, this.message, this.now()))
              .then((res) => settle([r], [res])),
          );
          break;
        }
        case 'smtp': {
          const g = smtpGroups.get(route.dest.key) ?? { dest: route.dest, rcpts: [] };
          g.rcpts.push(r);
          smtpGroups.set(route.dest.key, g);
          break;
        }
      }
    }
    for (const g of smtpGroups.values()) {
      const rcpts = g.rcpts.map((r) => addressText(r.address));
      tasks.push(this.ctx.pool.submit(g.dest, { mailFrom, rcpts, data: this.message }).then((results) => settle(g.rcpts, results)));
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

  private allDelivered(): boolean {
    return this.record.recipients.every((r) => r.state === 'delivered');
  }

  /** Records one recipient's result (the caller saves). */
  private apply(r: RecipientRecord, res: RcptResult): void {
    const now = this.now();
    r.attempts++;
    r.remote_mta = res.remoteMta;
    r.status = res.status;
    const addr = addressText(r.address);
    const log = { queue_id: this.id, rcpt: addr, outcome: res.outcome, reply: res.reply, remote: res.remoteMta, attempts: r.attempts };
    if (res.outcome === 'delivered') {
      r.state = 'delivered';
      r.delivered_at = iso(now);
      r.next_attempt = null;
      r.last_error = null;
      this.ctx.log.info(log, `queue: ${this.id} delivered to ${addr}: ${res.reply}`);
    } else if (res.outcome === 'failed') {
      this.ctx.log.info(log, `queue: ${this.id} failed for ${addr}: ${res.reply}`);
      this.fail(r, res.reply, res.status, res.remoteMta);
    } else if (isExpired(this.ctx.cfg, this.record.age_base, now)) {
      this.ctx.log.info(log, `queue: ${this.id} expired for ${addr}: ${res.reply}`);
      this.fail(r, `${res.reply} (gave up: message older than delivery.max_age)`, res.status.startsWith('4.') ? res.status : '4.4.7', res.remoteMta);
    } else {
      const next = now + retryDelay(retrySchedule(this.ctx.cfg), r.attempts, this.ctx.random);
      r.state = 'deferred';
      r.next_attempt = iso(next);
      r.last_error = res.reply;
      this.ctx.log.info({ ...log, next_attempt: r.next_attempt }, `queue: ${this.id} deferred for ${addr}: ${res.reply}`);
    }
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
    const cfg = this.ctx.cfg;
    return {
      id: `dsn-${this.id}`,
      listener: 'smtp',
      client_ip: '127.0.0.1',
      client_port: 0,
      server_ip: '127.0.0.1',
      server_port: 0,
      server_name: cfg.server.name,
      connected_at: iso(this.now()),
      tls: null,
      helo: cfg.server.name,
      esmtp: true,
      auth: null,
      reverse_name: null,
      remembered: null,
    };
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
          rcpts: [{ address: { ...this.record.mail_from }, transport: { kind: 'default' } }],
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
