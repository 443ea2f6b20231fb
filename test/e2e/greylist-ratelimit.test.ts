// Greylisting and rate limits end to end (issue 5, SPEC §8.5): the real
// server over real sockets, first with the embedded memory store, then with a
// real redis-server started on a private port and TWO vsl-mta instances
// sharing it (state.store = "redis://127.0.0.1:PORT").
//
// Time is real, not injected: startServer has no clock parameter, and the
// point is the running server. The policy uses short durations (delay 1 s,
// retry_window and ttl 2 s), and the tests wait just past them. The three
// greylist scenarios use different triplets and run concurrently, so a
// store's greylist suite takes about 3.5 s.
//
// Rate limits: per client at connect (the SPEC's own example,
// `ratelimit::check(\`ip:${ctx::client_ip()}\`, …)`), with distinct client
// addresses given by PROXY headers from 127.0.0.1 (server.interfaces.proxy_from);
// per authenticated user at mail, with users of a `file:` password backend.
// Windows are fixed and aligned to the epoch, so a test first steps out of
// the last seconds of the current hour rather than straddle a boundary.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';

const GREYLISTED = '451 4.7.1 Greylisted, please try again later';
const RATE_LIMITED = '451 4.7.1 Rate limit exceeded, try again later';
/** A greeting may only be 220, 421 or 554: a 451 at connect is sent as 421 (SPEC §5.2 note). */
const RATE_LIMITED_AT_CONNECT = '421 4.7.1 Rate limit exceeded, try again later';

const GREYLIST_POLICY = `
fn on_config(config) {
  config.server.name = "mx.example.org";
  config.server.domain = "example.org";
  config.server.relay_networks = [];
  config
}

#{
  rcpt: [
    rule "relay" || check_rcpt_relay([]),
    rule "greylist" || greylist::check(#{ delay: "1s", retry_window: "2s", ttl: "2s" }),
  ],
}
`;

const RATELIMIT_POLICY = `
fn on_config(config) {
  config.server.name = "mx.example.org";
  config.server.domain = "example.org";
  config.server.relay_networks = [];
  config.server.interfaces.proxy_from = ["127.0.0.1"];
  config.server.tls.require_for_auth = false;
  config
}

#{
  connect: [
    rule "per client" || ratelimit::check(\`ip:\${ctx::client_ip()}\`, 3, "1h"),
  ],
  authenticate: [
    rule "password file" || auth::unix_users(),
  ],
  mail: [
    rule "per user" || if auth::is_authenticated() {
      ratelimit::check(\`user:\${auth::credentials().authid}\`, 2, "1h")
    } else {
      next()
    },
  ],
  rcpt: [
    rule "relay" || check_rcpt_relay([]),
  ],
}
`;

// ------------------------------------------------------------------ harness

// A loaded test machine can starve a rule of CPU for a second (vsl.rule_timeout,
// then 451 4.3.0); nothing here is about rule timeouts, so give them room.
const ROOMY = 'vsl.rule_timeout="5s"';

