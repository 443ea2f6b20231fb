import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock, StateStore } from '../../src/host/ports.js';
import { clientNetwork, GREYLIST_DEFAULTS, GREYLIST_REPLY, greylistBuiltins, greylistCheck, type Triplet } from '../../src/builtins/greylist.js';
import { RATELIMIT_REPLY, ratelimitBuiltins, ratelimitCheck } from '../../src/builtins/ratelimit.js';
import { createStateStore, MemoryStateStore } from '../../src/builtins/state/index.js';
import { replyLines } from '../../src/vsl/values/code.js';
import type { Status } from '../../src/vsl/values/status.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { makeHostCall, mailAddress } from '../helpers/host-call.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const MIN = 60_000;
const DAY = 86_400_000;

function fakeClock(start = Date.UTC(2024, 0, 1, 12)): Clock & { t: number } {
  const c = {
    t: start,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c;
}

const triplet = (over: Partial<Triplet> = {}): Triplet => ({
  clientIp: '192.0.2.10',
  sender: 'Alice@Sender.example',
  rcpt: 'bob@example.org',
  ...over,
});

function reply(status: Status): string {
  const c = status.effectiveCode();
  return c ? replyLines(c).join('\n') : '';
}

const greylist = greylistBuiltins.find((b) => b.name === 'greylist::check')!;
const ratelimit = ratelimitBuiltins.find((b) => b.name === 'ratelimit::check')!;

/** The greylist and rate-limit behaviour, run against a store factory. */
function behaviour(name: string, makeStore: () => StateStore | null) {
  describe(`greylist (${name} store)`, () => {
    test('first delivery attempt of a triplet is refused with 451 4.7.1', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const d = await greylistCheck(store, fakeClock(), triplet());
      assert.deepEqual(d, { kind: 'reject', reply: GREYLIST_REPLY, reason: 'new' });
    });

    test('retry before the delay is refused again, and does not restart the delay', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock();
      await greylistCheck(store, clock, triplet());
      clock.t += 4 * MIN;
      assert.equal((await greylistCheck(store, clock, triplet())).reason, 'early');
      clock.t += 1 * MIN; // 5 min after the first attempt
      assert.deepEqual(await greylistCheck(store, clock, triplet()), { kind: 'next', reason: 'passed' });
    });

    test('a passed triplet keeps passing, and its ttl is refreshed by use', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock();
      await greylistCheck(store, clock, triplet());
      clock.t += 6 * MIN;
      await greylistCheck(store, clock, triplet());
      clock.t += 30 * DAY;
      assert.deepEqual(await greylistCheck(store, clock, triplet()), { kind: 'next', reason: 'known' });
      clock.t += 30 * DAY; // 60 days after passing, but 30 after the last use
      assert.equal((await greylistCheck(store, clock, triplet())).kind, 'next');
    });

    test('a passed triplet unused for longer than ttl is greylisted again', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock();
      await greylistCheck(store, clock, triplet());
      clock.t += 6 * MIN;
      await greylistCheck(store, clock, triplet());
      clock.t += 35 * DAY + 1;
      const d = await greylistCheck(store, clock, triplet());
      assert.deepEqual(d, { kind: 'reject', reply: GREYLIST_REPLY, reason: 'expired' });
    });

    test('a retry after the retry window starts over', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock();
      await greylistCheck(store, clock, triplet());
      clock.t += 2 * DAY + 1;
      assert.equal((await greylistCheck(store, clock, triplet())).reason, 'expired');
      clock.t += 4 * MIN;
      assert.equal((await greylistCheck(store, clock, triplet())).reason, 'early');
      clock.t += 1 * MIN;
      assert.equal((await greylistCheck(store, clock, triplet())).kind, 'next');
    });

    const networks = [
      { net: 'IPv4 /24', first: '198.51.100.7', same: '198.51.100.200', other: '198.51.101.7' },
      { net: 'IPv6 /64', first: '2001:db8:1:2::1', same: '2001:db8:1:2:ffff::9', other: '2001:db8:1:3::1' },
    ];
    for (const { net, first, same, other } of networks) {
      test(`clients of one ${net} share a triplet, another ${net.split(' ')[1]} does not`, async (t) => {
        const store = makeStore();
        if (!store) return t.skip('redis-server is not installed');
        const clock = fakeClock();
        await greylistCheck(store, clock, triplet({ clientIp: first }));
        clock.t += 6 * MIN;
        assert.equal((await greylistCheck(store, clock, triplet({ clientIp: same }))).kind, 'next');
        assert.equal((await greylistCheck(store, clock, triplet({ clientIp: other }))).reason, 'new');
      });
    }

    test('sender is compared case-insensitively, recipient and null sender are distinct', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock();
      await greylistCheck(store, clock, triplet({ sender: 'alice@sender.example' }));
      await greylistCheck(store, clock, triplet({ sender: '' }));
      clock.t += 6 * MIN;
      assert.equal((await greylistCheck(store, clock, triplet({ sender: 'ALICE@SENDER.EXAMPLE' }))).kind, 'next');
      assert.equal((await greylistCheck(store, clock, triplet({ sender: '<>' }))).kind, 'next');
      assert.equal((await greylistCheck(store, clock, triplet({ rcpt: 'carol@example.org' }))).reason, 'new');
    });
  });

  describe(`ratelimit (${name} store)`, () => {
    test('calls above count in one window are refused with 451 4.7.1, per key', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock(Date.UTC(2024, 0, 1, 12, 0, 0));
      const results: string[] = [];
      for (let i = 0; i < 4; i++) results.push((await ratelimitCheck(store, clock, 'ip:192.0.2.1', 3, 3_600_000)).kind);
      assert.deepEqual(results, ['next', 'next', 'next', 'reject']);
      const other = await ratelimitCheck(store, clock, 'ip:192.0.2.2', 3, 3_600_000);
      assert.equal(other.kind, 'next');
      const refused = await ratelimitCheck(store, clock, 'ip:192.0.2.1', 3, 3_600_000);
      assert.deepEqual(refused, { kind: 'reject', reply: RATELIMIT_REPLY, used: 5 });
    });

    test('the count starts over at the next epoch-aligned window', async (t) => {
      const store = makeStore();
      if (!store) return t.skip('redis-server is not installed');
      const clock = fakeClock(Date.UTC(2024, 0, 1, 12, 59, 0));
      assert.equal((await ratelimitCheck(store, clock, 'k', 1, 3_600_000)).kind, 'next');
      assert.equal((await ratelimitCheck(store, clock, 'k', 1, 3_600_000)).kind, 'reject');
      clock.t = Date.UTC(2024, 0, 1, 13, 0, 0); // one minute later: a new hour
      assert.equal((await ratelimitCheck(store, clock, 'k', 1, 3_600_000)).kind, 'next');
    });
  });
}

