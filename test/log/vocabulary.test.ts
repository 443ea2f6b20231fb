// The log vocabulary of docs/logging.md: no key twice on a line, a failed
// rule logged without its prefix repeated, the two summary lines in their
// Postfix-like form, and pretty mode at one line per event.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { connectionLogger, createLogger, logStageDecision, type StageDecision } from '../../src/log/logger.js';
import { logAccepted, logDeliveryAttempt } from '../../src/log/summary.js';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  return { stream, text: () => text };
}

const decision: StageDecision = {
  stage: 'rcpt', rule: 'relay rcpt', at: 'main.vsl:8:5', status: 'reject', reply: '554 5.7.1 Relay access denied',
  clientIp: '192.0.2.7', helo: 'c.test', sender: 'a@example.org', recipient: 'x@example.net', messageId: 'Q1',
};

test('a stage decision on a connection logger names the client once, and the queue id as queue_id', () => {
  const out = capture();
  const log = connectionLogger(createLogger({ level: 'info', format: 'json', destination: out.stream }), { id: 'c1', clientIp: '192.0.2.7', listener: 'smtp' });
  logStageDecision(log, decision);
  const raw = out.text().trim();
  assert.equal(raw.match(/"client_ip"/g)?.length, 1, raw);
  const line = JSON.parse(raw) as Record<string, unknown>;
  assert.equal(line.queue_id, 'Q1');
  assert.equal(line.conn, 'c1');
  assert.equal('message_id' in line, false);
});

test('a stage decision on a bare logger still carries the client IP', () => {
  const out = capture();
  logStageDecision(createLogger({ level: 'info', format: 'json', destination: out.stream }), decision);
  assert.equal((JSON.parse(out.text()) as Record<string, unknown>).client_ip, '192.0.2.7');
});

test('a rule failure whose error already names the rule and stage is not prefixed twice', () => {
  const out = capture();
  const log = createLogger({ level: 'info', format: 'json', destination: out.stream });
  logStageDecision(log, { ...decision, status: 'error', error: 'rule "relay rcpt" failed at rcpt: dns::lookup: timeout (main.vsl:8:40)' });
  assert.equal((JSON.parse(out.text()) as Record<string, unknown>).msg, 'rule "relay rcpt" failed at rcpt: dns::lookup: timeout (main.vsl:8:40)');
});

test('the accepted-message and delivery-attempt summary lines read like Postfix', () => {
  const out = capture();
  const log = createLogger({ level: 'info', format: 'json', destination: out.stream });
  logAccepted(log, { queueId: 'Q1', sender: 'a@example.org', size: 1834, nrcpt: 2 });
  logDeliveryAttempt(log, { queueId: 'Q1', recipient: 'b@example.net', transport: 'mx', relay: 'dns; mx.example.net', delaySeconds: 1.23, dsn: '2.0.0', status: 'sent', reply: '250 2.0.0 Ok', attempts: 1 });
  logDeliveryAttempt(log, { queueId: 'Q1', recipient: 'c@example.net', transport: 'mx', relay: null, delaySeconds: 0.4, dsn: '4.4.1', status: 'deferred', reply: '451 4.4.1 connection refused', attempts: 1, nextAttempt: '2025-01-01T00:05:00.000Z' });
  const lines = out.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines[0]!.msg, 'Q1: queued from=<a@example.org> size=1834 nrcpt=2');
  assert.equal(lines[1]!.msg, 'Q1: to=<b@example.net>, relay=dns; mx.example.net, delay=1.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)');
  assert.equal(lines[2]!.msg, 'Q1: to=<c@example.net>, relay=none, delay=0.4, dsn=4.4.1, status=deferred (451 4.4.1 connection refused)');
  assert.equal(lines[2]!.next_attempt, '2025-01-01T00:05:00.000Z');
  assert.deepEqual([lines[1]!.queue_id, lines[1]!.recipient, lines[1]!.status], ['Q1', 'b@example.net', 'sent']);
});

test('pretty mode writes one line per event', async () => {
  const out = capture();
  const log = connectionLogger(createLogger({ level: 'info', format: 'pretty', destination: out.stream }), { id: 'c1', clientIp: '192.0.2.7', listener: 'smtp' });
  for (const stage of ['connect', 'helo', 'mail', 'rcpt']) logStageDecision(log, { ...decision, stage });
  log.info({ extra: { nested: true } }, 'disconnected');
  // pino-pretty formats through a stream: wait for its output (or give up after 5 s).
  for (const deadline = Date.now() + 5000; out.text().split('\n').length <= 5 && Date.now() < deadline; ) await new Promise((r) => setImmediate(r));
  const lines = out.text().trim().split('\n');
  assert.equal(lines.length, 5, out.text());
  assert.match(lines[3]!, /rcpt: reject 554 5\.7\.1 Relay access denied/);
});
