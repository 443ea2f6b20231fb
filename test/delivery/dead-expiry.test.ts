// queue.dead_max_age: messages that stayed in dead/ longer are removed when
// the scheduler starts (and at its periodic collection); younger ones and
// every message when it is "0s" (the default) stay.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { systemClock } from '../../src/host/ports.js';
import { DEAD } from '../../src/queue/spool.js';
import { openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';

const DAY = 24 * 3600_000;

test('dead messages older than queue.dead_max_age are removed at scheduler start; younger ones stay', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 550, text: '5.1.1 no such user' }) } });
  const lines: string[] = [];
  const log = { info: (_o: object, m: string) => void lines.push(m), warn() {}, error() {} };
  const q = await openDeliveryFixture({ prefix: 'dead-expiry-', clock: systemClock, tune: (c) => (c.delivery.default = sink.address), scheduler: { log } });
  try {
    const old = await q.enqueue('', ['a@remote.test']);
    const young = await q.enqueue('', ['b@remote.test']);
    await q.sched.runDue();
    assert.deepEqual(await q.spool.locate(old), DEAD);
    assert.deepEqual(await q.spool.locate(young), DEAD);
    const twoDaysAgo = new Date(Date.now() - 2 * DAY);
    await fs.utimes(path.join(q.spool.dirOf(DEAD), `${old}.json`), twoDaysAgo, twoDaysAgo);

    // The default keeps everything.
    await q.sched.recover();
    assert.deepEqual(await q.spool.locate(old), DEAD);

    q.cfg.queue.dead_max_age = '1d';
    await q.sched.recover();
    assert.equal(await q.spool.locate(old), null, 'two days in dead/: removed');
    assert.deepEqual(await q.spool.locate(young), DEAD, 'just died: kept');
    assert.ok(lines.some((l) => l.includes(`${old} removed from dead/ after queue.dead_max_age (1d)`)), 'the removal is logged');
  } finally {
    await q.close();
    await sink.close();
  }
});
