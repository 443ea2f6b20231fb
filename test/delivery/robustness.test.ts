import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { ACTIVE, DEAD, DEFERRED } from '../../src/queue/spool.js';
import { ManualClock, MIN, openDeliveryFixture, T0 } from '../helpers/delivery-fixtures.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

/** `existing`: the spool directory and clock of an earlier setup, closed with close(true) (a restart). */
async function setup(tune: (c: Config) => void, existing?: { dir: string; clock: ManualClock }) {
  const errors: string[] = [];
  const log = { info() {}, warn() {}, error: (_o: object, m: string) => void errors.push(m) };
  const q = await openDeliveryFixture({ prefix: 'robust-test-', tune, ...existing, spoolLog: log, scheduler: { log } });
  return { ...q, errors };
}

// ---- tests ----

test('after a restart, corrupt and truncated queue files are moved aside and the rest of the queue is delivered', async () => {
  const sink = await startSmtpSink();
  const first = await setup((c) => { c.delivery.default = sink.address; });
  const good = await first.enqueue('alice@example.net', ['bob@remote.test']);
  const badJson = await first.enqueue('alice@example.net', ['bob@remote.test']);
  const truncated = await first.enqueue('alice@example.net', ['bob@remote.test']);
  const damaged = await first.enqueue('alice@example.net', ['bob@remote.test']);
  await first.close(true); // "crash": nothing was delivered
  await fs.writeFile(path.join(first.dir, 'active', `${badJson}.json`), 'not json at all');
  await fs.truncate(path.join(first.dir, 'active', `${truncated}.eml`), 5);
  const eml = path.join(first.dir, 'active', `${damaged}.eml`);
  const bytes = await fs.readFile(eml);
  bytes[bytes.length - 4]! ^= 0x01; // same size, different content: found when loaded
  await fs.writeFile(eml, bytes);

  const q = await setup((c) => { c.delivery.default = sink.address; }, { dir: first.dir, clock: first.clock });
  try {
    await q.sched.recover();
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.match(sink.messages[0]!.data.toString(), new RegExp(good));
    const corrupt = await fs.readdir(path.join(q.dir, 'corrupt'));
    for (const id of [badJson, truncated, damaged]) assert.ok(corrupt.includes(`${id}.json`) && corrupt.includes(`${id}.eml`), id);
    assert.equal(q.errors.filter((m) => m.includes('corrupt')).length, 3, q.errors.join('\n'));
    assert.deepEqual(await q.spool.list(ACTIVE), []);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('recovery after a restart: active messages are delivered, deferred ones wait for their time', async () => {
  const sink = await startSmtpSink({ script: { data: (ctx) => (ctx.dataAttempt === 1 ? { code: 451, text: '4.3.0 later' } : 'accept') } });
  const first = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['10m']; });
  const deferredId = await first.enqueue('alice@example.net', ['bob@remote.test']);
  await first.sched.runDue(); // 451: deferred for 10 minutes
  const activeId = await first.enqueue('alice@example.net', ['carol@remote.test']); // queued, then the process "dies"
  await first.close(true);

  const q = await setup((c) => { c.delivery.default = sink.address; }, { dir: first.dir, clock: first.clock });
  try {
    await q.sched.recover();
    assert.equal(q.sched.deferred().get(deferredId), T0 + 10 * MIN);
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.rcptTo, ['carol@remote.test']);
    assert.equal(await q.spool.locate(activeId), null);
    assert.deepEqual(await q.spool.locate(deferredId), DEFERRED);
    q.clock.advance(10 * MIN);
    await q.sched.runDue();
    assert.equal(sink.messages.length, 2);
    assert.equal(await q.spool.locate(deferredId), null);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a pass interrupted after some recipients were delivered resumes with the others only', async () => {
  const sink = await startSmtpSink();
  const q = await setup((c) => { c.delivery.default = sink.address; });
  try {
    const id = await q.enqueue('alice@example.net', ['done@remote.test', 'todo@remote.test']);
    // The state a crash leaves after the first destination answered and was recorded.
    const { record } = await q.spool.read(ACTIVE, id);
    record.stages = { postq: 'done', delivery: 'done' };
    Object.assign(record.recipients[0]!, { state: 'delivered', attempts: 1, delivered_at: new Date(T0).toISOString() });
    await q.spool.writeRecord(ACTIVE, record);
    await q.sched.recover();
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.rcptTo, ['todo@remote.test']);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a next hop that never greets is bounded by the timeouts and the message is deferred', async () => {
  const sink = await startSmtpSink({ raw: () => undefined }); // accepts, then silence
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.timeout = '300ms'; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.match(rec.recipients[0]!.last_error ?? '', /Greeting never received|timeout/i);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a next hop that hangs after DATA is bounded by the timeouts and the message is deferred', async () => {
  const sink = await startSmtpSink({ script: { data: () => 'hang' } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.timeout = '300ms'; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.match(rec.recipients[0]!.last_error ?? '', /4\.4\.2|timeout/i);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a next hop that sends garbage defers the message', async () => {
  for (const raw of [
    (s: import('node:net').Socket) => s.write('\x00\xff this is not smtp\r\n'),
    (s: import('node:net').Socket) => {
      s.write('220 ok\r\n');
      s.once('data', () => s.write('garbage reply\r\n'));
    },
  ]) {
    const sink = await startSmtpSink({ raw });
    const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.timeout = '500ms'; });
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      const rec = await q.spool.readRecord(DEFERRED, id);
      assert.equal(rec.recipients[0]!.state, 'deferred');
    } finally {
      await q.close();
      await sink.close();
    }
  }
});

