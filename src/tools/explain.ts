// `mta explain` (SPEC §11.4): one transaction run through the real server
// code — the SMTP front over an in-memory socket, the stage machine, the
// spool (in a temporary directory) and the queue runner's post-queue stages —
// with I/O replaced at the edges: no network connection, every delivery
// captured instead of made, fs::/csv/cmd writes reported as "would run"
// (the runner's dry-run mode), and the temporary directory removed at the
// end. What is explained is therefore what the server does: each row is a
// decision the stage machine made (src/policy/stage-machine.ts), observed,
// not recomputed.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Resolver } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import { Scheduler } from '../delivery/scheduler.js';
import { afterQueueStages, runStageWith } from '../policy/after-queue.js';
import { DEAD, Spool } from '../queue/spool.js';
import { createSmtpFront } from '../smtp/front.js';
import type { PolicyVersion } from '../policy/load.js';
import { PolicyRunner } from '../policy/runner.js';
import type { DecisionRecord } from '../policy/stage-machine.js';
import { TranscriptClient, type ReceivedReply } from './transcript/client.js';
import { TEST_CERTIFICATE_PEM, TEST_PRIVATE_KEY_PEM } from './transcript/test-cert.js';
import type { Stage, StageEffect, StageRunner, Verdict } from '../mail/types.js';

export interface ExplainInput {
  client: string;
  clientPort?: number;
  helo?: string;
  from?: string;
  to: string[];
  auth?: string;
  tls?: boolean;
  message?: Buffer;
  now?: number;
}

export interface ExplainRow {
  stage: Stage;
  recipient?: string;
  /** `rule "x" (main.vsl:9:5)`, `no rules`, `relay guard`, `remembered`, `protocol`, `error`. */
  decider: string;
  /** The deciding directive and its `file:line:col`, when a directive decided (for --json). */
  rule: string | null;
  /** How the decision was made: rules, no rules, remembered, relay guard, error (absent on protocol rows). */
  source?: Verdict['source'];
  at: string | null;
  status: string;
  reply: string;
  /** Every directive evaluated, for --json. */
  trace: Verdict['trace'];
  effects: StageEffect[];
  error?: string;
}

/** A delivery the server would make (captured at the transport edge). */
export interface ExplainDelivery {
  transport: string; // the transport kind (mx, forward, maildir, mbox, lmtp…)
  /** `host:port` or the MX domain for smtp; null for local transports. */
  destination: string | null;
  mailFrom: string;
  rcpts: string[];
  /** The message as it would leave, after every stage's edits. */
  data: Buffer;
}

/** Where the message ends: delivered (see deliveries), held in a quarantine, dead, or never queued. */
export type ExplainDisposition =
  | { kind: 'refused' }
  | { kind: 'delivered' }
  | { kind: 'quarantine'; name: string }
  | { kind: 'dead'; reason: string }
  | { kind: 'deferred'; reason: string };

export interface ExplainResult {
  rows: ExplainRow[];
  /** The recipients of the queued message, as queued. */
  queuedFor: string[];
  closed: boolean;
  disposition: ExplainDisposition;
  deliveries: ExplainDelivery[];
}

function decider(v: Verdict): string {
  switch (v.source) {
    case 'rules': return v.rule ? `rule "${v.rule}" (${v.at})` : 'rules: all next';
    case 'no rules': return 'no rules';
    case 'relay guard': return v.rule ?? 'relay guard';
    case 'remembered': return `remembered ${v.rule ? `from rule "${v.rule}"` : ''}`.trim();
    case 'error': return v.rule ? `error in rule "${v.rule}" (${v.at})` : 'error';
  }
}

function rowOf(d: DecisionRecord): ExplainRow {
  const v = d.verdict;
  // The first line of a multi-line reply (EHLO) as a single line; the relay-cleared mark is no change to show.
  const reply = d.reply.replace(/^(\d{3})-/, '$1 ');
  const effects = d.effects.filter((e) => e.kind !== 'relay_cleared');
  const row: ExplainRow = { stage: d.stage, decider: decider(v), rule: v.rule, source: v.source, at: v.at, status: d.status, reply, trace: v.trace, effects };
  if (d.recipient !== null) row.recipient = d.recipient;
  if (v.error !== undefined) row.error = v.error;
  return row;
}

