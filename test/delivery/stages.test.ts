import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import { afterQueueStages } from '../../src/policy/after-queue.js';
import type { Remembered, StageEffect, StageOutcome, StatusKind, Verdict } from '../../src/mail/types.js';
import type { EnvelopeRecord } from '../../src/queue/envelope.js';
import { applyMessageEffects } from '../../src/queue/message.js';
import { ACTIVE, DEAD, DEFERRED, quarantinePlace, sha256Hex } from '../../src/queue/spool.js';
import { addr, MIN, NEXT, openDeliveryFixture, T0 } from '../helpers/delivery-fixtures.js';
import { replySequence, type SmtpSink, startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

type Stage = 'postq' | 'delivery';
type StageFn = (stage: Stage, record: EnvelopeRecord, message: Buffer) => StageOutcome | Promise<StageOutcome>;

function outcome(status: StatusKind, extra: Partial<Verdict> = {}, effects: StageEffect[] = []): StageOutcome {
  return { verdict: { status, reply: null, rule: 'r1', at: 'main.vsl:3:5', source: 'rules', trace: [], ...extra }, effects };
}

/** `stages` answers the postq and delivery stages in place of a policy. */
async function setup(tune: (c: Config) => void, stages: StageFn = () => NEXT) {
  const q = await openDeliveryFixture({ prefix: 'stages-test-', tune, scheduler: { stages: afterQueueStages(async (s, r, m) => stages(s, r, m)) } });
  return {
    ...q,
    enqueue: (from: string, to: string[], txnRemembered: Remembered | null = null) => q.enqueue(from, to, { txnRemembered }),
  };
}

// ---- tests ----

async function withSink(run: (sink: SmtpSink) => Promise<void>, script = {}) {
  const sink = await startSmtpSink({ script });
  try {
    await run(sink);
  } finally {
    await sink.close();
  }
}

test('postq and delivery run once each, in that order, before the first attempt and never again on retries', async () => {
  await withSink(async (sink) => {
    const calls: string[] = [];
    const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['1m']; }, (stage) => {
      calls.push(stage);
      return NEXT;
    });
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      assert.deepEqual(calls, ['postq', 'delivery']);
      assert.deepEqual((await q.spool.readRecord(DEFERRED, id)).stages, { postq: 'done', delivery: 'done' });
      q.clock.advance(MIN);
      await q.sched.runDue();
      assert.deepEqual(calls, ['postq', 'delivery']);
      assert.equal(sink.messages.length, 1);
    } finally {
      await q.close();
    }
  }, { data: replySequence({ code: 451, text: '4.3.0 later' }, 'accept') });
});

test('deny at postq sends the message to dead/ without delivery or bounce', async () => {
  await withSink(async (sink) => {
    const calls: string[] = [];
    const q = await setup((c) => { c.delivery.default = sink.address; }, (stage) => {
      calls.push(stage);
      return outcome('deny', { rule: 'no spam', reply: { code: 554, enhanced: '5.7.1', lines: ['spam'] } });
    });
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      assert.deepEqual(calls, ['postq']);
      assert.equal(sink.transactions(), 0, 'nothing delivered, no DSN');
      const rec = await q.spool.readRecord(DEAD, id);
      assert.match(rec.dead_reason ?? '', /deny at postq by rule "no spam" \(main\.vsl:3:5\) 554 5\.7\.1 spam/);
      assert.equal(await q.spool.exists(`${id}-B1`), false);
    } finally {
      await q.close();
    }
  });
});

test('reject at the delivery stage sends the message to dead/; accept with a 5xx reply counts as a refusal', async () => {
  for (const verdict of [outcome('reject'), outcome('info', { reply: { code: 550, enhanced: '5.7.1', lines: ['no'] } }), outcome('accept', { reply: { code: 550, enhanced: '', lines: ['x'] } })]) {
    const q = await setup(() => undefined, (stage) => (stage === 'delivery' ? verdict : NEXT));
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      assert.deepEqual(await q.spool.locate(id), DEAD, verdict.verdict.status);
    } finally {
      await q.close();
    }
  }
});

test('quarantine at postq moves the message to quarantine/<name>/ and skips delivery', async () => {
  const calls: string[] = [];
  const q = await setup(() => undefined, (stage) => {
    calls.push(stage);
    return outcome('quarantine', { quarantine: 'suspicious' });
  });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.deepEqual(calls, ['postq']);
    assert.deepEqual(await q.spool.locate(id), quarantinePlace('suspicious'));
    assert.equal((await q.spool.readRecord(quarantinePlace('suspicious'), id)).quarantine, 'suspicious');
  } finally {
    await q.close();
  }
});

test('faccept at postq skips the delivery rules and delivers', async () => {
  await withSink(async (sink) => {
    const calls: string[] = [];
    const q = await setup((c) => { c.delivery.default = sink.address; }, (stage) => {
      calls.push(stage);
      return outcome('faccept');
    });
    try {
      await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      assert.deepEqual(calls, ['postq']);
      assert.equal(sink.messages.length, 1);
    } finally {
      await q.close();
    }
  });
});

test('a remembered faccept skips both stages; a remembered deny sends the message to dead/', async () => {
  await withSink(async (sink) => {
    const calls: string[] = [];
    const q = await setup((c) => { c.delivery.default = sink.address; }, (stage) => {
      calls.push(stage);
      return NEXT;
    });
    try {
      await q.enqueue('alice@example.net', ['bob@remote.test'], { kind: 'faccept', rule: 'trusted', at: 'main.vsl:1:1' });
      const denied = await q.enqueue('alice@example.net', ['bob@remote.test'], { kind: 'deny', rule: 'bad', at: 'main.vsl:2:1' });
      await q.sched.runDue();
      assert.deepEqual(calls, []);
      assert.equal(sink.messages.length, 1);
      assert.deepEqual(await q.spool.locate(denied), DEAD);
    } finally {
      await q.close();
    }
  });
});

