import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { retryDelay } from '../../src/delivery/retry.js';
import { ACTIVE, DEAD, DEFERRED } from '../../src/queue/spool.js';
import { MIN, openDeliveryFixture, T0 } from '../helpers/delivery-fixtures.js';
import { replySequence, startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

function setup(tune: (c: Config) => void) {
  return openDeliveryFixture({ prefix: 'retry-test-', tune });
}

// ---- tests ----

test('451, 451, then 250: delivered on the third attempt, retries exactly at the configured schedule', async () => {
  const temp = { code: 451, text: '4.3.0 Try again later' };
  const sink = await startSmtpSink({ script: { data: replySequence(temp, temp, 'accept') } });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
    c.delivery.retry = ['5m', '15m', '30m'];
  });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.equal(sink.dataAttempts(), 1);
    let rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.equal(rec.recipients[0]!.attempts, 1);
    assert.equal(rec.recipients[0]!.last_error, '451 4.3.0 Try again later');
    assert.equal(rec.next_attempt, new Date(T0 + 5 * MIN).toISOString());
    assert.equal(q.sched.deferred().get(id), T0 + 5 * MIN);

    // Not due one millisecond early.
    q.clock.advance(5 * MIN - 1);
    await q.sched.runDue();
    assert.equal(sink.dataAttempts(), 1);

    q.clock.advance(1);
    await q.sched.runDue();
    assert.equal(sink.dataAttempts(), 2);
    rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.attempts, 2);
    assert.equal(rec.next_attempt, new Date(T0 + 5 * MIN + 15 * MIN).toISOString());

    q.clock.advance(15 * MIN);
    await q.sched.runDue();
    assert.equal(sink.dataAttempts(), 3);
    assert.equal(sink.messages.length, 1);
    assert.equal(await q.spool.locate(id), null, 'delivered messages leave the spool');
  } finally {
    await q.close();
    await sink.close();
  }
});

test('the last retry interval repeats and jitter only ever delays, by at most 10 %', () => {
  const s = [5 * MIN, 15 * MIN];
  assert.equal(retryDelay(s, 1, () => 0), 5 * MIN);
  assert.equal(retryDelay(s, 2, () => 0), 15 * MIN);
  assert.equal(retryDelay(s, 7, () => 0), 15 * MIN);
  const d = retryDelay(s, 1, () => 0.999);
  assert.ok(d >= 5 * MIN && d <= 5.5 * MIN, String(d));
});

test('a refused connection defers the recipient with the connection error', async () => {
  const sink = await startSmtpSink();
  const port = sink.port;
  await sink.close(); // nothing listens there any more
  const q = await setup((c) => {
    c.delivery.default = `127.0.0.1:${port}`;
  });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.match(rec.recipients[0]!.last_error ?? '', /ECONNREFUSED/);
  } finally {
    await q.close();
  }
});

test('a recipient still deferred after delivery.max_age fails permanently and is bounced', async () => {
  const sink = await startSmtpSink({
    script: { data: (ctx) => (ctx.mailFrom === '' ? 'accept' : { code: 421, text: '4.7.0 Busy' }) },
  });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
    c.delivery.retry = ['1h'];
    c.delivery.max_age = '3h';
  });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    for (let i = 0; i < 3; i++) {
      await q.sched.runDue();
      assert.deepEqual(await q.spool.locate(id), DEFERRED, `still deferred after attempt ${i + 1}`);
      q.clock.advance(60 * MIN);
    }
    await q.sched.runDue(); // attempt at age 3h: gives up
    assert.deepEqual(await q.spool.locate(id), DEAD);
    const rec = await q.spool.readRecord(DEAD, id);
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.match(rec.recipients[0]!.last_error ?? '', /421 4\.7\.0 Busy.*max_age/);
    assert.equal(sink.messages.length, 1, 'the DSN was delivered');
    assert.equal(sink.messages[0]!.mailFrom, '');
    assert.deepEqual(sink.messages[0]!.rcptTo, ['alice@example.net']);
    assert.match(sink.messages[0]!.data.toString(), /Status: 4\.7\.0/);
    assert.deepEqual(await q.spool.list(ACTIVE), []);
  } finally {
    await q.close();
    await sink.close();
  }
});
