// The half after the 250, end to end (issue "Durable queue and delivery"):
// the real server (src/server.ts startServer, with its delivery scheduler),
// the real policy engine running the vSL policies below, real SMTP over
// loopback sockets in and out, the next hop being test/helpers/smtp-sink.ts
// and DNS the loopback server of test/helpers/dns-server.ts.
//
// The scheduler's logic under an injected clock (exact retry times, jitter,
// max_age, DSN contents, RCPT 452 batching, …) is covered by test/delivery/
// and test/queue/; here the point is that the pieces are wired together:
// what the policy decides at rcpt and postq is what delivery does.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import type { EnvelopeRecord } from '../../src/queue/envelope.js';
import { newQueueId } from '../../src/queue/id.js';
import { Spool } from '../../src/queue/spool.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { loadError } from '../helpers/vsl.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';
import { replySequence, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

// ---- a server under test ----

type LogLine = Record<string, unknown> & { msg: string; level: number };

interface Mta {
  server: RunningServer;
  port: number;
  queueDir: string;
  /** The policy's temporary directory (mail roots for maildir/mbox live here too). */
  dir: string;
  logs: LogLine[];
  stop(): Promise<void>;
}

/** Collects the server's JSON log lines. */
function captureLog(): { log: ReturnType<typeof createLogger>; logs: LogLine[] } {
  const logs: LogLine[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString('utf8');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim()) logs.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  return { log: createLogger({ level: 'info', format: 'json', destination }), logs };
}

/**
 * Starts the whole server (front, spool, scheduler) on 127.0.0.1:0 with a
 * policy `main.vsl` written by `policy(dir)` into a fresh directory.
 */
async function startMta(policy: (dir: string) => string, prepare?: (queueDir: string) => Promise<void>): Promise<Mta> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-qd-'));
  const queueDir = path.join(dir, 'queue');
  fs.writeFileSync(path.join(dir, 'main.vsl'), policy(dir));
  const { log, logs } = captureLog();
  let server: RunningServer;
  try {
    await prepare?.(queueDir);
    server = await startServer({
      mainPath: path.join(dir, 'main.vsl'),
      overrides: { listen: ['127.0.0.1:0'], queueDir, set: [] },
      log,
      watch: false,
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  let stopped = false;
  return {
    server,
    port: server.listeners[0]!.port,
    queueDir,
    dir,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop(500);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** on_config shared by the policies: names, a tiny retry schedule, short timeouts. */
function onConfig(lines: string[] = []): string {
  return `fn on_config(config) {
  config.server.name = "mx.relay.test";
  config.server.domain = "relay.test";
  config.delivery.retry = ["1s", "2s"];
  config.delivery.timeout = "3s";
${lines.map((l) => `  ${l}\n`).join('')}  config
}
`;
}

/** The sink as a forward target. */
function target(sink: SmtpSink): string {
  return `smtp://127.0.0.1:${sink.port}?tls=none`;
}

/** A policy relaying for loopback clients and forwarding every recipient to `to`. */
function forwardPolicy(to: string, config: string[] = []): string {
  return `${onConfig(config)}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
    action "forward to the next hop" || transport::forward(ctx::rcpt(), "${to}"),
  ],
}
`;
}

// ---- SMTP in ----

/** A message whose bytes the test can recognise at the other end. */
function message(from: string, to: string, subject: string, body = 'Hello over the queue.\r\n'): string {
  return [
    `From: Sender <${from}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    'Date: Sat, 22 Nov 2025 10:00:00 +0000',
    `Message-ID: <${subject.replace(/\W+/g, '.')}@client.test>`,
    'X-Folded: first part',
    '\tsecond part',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    body,
  ].join('\r\n');
}

async function expectCode(r: Promise<SmtpReply>, code: number, what: string): Promise<SmtpReply> {
  const reply = await r;
  assert.equal(reply.code, code, `${what}: ${reply.lines.join(' | ')}`);
  return reply;
}

/** One transaction on an open session; returns the queue id of the 250. */
async function transaction(c: SmtpClient, from: string, rcpts: string[], data: string): Promise<string> {
  await expectCode(c.command(`MAIL FROM:<${from}>`), 250, 'MAIL');
  for (const r of rcpts) await expectCode(c.command(`RCPT TO:<${r}>`), 250, `RCPT ${r}`);
  await expectCode(c.command('DATA'), 354, 'DATA');
  const end = await expectCode(c.data(data), 250, 'end of data');
  const m = /queued as (\S+)/.exec(end.last);
  assert.ok(m, `a queue id in ${end.last}`);
  return m[1]!;
}

/** Connects, EHLO, sends one message, QUIT; returns its queue id. */
async function send(port: number, from: string, rcpts: string[], data: string): Promise<string> {
  const c = await SmtpClient.connect(port);
  try {
    await expectCode(c.greeting(), 220, 'greeting');
    await expectCode(c.ehlo('client.test'), 250, 'EHLO');
    const id = await transaction(c, from, rcpts, data);
    await c.quit();
    return id;
  } finally {
    c.destroy();
  }
}

// ---- looking at the result ----

/** Polls `probe` every 25 ms until it returns a value other than undefined/false. */
async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Ids of the messages (`.json`) in a queue sub-directory. */
function idsIn(queueDir: string, sub: string): string[] {
  try {
    return fs
      .readdirSync(path.join(queueDir, sub))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}

function recordIn(queueDir: string, sub: string, id: string): EnvelopeRecord {
  return JSON.parse(fs.readFileSync(path.join(queueDir, sub, `${id}.json`), 'utf8')) as EnvelopeRecord;
}

/** Whether the spool holds no message at all (every place, quarantines included). */
function queueEmpty(queueDir: string): boolean {
  const quarantines = fs.existsSync(path.join(queueDir, 'quarantine')) ? fs.readdirSync(path.join(queueDir, 'quarantine')) : [];
  return ['active', 'deferred', 'dead', ...quarantines.map((q) => `quarantine/${q}`)].every((p) => idsIn(queueDir, p).length === 0);
}

/** The header block of a message, as raw text (up to the empty line). */
function headerBlock(data: string): string {
  return data.slice(0, data.indexOf('\r\n\r\n') + 2);
}

function logsMatching(logs: LogLine[], re: RegExp): LogLine[] {
  return logs.filter((l) => re.test(l.msg));
}

/** A delivery-attempt summary line (src/log/summary.ts) with this outcome. */
function isAttempt(l: LogLine, status: 'sent' | 'deferred' | 'bounced' | 'expired'): boolean {
  return l.event === 'delivery' && l.status === status;
}

// ---- 1. forward: 100 messages, once each, headers intact ----

test('forward from a rcpt rule: 100 messages sent over SMTP arrive once each at the next hop, with a Received: line added and everything else byte-identical', async () => {
  const sink = await startSmtpSink();
  const mta = await startMta(() => forwardPolicy(target(sink)));
  try {
    const sent = new Map<string, { data: string; id: string; rcpt: string }>();
    // Four clients, 25 messages each on one session: what the front accepts concurrently.
    await Promise.all(
      [0, 1, 2, 3].map(async (k) => {
        const c = await SmtpClient.connect(mta.port);
        try {
          await expectCode(c.greeting(), 220, 'greeting');
          await expectCode(c.ehlo('client.test'), 250, 'EHLO');
          for (let i = 0; i < 25; i++) {
            const subject = `forward ${k}-${i}`;
            const rcpt = `user${i}@far.test`;
            const data = message(`sender${k}@client.test`, rcpt, subject, `Body of message ${k}-${i}.\r\n.leading dot line\r\n`);
            const id = await transaction(c, `sender${k}@client.test`, [rcpt], data);
            sent.set(subject, { data, id, rcpt });
          }
          await c.quit();
        } finally {
          c.destroy();
        }
      }),
    );
    assert.equal(sent.size, 100);
    await sink.waitForMessages(100, 30_000);
    await waitFor('an empty queue', () => queueEmpty(mta.queueDir));
    // Nothing more arrives once the queue is empty: each message exactly once.
    assert.equal(sink.messages.length, 100);

    const seen = new Set<string>();
    for (const m of sink.messages) {
      const text = m.data.toString('latin1');
      const subject = /^Subject: (.*)$/m.exec(text)?.[1];
      assert.ok(subject && sent.has(subject), `a message the test sent: ${subject}`);
      assert.ok(!seen.has(subject), `${subject} arrived once`);
      seen.add(subject);
      const orig = sent.get(subject)!;
      assert.deepEqual(m.rcptTo, [orig.rcpt]);
      assert.match(m.mailFrom, /^sender\d@client\.test$/);
      // One Received: line on top, naming this server and the queue id; then the message as sent.
      const received = /^Received: [^\r]*(?:\r\n[ \t][^\r]*)*\r\n/.exec(text);
      assert.ok(received, `a Received: line first:\n${headerBlock(text)}`);
      const trace = received[0].replace(/\r\n[ \t]+/g, ' ');
      assert.match(trace, /^Received: from client\.test \(.*\[127\.0\.0\.1\]\) by mx\.relay\.test with ESMTP id (\S+);/);
      assert.ok(trace.includes(`id ${orig.id};`), `the trace names queue id ${orig.id}: ${trace}`);
      assert.equal(text.slice(received[0].length), orig.data, `${subject}: original headers and body byte-identical`);
    }

    const delivered = mta.logs.filter((l) => isAttempt(l, 'sent'));
    assert.equal(delivered.length, 100, 'one "delivered" log line per message');
    // Several messages per connection (connections are reused).
    assert.ok(sink.connections() < 100, `${sink.connections()} connections for 100 messages`);
  } finally {
    await mta.stop();
    await sink.close();
  }
});

// ---- 2. retries ----

test('a next hop answering 451 twice then 250 gets the message on the third attempt, each retry no earlier than delivery.retry says', async () => {
  // Real time here: the schedule is set tiny in on_config (1 s, then 2 s).
  // The exact schedule under an injected clock is test/delivery/retry.test.ts
  // ("451, 451, then 250: delivered on the third attempt, retries exactly at the configured schedule").
  const attemptsAt: number[] = [];
  const replies = replySequence({ code: 451, text: '4.3.0 Try again later' }, { code: 451, text: '4.3.0 Try again later' }, 'accept');
  const sink = await startSmtpSink({
    script: {
      data: (ctx) => {
        attemptsAt.push(Date.now());
        return replies(ctx);
      },
    },
  });
  const mta = await startMta(() => forwardPolicy(target(sink)));
  try {
    const data = message('alice@client.test', 'bob@far.test', 'retry me');
    const id = await send(mta.port, 'alice@client.test', ['bob@far.test'], data);
    await sink.waitForMessages(1, 20_000);
    await waitFor('an empty queue', () => queueEmpty(mta.queueDir));
    assert.equal(sink.dataAttempts(), 3, 'two refusals, then the accepted attempt');
    assert.equal(sink.messages.length, 1);
    assert.ok(sink.messages[0]!.data.toString('latin1').endsWith(data));

    const [t1, t2, t3] = attemptsAt as [number, number, number];
    assert.ok(t2 - t1 >= 1000, `second attempt ${t2 - t1} ms after the first (schedule: 1s)`);
    assert.ok(t3 - t2 >= 2000, `third attempt ${t3 - t2} ms after the second (schedule: 2s)`);

    // The scheduler's own account: deferred twice with the 451 quoted and a
    // next attempt per the schedule, never tried before that time, then delivered.
    const deferred = mta.logs.filter((l) => l.queue_id === id && isAttempt(l, 'deferred'));
    assert.equal(deferred.length, 2);
    for (const [i, l] of deferred.entries()) {
      assert.match(String(l.reply), /^451 4\.3\.0 Try again later/);
      const next = Date.parse(String(l.next_attempt));
      const base = [1000, 2000][i]!;
      assert.ok(next - attemptsAt[i]! >= base, `next attempt ${next - attemptsAt[i]!} ms after attempt ${i + 1} (≥ ${base})`);
      assert.ok(attemptsAt[i + 1]! >= next, `attempt ${i + 2} not before its scheduled time`);
    }
    const done = mta.logs.find((l) => l.queue_id === id && isAttempt(l, 'sent') && l.recipient === 'bob@far.test');
    assert.ok(done, 'a "delivered" log line');
    assert.equal(done.attempts, 3);
  } finally {
    await mta.stop();
    await sink.close();
  }
});

// ---- 3. permanent failures and bounces ----

/** A next hop that refuses nobody@far.test with 550 and accepts everything else (the DSNs). */
async function refusingSink(): Promise<SmtpSink> {
  return startSmtpSink({
    script: {
      rcpt: (ctx) => (ctx.address.startsWith('nobody@') ? { code: 550, text: '5.1.1 <nobody@far.test>: Recipient address rejected: no such user' } : 'accept'),
    },
  });
}

test('a next hop answering 550 fails the recipient: the message goes to dead/ and one DSN quoting the remote reply reaches the sender', async () => {
  const sink = await refusingSink();
  // delivery.default routes what the policy did not route (the DSN to the sender) to the same next hop.
  const mta = await startMta(() => forwardPolicy(target(sink), [`config.delivery.default = "${target(sink)}";`]));
  try {
    const id = await send(mta.port, 'alice@client.test', ['nobody@far.test'], message('alice@client.test', 'nobody@far.test', 'to nobody'));
    await sink.waitForMessages(1, 15_000);
    await waitFor('the queue to settle', () => idsIn(mta.queueDir, 'active').length === 0 && idsIn(mta.queueDir, 'deferred').length === 0);

    // The original: dead, failed with the remote reply, its DSN recorded as sent.
    assert.deepEqual(idsIn(mta.queueDir, 'dead'), [id]);
    const rec = recordIn(mta.queueDir, 'dead', id);
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.equal(rec.recipients[0]!.status, '5.1.1');
    assert.equal(rec.recipients[0]!.dsn, 'sent');
    assert.match(rec.recipients[0]!.last_error ?? '', /^550 5\.1\.1 <nobody@far\.test>: Recipient address rejected/);
    assert.equal(rec.bounces, 1);

    // Exactly one DSN, from <> to the sender, an RFC 3464 report quoting the 550.
    assert.equal(sink.messages.length, 1);
    const dsn = sink.messages[0]!;
    assert.equal(dsn.mailFrom, '');
    assert.deepEqual(dsn.rcptTo, ['alice@client.test']);
    const text = dsn.data.toString('latin1');
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@relay\.test>\r$/m);
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(text, /^Final-Recipient: rfc822; nobody@far\.test\r$/m);
    assert.match(text, /^Action: failed\r$/m);
    assert.match(text, /^Status: 5\.1\.1\r$/m);
    assert.match(text.replace(/\r\n[ \t]+/g, ' '), /^Diagnostic-Code: smtp; 550 5\.1\.1 <nobody@far\.test>: Recipient address rejected: no such user\r$/m);
    assert.match(text, /^Subject: to nobody\r$/m, 'the original header is returned');
    assert.match(text, new RegExp(`^X-Queue-ID: ${id}\\r$`, 'm'));
    assert.equal(sink.transactions(), 2, 'one refused transaction, one DSN: nothing retried or bounced twice');
  } finally {
    await mta.stop();
    await sink.close();
  }
});

test('a 550 for mail from the null sender sends it to dead/ with no bounce', async () => {
  const sink = await refusingSink();
  const mta = await startMta(() => forwardPolicy(target(sink), [`config.delivery.default = "${target(sink)}";`]));
  try {
    const id = await send(mta.port, '', ['nobody@far.test'], message('MAILER-DAEMON@client.test', 'nobody@far.test', 'a bounce itself'));
    const rec = await waitFor('the message in dead/', () => idsIn(mta.queueDir, 'dead').includes(id) && recordIn(mta.queueDir, 'dead', id));
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.match(rec.recipients[0]!.last_error ?? '', /^550 5\.1\.1/);
    assert.equal(rec.recipients[0]!.dsn, 'none');
    assert.equal(rec.bounces, 0);
    // A DSN would be queued before the original moves to dead/: nothing else is in the spool.
    assert.deepEqual([...idsIn(mta.queueDir, 'active'), ...idsIn(mta.queueDir, 'deferred')], []);
    assert.equal(sink.messages.length, 0);
    assert.equal(logsMatching(mta.logs, /DSN .* queued/).length, 0);
  } finally {
    await mta.stop();
    await sink.close();
  }
});

// ---- 4. MX delivery ----

/** Resolves once a TCP connection to host:port is refused (the precondition of the MX test). */
function connectionRefused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

test('MX delivery through the configured DNS server: the preferred MX refuses connections, the second MX gets the message', async () => {
  const second = await startSmtpSink({ host: '127.0.0.1' });
  // delivery.mx_port is one port for every MX host: the first MX is
  // 127.0.0.2 on that port, where nothing listens.
  assert.ok(await connectionRefused('127.0.0.2', second.port), 'nothing listens on the first MX');
  const dns = await startDnsServer({
    'dest.test': { MX: ['10 mx1.dest.test', '20 mx2.dest.test'] },
    'mx1.dest.test': { A: ['127.0.0.2'] },
    'mx2.dest.test': { A: ['127.0.0.1'] },
  });
  const mta = await startMta(
    () => `${onConfig([`config.server.dns.servers = ["${dns.address}"];`, `config.delivery.mx_port = ${second.port};`])}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
    action "deliver by MX" || transport::deliver(ctx::rcpt()),
  ],
}
`,
  );
  try {
    const data = message('alice@client.test', 'bob@dest.test', 'by mx');
    const id = await send(mta.port, 'alice@client.test', ['bob@dest.test'], data);
    await second.waitForMessages(1, 15_000);
    await waitFor('an empty queue', () => queueEmpty(mta.queueDir));
    assert.deepEqual(second.messages[0]!.rcptTo, ['bob@dest.test']);
    assert.ok(second.messages[0]!.data.toString('latin1').endsWith(data));
    assert.ok(dns.queries.includes('dest.test MX'), `MX asked: ${dns.queries.join(', ')}`);
    assert.ok(dns.queries.includes('mx1.dest.test A') && dns.queries.includes('mx2.dest.test A'));
    const refused = logsMatching(mta.logs, /cannot use mx1\.dest\.test \[127\.0\.0\.2\]/);
    assert.equal(refused.length, 1, 'the refused first MX is logged');
    assert.match(refused[0]!.msg, /ECONNREFUSED/);
    const done = mta.logs.find((l) => l.queue_id === id && isAttempt(l, 'sent'));
    assert.match(String(done?.relay), /mx2\.dest\.test/);
  } finally {
    await mta.stop();
    await dns.stop();
    await second.close();
  }
});

test('MX delivery to a domain with a null MX fails at once with 5.1.10 and bounces to the sender', async () => {
  const sink = await startSmtpSink({ host: '127.0.0.1' });
  const dns = await startDnsServer({
    'nullmx.test': { MX: ['0 .'] },
    'client.test': { MX: ['10 mx.client.test'] },
    'mx.client.test': { A: ['127.0.0.1'] },
  });
  const mta = await startMta(
    () => `${onConfig([`config.server.dns.servers = ["${dns.address}"];`, `config.delivery.mx_port = ${sink.port};`])}
#{
  rcpt: [ rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")) ],
}
`,
  );
  try {
    const id = await send(mta.port, 'alice@client.test', ['bob@nullmx.test'], message('alice@client.test', 'bob@nullmx.test', 'to a null MX'));
    // The DSN goes to client.test's MX, the sink.
    await sink.waitForMessages(1, 15_000);
    await waitFor('the queue to settle', () => idsIn(mta.queueDir, 'active').length === 0 && idsIn(mta.queueDir, 'deferred').length === 0);
    const rec = recordIn(mta.queueDir, 'dead', id);
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.equal(rec.recipients[0]!.status, '5.1.10');
    assert.equal(rec.recipients[0]!.attempts, 1, 'failed at the first attempt, not retried');
    assert.match(rec.recipients[0]!.last_error ?? '', /^556 5\.1\.10 .*null MX/);
    const dsn = sink.messages[0]!;
    assert.equal(dsn.mailFrom, '');
    assert.deepEqual(dsn.rcptTo, ['alice@client.test']);
    assert.match(dsn.data.toString('latin1'), /^Status: 5\.1\.10\r$/m);
    assert.equal(sink.messages.length, 1);
  } finally {
    await mta.stop();
    await dns.stop();
    await sink.close();
  }
});

// ---- 5. local delivery ----

test('transport::maildir and transport::mbox deliver into the delivery.maildir and delivery.mbox templates', async () => {
  const mta = await startMta(
    (dir) => `${onConfig([
      `config.delivery.maildir = "${dir}/vmail/{domain}/{local_part}/Maildir";`,
      `config.delivery.mbox = "${dir}/spool/{local_part}";`,
    ])}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
    action "local mailboxes" || {
      if ctx::rcpt().domain == "maildir.test" { transport::maildir(ctx::rcpt()); }
      if ctx::rcpt().domain == "mbox.test" { transport::mbox(ctx::rcpt()); }
    },
  ],
}
`,
  );
  try {
    const bodyWithFrom = 'First line.\r\nFrom the start of a line, quoted in mbox.\r\n>From already quoted.\r\n';
    const m1 = message('alice@client.test', 'Carol@maildir.test', 'to maildir', bodyWithFrom);
    const m2 = message('alice@client.test', 'dave@mbox.test', 'to mbox', bodyWithFrom);
    const id1 = await send(mta.port, 'alice@client.test', ['Carol@maildir.test'], m1);
    await send(mta.port, 'alice@client.test', ['dave@mbox.test'], m2);
    await waitFor('an empty queue', () => queueEmpty(mta.queueDir));

    // maildir: lower-cased local part, one file in new/, tmp/ left empty, LF line ends.
    const maildir = path.join(mta.dir, 'vmail', 'maildir.test', 'carol', 'Maildir');
    assert.deepEqual(fs.readdirSync(path.join(maildir, 'tmp')), []);
    const files = fs.readdirSync(path.join(maildir, 'new'));
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^\d+\.[^/]+\.[^/]+$/, `a unique maildir name: ${files[0]}`);
    const delivered = fs.readFileSync(path.join(maildir, 'new', files[0]!), 'latin1');
    assert.ok(!delivered.includes('\r\n'), 'LF line ends on disk');
    assert.match(delivered, /^Return-Path: <alice@client\.test>\n/);
    assert.match(delivered, /^Delivered-To: Carol@maildir\.test\n/m);
    assert.match(delivered.replace(/\n[ \t]+/g, ' '), new RegExp(`^Received: from client\\.test .* id ${id1};`, 'm'));
    assert.ok(delivered.endsWith(m1.replace(/\r\n/g, '\n')), 'the message as sent');

    // mbox: a From_ line, >From quoting (mboxrd: already-quoted lines get one more >).
    const mbox = fs.readFileSync(path.join(mta.dir, 'spool', 'dave'), 'latin1');
    assert.match(mbox, /^From alice@client\.test \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n/);
    assert.match(mbox, /\n>From the start of a line, quoted in mbox\.\n>>From already quoted\.\n/);
    assert.match(mbox, /^Subject: to mbox$/m);
    assert.ok(mbox.endsWith('\n\n'), 'an mbox entry ends with an empty line');
  } finally {
    await mta.stop();
  }
});

// ---- bad input ----

test('corrupt queue files are moved to corrupt/ with an error log line while the server keeps delivering', async () => {
  const sink = await startSmtpSink();
  const truncated = newQueueId();
  const garbage = newQueueId();
  const mta = await startMta(
    () => forwardPolicy(target(sink)),
    async (queueDir) => {
      // Left by an earlier run: a message in active/ whose .eml lost its tail.
      const spool = await Spool.open(queueDir);
      const mailFrom = { local: 'alice', domain: 'client.test', raw: '<alice@client.test>', isNull: false };
      await spool.enqueue({
        id: truncated,
        mailFrom,
        rcpts: [{ address: { local: 'bob', domain: 'far.test', raw: '<bob@far.test>', isNull: false }, transport: { kind: 'forward', target: target(sink) } }],
        data: Buffer.from(message('alice@client.test', 'bob@far.test', 'truncated on disk')),
        session: {
          id: 'old', listener: 'smtp', client_ip: '127.0.0.1', client_port: 1, server_ip: '127.0.0.1', server_port: 25, server_name: 'mx.relay.test',
          connected_at: new Date().toISOString(), tls: null, helo: 'client.test', esmtp: true, auth: null, reverse_name: null, remembered: null,
        },
        txnRemembered: null,
      });
      const eml = path.join(queueDir, 'active', `${truncated}.eml`);
      fs.truncateSync(eml, 40);
    },
  );
  try {
    const before = await send(mta.port, 'alice@client.test', ['bob@far.test'], message('alice@client.test', 'bob@far.test', 'before'));
    // Garbage appears in deferred/ while the server runs; its scan (≤ 10 s, SPEC §11.5) finds it.
    fs.writeFileSync(path.join(mta.queueDir, 'deferred', `${garbage}.eml`), 'whatever\r\n');
    fs.writeFileSync(path.join(mta.queueDir, 'deferred', `${garbage}.json`), '{"version": 1, "id": "trunc');
    await waitFor('the garbage record moved aside', () => fs.existsSync(path.join(mta.queueDir, 'corrupt', `${garbage}.json`)));
    const after = await send(mta.port, 'alice@client.test', ['bob@far.test'], message('alice@client.test', 'bob@far.test', 'after'));
    await sink.waitForMessages(2, 15_000);
    await waitFor('an empty queue', () => queueEmpty(mta.queueDir));

    const subjects = sink.messages.map((m) => /^Subject: (.*)\r$/m.exec(m.data.toString('latin1'))?.[1]);
    assert.deepEqual(subjects.sort(), ['after', 'before'], 'both good messages delivered, the damaged one never');
    const corrupt = fs.readdirSync(path.join(mta.queueDir, 'corrupt')).sort();
    assert.deepEqual(corrupt, [`${truncated}.eml`, `${truncated}.json`, `${garbage}.eml`, `${garbage}.json`].sort());
    for (const id of [truncated, garbage]) {
      const line = mta.logs.find((l) => l.queue_id === id && /moved to corrupt\//.test(l.msg));
      assert.ok(line, `a log line for ${id}`);
      assert.equal(line.level, 50, 'logged at error level');
    }
    assert.match(String(mta.logs.find((l) => l.queue_id === truncated)?.reason), /truncated|does not match/);
    for (const id of [before, after]) assert.ok(mta.logs.some((l) => l.queue_id === id && isAttempt(l, 'sent')));
  } finally {
    await mta.stop();
    await sink.close();
  }
});

test('a next hop that never answers after DATA is cut off by delivery.timeout and the message is deferred, not lost', async () => {
  const sink = await startSmtpSink({ script: { data: () => 'hang' } });
  const mta = await startMta(() => forwardPolicy(target(sink), ['config.delivery.timeout = "1s";', 'config.delivery.retry = ["1h"];']));
  try {
    const t0 = Date.now();
    const id = await send(mta.port, 'alice@client.test', ['bob@far.test'], message('alice@client.test', 'bob@far.test', 'into the void'));
    const rec = await waitFor('the message deferred', () => idsIn(mta.queueDir, 'deferred').includes(id) && recordIn(mta.queueDir, 'deferred', id));
    assert.ok(Date.now() - t0 >= 1000, 'not given up before the timeout');
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.match(rec.recipients[0]!.last_error ?? '', /time(d)? ?out/i);
    assert.equal(sink.dataAttempts(), 1);
    assert.equal(sink.messages.length, 0);
    // A stuck remote does not hold the server: it stops promptly (its message stays deferred).
    await mta.server.stop(500);
    assert.ok(idsIn(mta.queueDir, 'deferred').includes(id));
  } finally {
    await mta.stop();
    await sink.close();
  }
});

test('delivery.mx_port must be a TCP port: 0 or 65536 is a load error naming the key', async () => {
  for (const bad of [0, 65536]) {
    const err = await loadError({ 'main.vsl': `fn on_config(config) { config.delivery.mx_port = ${bad}; config }\n#{}\n` });
    assert.match(err, /delivery\.mx_port: must be a TCP port, 1 to 65535/);
  }
  assert.equal(await loadError({ 'main.vsl': 'fn on_config(config) { config.delivery.mx_port = 2525; config }\n#{}\n' }), 'loaded without error');
});