behaviour('memory', () => new MemoryStateStore('mta:'));

describe('with redis', () => {
  let redis: TestRedis | null = null;
  const stores: StateStore[] = [];
  let prefixes = 0;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const s of stores) await s.close();
    await redis?.stop();
  });
  // Each test gets its own prefix, so tests do not share triplets.
  const fresh = (): StateStore | null => {
    if (!redis) return null;
    const s = createStateStore(redis.url, `t${++prefixes}:`);
    stores.push(s);
    return s;
  };

  behaviour('redis', () => fresh());

  test('two instances sharing one redis share greylist state and rate limits', async (t) => {
    if (!redis) return t.skip('redis-server is not installed');
    const a = createStateStore(redis.url, 'shared:');
    const b = createStateStore(redis.url, 'shared:');
    stores.push(a, b);
    const clock = fakeClock();
    assert.equal((await greylistCheck(a, clock, triplet())).reason, 'new');
    clock.t += 6 * MIN;
    // The retry lands on the other instance and passes there.
    assert.equal((await greylistCheck(b, clock, triplet())).reason, 'passed');
    assert.equal((await greylistCheck(a, clock, triplet())).reason, 'known');

    const kinds: string[] = [];
    for (const s of [a, b, a, b]) kinds.push((await ratelimitCheck(s, clock, 'shared-key', 3, MIN)).kind);
    assert.deepEqual(kinds, ['next', 'next', 'next', 'reject']);
  });

  test('a greylist check with redis down is a runtime error naming greylist::check', async (t) => {
    const own = await startRedis();
    if (!own) return t.skip('redis-server is not installed');
    const store = createStateStore(own.url, 'mta:');
    try {
      const call = makeHostCall({ stage: 'rcpt', state: store, txn: { currentRcpt: mailAddress('bob@example.org') } });
      await own.stop();
      await assert.rejects(async () => greylist.fn(call, []), (err: unknown) => {
        assert.ok(err instanceof VslError);
        assert.match(err.message, /^greylist::check: state store: redis/);
        return true;
      });
    } finally {
      await store.close();
      await own.stop();
    }
  });
});

