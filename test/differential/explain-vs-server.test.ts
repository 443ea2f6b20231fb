// One truth (issue "One decision core"): every scenario below runs twice —
// through `mta explain --json` (the CLI, as an administrator runs it) and
// through the real server over a TCP socket (PROXY header for the client
// address, the queue runner delivering into a capture instead of the
// network) — and the two must agree on every stage's status, deciding rule
// and reply, on the final disposition (delivered by which transport /
// quarantined / dead / refused) and on the delivered bytes.
//
// The scenarios walk every status at every stage, statuses remembered from
// connect, helo, mail, rcpt and preq, the relay guard with and without rcpt
// rules, quarantine, accept/faccept carrying 4xx/5xx before and after
// queueing, envelope and header effects, and transactions whose recipients
// meet mixed fates.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DeliveryCapture } from '../../src/delivery/message-run.js';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { ACTIVE } from '../../src/queue/spool.js';
import { ROOT } from '../helpers/paths.js';
import { captureLog, tempDir } from '../helpers/server.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';

const MTA = path.join(ROOT, 'bin', 'mta.js');
const CLIENT_PORT = 49152;
const PASSWORD = 'differential-secret';

const ON_CONFIG = `fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = ["192.0.2.0/24"];
  config.server.interfaces.proxy_from = ["127.0.0.1"];
  config.server.smtp.error.delay = "0s";
  config.server.auth.backend = "file:passwd";
  config.server.auth.allow_plaintext = true;
  config
}
`;

/** Every status at every stage, each chosen by what the client sends (a cell per value). */
const CELLS = `${ON_CONFIG}
#{
  connect: [
    rule "connect cells" || switch ctx::client_ip() {
      "203.0.113.1" => accept("220 welcome.test.example custom greeting"),
      "203.0.113.2" => deny("554 5.7.1 connect denied by test"),
      "203.0.113.3" => reject("554 5.7.1 connect rejected by test"),
      "203.0.113.4" => quarantine("conn_q"),
      "203.0.113.5" => faccept(),
      "203.0.113.6" => reject("421 4.3.2 connect tempfail by test"),
      "203.0.113.7" => { throw "connect rule broke"; },
      _ => next(),
    },
  ],
  helo: [
    rule "helo cells" || switch ctx::helo() {
      "deny.test" => deny("550 5.7.1 helo denied by test"),
      "reject.test" => reject("550 5.7.1 helo rejected by test"),
      "accept.test" => accept("250 helo accepted by test"),
      "faccept.test" => faccept(),
      "quarantine.test" => quarantine("helo_q"),
      "info.test" => info("550 5.7.1 helo info by test"),
      "error.test" => { throw "helo rule broke"; },
      _ => next(),
    },
  ],
  mail: [
    rule "mail cells" || switch ctx::mail_from().local_part {
      "deny" => deny("553 5.7.1 sender denied by test"),
      "reject" => reject("553 5.7.1 sender rejected by test"),
      "accept" => accept("250 2.1.0 sender accepted by test"),
      "faccept" => faccept(),
      "quarantine" => quarantine("mail_q"),
      "acc5" => accept("550 5.7.1 accept carrying a refusal"),
      "fac4" => faccept("451 4.7.1 faccept carrying a tempfail"),
      "error" => { throw "mail rule broke"; },
      "rwfrom" => { envelop::rw_mail_from("rewritten@test.example"); next() },
      "hdr" => { msg::append_header("X-Mail-Stage", "added at mail"); next() },
      _ => next(),
    },
  ],
  rcpt: [
    rule "rcpt cells" || switch ctx::rcpt().local_part {
      "deny" => deny("550 5.1.1 recipient denied by test"),
      "reject" => reject("550 5.1.1 recipient rejected by test"),
      "accept" => accept("250 2.1.5 recipient accepted by test"),
      "faccept" => faccept(),
      "quarantine" => quarantine("rcpt_q"),
      "info" => info("550 5.1.1 recipient info by test"),
      "tempfail" => reject("451 4.3.0 recipient tempfail by test"),
      "acc4" => accept("452 4.2.2 accept carrying a tempfail"),
      "error" => { throw "rcpt rule broke"; },
      "local" => { transport::maildir(ctx::rcpt()); next() },
      "box" => { transport::mbox(ctx::rcpt()); accept() },
      "relayed" => { transport::forward(ctx::rcpt(), "127.0.0.1:2599"); accept() },
      "addrcpt" => { envelop::add_rcpt("added@test.example"); next() },
      "checked" => check_rcpt_relay(["192.0.2.0/24"]),
      _ => next(),
    },
  ],
  preq: [
    rule "preq cells" || switch msg::get_header("Subject") {
      "deny" => deny("554 5.7.1 message denied by test"),
      "reject" => reject("554 5.7.1 message rejected by test"),
      "accept" => accept("250 2.0.0 message accepted by test"),
      "faccept" => faccept(),
      "quarantine" => quarantine("preq_q"),
      "acc5" => accept("554 5.7.1 accept carrying a refusal"),
      "error" => { throw "preq rule broke"; },
      "hdr" => { msg::append_header("X-Preq", "added at preq"); msg::rm_header("X-Drop"); next() },
      "rwto" => { msg::rw_rcpt("u@test.example", "renamed@test.example"); next() },
      _ => next(),
    },
  ],
  postq: [
    rule "postq cells" || switch msg::get_header("Subject") {
      "postq-deny" => deny("554 5.7.1 postq denied by test"),
      "postq-reject" => reject("550 5.7.1 postq rejected by test"),
      "postq-quarantine" => quarantine("postq_q"),
      "postq-faccept" => faccept(),
      "postq-acc5" => accept("550 5.7.1 postq accept carrying a refusal"),
      "postq-hdr" => { msg::prepend_header("X-Postq", "added at postq"); next() },
      "postq-addrcpt" => { envelop::add_rcpt("late@test.example"); next() },
      "postq-error" => { throw "postq rule broke"; },
      _ => next(),
    },
  ],
  delivery: [
    rule "delivery cells" || switch msg::get_header("Subject") {
      "delivery-reject" => reject("550 5.7.1 delivery rejected by test"),
      "delivery-quarantine" => quarantine("delivery_q"),
      "delivery-hdr" => { msg::set_header("X-Delivery", "set at delivery"); next() },
      "delivery-rm" => { envelop::rm_rcpt("v@test.example"); next() },
      _ => next(),
    },
  ],
}
`;