/** Command-line addresses may omit the angle brackets; "" is the null sender. */
function asPath(a: string): string {
  const t = a.trim();
  return t.startsWith('<') ? t : `<${t}>`;
}

function synthesise(from: string, to: string[], now: number): Buffer {
  const lines = [
    `From: ${asPath(from)}`,
    `To: ${to.map(asPath).join(', ')}`,
    'Subject: mta explain',
    `Date: ${new Date(now).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <explain.${now}@mta.invalid>`,
    '',
    'This message was synthesised by mta explain.',
    '',
  ];
  return Buffer.from(lines.join('\r\n'));
}

/** The message as DATA lines: CRLF-split, dot-stuffed, without the final dot. */
function dataLines(message: Buffer): string[] {
  const text = message.toString('latin1').replace(/\r?\n$/, '');
  return text.split(/\r?\n/).map((l) => (l.startsWith('.') ? `.${l}` : l));
}

/**
 * The runner the explained server uses: the policy's own, in dry-run mode,
 * except that `--auth` answers the authenticate stage itself (SPEC §11.4:
 * the session is marked authenticated and the stage is skipped).
 */
function explainRunner(version: PolicyVersion, input: ExplainInput, log: Logger, clock: Clock): StageRunner {
  const inner = new PolicyRunner({ current: () => version, log, dryRun: true, now: () => clock.now() });
  if (input.auth === undefined) return inner;
  return {
    hasRules: (stage) => stage === 'authenticate' || inner.hasRules(stage),
    run: async (stage, session, txn, message, extra) => {
      if (stage === 'authenticate') {
        return { verdict: { status: 'accept', reply: null, rule: '--auth', at: null, source: 'rules', trace: [] }, effects: [] };
      }
      return inner.run(stage, session, txn, message, extra);
    },
  };
}

/** The configuration the explained server runs with: the policy's, with its spool and TLS in `dir`. */
async function explainConfig(base: Config, input: ExplainInput, dir: string): Promise<Config> {
  const config = structuredClone(base);
  config.queue.dir = path.join(dir, 'queue');
  if (input.tls) {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    await writeFile(cert, TEST_CERTIFICATE_PEM);
    await writeFile(key, TEST_PRIVATE_KEY_PEM, { mode: 0o600 });
    config.server.tls.certificate = cert;
    config.server.tls.private_key = key;
  }
  if (input.auth !== undefined) {
    // AUTH must be offered for --auth to mark the session: in clear text too, and with PLAIN.
    config.server.auth.allow_plaintext = true;
    if (!config.server.auth.mechanisms.map((m) => m.toUpperCase()).includes('PLAIN')) config.server.auth.mechanisms = [...config.server.auth.mechanisms, 'PLAIN'];
  }
  return config;
}

/**
 * Captured deliveries never resolve a destination (endpoints are resolved
 * by the transport, which is replaced), so the queue runner gets no DNS.
 */
const noAnswer = (): Promise<never> => Promise.reject(Object.assign(new Error('mta explain makes no delivery lookups'), { code: 'ENOTFOUND' }));
const NO_DNS: Resolver = { a: noAnswer, aaaa: noAnswer, mx: noAnswer, txt: noAnswer, ptr: noAnswer, ns: noAnswer };

