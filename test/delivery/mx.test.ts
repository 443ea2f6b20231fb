import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DnsError, type Resolver } from '../../src/host/ports.js';
import type { Config } from '../../src/config/schema.js';
import { DEAD, DEFERRED } from '../../src/queue/spool.js';
import { createResolver } from '../../src/builtins/dns/resolver.js';
import { mxEndpoints, mxHosts } from '../../src/delivery/mx.js';
import { RouteError } from '../../src/delivery/outcome.js';
import { noDnsResolver, openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';

// ---- fixtures ----

/** Delivers over MX through `resolver` to `mxPort`; the scheduler's warnings are kept. */
async function setup(tune: (c: Config) => void, resolver: Resolver, mxPort: number) {
  const warnings: string[] = [];
  const log = { info() {}, error() {}, warn: (_o: object, m: string) => warnings.push(m) };
  const q = await openDeliveryFixture({ prefix: 'mx-test-', tune, scheduler: { resolver, mxPort, log } });
  return { ...q, warnings };
}

// ---- tests ----

/** A Resolver double with fixed answers, for ordering rules. */
function fixedResolver(mx: Record<string, Array<{ exchange: string; priority: number }> | DnsError>): Resolver {
  return {
    ...noDnsResolver,
    mx: async (n) => {
      const v = mx[n];
      if (v === undefined) throw new DnsError('NXDOMAIN', n);
      if (v instanceof DnsError) throw v;
      return v;
    },
    a: async (n) => {
      if (n.endsWith('.noaddr.test') || !n.includes('.')) throw new DnsError('NXDOMAIN', n);
      return [{ address: '192.0.2.1', ttl: 60 }];
    },
  };
}

test('MX hosts are tried by preference, ties in random order; no MX means the domain itself', async () => {
  const r = fixedResolver({
    'a.test': [
      { exchange: 'low.a.test', priority: 30 },
      { exchange: 'tie1.a.test', priority: 10 },
      { exchange: 'tie2.a.test', priority: 10 },
      { exchange: 'tie3.a.test', priority: 10 },
    ],
    'nomx.test': new DnsError('NODATA', 'nomx.test'),
  });
  const first = await mxHosts('a.test', r, () => 0);
  const other = await mxHosts('a.test', r, () => 0.99);
  assert.equal(first.at(-1), 'low.a.test');
  assert.equal(other.at(-1), 'low.a.test');
  assert.deepEqual(first.slice(0, 3).sort(), ['tie1.a.test', 'tie2.a.test', 'tie3.a.test']);
  assert.notDeepEqual(first.slice(0, 3), other.slice(0, 3), 'ties are shuffled');
  assert.deepEqual(await mxHosts('nomx.test', r), ['nomx.test']);
  const eps = await mxEndpoints('nomx.test', r, 2525);
  assert.deepEqual(eps, [{ hostname: 'nomx.test', ip: '192.0.2.1', port: 2525 }]);
});

test('routing errors: null MX and a missing domain are permanent, a DNS failure is temporary', async () => {
  const r = fixedResolver({
    'null.test': [{ exchange: '', priority: 0 }],
    'broken.test': new DnsError('SERVFAIL', 'broken.test'),
    'x.noaddr.test': new DnsError('NODATA', 'x.noaddr.test'),
  });
  const err = async (d: string) => {
    try {
      await mxEndpoints(d, r, 25);
    } catch (e) {
      return e as RouteError;
    }
    throw new Error(`no error for ${d}`);
  };
  const nullMx = await err('null.test');
  assert.deepEqual([nullMx.permanent, nullMx.status], [true, '5.1.10']);
  const missing = await err('missing.test');
  assert.deepEqual([missing.permanent, missing.status], [true, '5.1.2']);
  const noAddr = await err('x.noaddr.test');
  assert.deepEqual([noAddr.permanent, noAddr.status], [true, '5.1.2']);
  const broken = await err('broken.test');
  assert.equal(broken.permanent, false);
  assert.deepEqual(await mxEndpoints('[192.0.2.5]', r, 25), [{ hostname: '192.0.2.5', ip: '192.0.2.5', port: 25 }]);
});

test('MX delivery over the loopback DNS server: the first MX refuses connections, the second gets the message', async () => {
  const sink = await startSmtpSink({ host: '127.0.0.1' });
  // 127.0.0.3 is loopback too, but nothing listens there on the sink's port: connection refused.
  const dns = await startDnsServer({
    'dest.test': { MX: ['10 mx1.dest.test', '20 mx2.dest.test'] },
    'mx1.dest.test': { A: ['127.0.0.3'] },
    'mx2.dest.test': { A: ['127.0.0.1'] },
  });
  const resolver = createResolver({ servers: [dns.address], timeoutMs: 2000 });
  const q = await setup((c) => { c.delivery.default = 'mx'; }, resolver, sink.port);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@dest.test']);
    await q.sched.runDue();
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.rcptTo, ['bob@dest.test']);
    assert.equal(await q.spool.locate(id), null);
    assert.ok(dns.queries.includes('dest.test MX'));
    assert.ok(dns.queries.includes('mx1.dest.test A') && dns.queries.includes('mx2.dest.test A'));
    assert.equal(q.warnings.length, 1);
    assert.match(q.warnings[0]!, new RegExp(`mx1\\.dest\\.test \\[127\\.0\\.0\\.3\\]:${sink.port}: .*ECONNREFUSED`));
  } finally {
    await q.close();
    await dns.stop();
    await sink.close();
  }
});

test('MX delivery to a domain with a null MX fails at once with 5.1.10 and bounces', async () => {
  const sink = await startSmtpSink();
  const dns = await startDnsServer({
    'nullmx.test': { MX: ['0 .'] },
    'example.net': { MX: ['10 mx.example.net'] },
    'mx.example.net': { A: ['127.0.0.1'] },
  });
  const resolver = createResolver({ servers: [dns.address], timeoutMs: 2000 });
  const q = await setup((c) => { c.delivery.default = 'mx'; }, resolver, sink.port);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@nullmx.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEAD, id);
    assert.equal(rec.recipients[0]!.state, 'failed');
    assert.equal(rec.recipients[0]!.status, '5.1.10');
    assert.equal(rec.recipients[0]!.attempts, 1);
    assert.match(rec.recipients[0]!.last_error ?? '', /^556 5\.1\.10 .*null MX/);
    // The DSN went to alice's domain's MX, which is the sink.
    assert.equal(sink.messages.length, 1);
    assert.equal(sink.messages[0]!.mailFrom, '');
    assert.match(sink.messages[0]!.data.toString(), /Status: 5\.1\.10/);
  } finally {
    await q.close();
    await dns.stop();
    await sink.close();
  }
});

test('MX delivery when DNS fails temporarily defers the recipient', async () => {
  const dns = await startDnsServer({ 'flaky.test': { behaviour: 'servfail' } });
  const resolver = createResolver({ servers: [dns.address], timeoutMs: 1000 });
  const q = await setup((c) => { c.delivery.default = 'mx'; }, resolver, 25);
  try {
    const id = await q.enqueue('alice@example.net', ['bob@flaky.test']);
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.equal(rec.recipients[0]!.state, 'deferred');
    assert.match(rec.recipients[0]!.last_error ?? '', /4\.4\.3 MX lookup for flaky\.test failed/);
  } finally {
    await q.close();
    await dns.stop();
  }
});
