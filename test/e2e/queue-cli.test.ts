// `mta queue` (SPEC §11.5) against the queue of a running server: the
// server is the real one (src/server.ts startServer with its scheduler and
// the vSL policy below), the command is the real CLI spawned as its own
// process (`node --import tsx src/cli/main.ts queue …`), as an operator
// would run it beside `mta run`. The commands' own behaviour on a spool
// (formats, confirmations, races with an in-process scheduler) is covered
// by test/queue/cli.test.ts.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { ROOT } from '../helpers/paths.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { replySequence, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

type LogLine = Record<string, unknown> & { msg: string };

interface Mta {
  server: RunningServer;
  port: number;
  queueDir: string;
  logs: LogLine[];
  stop(): Promise<void>;
}

/**
 * The policy: relay for loopback, forward every recipient to the sink, and
 * at postq hold any message carrying `X-Virus-Test:` in quarantine "virus".
 */
function policy(sink: SmtpSink, retry: string): string {
  return `fn on_config(config) {
  config.server.name = "mx.relay.test";
  config.server.domain = "relay.test";
  config.delivery.retry = ["${retry}"];
  config.delivery.timeout = "5s";
  config
}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
    action "forward to the next hop" || transport::forward(ctx::rcpt(), "smtp://127.0.0.1:${sink.port}?tls=none"),
  ],
  postq: [
    rule "virus" || if msg::has_header("X-Virus-Test") { quarantine("virus") } else { next() },
  ],
}
`;
}

