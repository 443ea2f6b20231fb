import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import type { Clock, StateStore } from '../../src/host/ports.js';
import { createStateStore, MemoryStateStore, RedisStateStore } from '../../src/builtins/state/index.js';
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js';

function fakeClock(start = Date.UTC(2024, 0, 1)): Clock & { t: number } {
  const c = {
    t: start,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c;
}

describe('memory state store', () => {
  test('a value set with a ttl is readable until the ttl passes, then gone', async () => {
    const clock = fakeClock();
    const store = new MemoryStateStore('mta:', { clock });
    await store.set('k', 'v', 1000);
    clock.t += 999;
    assert.equal(await store.get('k'), 'v');
    clock.t += 1;
    assert.equal(await store.get('k'), null);
  });

  test('del removes a value and get of an unknown key is null', async () => {
    const store = new MemoryStateStore('mta:');
    assert.equal(await store.get('nothing'), null);
    await store.set('k', 'v', 60_000);
    await store.del('k');
    assert.equal(await store.get('k'), null);
  });

  test('incrWindow counts per fixed window aligned to the epoch', async () => {
    const store = new MemoryStateStore('mta:', { clock: fakeClock() });
    const hour = 3_600_000;
    const start = 1000 * hour; // a window boundary
    assert.equal(await store.incrWindow('c', hour, start), 1);
    assert.equal(await store.incrWindow('c', hour, start + hour - 1), 2);
    // The next window starts at the boundary, not one hour after the first call.
    assert.equal(await store.incrWindow('c', hour, start + hour), 1);
    assert.equal(await store.incrWindow('other', hour, start + hour), 1);
  });

  test('concurrent incrWindow calls all count', async () => {
    const store = new MemoryStateStore('mta:');
    const now = Date.now();
    const counts = await Promise.all(Array.from({ length: 200 }, () => store.incrWindow('c', 60_000, now)));
    assert.deepEqual([...counts].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i + 1));
  });

  test('beyond maxEntries the least recently used entry is evicted', async () => {
    const store = new MemoryStateStore('mta:', { maxEntries: 3 });
    await store.set('a', '1', 60_000);
    await store.set('b', '2', 60_000);
    await store.set('c', '3', 60_000);
    await store.get('a'); // a is now the most recent
    await store.set('d', '4', 60_000);
    assert.equal(store.size, 3);
    assert.equal(await store.get('b'), null);
    assert.equal(await store.get('a'), '1');
    assert.equal(await store.get('d'), '4');
  });

  test('stores with different prefixes in one process do not see each other', async () => {
    // Each MemoryStateStore is its own map; the prefix is part of the key.
    const store = new MemoryStateStore('one:');
    await store.set('k', 'v', 60_000);
    assert.equal(await new MemoryStateStore('two:').get('k'), null);
  });

  test('createStateStore refuses an unknown store kind', () => {
    assert.throws(() => createStateStore('mysql://x', 'mta:'), /expected "memory" or a redis/);
    assert.throws(() => createStateStore('redis://host/notanumber', 'mta:'), /database must be a number/);
    assert.ok(createStateStore('memory', 'mta:') instanceof MemoryStateStore);
  });
});

describe('redis state store', () => {
  let redis: TestRedis | null = null;
  let raw: Redis | null = null;
  const stores: StateStore[] = [];
  const open = (prefix = 'mta:'): StateStore => {
    const s = createStateStore(redis!.url, prefix);
    stores.push(s);
    return s;
  };

  before(async () => {
    redis = await startRedis();
    if (redis) raw = new Redis(redis.url);
  });
  after(async () => {
    for (const s of stores) await s.close();
    raw?.disconnect();
    await redis?.stop();
  });

  test('values are stored under state.prefix with the given ttl', async (t) => {
    if (!redis) return t.skip('redis-server is not installed');
    const store = open('test1:');
    await store.set('greylist:x', 'v', 60_000);
    assert.equal(await store.get('greylist:x'), 'v');
    assert.equal(await raw!.get('test1:greylist:x'), 'v');
    const pttl = await raw!.pttl('test1:greylist:x');
    assert.ok(pttl > 0 && pttl <= 60_000, `pttl ${pttl}`);
    await store.del('greylist:x');
    assert.equal(await raw!.exists('test1:greylist:x'), 0);
  });

  test('a value expires after its ttl', async (t) => {
    if (!redis) return t.skip('redis-server is not installed');
    const store = open('test2:');
    await store.set('short', 'v', 100);
    assert.equal(await store.get('short'), 'v');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(await store.get('short'), null);
  });

  test('incrWindow is atomic under concurrent calls from two store instances', async (t) => {
    if (!redis) return t.skip('redis-server is not installed');
    const a = open('test3:');
    const b = open('test3:');
    const now = Date.now();
    const calls = Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).incrWindow('c', 60_000, now));
    const counts = await Promise.all(calls);
    assert.deepEqual([...counts].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test('incrWindow counters expire at the end of their window', async (t) => {
    if (!redis) return t.skip('redis-server is not installed');
    const store = open('test4:');
    const window = 60_000;
    const now = 1_000 * window + 45_000; // 15 s before the window ends
    assert.equal(await store.incrWindow('c', window, now), 1);
    assert.equal(await store.incrWindow('c', window, now + 5_000), 2);
    // 10 s of this window remain: the counter lives that long, no longer.
    const pttl = await raw!.pttl('test4:c:w1000');
    assert.ok(pttl > 9_000 && pttl <= 10_000, `pttl ${pttl}`);
    assert.equal(await store.incrWindow('c', window, now + 15_000), 1);
    const next = await raw!.pttl('test4:c:w1001');
    assert.ok(next > 59_000 && next <= window, `pttl ${next}`);
  });

  test('a stopped redis gives an error within the deadline, not a hang', async (t) => {
    const own = await startRedis();
    if (!own) return t.skip('redis-server is not installed');
    const store = createStateStore(own.url, 'mta:');
    try {
      await store.set('k', 'v', 60_000);
      await own.stop();
      const started = Date.now();
      await assert.rejects(store.get('k'), /state store: redis get/);
      assert.ok(Date.now() - started < 2500, 'error came after the deadline');
    } finally {
      await store.close();
      await own.stop();
    }
  });

  test('a redis that was never reachable gives an error within the deadline and is reported', async () => {
    const port = await freePort();
    const problems: string[] = [];
    const store = createStateStore(`redis://127.0.0.1:${port}`, 'mta:', { onConnectionError: (m) => problems.push(m) });
    try {
      const started = Date.now();
      await assert.rejects(store.incrWindow('c', 1000, Date.now()), /state store: redis incrWindow/);
      assert.ok(Date.now() - started < 2500, 'error came after the deadline');
      assert.match(problems[0] ?? '', /ECONNREFUSED/);
    } finally {
      await store.close();
    }
  });

  test('a server that accepts but never answers gives an error within the deadline', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const { port } = silent.address() as { port: number };
    const store = new RedisStateStore(`redis://127.0.0.1:${port}`, 'mta:', { timeoutMs: 300 });
    try {
      const results = await Promise.allSettled([store.get('a'), store.set('b', 'v', 1000), store.del('c')]);
      for (const r of results) assert.equal(r.status, 'rejected');
    } finally {
      await store.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
