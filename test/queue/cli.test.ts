import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { ACTIVE, DEAD, DEFERRED, quarantinePlace } from '../../src/queue/spool.js';
import { queueCommand } from '../../src/cli/queue.js';
import { MIN, NEXT, openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

async function setup(tune: (c: Config) => void) {
  const q = await openDeliveryFixture({ prefix: 'cli-test-', tune });
  /** Runs `mta queue ...` on this spool; returns exit code and output. */
  const cli = async (argv: string[], confirm?: (q: string) => Promise<boolean>) => {
    let stdout = '';
    let stderr = '';
    const code = await queueCommand([...argv, '--queue-dir', q.dir], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      now: () => q.clock.now(),
      ...(confirm ? { confirm } : {}),
    });
    return { code, stdout, stderr };
  };
  return {
    ...q,
    cli,
    /** `quarantine`: the message is held there, as a quarantine status at preq would. */
    enqueue: (from: string, to: string[], quarantine: string | null = null) =>
      q.enqueue(from, to, { txnRemembered: quarantine ? { kind: 'quarantine', quarantine, rule: 'av', at: 'main.vsl:9:1' } : null, quarantine }),
  };
}

/** The scheduler's next scan picks the message up, the sink gets it once, and it leaves the spool. */
async function assertDeliveredAtNextScan(
  q: Awaited<ReturnType<typeof setup>>,
  sink: { messages: unknown[] },
  id: string,
): Promise<void> {
  await q.sched.scan();
  await q.sched.runDue();
  assert.equal(sink.messages.length, 1);
  assert.equal(await q.spool.locate(id), null);
}

// ---- tests ----