/** No rcpt rules: the relay guard alone decides recipients. */
const NO_RCPT_RULES = `${ON_CONFIG}
#{
  mail: [ rule "mail seen" || next() ],
}
`;

/** Rcpt rules that only log: the relay guard still decides (SPEC §5.6). */
const LOGGING_RCPT = `${ON_CONFIG}
#{
  rcpt: [ action "log rcpt" || log("info", \`rcpt \${ctx::rcpt()}\`) ],
}
`;

const AUTH_STAGE = `
  authenticate: [ rule "auth" || authenticate() ],`;

function withAuth(policy: string): string {
  const at = policy.lastIndexOf('\n}');
  return `${policy.slice(0, at)}${AUTH_STAGE}${policy.slice(at)}`;
}

const POLICIES = { cells: withAuth(CELLS), norcpt: withAuth(NO_RCPT_RULES), logging: withAuth(LOGGING_RCPT) };
type PolicyName = keyof typeof POLICIES;

interface Scenario {
  name: string;
  policy: PolicyName;
  client?: string;
  helo?: string;
  from?: string;
  to?: string[];
  subject?: string;
  auth?: boolean;
}

const OUTSIDE = '198.51.100.7';
const S = (name: string, s: Omit<Scenario, 'name' | 'policy'> & { policy?: PolicyName }): Scenario => ({ policy: 'cells', ...s, name });