async function startMta(sink: SmtpSink, retry = '1s'): Promise<Mta> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-qcli-'));
  const queueDir = path.join(dir, 'queue');
  fs.writeFileSync(path.join(dir, 'main.vsl'), policy(sink, retry));
  const logs: LogLine[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) if (l.trim()) logs.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  let server: RunningServer;
  try {
    server = await startServer({
      mainPath: path.join(dir, 'main.vsl'),
      overrides: { listen: ['127.0.0.1:0'], queueDir, set: [] },
      log: createLogger({ level: 'info', format: 'json', destination }),
      watch: false,
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    server,
    port: server.listeners[0]!.port,
    queueDir,
    logs,
    async stop() {
      await server.stop(500);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sends one message over SMTP; returns the queue id of the 250. */
async function send(port: number, subject: string, extraHeader = ''): Promise<string> {
  const c = await SmtpClient.connect(port);
  try {
    assert.equal((await c.greeting()).code, 220);
    assert.equal((await c.ehlo('client.test')).code, 250);
    assert.equal((await c.command('MAIL FROM:<alice@client.test>')).code, 250);
    assert.equal((await c.command('RCPT TO:<bob@far.test>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    const end = await c.data(`From: <alice@client.test>\r\nTo: <bob@far.test>\r\nSubject: ${subject}\r\n${extraHeader}\r\nbody of ${subject}\r\n`);
    assert.equal(end.code, 250, end.last);
    await c.quit();
    return /queued as (\S+)/.exec(end.last)![1]!;
  } finally {
    c.destroy();
  }
}

/** Runs `mta queue ARGS` as a separate process. */
function mtaQueue(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'queue', ...args],
      { cwd: ROOT, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function idsIn(queueDir: string, sub: string): string[] {
  try {
    return fs.readdirSync(path.join(queueDir, sub)).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  } catch {
    return [];
  }
}

function subjectOf(data: Buffer): string | undefined {
  return /^Subject: (.*)\r$/m.exec(data.toString('latin1'))?.[1];
}

test('postq quarantine("virus") holds the message in quarantine/virus; "mta queue quarantine list" shows it and "mta queue release" gets it delivered by the running server', async () => {
  const sink = await startSmtpSink();
  const mta = await startMta(sink);
  try {
    // A clean message passes postq and is delivered; the infected one is held.
    await send(mta.port, 'clean');
    const held = await send(mta.port, 'infected', 'X-Virus-Test: EICAR\r\n');
    await sink.waitForMessages(1);
    await waitFor('the message in quarantine/virus', () => idsIn(mta.queueDir, 'quarantine/virus').includes(held));
    assert.deepEqual(sink.messages.map((m) => subjectOf(m.data)), ['clean']);
    const decision = mta.logs.find((l) => l.queue_id === held && l.stage === 'postq' && l.status === 'quarantine');
    assert.ok(decision, 'the postq decision is logged by the stage machine');
    assert.equal(decision.rule, 'virus');

    const list = await mtaQueue(['quarantine', 'list', '--queue-dir', mta.queueDir]);
    assert.equal(list.code, 0, list.stderr);
    const row = list.stdout.split('\n').find((l) => l.startsWith(held));
    assert.ok(row, `the held message is listed:\n${list.stdout}`);
    assert.match(row, /\squarantine:virus\s/);
    assert.match(row, /alice@client\.test/);
    assert.match(list.stdout, /^1 message$/m);
    const json = await mtaQueue(['quarantine', 'list', '--queue-dir', mta.queueDir, '--json']);
    const entries = JSON.parse(json.stdout) as Array<{ id: string; state: string; recipients: number }>;
    assert.deepEqual(entries.map((e) => [e.id, e.state, e.recipients]), [[held, 'quarantine:virus', 1]]);
    // The whole-queue listing shows it too; it is never delivered on its own.
    assert.match((await mtaQueue(['list', '--queue-dir', mta.queueDir])).stdout, new RegExp(`^${held} .*quarantine:virus`, 'm'));
    assert.equal(sink.messages.length, 1);

    const release = await mtaQueue(['release', held, '--queue-dir', mta.queueDir]);
    assert.equal(release.code, 0, release.stderr);
    assert.equal(release.stdout, `${held} released from quarantine:virus\n`);
    await sink.waitForMessages(2, 15_000);
    const released = sink.messages[1]!;
    assert.equal(subjectOf(released.data), 'infected');
    assert.match(released.data.toString('latin1'), /^X-Virus-Test: EICAR\r$/m, 'delivered as it was held');
    assert.deepEqual(released.rcptTo, ['bob@far.test']);
    await waitFor('the released message gone from the queue', () => !fs.existsSync(path.join(mta.queueDir, 'active', `${held}.json`)));
    assert.deepEqual(idsIn(mta.queueDir, 'quarantine/virus'), []);
    assert.equal((await mtaQueue(['quarantine', 'list', '--queue-dir', mta.queueDir])).stdout, 'no quarantined messages\n');
    // Released means delivered once, not re-checked into quarantine again.
    assert.equal(sink.messages.length, 2);
  } finally {
    await mta.stop();
    await sink.close();
  }
});

test('"mta queue list" shows a deferred message with its next attempt and the remote error; "mta queue retry ID" gets it delivered now instead of in an hour', async () => {
  const sink = await startSmtpSink({ script: { data: replySequence({ code: 451, text: '4.7.1 Greylisted, come back later' }, 'accept') } });
  const mta = await startMta(sink, '1h');
  try {
    const id = await send(mta.port, 'greylisted');
    await waitFor('the message deferred', () => idsIn(mta.queueDir, 'deferred').includes(id));

    const list = await mtaQueue(['list', '--queue-dir', mta.queueDir]);
    assert.equal(list.code, 0, list.stderr);
    const row = list.stdout.split('\n').find((l) => l.startsWith(id));
    assert.ok(row, list.stdout);
    assert.match(row, /\sdeferred\s/);
    assert.match(row, /451 4\.7\.1 Greylisted, come back later/);
    const [entry] = JSON.parse((await mtaQueue(['list', '--json', '--queue-dir', mta.queueDir])).stdout) as Array<{ next_attempt: string }>;
    const wait = Date.parse(entry!.next_attempt) - Date.now();
    assert.ok(wait > 50 * 60_000, `next attempt about an hour away (${Math.round(wait / 60_000)} min)`);
    const show = await mtaQueue(['show', id, '--queue-dir', mta.queueDir]);
    assert.match(show.stdout, /^state:\s+deferred$/m);
    assert.match(show.stdout, /bob@far\.test {2}deferred {2}attempts 1/);

    const retry = await mtaQueue(['retry', id, '--queue-dir', mta.queueDir]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout, `${id} is due now\n`);
    // The running server notices the rename (SPEC §11.5: within 10 s) and delivers.
    await sink.waitForMessages(1, 15_000);
    assert.equal(subjectOf(sink.messages[0]!.data), 'greylisted');
    await waitFor('an empty queue', () => idsIn(mta.queueDir, 'active').length + idsIn(mta.queueDir, 'deferred').length === 0);
    assert.equal((await mtaQueue(['list', '--queue-dir', mta.queueDir])).stdout, 'queue is empty\n');
  } finally {
    await mta.stop();
    await sink.close();
  }
});
