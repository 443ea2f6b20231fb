import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { systemClock } from '../../src/host/ports.js';
import type { Config } from '../../src/config/schema.js';
import { parseForwardTarget } from '../../src/delivery/targets.js';
import type { Transport } from '../../src/mail/types.js';
import { newQueueId } from '../../src/queue/id.js';
import { headerBlock } from '../../src/queue/message.js';
import { ACTIVE, DEFERRED, Spool } from '../../src/queue/spool.js';
import { addr, openDeliveryFixture, session } from '../helpers/delivery-fixtures.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';
import { makeTestCertificate } from '../helpers/tls-cert.js';

// ---- fixtures ----

/** No DNS in these tests (every target is an IP) and the real clock: delivery runs in the background. */
async function setup(tune: (c: Config) => void, tlsCa?: string, scanIntervalMs = 5000) {
  const q = await openDeliveryFixture({
    prefix: 'fwd-test-',
    tune,
    clock: systemClock,
    scheduler: { idleMs: 200, scanIntervalMs, ...(tlsCa ? { tlsCa } : {}) },
  });
  return {
    ...q,
    enqueue: (from: string, to: string[], data: Buffer, transport: Transport = { kind: 'default' }) => q.enqueue(from, to, { data, transport }),
  };
}

async function until(cond: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function message(n: number): Buffer {
  return Buffer.from(
    `Received: from client.example.net (client.example.net [192.0.2.10])\r\n\tby mx.example.org with ESMTP id X${n};\r\n\tMon, 1 Jan 2025 00:00:00 +0000\r\n` +
      `Message-ID: <msg-${n}@example.net>\r\nFrom: Alice <alice@example.net>\r\nTo: bob@remote.test\r\nSubject: message number ${n}\r\n` +
      `X-Folded: first part\r\n second part\r\n\r\nHello ${n}.\r\n.leading dot line\r\n`,
  );
}

// ---- tests ----

test('forward: 100 messages arrive once each with headers intact, over a few reused connections', async () => {
  const sink = await startSmtpSink({ starttls: true });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
  });
  try {
    await q.sched.start();
    const sent = Array.from({ length: 100 }, (_, i) => message(i));
    await Promise.all(sent.map((m) => q.enqueue('alice@example.net', ['bob@remote.test'], m)));
    await sink.waitForMessages(100, 20_000);
    await until(async () => (await q.spool.list(ACTIVE)).length === 0 && q.sched.busy === 0, 'the queue to empty');
    assert.equal(sink.messages.length, 100);
    const byId = new Map<string, Buffer>();
    for (const m of sink.messages) {
      const id = /Message-ID: <([^>]+)>/.exec(m.data.toString())![1]!;
      assert.ok(!byId.has(id), `${id} delivered once`);
      byId.set(id, m.data);
      assert.equal(m.mailFrom, 'alice@example.net');
      assert.deepEqual(m.rcptTo, ['bob@remote.test']);
    }
    for (let i = 0; i < 100; i++) {
      const got = byId.get(`msg-${i}@example.net`);
      assert.ok(got, `message ${i} arrived`);
      assert.deepEqual(headerBlock(got), headerBlock(sent[i]!), `headers of message ${i} intact`);
      assert.deepEqual(got, sent[i], `message ${i} byte for byte (dot-stuffing undone by the receiver)`);
    }
    // Reuse, not an exact count: how many connections open depends on how fast
    // the sink answers, which varies with machine load.
    assert.ok(sink.connections() < 50, `connections reused (${sink.connections()} for 100 messages)`);
    assert.ok(sink.messages.every((m) => m.secure), 'opportunistic STARTTLS was used');
    assert.deepEqual(await q.spool.list(DEFERRED), []);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('forward: several recipients for one destination go in one transaction', async () => {
  const sink = await startSmtpSink();
  const q = await setup((c) => {
    c.delivery.default = sink.address;
  });
  try {
    await q.enqueue('alice@example.net', ['b1@remote.test', 'b2@remote.test', 'b3@other.test'], message(1));
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.rcptTo, ['b1@remote.test', 'b2@remote.test', 'b3@other.test']);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('forward to smtp://user:pass@host:port?tls=none logs in with the URL-decoded credentials', async () => {
  const sink = await startSmtpSink({ auth: { user: 'relay user', pass: 'p@ss:w/rd' } });
  const q = await setup(() => undefined);
  try {
    const target = `smtp://relay%20user:p%40ss%3Aw%2Frd@127.0.0.1:${sink.port}?tls=none`;
    await q.enqueue('alice@example.net', ['bob@remote.test'], message(1), { kind: 'forward', target });
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('forward with wrong relay credentials defers the message instead of losing it', async () => {
  const sink = await startSmtpSink({ auth: { user: 'u', pass: 'right' } });
  const q = await setup(() => undefined);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test'], message(1), { kind: 'forward', target: `smtp://u:wrong@127.0.0.1:${sink.port}?tls=none` });
    await q.sched.runDue();
    assert.equal(sink.messages.length, 0);
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.match(rec.recipients[0]!.last_error ?? '', /535|Invalid login/);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('forward targets: host, host:port, IPs, smtp:// and smtps:// URLs parse; anything else is refused', () => {
  assert.deepEqual(parseForwardTarget('relay.example.net'), { host: 'relay.example.net', port: 25, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('Relay.Example.net:2525'), { host: 'relay.example.net', port: 2525, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('192.0.2.7'), { host: '192.0.2.7', port: 25, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('[2001:db8::7]:587'), { host: '2001:db8::7', port: 587, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('2001:db8::7'), { host: '2001:db8::7', port: 25, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('smtp://relay.example.net'), { host: 'relay.example.net', port: 25, tls: 'opportunistic', auth: null });
  assert.deepEqual(parseForwardTarget('smtp://u%40x:p%2F1@relay.example.net:587?tls=required'), {
    host: 'relay.example.net', port: 587, tls: 'required', auth: { user: 'u@x', pass: 'p/1' },
  });
  assert.deepEqual(parseForwardTarget('smtp://[2001:db8::1]:26?tls=tunnel'), { host: '2001:db8::1', port: 26, tls: 'tunnel', auth: null });
  assert.deepEqual(parseForwardTarget('smtps://relay.example.net'), { host: 'relay.example.net', port: 465, tls: 'tunnel', auth: null });
  assert.deepEqual(parseForwardTarget('smtps://relay.example.net:2465'), { host: 'relay.example.net', port: 2465, tls: 'tunnel', auth: null });
  for (const bad of ['http://x', 'smtp://x?tls=maybe', 'smtp://x?foo=1', 'smtp://x/path', 'x:0', 'x:70000', 'bad host', '[nope]:25', 'a..b', 'smtps://x?tls=none']) {
    assert.throws(() => parseForwardTarget(bad), /invalid forward target/, bad);
  }
});

test('an invalid forward target keeps the message deferred with the reason', async () => {
  const q = await setup(() => undefined);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test'], message(1), { kind: 'forward', target: 'smtp://x?tls=maybe' });
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.match(rec.recipients[0]!.last_error ?? '', /4\.3\.5 invalid forward target/);
  } finally {
    await q.close();
  }
});

test('tls=required delivers over verified STARTTLS, and defers when the certificate is not trusted or STARTTLS is missing', async () => {
  const cert = await makeTestCertificate('relay.test.example');
  const tlsSink = await startSmtpSink({ starttls: true, tls: { key: cert.key, cert: cert.cert } });
  const plainSink = await startSmtpSink();
  const trusting = await setup(() => undefined, cert.cert);
  const distrusting = await setup(() => undefined);
  try {
    const target = `smtp://127.0.0.1:${tlsSink.port}?tls=required`;
    await trusting.enqueue('alice@example.net', ['bob@remote.test'], message(1), { kind: 'forward', target });
    await trusting.sched.runDue();
    assert.equal(tlsSink.messages.length, 1);
    assert.equal(tlsSink.messages[0]!.secure, true);

    const untrusted = await distrusting.enqueue('alice@example.net', ['bob@remote.test'], message(2), { kind: 'forward', target });
    const noStarttls = await distrusting.enqueue('alice@example.net', ['bob@remote.test'], message(3), {
      kind: 'forward',
      target: `smtp://127.0.0.1:${plainSink.port}?tls=required`,
    });
    await distrusting.sched.runDue();
    assert.equal(tlsSink.messages.length, 1);
    assert.equal(plainSink.messages.length, 0);
    assert.match((await distrusting.spool.readRecord(DEFERRED, untrusted)).recipients[0]!.last_error ?? '', /certificate/i);
    assert.equal((await distrusting.spool.readRecord(DEFERRED, noStarttls)).recipients[0]!.state, 'deferred');
  } finally {
    await trusting.close();
    await distrusting.close();
    await tlsSink.close();
    await plainSink.close();
    await cert.cleanup();
  }
});

test('smtps:// speaks TLS from the first byte', async () => {
  const cert = await makeTestCertificate('relay.test.example');
  const sink = await startSmtpSink({ secure: true, tls: { key: cert.key, cert: cert.cert } });
  const q = await setup(() => undefined, cert.cert);
  try {
    await q.enqueue('alice@example.net', ['bob@remote.test'], message(1), { kind: 'forward', target: `smtps://127.0.0.1:${sink.port}` });
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.equal(sink.messages[0]!.secure, true);
  } finally {
    await q.close();
    await sink.close();
    await cert.cleanup();
  }
});

test('a running scheduler picks up a message another process put into active/ without waiting for its scan', async () => {
  const sink = await startSmtpSink();
  const q = await setup((c) => { c.delivery.default = sink.address; }, undefined, 10_000);
  try {
    await q.sched.start();
    // A second writer on the same spool (as another worker process would be): no in-process event.
    const other = await Spool.open(q.dir);
    const id = newQueueId();
    await other.enqueue({ id, mailFrom: addr('alice@example.net'), rcpts: [{ address: addr('bob@remote.test'), transport: { kind: 'default' } }], data: message(7), session: session(), txnRemembered: null });
    await sink.waitForMessages(1, 5000);
    await until(async () => (await q.spool.locate(id)) === null, 'the message to leave the queue');
  } finally {
    await q.close();
    await sink.close();
  }
});