const SCENARIOS: Scenario[] = [
  // connect: every status
  S('connect next', {}),
  S('connect accept with a custom greeting', { client: '203.0.113.1' }),
  S('connect deny closes', { client: '203.0.113.2' }),
  S('connect reject closes', { client: '203.0.113.3' }),
  S('connect quarantine is remembered: the message goes to conn_q', { client: '203.0.113.4' }),
  S('connect faccept is remembered: later rules do not run', { client: '203.0.113.5', from: 'reject@remote.test', subject: 'reject' }),
  S('connect faccept does not bypass the relay guard', { client: '203.0.113.5', to: ['u@test.example', 'x@far.example'] }),
  S('connect tempfail (421)', { client: '203.0.113.6' }),
  S('connect rule error', { client: '203.0.113.7' }),
  // helo
  S('helo deny', { helo: 'deny.test' }),
  S('helo reject', { helo: 'reject.test' }),
  S('helo accept with a code', { helo: 'accept.test' }),
  S('helo faccept is remembered for the session', { helo: 'faccept.test', from: 'reject@remote.test', subject: 'postq-reject' }),
  S('helo quarantine is remembered for the session', { helo: 'quarantine.test' }),
  S('helo info', { helo: 'info.test' }),
  S('helo rule error', { helo: 'error.test' }),
  // mail
  S('mail deny closes', { from: 'deny@remote.test' }),
  S('mail reject', { from: 'reject@remote.test' }),
  S('mail accept with a code', { from: 'accept@remote.test' }),
  S('mail faccept is remembered for the transaction', { from: 'faccept@remote.test', to: ['reject@test.example', 'u@test.example'], subject: 'preq-should-not-run' }),
  S('mail quarantine is remembered: mail_q', { from: 'quarantine@remote.test' }),
  S('mail accept carrying 5xx refuses', { from: 'acc5@remote.test' }),
  S('mail faccept carrying 4xx refuses', { from: 'fac4@remote.test' }),
  S('mail rule error', { from: 'error@remote.test' }),
  S('mail envelope sender rewrite', { from: 'rwfrom@remote.test' }),
  S('mail header effect lands in the message', { from: 'hdr@remote.test' }),
  S('null sender', { from: '' }),
  // rcpt
  S('rcpt deny closes', { to: ['deny@test.example'] }),
  S('rcpt reject', { to: ['reject@test.example'] }),
  S('rcpt accept with a code', { to: ['accept@test.example'] }),
  S('rcpt faccept', { to: ['faccept@test.example'], subject: 'postq-reject' }),
  S('rcpt quarantine: rcpt_q', { to: ['quarantine@test.example'] }),
  S('rcpt info', { to: ['info@test.example'] }),
  S('rcpt tempfail', { to: ['tempfail@test.example'] }),
  S('rcpt accept carrying 4xx refuses', { to: ['acc4@test.example'] }),
  S('rcpt rule error', { to: ['error@test.example'] }),
  S('rcpt maildir transport', { to: ['local@test.example'] }),
  S('rcpt mbox transport', { to: ['box@test.example'] }),
  S('rcpt forward transport', { to: ['relayed@far.example'] }),
  S('rcpt adds a recipient', { to: ['addrcpt@test.example'] }),
  S('rcpt next to a foreign domain meets the relay guard', { to: ['x@far.example'] }),
  S('rcpt explicit accept to a foreign domain relays', { to: ['accept@far.example'] }),
  S('rcpt foreign from the relay network passes the guard', { client: '192.0.2.5', to: ['x@far.example'] }),
  S('rcpt relay control refuses a foreign recipient from outside', { to: ['checked@far.example'] }),
  S('rcpt relay control clears a foreign recipient from the relay network', { client: '192.0.2.9', to: ['checked@far.example'] }),
  S('authenticated client relays through next', { auth: true, to: ['x@far.example'] }),
  S('mixed recipients: some refused, some relayed, some local', { to: ['u@test.example', 'reject@test.example', 'x@far.example', 'accept@far.example', 'local@test.example'] }),
  S('mixed recipients with a quarantine among them', { to: ['u@test.example', 'quarantine@test.example'] }),
  S('every recipient refused: no DATA', { to: ['reject@test.example', 'x@far.example'] }),
  // preq
  S('preq deny', { subject: 'deny' }),
  S('preq reject', { subject: 'reject' }),
  S('preq accept with a code', { subject: 'accept' }),
  S('preq faccept skips postq and delivery', { subject: 'faccept' }),
  S('preq quarantine: preq_q', { subject: 'quarantine' }),
  S('preq accept carrying 5xx refuses', { subject: 'acc5' }),
  S('preq rule error', { subject: 'error' }),
  S('preq header effects', { subject: 'hdr' }),
  S('preq To: rewrite', { subject: 'rwto', to: ['u@test.example', 'v@test.example'] }),
  // postq
  S('postq deny: dead', { subject: 'postq-deny' }),
  S('postq reject: dead', { subject: 'postq-reject' }),
  S('postq quarantine: postq_q', { subject: 'postq-quarantine' }),
  S('postq faccept skips the delivery stage', { subject: 'postq-faccept' }),
  S('postq accept carrying 5xx: dead', { subject: 'postq-acc5' }),
  S('postq header effect', { subject: 'postq-hdr' }),
  S('postq adds a recipient', { subject: 'postq-addrcpt' }),
  S('postq rule error defers', { subject: 'postq-error' }),
  // delivery
  S('delivery reject: dead', { subject: 'delivery-reject' }),
  S('delivery quarantine: delivery_q', { subject: 'delivery-quarantine' }),
  S('delivery header effect', { subject: 'delivery-hdr' }),
  S('delivery removes one recipient of two', { subject: 'delivery-rm', to: ['u@test.example', 'v@test.example'] }),
  // the relay guard without rcpt rules, and with rules that only log
  S('no rcpt rules: local recipient from outside', { policy: 'norcpt' }),
  S('no rcpt rules: foreign recipient from outside', { policy: 'norcpt', to: ['x@far.example'] }),
  S('no rcpt rules: foreign recipient from the relay network', { policy: 'norcpt', client: '192.0.2.5', to: ['x@far.example'] }),
  S('no rcpt rules: foreign recipient, authenticated', { policy: 'norcpt', auth: true, to: ['x@far.example'] }),
  S('logging rcpt rules: foreign recipient from outside is refused', { policy: 'logging', to: ['x@far.example', 'u@test.example'] }),
  S('logging rcpt rules: foreign recipient from the relay network', { policy: 'logging', client: '192.0.2.5', to: ['x@far.example'] }),
];