test('a rule error at postq defers the message, discards its changes, and the stage runs again at the next retry', async () => {
  await withSink(async (sink) => {
    let postqRuns = 0;
    const q = await setup((c) => { c.delivery.default = sink.address; c.delivery.retry = ['2m']; }, (stage) => {
      if (stage !== 'postq') return NEXT;
      postqRuns++;
      if (postqRuns === 1) {
        return outcome('reject', { source: 'error', error: 'dns::lookup: timeout (main.vsl:8:40)', reply: { code: 451, enhanced: '4.3.0', lines: ['x'] } }, [
          { kind: 'header', op: 'prepend', name: 'X-Should-Not', value: 'appear' },
        ]);
      }
      return NEXT;
    });
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
      await q.sched.runDue();
      const rec = await q.spool.readRecord(DEFERRED, id);
      assert.equal(rec.stages.postq, 'pending');
      assert.match(rec.recipients[0]!.last_error ?? '', /postq stage failed: dns::lookup: timeout/);
      assert.equal(rec.next_attempt, new Date(T0 + 2 * MIN).toISOString());
      assert.equal(sink.transactions(), 0);
      q.clock.advance(2 * MIN);
      await q.sched.runDue();
      assert.equal(postqRuns, 2);
      assert.equal(sink.messages.length, 1);
      assert.doesNotMatch(sink.messages[0]!.data.toString(), /X-Should-Not/);
    } finally {
      await q.close();
    }
  });
});

test('a rule error with vsl.error_status = deny sends the message to dead/ without a bounce', async () => {
  const q = await setup((c) => { c.vsl.error_status = 'deny'; }, () => outcome('next', { source: 'error', error: 'boom' }));
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.deepEqual(await q.spool.locate(id), DEAD);
    assert.match((await q.spool.readRecord(DEAD, id)).dead_reason ?? '', /error_status = deny/);
    assert.equal(await q.spool.exists(`${id}-B1`), false);
  } finally {
    await q.close();
  }
});

test('stage effects are committed: header edits rewrite the spooled message, envelope and transport changes apply', async () => {
  const sink2 = await startSmtpSink();
  await withSink(async (sink) => {
    const q = await setup((c) => { c.delivery.default = sink.address; }, (stage) => {
      if (stage === 'postq') {
        return outcome('next', {}, [
          { kind: 'header', op: 'prepend', name: 'X-Scanned', value: 'clean' },
          { kind: 'header', op: 'remove', name: 'Subject' },
          { kind: 'mail_from', address: addr('bounces@example.org') },
          { kind: 'add_rcpt', address: addr('archive@remote.test') },
          { kind: 'rm_rcpt', address: addr('carol@remote.test') },
        ]);
      }
      return outcome('accept', {}, [{ kind: 'transport', rcpt: addr('archive@remote.test'), transport: { kind: 'forward', target: sink2.address } }]);
    });
    try {
      const id = await q.enqueue('alice@example.net', ['bob@remote.test', 'carol@remote.test']);
      await q.sched.runDue();
      assert.equal(sink.messages.length, 1);
      assert.equal(sink.messages[0]!.mailFrom, 'bounces@example.org');
      assert.deepEqual(sink.messages[0]!.rcptTo, ['bob@remote.test']);
      const text = sink.messages[0]!.data.toString();
      assert.ok(text.startsWith('X-Scanned: clean\r\nFrom: <alice@example.net>\r\n'), text);
      assert.doesNotMatch(text, /^Subject:/m);
      assert.equal(sink2.messages.length, 1);
      assert.deepEqual(sink2.messages[0]!.rcptTo, ['archive@remote.test']);
      assert.equal(await q.spool.locate(id), null);
    } finally {
      await q.close();
    }
  });
  await sink2.close();
});

test('a message left without recipients by a stage is dropped', async () => {
  const q = await setup(() => undefined, () => outcome('next', {}, [{ kind: 'rm_rcpt', address: addr('bob@remote.test') }]));
  try {
    const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
    await q.sched.runDue();
    assert.equal(await q.spool.exists(id), false);
  } finally {
    await q.close();
  }
});

test('a header edit interrupted by a crash is completed exactly once on the next pass', async () => {
  await withSink(async (sink) => {
    const effects: StageEffect[] = [{ kind: 'header', op: 'prepend', name: 'X-Once', value: 'yes' }];
    const q = await setup((c) => { c.delivery.default = sink.address; }, (stage) => {
      throw new Error(`stage ${stage} must not run again`);
    });
    try {
      // Two messages, as left by a crash after the record said "editing":
      // one before the .eml was rewritten, one after.
      for (const rewritten of [false, true]) {
        const id = await q.enqueue('alice@example.net', ['bob@remote.test']);
        const { record, message } = await q.spool.read(ACTIVE, id);
        const edited = applyMessageEffects(message, effects);
        record.stages = { postq: 'done', delivery: 'done' };
        record.pending_edit = { stage: 'postq', effects, sha256_before: record.sha256, sha256_after: sha256Hex(edited), size_after: edited.length };
        await q.spool.writeRecord(ACTIVE, record);
        if (rewritten) await q.spool.writeMessage(ACTIVE, id, edited);
      }
      await q.sched.runDue();
      assert.equal(sink.messages.length, 2);
      for (const m of sink.messages) assert.equal(m.data.toString().match(/X-Once: yes/g)?.length, 1);
    } finally {
      await q.close();
    }
  });
});
