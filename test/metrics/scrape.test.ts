// `server.metrics.listen`: the real `mta run` with two SMTP workers serves
// Prometheus metrics over HTTP, and after real SMTP sessions the counters of
// every process are summed: connections, stage decisions, policy time,
// accepted messages, delivery outcomes, the queue gauge and reloads.
// (Delivery runs in the primary, SMTP in the workers: the sum needs both.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { SmtpClient } from '../helpers/smtp-client.js';
import { REPO_ROOT, sampleMessage, sendData, tempDir, transaction, unusedTcpPort } from '../helpers/server.js';

const POLICY = `
fn on_config(config) {
  config.server.name = "mx.metrics.test";
  config.server.domain = "metrics.test";
  config.server.relay_networks = [];
  config
}

#{
  mail: [ rule "look" || next() ],
}
`;

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Sum of the samples of `name` whose labels include every pair of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[3]);
      found = true;
    }
  }
  return found ? sum : NaN;
}

async function until(what: string, fn: () => Promise<boolean>, log: () => string): Promise<void> {
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what} did not happen; server output:\n${log()}`);
}

describe('Prometheus metrics with two workers', () => {
  let child: ChildProcess;
  let out = '';
  let smtpPort = 0;
  let metricsPort = 0;
  const dir = tempDir('vsl-metrics-');

  before(async () => {
    fs.writeFileSync(path.join(dir, 'main.vsl'), POLICY);
    smtpPort = await unusedTcpPort();
    metricsPort = await unusedTcpPort();
    const closedPort = await unusedTcpPort();
    child = spawn(process.execPath, [
      path.join(REPO_ROOT, 'bin/mta.js'), 'run', '--config', path.join(dir, 'main.vsl'), '--listen', `127.0.0.1:${smtpPort}`,
      '--queue-dir', path.join(dir, 'queue'), '--workers', '2', '--log-level', 'warn',
      '--set', `server.metrics.listen=127.0.0.1:${metricsPort}`, '--set', `delivery.default=smtp://127.0.0.1:${closedPort}`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the metrics endpoint answering', async () => (await get(metricsPort, '/metrics')).status === 200, () => out);
    await until('the SMTP listener accepting', async () => {
      const c = await SmtpClient.connect(smtpPort);
      c.destroy();
      return true;
    }, () => out);
    // That probe is counted too: wait for it, so the test's own sessions are counted from a settled value.
    await until('the probe connection counted', async () => sample((await get(metricsPort, '/metrics')).body, 'mta_connections_total') >= 1, () => out);
  });

  after(async () => {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('counters of both workers and the primary move with real sessions and reloads', async () => {
    const before = (await get(metricsPort, '/metrics')).body;
    const connectionsBefore = sample(before, 'mta_connections_total') || 0;

    for (const rcpt of ['a@metrics.test', 'b@metrics.test']) {
      const c = await SmtpClient.connect(smtpPort);
      await c.greeting();
      const replies = await transaction(c, 's@example.org', [rcpt]);
      assert.equal(replies.at(-1)!.code, 250);
      assert.equal((await sendData(c, sampleMessage('s@example.org', rcpt))).end.code, 250);
      await c.command('QUIT');
      c.destroy();
    }
    const refused = await SmtpClient.connect(smtpPort);
    await refused.greeting();
    const replies = await transaction(refused, 's@example.org', ['x@example.net']);
    assert.equal(replies.at(-1)!.code, 554, 'a relay attempt is refused');
    refused.destroy();
    const idle = await SmtpClient.connect(smtpPort);
    await idle.greeting();
    await idle.command('QUIT');
    idle.destroy();

    let text = '';
    // Delivery forwards to a closed loopback port: each message's attempt is deferred.
    await until('two deferred delivery attempts counted', async () => {
      text = (await get(metricsPort, '/metrics')).body;
      return sample(text, 'mta_delivery_attempts_total', { transport: 'forward', status: 'deferred' }) === 2;
    }, () => `${out}\n${text}`);
    assert.equal(sample(text, 'mta_connections_total') - connectionsBefore, 4, 'every connection of both workers is counted once');
    assert.equal(sample(text, 'mta_messages_accepted_total'), 2);
    assert.equal(sample(text, 'mta_stage_decisions_total', { stage: 'rcpt', status: 'reject' }), 1);
    assert.ok(sample(text, 'mta_stage_decisions_total', { stage: 'mail', status: 'next' }) >= 3);
    assert.ok(sample(text, 'mta_policy_seconds_count', { stage: 'mail' }) >= 3, 'the mail rule is timed');
    // Both messages are still queued (active while an attempt is saved, then deferred).
    assert.equal(sample(text, 'mta_queue_messages'), 2, 'the queue gauge reads the spool');
    assert.equal(sample(text, 'mta_queue_messages', { state: 'dead' }), 0, 'every state is reported');
    assert.ok(sample(text, 'process_resident_memory_bytes') > 0, 'process metrics are included');

    child.kill('SIGHUP');
    await until('a reload counted in the primary and both workers', async () => {
      text = (await get(metricsPort, '/metrics')).body;
      return sample(text, 'mta_reloads_total', { result: 'ok' }) === 3;
    }, () => `${out}\n${text}`);
  });

  test('anything but GET /metrics is 404', async () => {
    assert.equal((await get(metricsPort, '/')).status, 404);
  });
});