// ------------------------------------------------------------ normalisation

/** Queue ids and dates differ between two runs; everything else must not. */
function normaliseText(s: string): string {
  // Header folding depends on the length of the date: unfold first.
  return s.replace(/\r\n[ \t]+/g, ' ').replace(/\b01[0-9A-Z]{19}\b(-B\d+)?/g, 'QUEUEID').replace(/; [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}/g, '; DATE');
}

interface Row { stage: string; recipient: string | null; status: string; rule: string | null; at: string | null; reply: string }

function normaliseRow(r: Row): Row {
  return { ...r, reply: normaliseText(r.reply.replace(/^(\d{3})-/, '$1 ')) };
}

interface Outcome {
  rows: Row[];
  disposition: Record<string, unknown>;
  deliveries: Array<{ transport: string; destination: string | null; mailFrom: string; rcpts: string[]; data: string }>;
}

function messageFor(sc: Scenario): string {
  const from = sc.from ?? 'a@remote.test';
  const to = sc.to ?? ['u@test.example'];
  return [
    `From: <${from}>`,
    `To: ${to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: ${sc.subject ?? 'plain'}`,
    'Date: Tue, 08 Dec 2026 01:00:00 +0000',
    'Message-ID: <differential@remote.test>',
    'X-Drop: this header goes at preq "hdr"',
    '',
    'body line one',
    '.a line that starts with a dot',
    '',
  ].join('\r\n');
}

// ------------------------------------------------------------ explain side