describe('client network', () => {
  test('IPv4 addresses group by /24 and IPv6 by /64', () => {
    assert.equal(clientNetwork('192.0.2.77'), '192.0.2.0/24');
    assert.equal(clientNetwork('::ffff:192.0.2.77'), '192.0.2.0/24');
    assert.equal(clientNetwork('2001:DB8:0:1:2:3:4:5'), '2001:db8:0:1::/64');
    assert.equal(clientNetwork('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientNetwork('::1'), '0:0:0:0::/64');
    assert.equal(clientNetwork('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(clientNetwork('64:ff9b:1:2::192.0.2.1'), '64:ff9b:1:2::/64');
    assert.throws(() => clientNetwork('not-an-ip'), /not an IP address/);
  });
});

describe('greylist::check and ratelimit::check built-ins', () => {
  test('greylist::check refuses a first attempt with the SPEC reply, then passes after the delay', async () => {
    const clock = fakeClock();
    const store = new MemoryStateStore('mta:', { clock });
    const call = makeHostCall({
      stage: 'rcpt',
      clock,
      state: store,
      session: { clientIp: '203.0.113.9' },
      mailFrom: 'Sender@Example.net',
      txn: { currentRcpt: mailAddress('user@example.org') },
    });
    const first = (await greylist.fn(call, [])) as Status;
    assert.equal(first.kind, 'reject');
    assert.equal(reply(first), '451 4.7.1 Greylisted, please try again later');
    clock.t += 5 * MIN;
    assert.equal(((await greylist.fn(call, [])) as Status).kind, 'next');
  });

  test('greylist::check options change the delay, retry window and ttl', async () => {
    const clock = fakeClock();
    const call = makeHostCall({
      stage: 'rcpt',
      clock,
      state: new MemoryStateStore('mta:', { clock }),
      txn: { currentRcpt: mailAddress('user@example.org') },
    });
    const opts: Value = new Map<string, Value>([['delay', '30s'], ['retry_window', '1h'], ['ttl', '1d']]);
    assert.equal(((await greylist.fn(call, [opts])) as Status).kind, 'reject');
    clock.t += 30_000;
    assert.equal(((await greylist.fn(call, [opts])) as Status).kind, 'next');
    clock.t += DAY + 1;
    assert.equal(((await greylist.fn(call, [opts])) as Status).kind, 'reject');
  });

  test('greylist::check with the null sender uses <> in the triplet', async () => {
    const clock = fakeClock();
    const store = new MemoryStateStore('mta:', { clock });
    const call = makeHostCall({ stage: 'rcpt', clock, state: store, mailFrom: '', txn: { currentRcpt: mailAddress('user@example.org') } });
    await greylist.fn(call, []);
    clock.t += 6 * MIN;
    const direct = await greylistCheck(store, clock, { clientIp: call.session.clientIp, sender: '<>', rcpt: 'user@example.org' });
    assert.equal(direct.reason, 'passed');
  });

  test('greylist::check refuses bad options as runtime errors', async () => {
    const call = makeHostCall({ stage: 'rcpt', txn: { currentRcpt: mailAddress('user@example.org') } });
    const bad = async (opts: Value, re: RegExp) =>
      assert.rejects(async () => greylist.fn(call, [opts]), (e: unknown) => e instanceof VslError && re.test(e.message));
    await bad(new Map<string, Value>([['dealy', '5m']]), /^greylist::check: unknown option 'dealy'/);
    await bad(new Map<string, Value>([['delay', 'soon']]), /^greylist::check: option delay: invalid duration/);
    await bad(new Map<string, Value>([['delay', 300n]]), /must be a duration string/);
    await bad(new Map<string, Value>([['delay', '3d']]), /retry_window must be longer than delay/);
    await bad('5m', /options must be a map/);
  });

  test('greylist::check without a recipient under evaluation is a runtime error', async () => {
    const call = makeHostCall({ stage: 'rcpt', txn: { currentRcpt: null } });
    await assert.rejects(async () => greylist.fn(call, []), /greylist::check: no recipient under evaluation/);
  });

  test('greylist::check is an rcpt-stage I/O built-in and ratelimit::check a connect-stage one', () => {
    assert.deepEqual([greylist.from, greylist.io, greylist.arity], ['rcpt', true, [0, 1]]);
    assert.deepEqual([ratelimit.from, ratelimit.io, ratelimit.arity], ['connect', true, 3]);
    assert.deepEqual(GREYLIST_DEFAULTS, { delayMs: 5 * MIN, retryWindowMs: 2 * DAY, ttlMs: 35 * DAY });
  });

  test('ratelimit::check refuses above count with the SPEC reply', async () => {
    const clock = fakeClock();
    const call = makeHostCall({ stage: 'connect', clock, state: new MemoryStateStore('mta:', { clock }) });
    const args: Value[] = ['ip:192.0.2.10', 2n, '1h'];
    assert.equal(((await ratelimit.fn(call, args)) as Status).kind, 'next');
    assert.equal(((await ratelimit.fn(call, args)) as Status).kind, 'next');
    const third = (await ratelimit.fn(call, args)) as Status;
    assert.equal(third.kind, 'reject');
    assert.equal(reply(third), '451 4.7.1 Rate limit exceeded, try again later');
  });

  test('ratelimit::check refuses bad arguments as runtime errors', async () => {
    const call = makeHostCall({ stage: 'connect' });
    await assert.rejects(async () => ratelimit.fn(call, [1n, 2n, '1h']), /^VslError: ratelimit::check: key must be/);
    await assert.rejects(async () => ratelimit.fn(call, ['k', -1n, '1h']), /ratelimit::check: count must be an int/);
    await assert.rejects(async () => ratelimit.fn(call, ['k', 2n, 'hourly']), /ratelimit::check: window: invalid duration/);
    await assert.rejects(async () => ratelimit.fn(call, ['k', 2n, '0s']), /ratelimit::check: window must be longer than 0/);
  });
});