interface Instance {
  server: RunningServer;
  port: number;
  stop(): Promise<void>;
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const silent = (): pino.Logger => pino({ level: 'info' }, { write: () => undefined });

/** A server running `policy` from its own temp dir with its own queue. */
async function startInstance(policy: string, set: string[]): Promise<Instance> {
  const dir = tempDir('vsl-grey-');
  fs.writeFileSync(path.join(dir, 'main.vsl'), policy);
  try {
    const server = await startServer({
      mainPath: path.join(dir, 'main.vsl'),
      overrides: { listen: ['127.0.0.1:0'], queueDir: path.join(dir, 'queue'), set: [ROOMY, ...set] },
      log: silent(),
      deliver: false,
      watch: false,
    });
    return {
      server,
      port: server.listeners[0]!.port,
      async stop() {
        await server.stop(500);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One delivery attempt, as a retrying MTA makes it: connect, EHLO, MAIL, RCPT, QUIT. Returns the RCPT reply. */
async function attempt(port: number, from: string, to: string): Promise<string> {
  const c = await SmtpClient.connect(port);
  try {
    assert.equal((await c.greeting()).code, 220);
    assert.equal((await c.ehlo('sender.example.net')).code, 250);
    assert.equal((await c.command(`MAIL FROM:<${from}>`)).code, 250);
    return (await c.command(`RCPT TO:<${to}>`)).last;
  } finally {
    c.destroy();
  }
}

/** Connects as `clientIp` (PROXY v1 header from 127.0.0.1) and returns the greeting. */
async function greetingAs(port: number, clientIp: string): Promise<{ c: SmtpClient; greeting: SmtpReply }> {
  const c = await SmtpClient.connect(port, { preamble: `PROXY TCP4 ${clientIp} 192.0.2.25 40000 25\r\n` });
  return { c, greeting: await c.greeting() };
}

const plain = (user: string, pass: string): string => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** From `clientIp` (PROXY header), AUTH as `user` (unless null), then MAIL FROM: returns the MAIL reply. */
async function mailAs(port: number, clientIp: string, user: string | null): Promise<string> {
  const c = await SmtpClient.connect(port, { preamble: `PROXY TCP4 ${clientIp} 192.0.2.25 40000 25\r\n` });
  try {
    assert.equal((await c.greeting()).code, 220);
    assert.equal((await c.ehlo('client.example.net')).code, 250);
    if (user !== null) assert.equal((await c.command(`AUTH PLAIN ${plain(user, `${user}-password`)}`)).code, 235);
    return (await c.command('MAIL FROM:<someone@example.net>')).last;
  } finally {
    c.destroy();
  }
}

/** Waits out the last seconds of an hour, so a fixed 1 h window cannot roll over mid-test. */
async function awayFromHourEdge(marginMs = 10_000): Promise<void> {
  const left = 3_600_000 - (Date.now() % 3_600_000);
  if (left < marginMs) await sleep(left + 50);
}

// ------------------------------------------------------------------ the scenarios, for any store

interface Stores {
  name: string;
  /** Extra --set overrides selecting the store (none: memory). */
  set: () => string[];
  /** Whether two instances share state. */
  shared: boolean;
}

function greylistSuite(store: Stores, skip: string | false): void {
  describe(`greylisting with the ${store.name} store`, { concurrency: true, skip }, () => {
    let a: Instance;
    let b: Instance;
    before(async () => {
      a = await startInstance(GREYLIST_POLICY, store.set());
      // With a shared store, retries go to a second instance; otherwise to the same one.
      b = store.shared ? await startInstance(GREYLIST_POLICY, store.set()) : a;
    });
    after(async () => {
      await a?.stop();
      if (b !== a) await b?.stop();
    });

    test(`first attempt 451 4.7.1, retry before the delay 451, after the delay 250${store.shared ? ' (first on instance A, retries on instance B)' : ''}`, async () => {
      const [from, to] = ['alice@sender.example.net', 'u1@example.org'];
      assert.equal(await attempt(a.port, from, to), GREYLISTED);
      assert.equal(await attempt(b.port, from, to), GREYLISTED, 'retried before the 1 s delay');
      await sleep(1100);
      assert.equal(await attempt(b.port, from, to), '250 2.1.5 Ok', 'retried after the delay');
      assert.equal(await attempt(a.port, from, to), '250 2.1.5 Ok', 'a passed triplet keeps passing');
      // The triplet is (client /24, sender, recipient): another recipient starts over.
      assert.equal(await attempt(b.port, from, 'u1-other@example.org'), GREYLISTED);
      assert.equal(await attempt(a.port, 'ALICE@sender.example.net', to), '250 2.1.5 Ok', 'the sender is compared lower-cased');
    });

    test('a pending triplet not retried within retry_window expires and starts over', async () => {
      const [from, to] = ['bob@sender.example.net', 'u2@example.org'];
      assert.equal(await attempt(a.port, from, to), GREYLISTED);
      await sleep(2200);
      assert.equal(await attempt(b.port, from, to), GREYLISTED, 'past retry_window: greylisted again');
      // Halfway between the 1 s delay and the 2 s window: a loaded machine's slow reply above cannot push it out.
      await sleep(1500);
      assert.equal(await attempt(b.port, from, to), '250 2.1.5 Ok', 'the new first attempt counts from the expiry');
    });

    test('a passed triplet unused for ttl expires and is greylisted again', async () => {
      const [from, to] = ['carol@sender.example.net', 'u3@example.org'];
      assert.equal(await attempt(a.port, from, to), GREYLISTED);
      await sleep(1100);
      assert.equal(await attempt(b.port, from, to), '250 2.1.5 Ok');
      await sleep(2200);
      assert.equal(await attempt(a.port, from, to), GREYLISTED, 'unused for longer than ttl');
    });
  });
}

function ratelimitSuite(store: Stores, skip: string | false): void {
  describe(`rate limits with the ${store.name} store`, { skip }, () => {
    let a: Instance;
    let b: Instance;
    let passwd: string;
    before(async () => {
      passwd = path.join(tempDir('vsl-grey-passwd-'), 'passwd');
      const lines = await Promise.all(['alice', 'bob'].map(async (u) => `${u}:${await hashScrypt(`${u}-password`)}`));
      fs.writeFileSync(passwd, `${lines.join('\n')}\n`);
      const set = [...store.set(), `server.auth.backend="file:${passwd}"`];
      a = await startInstance(RATELIMIT_POLICY, set);
      b = store.shared ? await startInstance(RATELIMIT_POLICY, set) : a;
    });
    after(async () => {
      await a?.stop();
      if (b !== a) await b?.stop();
      fs.rmSync(path.dirname(passwd), { recursive: true, force: true });
    });

    test(`per client: the 4th connection within the hour gets 421 4.7.1 and is closed; other clients are not affected${store.shared ? ' (counted across both instances)' : ''}`, async () => {
      await awayFromHourEdge();
      const ports = [a.port, b.port, a.port];
      for (const [i, port] of ports.entries()) {
        const { c, greeting } = await greetingAs(port, '203.0.113.1');
        assert.equal(greeting.code, 220, `connection ${i + 1}`);
        c.destroy();
      }
      const { c, greeting } = await greetingAs(b.port, '203.0.113.1');
      assert.equal(greeting.last, RATE_LIMITED_AT_CONNECT);
      assert.equal(await c.closedWithin(2000), true);
      const other = await greetingAs(a.port, '203.0.113.2');
      assert.equal(other.greeting.code, 220, 'another client has its own counter');
      other.c.destroy();
    });

    test(`per authenticated user: the 3rd MAIL within the hour gets 451 4.7.1; another user is not affected${store.shared ? ' (counted across both instances)' : ''}`, async () => {
      await awayFromHourEdge();
      // alice's limit follows her from one client address to the next.
      assert.equal(await mailAs(a.port, '198.51.100.1', 'alice'), '250 2.1.0 Ok');
      assert.equal(await mailAs(b.port, '198.51.100.2', 'alice'), '250 2.1.0 Ok');
      assert.equal(await mailAs(a.port, '198.51.100.3', 'alice'), RATE_LIMITED);
      assert.equal(await mailAs(b.port, '198.51.100.3', 'bob'), '250 2.1.0 Ok', 'bob has his own counter, from the same client address');
      assert.equal(await mailAs(a.port, '198.51.100.3', null), '250 2.1.0 Ok', 'unauthenticated mail is not counted against a user');
    });
  });
}

// ------------------------------------------------------------------ memory

const memory: Stores = { name: 'memory', set: () => ['state.store="memory"'], shared: false };
greylistSuite(memory, false);
ratelimitSuite(memory, false);

test('two instances with memory stores do not share greylist state (what the Redis store is for)', async () => {
  const a = await startInstance(GREYLIST_POLICY, []);
  const b = await startInstance(GREYLIST_POLICY, []);
  try {
    assert.equal(await attempt(a.port, 'dave@sender.example.net', 'u4@example.org'), GREYLISTED);
    await sleep(1100);
    assert.equal(await attempt(a.port, 'dave@sender.example.net', 'u4@example.org'), '250 2.1.5 Ok');
    assert.equal(await attempt(b.port, 'dave@sender.example.net', 'u4@example.org'), GREYLISTED, 'B never saw the first attempt');
  } finally {
    await a.stop();
    await b.stop();
  }
});

// ------------------------------------------------------------------ redis, shared by two instances

const noRedis = redisAvailable() ? false : 'redis-server is not installed (.ci/run installs it)';
let redis: TestRedis | null = null;
const redisStore: Stores = {
  name: 'Redis',
  set: () => {
    if (!redis) throw new Error('redis not started');
    return [`state.store="${redis.url}"`];
  },
  shared: true,
};

describe('with a real redis-server on a private port', { skip: noRedis }, () => {
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });
  greylistSuite(redisStore, false);
  ratelimitSuite(redisStore, false);

  test('a Redis that goes away is a temporary failure (451 4.3.0), never a pass', async () => {
    const local = await startRedis();
    assert.ok(local);
    const a = await startInstance(GREYLIST_POLICY, [`state.store="${local.url}"`]);
    try {
      assert.equal(await attempt(a.port, 'erin@sender.example.net', 'u5@example.org'), GREYLISTED);
      await local.stop();
      assert.equal(await attempt(a.port, 'erin@sender.example.net', 'u5@example.org'), '451 4.3.0 Temporary local problem, try again later');
    } finally {
      await a.stop();
      await local.stop();
    }
  });
});