function runExplain(mainPath: string, sc: Scenario, messageFile: string): Promise<Outcome> {
  const args = [MTA, 'explain', '--config', mainPath, '--client', sc.client ?? OUTSIDE, '--helo', sc.helo ?? 'client.test', '--from', sc.from ?? 'a@remote.test', '--message', messageFile, '--offline', '--json'];
  for (const t of sc.to ?? ['u@test.example']) args.push('--to', t);
  if (sc.auth) args.push('--auth', 'alice');
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      if (code !== 0 && code !== 3) return reject(new Error(`mta explain exited ${code}: ${err}`));
      const j = JSON.parse(out) as { stages: Array<Row & { decider: string; source?: string }>; disposition: Record<string, unknown>; deliveries: Outcome['deliveries'] };
      resolve({
        rows: j.stages.filter((r) => r.decider !== 'protocol' && r.stage !== 'authenticate').map((r) => normaliseRow({ stage: r.stage, recipient: r.recipient ?? null, status: r.status, rule: r.rule ?? r.source ?? null, at: r.at, reply: r.reply })),
        disposition: normaliseDisposition(j.disposition),
        deliveries: j.deliveries.map((d) => ({ ...d, data: normaliseText(Buffer.from(d.data, 'base64').toString('latin1')) })),
      });
    });
  });
}

function normaliseDisposition(d: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(normaliseText(JSON.stringify(d))) as Record<string, unknown>;
}

// ------------------------------------------------------------ server side

interface ServerUnderTest {
  server: RunningServer;
  port: number;
  mainPath: string;
  logs: Array<Record<string, unknown>>;
  captured: Parameters<DeliveryCapture>[0][];
  dirs: string[];
}

async function startPolicyServer(name: PolicyName): Promise<ServerUnderTest> {
  const policyDir = tempDir(`vsl-diff-${name}-`);
  const queueDir = tempDir('vsl-diff-queue-');
  const dataDir = tempDir('vsl-diff-data-');
  fs.writeFileSync(path.join(policyDir, 'main.vsl'), POLICIES[name]);
  fs.writeFileSync(path.join(policyDir, 'passwd'), `alice:${await hashScrypt(PASSWORD, { ln: 4, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n`, { mode: 0o600 });
  const mainPath = path.join(policyDir, 'main.vsl');
  const { log, logs } = captureLog('info');
  const captured: Parameters<DeliveryCapture>[0][] = [];
  const server = await startServer({
    mainPath,
    overrides: { listen: ['127.0.0.1:0'], queueDir, set: [`vsl.data_dir=${JSON.stringify(dataDir)}`], logLevel: 'info' },
    log,
    deliver: true,
    watch: false,
    capture: (d) => captured.push(d),
  });
  return { server, port: server.listeners[0]!.port, mainPath, logs, captured, dirs: [policyDir, queueDir, dataDir] };
}

async function runServer(s: ServerUnderTest, sc: Scenario): Promise<Outcome> {
  const logFrom = s.logs.length;
  const capturedFrom = s.captured.length;
  const ip = sc.client ?? OUTSIDE;
  const c = await SmtpClient.connect(s.port, { preamble: `PROXY TCP4 ${ip} 127.0.0.1 ${CLIENT_PORT} 25\r\n` });
  let queueId: string | null = null;
  const ok = (r: SmtpReply | null, code: number): r is SmtpReply => r !== null && r.code === code;
  try {
    const greeting = await c.greeting().catch(() => null);
    if (!ok(greeting, 220)) return await collect(s, logFrom, capturedFrom, null);
    if (!ok(await c.ehlo(sc.helo ?? 'client.test').catch(() => null), 250)) return await collect(s, logFrom, capturedFrom, null);
    if (sc.auth) {
      const token = Buffer.from(`\0alice\0${PASSWORD}`).toString('base64');
      assert.equal((await c.command(`AUTH PLAIN ${token}`)).code, 235, 'the test user authenticates');
    }
    const mail = await c.command(`MAIL FROM:<${sc.from ?? 'a@remote.test'}>`).catch(() => null);
    if (!ok(mail, 250)) return await collect(s, logFrom, capturedFrom, null);
    for (const t of sc.to ?? ['u@test.example']) {
      if ((await c.command(`RCPT TO:<${t}>`).catch(() => null)) === null) return await collect(s, logFrom, capturedFrom, null);
    }
    const data = await c.command('DATA').catch(() => null);
    if (!ok(data, 354)) return await collect(s, logFrom, capturedFrom, null);
    const end = await c.data(messageFor(sc));
    // The queue id is the transaction's, as the preq decision line names it (a custom 2xx need not say it).
    const preq = s.logs.slice(logFrom).reverse().find((l) => l.stage === 'preq');
    if (end.code < 300 && typeof preq?.queue_id === 'string') queueId = preq.queue_id;
    await c.quit().catch(() => undefined);
  } finally {
    c.destroy();
  }
  return collect(s, logFrom, capturedFrom, queueId);
}

