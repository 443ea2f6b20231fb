// `mta explain` (SPEC §11.4): runs every stage of one transaction in-process,
// with no connection, no delivery and no writes, and reports per stage (and
// per recipient) the deciding directive, its status and the reply — the same
// decisions the server would make, through the same runner, relay guard and
// status table (src/policy/apply.ts).

import type { PolicyVersion } from './load.js';
import { PolicyRunner } from './runner.js';
import { applyVerdict, makeReply, type FrontStage } from './apply.js';
import { relayGuardConfig, relayGuardVerdict } from './relay-guard.js';
import { receivedHeader } from './received.js';
import { parsePath } from '../vsl/values/address.js';
import { MessageDraft, parseMessage } from '../smtp/message.js';
import type { Logger } from 'pino';
import type { MailAddress, Remembered, Reply, Session, Stage, StageEffect, Transaction, Verdict } from './types.js';

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
  at: string | null;
  status: string;
  reply: string;
  /** Every directive evaluated, for --json. */
  trace: Verdict['trace'];
  effects: StageEffect[];
  error?: string;
}

export interface ExplainResult {
  rows: ExplainRow[];
  queuedFor: string[];
  closed: boolean;
}

function replyText(r: Reply): string {
  const enh = r.enhanced ? ` ${r.enhanced}` : '';
  return r.lines.map((l) => `${r.code}${enh} ${l}`).join(' / ');
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

export async function explain(version: PolicyVersion, input: ExplainInput, log: Logger): Promise<ExplainResult> {
  const cfg = version.config;
  const runner = new PolicyRunner({ current: () => version, log, dryRun: true, now: () => input.now ?? Date.now() });
  const guard = relayGuardConfig(cfg.server);
  const name = cfg.server.name;
  const rows: ExplainRow[] = [];
  const errorStatus = cfg.vsl.error_status;
  const session: Session = {
    id: 'explain', listener: 'smtp', clientIp: input.client, clientPort: input.clientPort ?? 49152,
    serverIp: '127.0.0.1', serverPort: 25, serverName: name, connectedAt: new Date(input.now ?? Date.now()),
    tls: input.tls ? { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' } : null,
    helo: null, esmtp: true, auth: input.auth ? { mechanism: 'PLAIN', authid: input.auth } : null,
    pipeliningViolation: false, remembered: null, pendingHeaders: [],
  };
  let txn: Transaction | null = null;
  const queuedFor: string[] = [];

  const step = async (stage: FrontStage, normal: Reply, recipient?: string, message?: MessageDraft | null): Promise<{ accept: boolean; close: boolean; effects: StageEffect[] }> => {
    const remembered: Remembered | null = stage === 'connect' || stage === 'helo' || stage === 'authenticate' ? (stage === 'authenticate' ? null : session.remembered) : txn?.remembered ?? session.remembered;
    let verdict: Verdict;
    let effects: StageEffect[] = [];
    if (stage === 'rcpt' && !runner.hasRules('rcpt')) {
      verdict = relayGuardVerdict(session, txn!.currentRcpt!, guard);
    } else if (remembered && stage !== 'authenticate') {
      verdict = { status: remembered.kind, reply: null, quarantine: remembered.quarantine, rule: remembered.rule, at: remembered.at, source: 'remembered', trace: [] };
    } else {
      const out = await runner.run(stage, session, txn, message ?? null);
      verdict = out.verdict;
      effects = out.effects;
    }
    const applied = applyVerdict(stage, verdict, { errorStatus, normal });
    if (applied.remember) {
      if (stage === 'connect' || stage === 'helo') session.remembered = applied.remember;
      else if (txn) txn.remembered = applied.remember;
    }
    rows.push({
      stage, recipient, decider: decider(verdict), rule: verdict.rule, at: verdict.at, status: applied.effective, reply: replyText(applied.reply),
      trace: verdict.trace, effects, error: verdict.error,
    });
    return { accept: applied.accept, close: applied.close, effects };
  };

  const protocolRow = (stage: Stage, reply: string, recipient?: string): void => {
    rows.push({ stage, recipient, decider: 'protocol', rule: null, at: null, status: 'reject', reply, trace: [], effects: [] });
  };

  // connect
  let r = await step('connect', makeReply(220, '', `${name} Service ready`));
  if (r.close) return { rows, queuedFor, closed: true };
  // helo
  if (input.helo !== undefined) {
    session.helo = input.helo;
    r = await step('helo', makeReply(250, '', name));
    if (r.close) return { rows, queuedFor, closed: true };
    if (!r.accept) session.helo = null;
  }
  // authenticate is skipped with --auth (SPEC §11.4)
  if (input.from === undefined) return { rows, queuedFor, closed: false };
  const mail = parsePath(asPath(input.from), { kind: 'mail', smtputf8: true, serverDomain: cfg.server.domain });
  if (!mail.ok) {
    protocolRow('mail', mail.reply);
    return { rows, queuedFor, closed: false };
  }
  txn = { id: 'EXPLAIN0001', mailFrom: mail.address, mailAt: new Date(input.now ?? Date.now()), rcpts: [], currentRcpt: null, remembered: null, pendingHeaders: [] };
  r = await step('mail', makeReply(250, '2.1.0', 'Ok'));
  if (r.close) return { rows, queuedFor, closed: true };
  if (!r.accept) return { rows, queuedFor, closed: false };
  for (const to of input.to) {
    const rc = parsePath(asPath(to), { kind: 'rcpt', smtputf8: true, serverDomain: cfg.server.domain });
    if (!rc.ok) {
      protocolRow('rcpt', rc.reply, to);
      continue;
    }
    txn.currentRcpt = rc.address;
    r = await step('rcpt', makeReply(250, '2.1.5', 'Ok'), addrText(rc.address));
    txn.currentRcpt = null;
    if (r.close) return { rows, queuedFor, closed: true };
    if (r.accept) txn.rcpts.push({ address: rc.address, transport: { kind: 'default' } });
  }
  if (txn.rcpts.length === 0) {
    protocolRow('preq', '554 5.5.1 No valid recipients');
    return { rows, queuedFor, closed: false };
  }
  const raw = input.message ?? synthesise(txn.mailFrom, txn.rcpts.map((x) => x.address), input.now ?? Date.now());
  const received = receivedHeader(session, { serverName: name, id: txn.id, date: new Date(input.now ?? Date.now()) });
  const draft = MessageDraft.assemble([received, ...session.pendingHeaders, ...txn.pendingHeaders], parseMessage(raw));
  r = await step('preq', makeReply(250, '2.0.0', `Ok: queued as ${txn.id}`), undefined, draft);
  if (r.close || !r.accept) return { rows, queuedFor, closed: r.close };
  for (const x of txn.rcpts) queuedFor.push(addrText(x.address));
  // After queueing: postq and delivery run on the queued message (SPEC §5.3); shown, never acted on.
  for (const stage of ['postq', 'delivery'] as const) {
    if (txn.remembered?.kind === 'faccept' || txn.remembered?.kind === 'quarantine') {
      rows.push({ stage, decider: 'remembered', rule: txn.remembered.rule, at: txn.remembered.at, status: txn.remembered.kind, reply: '', trace: [], effects: [] });
      continue;
    }
    const out = await runner.run(stage, session, txn, draft);
    const v = out.verdict;
    rows.push({ stage, decider: decider(v), rule: v.rule, at: v.at, status: v.source === 'error' ? 'error' : v.status, reply: v.reply ? replyText(v.reply) : '', trace: v.trace, effects: out.effects, error: v.error });
    if (v.source === 'rules' && v.status !== 'next' && v.status !== 'accept') break;
  }
  return { rows, queuedFor, closed: false };
}

/** Command-line addresses may omit the angle brackets; "" is the null sender. */
function asPath(a: string): string {
  const t = a.trim();
  return t.startsWith('<') ? t : `<${t}>`;
}

function addrText(a: MailAddress): string {
  return a.isNull ? '<>' : `${a.local}@${a.domain}`;
}

function synthesise(from: MailAddress, to: MailAddress[], now: number): Buffer {
  const lines = [
    `From: <${addrText(from)}>`,
    `To: ${to.map((t) => `<${addrText(t)}>`).join(', ')}`,
    'Subject: mta explain',
    `Date: ${new Date(now).toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <explain.${now}@mta.invalid>`,
    '',
    'This message was synthesised by mta explain.',
    '',
  ];
  return Buffer.from(lines.join('\r\n'));
}