test('quarantine: the message sits in quarantine/virus, "quarantine list" shows it, "release" makes it deliverable and it is delivered', async () => {
  const sink = await startSmtpSink();
  const q = await setup((c) => { c.delivery.default = sink.address; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test'], 'virus');
    assert.deepEqual(await q.spool.list(quarantinePlace('virus')), [id]);
    await q.sched.recover();
    await q.sched.runDue();
    assert.equal(sink.transactions(), 0, 'never delivered while quarantined');

    q.clock.advance(90_000);
    const listed = await q.cli(['quarantine', 'list']);
    assert.equal(listed.code, 0);
    assert.match(listed.stdout, new RegExp(`^${id}\\s+1m\\s+\\S+\\s+quarantine:virus\\s+1\\s+alice@example\\.net`, 'm'));
    const asJson = JSON.parse((await q.cli(['quarantine', 'list', '--json'])).stdout);
    assert.deepEqual(asJson.map((e: { id: string; state: string }) => [e.id, e.state]), [[id, 'quarantine:virus']]);

    const released = await q.cli(['release', id]);
    assert.equal(released.code, 0, released.stderr);
    assert.match(released.stdout, /released from quarantine:virus/);
    assert.deepEqual(await q.spool.locate(id), ACTIVE);
    // The running server would notice at its next scan.
    await assertDeliveredAtNextScan(q, sink, id);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('list shows id, age, size, sender, recipient count, state, next attempt and last error', async () => {
  const sink = await startSmtpSink({ script: { rcpt: () => ({ code: 451, text: '4.7.1 greylisted, come back later' }) } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['10m']; });
  try {
    const deferredId = await q.enqueue('alice@example.net', ['bob@remote.test', 'carol@remote.test']);
    await q.sched.runDue();
    const activeId = await q.enqueue('', ['dave@remote.test']);
    q.clock.advance(2 * 3600_000 + 5 * 60_000);
    const r = await q.cli(['list']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0]!, /^ID\s+AGE\s+SIZE\s+STATE\s+RCPTS\s+SENDER\s+NEXT ATTEMPT\s+LAST ERROR$/);
    const act = lines.find((l) => l.startsWith(activeId))!;
    assert.match(act, /\s2h05m\s+\d+B\s+active\s+1\s+<>\s+-\s+-$/);
    const def = lines.find((l) => l.startsWith(deferredId))!;
    assert.match(def, /\s2h05m\s+\d+B\s+deferred\s+2\s+alice@example\.net\s+2025-03-01T10:10:00Z\s+451 4\.7\.1 greylisted, come back later$/);
    assert.equal(lines.at(-1), '2 messages');
    const js = JSON.parse((await q.cli(['list', '--json'])).stdout) as Array<Record<string, unknown>>;
    const d = js.find((e) => e.id === deferredId)!;
    assert.deepEqual(
      [d.state, d.sender, d.recipients, d.next_attempt, d.last_error, d.age_seconds],
      ['deferred', 'alice@example.net', 2, '2025-03-01T10:10:00.000Z', '451 4.7.1 greylisted, come back later', 7500],
    );
  } finally {
    await q.close();
    await sink.close();
  }
});

test('show prints the envelope and headers, --body the whole message, --json the record', async () => {
  const q = await setup(() => undefined);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    const plain = await q.cli(['show', id]);
    assert.equal(plain.code, 0);
    assert.match(plain.stdout, new RegExp(`^id:\\s+${id}$`, 'm'));
    assert.match(plain.stdout, /^state:\s+active$/m);
    assert.match(plain.stdout, /^ {2}bob@remote\.test {2}pending {2}attempts 0 {2}via default$/m);
    assert.match(plain.stdout, new RegExp(`^Subject: test ${id}\\r?$`, 'm'));
    assert.doesNotMatch(plain.stdout, /^body$/m);
    assert.match((await q.cli(['show', id, '--body'])).stdout, /^body\r?$/m);
    const js = JSON.parse((await q.cli(['show', id, '--json'])).stdout);
    assert.equal(js.record.id, id);
    assert.equal(js.state, 'active');
    assert.equal((await q.cli(['show', 'NOSUCHID'])).code, 1);
    assert.equal((await q.cli(['show', '../../etc/passwd'])).code, 2);
  } finally {
    await q.close();
  }
});

test('retry makes a deferred message due now; retry --all does it for every deferred message', async () => {
  const sink = await startSmtpSink({ script: { data: (ctx) => (ctx.dataAttempt <= 3 ? { code: 451, text: '4.3.0 later' } : 'accept') } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['1h']; });
  try {
    const a = await q.enqueue('alice@example.net', ['bob@remote.test']);
    const b = await q.enqueue('alice@example.net', ['bob@remote.test']);
    const c = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.deepEqual(await q.spool.list(DEFERRED), [a, b, c].sort());
    const one = await q.cli(['retry', a]);
    assert.equal(one.code, 0);
    assert.match(one.stdout, /is due now/);
    await q.sched.scan();
    await q.sched.runDue(); // no clock change: only a is retried
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(await q.spool.list(DEFERRED), [b, c].sort());
    const all = await q.cli(['retry', '--all']);
    assert.match(all.stdout, /^2 deferred messages made due now$/m);
    await q.sched.scan();
    await q.sched.runDue();
    assert.equal(sink.messages.length, 3);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('retry re-injects a message from dead/: failed recipients are tried again', async () => {
  let refuse = true;
  const sink = await startSmtpSink({ script: { rcpt: (ctx) => (ctx.mailFrom !== '' && refuse ? { code: 550, text: '5.2.1 mailbox disabled' } : 'accept') } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.bounce = false; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.deepEqual(await q.spool.locate(id), DEAD);
    refuse = false;
    const r = await q.cli(['retry', id]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /re-injected from dead/);
    await assertDeliveredAtNextScan(q, sink, id);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('remove asks for confirmation unless --yes, and never removes an active message under a running scheduler', async () => {
  const q = await setup(() => undefined);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    const declined = await q.cli(['remove', id], async () => false);
    assert.equal(declined.code, 1);
    assert.deepEqual(await q.spool.locate(id), ACTIVE);
    const noTty = await q.cli(['remove', id]);
    assert.equal(noTty.code, 1);
    assert.match(noTty.stderr, /use --yes/);

    await q.spool.lockScheduler(); // as a running server would hold it
    const busy = await q.cli(['remove', id, '--yes']);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /being delivered by the running server/);
    await q.spool.unlockScheduler();

    let asked = '';
    const confirmed = await q.cli(['remove', id], async (question) => {
      asked = question;
      return true;
    });
    assert.equal(confirmed.code, 0, confirmed.stderr);
    assert.match(asked, new RegExp(`remove ${id} \\(active, from alice@example\\.net, 1 recipients\\)`));
    assert.equal(await q.spool.locate(id), null);

    const other = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.spool.move(other, ACTIVE, DEFERRED);
    await q.spool.lockScheduler();
    assert.equal((await q.cli(['remove', other, '--yes'])).code, 0, 'deferred messages can be removed while a server runs');
    await q.spool.unlockScheduler();
    assert.equal(await q.spool.exists(other), false);
  } finally {
    await q.close();
  }
});

test('a running scheduler forgets a deferred message removed by the CLI and never recreates it', async () => {
  const sink = await startSmtpSink({ script: { data: () => ({ code: 451, text: '4.3.0 later' }) } });
  const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['1m']; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.equal((await q.cli(['remove', id, '--yes'])).code, 0);
    q.clock.advance(MIN);
    await q.sched.runDue(); // the index still has it: the claim fails and nothing happens
    assert.equal(sink.dataAttempts(), 1);
    assert.equal(await q.spool.exists(id), false);
    await q.sched.scan();
    assert.equal(q.sched.deferred().has(id), false);
  } finally {
    await q.close();
    await sink.close();
  }
});

test('usage errors exit 2, unknown ids exit 1', async () => {
  const q = await setup(() => undefined);
  try {
    assert.equal((await q.cli([])).code, 2);
    assert.equal((await q.cli(['frobnicate'])).code, 2);
    assert.equal((await q.cli(['list', '--body'])).code, 2);
    assert.equal((await q.cli(['retry'])).code, 2);
    assert.equal((await q.cli(['retry', 'NOSUCH'])).code, 1);
    assert.equal((await q.cli(['release', 'NOSUCH'])).code, 1);
    const r = await queueCommand(['list'], { stdout: { write: () => true }, stderr: { write: () => true }, queueDir: path.join(q.dir, 'nope') });
    assert.equal(r, 1);
  } finally {
    await q.close();
  }
});