/** Waits until the queue runner is done with the message, then reads what the server decided and did. */
async function collect(s: ServerUnderTest, logFrom: number, capturedFrom: number, id: string | null): Promise<Outcome> {
  let disposition: Record<string, unknown> = { kind: 'refused' };
  if (id !== null) {
    const spool = s.server.spool;
    const deadline = Date.now() + 15_000;
    for (;;) {
      const place = await spool.locate(id);
      if (place === null) {
        disposition = { kind: 'delivered' };
        break;
      }
      if (place.kind === 'dead') {
        disposition = { kind: 'dead', reason: (await spool.readRecord(place, id)).dead_reason ?? '' };
        break;
      }
      if (place.kind === 'quarantine') {
        disposition = { kind: 'quarantine', name: place.name };
        break;
      }
      if (place.kind === 'deferred') {
        const rec = await spool.readRecord(place, id);
        disposition = rec.recipients.some((r) => r.state === 'delivered') ? { kind: 'delivered' } : { kind: 'deferred', reason: rec.last_error ?? '' };
        break;
      }
      assert.ok(Date.now() < deadline, `message ${id} left ${ACTIVE.kind}/ in time`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // The last decision line of the pass is written before the message leaves active/; let the log drain.
    await new Promise((r) => setTimeout(r, 20));
  } else {
    await new Promise((r) => setTimeout(r, 50));
  }
  const rows = s.logs.slice(logFrom)
    .filter((l) => typeof l.stage === 'string' && typeof l.status === 'string' && 'reply' in l && l.stage !== 'authenticate')
    .map((l) => normaliseRow({ stage: l.stage as string, recipient: (l.recipient as string | null) ?? null, status: l.status as string, rule: (l.rule as string | null) ?? null, at: (l.at as string | null) ?? null, reply: (l.reply as string) ?? '' }));
  const deliveries = s.captured.slice(capturedFrom).map((d) => ({ transport: d.transport, destination: d.destination, mailFrom: d.mailFrom, rcpts: d.rcpts, data: normaliseText(d.data.toString('latin1')) }));
  return { rows, disposition: normaliseDisposition(disposition), deliveries };
}

// ------------------------------------------------------------ the comparison

describe('mta explain and the server decide through the same code', () => {
  const servers = new Map<PolicyName, ServerUnderTest>();
  let messagesDir: string;
  before(async () => {
    messagesDir = tempDir('vsl-diff-msg-');
    for (const name of Object.keys(POLICIES) as PolicyName[]) servers.set(name, await startPolicyServer(name));
  });
  after(async () => {
    for (const s of servers.values()) {
      await s.server.stop(500);
      for (const d of s.dirs) fs.rmSync(d, { recursive: true, force: true });
    }
    fs.rmSync(messagesDir, { recursive: true, force: true });
  });

  test('there are at least 60 scenarios', () => {
    assert.ok(SCENARIOS.length >= 60, `${SCENARIOS.length} scenarios`);
  });

  for (const [i, sc] of SCENARIOS.entries()) {
    test(sc.name, async () => {
      const s = servers.get(sc.policy)!;
      const file = path.join(messagesDir, `${i}.eml`);
      fs.writeFileSync(file, messageFor(sc));
      const explained = await runExplain(s.mainPath, sc, file);
      const served = await runServer(s, sc);
      assert.ok(served.rows.length > 0, 'the server logged its decisions');
      assert.deepEqual(explained.rows, served.rows, 'the same decisions, rules and replies, stage by stage');
      assert.deepEqual(explained.disposition, served.disposition, 'the same final disposition');
      assert.deepEqual(explained.deliveries, served.deliveries, 'the same deliveries, byte for byte');
    });
  }
});
