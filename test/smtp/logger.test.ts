// src/log/logger.ts: the JSON lines, the per-connection child logger and
// the redaction that keeps secrets out of logs even when a caller slips.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { connectionLogger, createLogger, logStageDecision } from '../../src/log/logger.js';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>>; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  return { stream, text: () => text, lines: () => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('passwords, credentials and AUTH payloads are redacted wherever they sit in a log object', () => {
  const out = capture();
  const log = createLogger({ level: 'info', format: 'json', destination: out.stream });
  log.info({ password: 'hunter2', auth: { authpass: 'hunter3' }, session: { credentials: { authpass: 'hunter4' } }, authPayload: 'AGFsaWNlAGh1bnRlcjU=' }, 'oops');
  const text = out.text();
  for (const secret of ['hunter2', 'hunter3', 'hunter4', 'AGFsaWNlAGh1bnRlcjU=']) assert.equal(text.includes(secret), false, secret);
  assert.equal(out.lines()[0]!.password, '[redacted]');
});

test('a connection logger stamps the connection id and client IP on every line', () => {
  const out = capture();
  const log = connectionLogger(createLogger({ level: 'info', format: 'json', destination: out.stream }), { id: 'c0ffee', clientIp: '192.0.2.7', listener: 'smtp' });
  log.info('hello');
  const line = out.lines()[0]!;
  assert.equal(line.conn, 'c0ffee');
  assert.equal(line.client_ip, '192.0.2.7');
  assert.equal(line.msg, 'hello');
});

test('a failed stage is logged at error level with rule, stage and message', () => {
  const out = capture();
  const log = createLogger({ level: 'info', format: 'json', destination: out.stream });
  logStageDecision(log, { stage: 'rcpt', rule: 'relay rcpt', at: 'main.vsl:8:5', status: 'error', reply: '451 4.3.0 Temporary local problem, try again later', clientIp: '192.0.2.7', helo: 'h', sender: 'a@b.example', recipient: 'u@c.example', messageId: 'X1', error: 'dns::lookup: timeout (main.vsl:8:40)' });
  const line = out.lines()[0]!;
  assert.equal(line.level, 50);
  assert.equal(line.msg, 'rule "relay rcpt" failed at rcpt: dns::lookup: timeout (main.vsl:8:40)');
  assert.equal(line.reply, '451 4.3.0 Temporary local problem, try again later');
});
