import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { DEAD } from '../../src/queue/spool.js';
import { MIN, openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

function setup(tune: (c: Config) => void) {
  return openDeliveryFixture({ prefix: 'bounce-test-', tune });
}

// ---- tests ----

test('550: the recipient fails, one DSN goes to the sender quoting the remote reply, the message goes to dead/', async () => {
  const sink = await startSmtpSink({
    script: { rcpt: (ctx) => (ctx.address === 'nobody@remote.test' ? { code: 550, text: '5.1.1 <nobody@remote.test>: no such user here' } : 'accept') },
  });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
  });
  try {
    const id = await q.enqueue('alice@example.net', ['nobody@remote.test', 'bob@remote.test']);
    await q.sched.runDue();
    // bob got the message, then the DSN went to alice.
    assert.equal(sink.messages.length, 2);
    assert.deepEqual(sink.messages[0]!.rcptTo, ['bob@remote.test']);
    const dsn = sink.messages[1]!;
    assert.equal(dsn.mailFrom, '');
    assert.deepEqual(dsn.rcptTo, ['alice@example.net']);
    const text = dsn.data.toString();
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@example\.org>\r$/m);
    assert.match(text, /^To: <alice@example\.net>\r$/m);
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(text, /^Content-Type: message\/delivery-status\r$/m);
    assert.match(text, /^Reporting-MTA: dns; mx\.example\.org\r$/m);
    assert.match(text, /^Final-Recipient: rfc822; nobody@remote\.test\r$/m);
    assert.match(text, /^Action: failed\r$/m);
    assert.match(text, /^Status: 5\.1\.1\r$/m);
    assert.match(text, /^Remote-MTA: dns; 127\.0\.0\.1\r$/m);
    assert.match(text, /^Diagnostic-Code: smtp; 550 5\.1\.1 <nobody@remote\.test>: no such user here\r$/m);
    assert.match(text, /^Content-Type: text\/rfc822-headers\r$/m);
    assert.match(text, new RegExp(`^Message-ID: <${id}@example\\.net>\\r$`, 'm'), 'the original header is included');
    assert.doesNotMatch(text, /^Final-Recipient: rfc822; bob@remote\.test/m, 'only failed recipients are reported');
    const rec = await q.spool.readRecord(DEAD, id);
    assert.deepEqual(rec.recipients.map((r) => [r.state, r.dsn]), [['failed', 'sent'], ['delivered', 'none']]);
    assert.equal(rec.bounces, 1);
    assert.equal(await q.spool.locate(`${id}-B1`), null, 'the DSN was delivered and left the queue');
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a permanent failure of mail from the null sender produces no bounce', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 550, text: '5.1.1 no such user' }) } });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
  });
  try {
    const id = await q.enqueue('', ['nobody@remote.test']);
    await q.sched.runDue();
    assert.equal(sink.transactions(), 1, 'no second transaction: no DSN');
    const rec = await q.spool.readRecord(DEAD, id);
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.equal(rec.recipients[0]!.dsn, 'none');
    assert.equal(await q.spool.exists(`${id}-B1`), false);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('with delivery.bounce = false a permanent failure produces no bounce', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 550, text: '5.1.1 no such user' }) } });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
    c.delivery.bounce = false;
  });
  try {
    const id = await q.enqueue('alice@example.net', ['nobody@remote.test']);
    await q.sched.runDue();
    assert.equal(sink.transactions(), 1);
    assert.equal(await q.spool.exists(`${id}-B1`), false);
    assert.deepEqual(await q.spool.locate(id), DEAD);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('a DSN that cannot be delivered is not bounced again', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 550, text: '5.1.1 no such user' }) } });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
  });
  try {
    const id = await q.enqueue('alice@example.net', ['nobody@remote.test']);
    await q.sched.runDue();
    // The original failed, its DSN to alice failed too, and nothing more was sent.
    assert.equal(sink.transactions(), 2);
    const dsn = await q.spool.readRecord(DEAD, `${id}-B1`);
    assert.equal(dsn.is_bounce, true);
    assert.equal(dsn.recipients[0]!.dsn, 'none');
  } finally {
    await q.close();
    await sink.close();
  }
});

test('failures in two different attempts produce two DSNs, one per batch', async () => {
  let round = 1;
  const sink = await startSmtpSink({
    script: {
      rcpt: (ctx) => {
        if (ctx.mailFrom === '') return 'accept';
        if (ctx.address === 'x@remote.test') return { code: 550, text: '5.1.1 gone' };
        return round === 1 ? { code: 450, text: '4.2.1 mailbox busy' } : { code: 552, text: '5.2.2 mailbox full' };
      },
    },
  });
  const q = await setup((c) => {
    c.delivery.default = sink.address;
    c.delivery.retry = ['10m'];
  });
  try {
    const id = await q.enqueue('alice@example.net', ['x@remote.test', 'y@remote.test']);
    await q.sched.runDue();
    round = 2;
    q.clock.advance(10 * MIN);
    await q.sched.runDue();
    const dsns = sink.messages.filter((m) => m.mailFrom === '');
    assert.equal(dsns.length, 2);
    assert.match(dsns[0]!.data.toString(), /Final-Recipient: rfc822; x@remote\.test/);
    assert.doesNotMatch(dsns[0]!.data.toString(), /y@remote\.test>?:/);
    assert.match(dsns[1]!.data.toString(), /Final-Recipient: rfc822; y@remote\.test/);
    assert.match(dsns[1]!.data.toString(), /Diagnostic-Code: smtp; 552 5\.2\.2 mailbox full/);
    assert.doesNotMatch(dsns[1]!.data.toString(), /Final-Recipient: rfc822; x@remote\.test/);
    assert.equal((await q.spool.readRecord(DEAD, id)).bounces, 2);
  } finally {
    await q.close();
    await sink.close();
  }
});