export async function explain(version: PolicyVersion, input: ExplainInput, log: Logger): Promise<ExplainResult> {
  const now = input.now ?? Date.now();
  const clock: Clock = { now: () => now, sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mta-explain-'));
  const decisions: DecisionRecord[] = [];
  const rows: ExplainRow[] = [];
  const deliveries: ExplainDelivery[] = [];
  const observe = (d: DecisionRecord): void => {
    decisions.push(d);
    rows.push(rowOf(d));
  };
  const config = await explainConfig(version.config, input, dir);
  const runner = explainRunner(version, input, log, clock);
  const spool = await Spool.open(config.queue.dir, { log });
  const front = createSmtpFront({ config, runner, sink: spool, log, clock, observe });
  let closed = false;
  let queueId: string | null = null;
  try {
    const client = await TranscriptClient.open(front, {
      listener: 'smtp',
      clientIp: input.client,
      clientPort: input.clientPort ?? 49152,
      serverIp: input.client.includes(':') ? '::1' : '127.0.0.1',
      serverPort: 25,
      implicitTls: input.tls === true,
    });
    const waitMs = 60_000;
    /** Sends a command (or nothing, for the greeting) and reads its reply; a reply no decision made is a protocol row. */
    const exchange = async (stage: Stage, line: string | null, recipient?: string): Promise<ReceivedReply | null> => {
      const before = decisions.length;
      if (line !== null) client.send(line);
      const w = await client.nextReply(waitMs);
      if (!('reply' in w)) {
        closed = true;
        return null;
      }
      if (decisions.length === before && stage !== 'authenticate') {
        const row: ExplainRow = { stage, decider: 'protocol', rule: null, at: null, status: w.reply.code < 400 ? 'next' : 'reject', reply: w.reply.lines.join(' / '), trace: [], effects: [] };
        if (recipient !== undefined) row.recipient = recipient;
        if (w.reply.code >= 400) rows.push(row);
      }
      if (w.reply.code === 421 || (w.reply.code >= 500 && stage === 'connect')) closed = true;
      return w.reply;
    };

    const transaction = async (): Promise<void> => {
      const greeting = await exchange('connect', null);
      if (greeting === null || greeting.code !== 220) return;
      // Without --helo the client greets with its address literal, as a bare client would.
      const helo = input.helo ?? (input.client.includes(':') ? `[IPv6:${input.client}]` : `[${input.client}]`);
      const ehlo = await exchange('helo', `EHLO ${helo}`);
      if (ehlo === null || ehlo.code !== 250) return;
      if (input.auth !== undefined) {
        const token = Buffer.from(`\0${input.auth}\0explain`).toString('base64');
        const auth = await exchange('authenticate', `AUTH PLAIN ${token}`);
        if (auth === null) return;
      }
      if (input.from === undefined) return;
      // A client with non-ASCII addresses asks for SMTPUTF8 (RFC 6531), as the probes of mta relay-test do.
      const utf8 = [input.from, ...input.to].some((a) => /[^\x00-\x7f]/.test(a)) ? ' SMTPUTF8' : '';
      const mail = await exchange('mail', `MAIL FROM:${asPath(input.from)}${utf8}`);
      if (mail === null || mail.code !== 250) return;
      for (const to of input.to) {
        if ((await exchange('rcpt', `RCPT TO:${asPath(to)}`, to)) === null) return;
      }
      const data = await exchange('preq', 'DATA');
      if (data === null || data.code !== 354) return;
      for (const l of dataLines(input.message ?? synthesise(input.from, input.to, now))) client.send(l);
      const end = await exchange('preq', '.');
      // Queued when the preq decision let the message in (a 2xx, whatever its text): its id is the transaction's.
      const preq = [...decisions].reverse().find((d) => d.stage === 'preq');
      if (end !== null && end.code < 300 && preq?.messageId) queueId = preq.messageId;
    };
    await transaction();
    await client.close();
  } finally {
    await front.close(500).catch(() => undefined);
  }

  let disposition: ExplainDisposition = { kind: 'refused' };
  let queuedFor: string[] = [];
  try {
    const place = queueId === null ? null : await spool.locate(queueId);
    if (queueId !== null && place !== null) {
      const id: string = queueId;
      queuedFor = (await spool.readRecord(place, id)).recipients.map((r) => (r.address.isNull ? '<>' : `${r.address.local}@${r.address.domain}`));
      // The queue runner's pass over the message, with every transport captured.
      const scheduler = new Scheduler({ spool, config: () => config, resolver: NO_DNS, stages: afterQueueStages(runStageWith(runner), observe), log, clock, random: () => 0, capture: (d) => deliveries.push(d) });
      await scheduler.recover();
      await scheduler.runDue();
      await scheduler.stop();
      disposition = await dispositionOf(spool, id, deliveries.length > 0);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { rows, queuedFor, closed, disposition, deliveries };
}

/** Where the queue runner left message `id`. */
async function dispositionOf(spool: Spool, id: string, deliveredAny: boolean): Promise<ExplainDisposition> {
  const place = await spool.locate(id);
  if (place === null) return { kind: 'delivered' };
  if (place === DEAD) return { kind: 'dead', reason: (await spool.readRecord(place, id)).dead_reason ?? '' };
  if (place.kind === 'quarantine') return { kind: 'quarantine', name: place.name };
  const rec = await spool.readRecord(place, id);
  return deliveredAny ? { kind: 'delivered' } : { kind: 'deferred', reason: rec.last_error ?? '' };
}