test('RCPT 452 after N recipients: the rest go in further transactions on the same connection', async () => {
  const sink = await startSmtpSink({ script: { rcpt: (ctx) => (ctx.rcptIndex >= 3 ? { code: 452, text: '4.5.3 Too many recipients' } : 'accept') } });
  const q = await setup((c) => { c.delivery.default = sink.address; });
  try {
    const rcpts = Array.from({ length: 8 }, (_, i) => `r${i}@remote.test`);
    const id = await q.enqueue('alice@example.net', rcpts);
    await q.sched.runDue();
    assert.deepEqual(sink.messages.map((m) => m.rcptTo.length), [3, 3, 2]);
    assert.deepEqual(sink.messages.flatMap((m) => m.rcptTo).sort(), rcpts.sort());
    assert.equal(new Set(sink.messages.map((m) => m.connection)).size, 1);
    assert.equal(await q.spool.locate(id), null);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('more than 100 recipients are sent in transactions of at most 100', async () => {
  const sink = await startSmtpSink();
  const q = await setup((c) => { c.delivery.default = sink.address; });
  try {
    const rcpts = Array.from({ length: 230 }, (_, i) => `r${i}@remote.test`);
    await q.enqueue('alice@example.net', rcpts);
    await q.sched.runDue();
    assert.deepEqual(sink.messages.map((m) => m.rcptTo.length), [100, 100, 30]);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('RCPT 452 for every recipient defers them all without looping', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 452, text: '4.5.3 Too many recipients' }) } });
  const q = await setup((c) => { c.delivery.default = sink.address; });
  try {
    const id = await q.enqueue('alice@example.net', ['a@remote.test', 'b@remote.test']);
    await q.sched.runDue();
    assert.equal(sink.transactions(), 1);
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.deepEqual(rec.recipients.map((r) => r.state), ['deferred', 'deferred']);
    assert.match(rec.recipients[0]!.last_error ?? '', /452 4\.5\.3/);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a 5xx at end of data fails the recipients refused there while RCPT refusals keep their own reply', async () => {
  const sink = await startSmtpSink({
    script: {
      rcpt: (ctx) => (ctx.address === 'gone@remote.test' ? { code: 550, text: '5.1.1 gone' } : 'accept'),
      data: () => ({ code: 554, text: '5.6.0 content rejected' }),
    },
  });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.bounce = false; });
  try {
    const id = await q.enqueue('alice@example.net', ['gone@remote.test', 'bob@remote.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEAD, id);
    assert.deepEqual(rec.recipients.map((r) => r.last_error), ['550 5.1.1 gone', '554 5.6.0 content rejected']);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a connection the remote closed after a message is replaced, not blamed on the next message', async () => {
  const sink = await startSmtpSink({ script: { data: () => 'accept-close' } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.concurrency_per_destination = 1; });
  try {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await q.enqueue('alice@example.net', [`r${i}@remote.test`]));
    await q.sched.runDue();
    assert.equal(sink.messages.length, 3);
    assert.equal(sink.connections(), 3);
    for (const id of ids) assert.equal(await q.spool.locate(id), null);
  } finally {
    await q.close();
    await sink.close();
  }
});
