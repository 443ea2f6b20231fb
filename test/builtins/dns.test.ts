import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsError } from '../../src/host/ports.js';
import { createResolver, fcrdns, MAX_RECORDS, parseServerSpec, resolverFromConfig } from '../../src/builtins/dns/resolver.js';
import { normaliseIp, reverseName } from '../../src/builtins/dns/names.js';
import { dnsBuiltins } from '../../src/builtins/dns/lookup.js';
import { VslError } from '../../src/vsl/values/value.js';
import { startDnsServer, unusedUdpPort, type DnsTestServer } from '../helpers/dns-server.js';
import { findBuiltin, makeHostCall } from '../helpers/host-call.js';

const ZONE = {
  'host.test': {
    A: ['192.0.2.1', '192.0.2.2'],
    AAAA: ['2001:db8::1'],
    MX: [{ priority: 20, exchange: 'MX2.Host.Test.' }, '10 mx1.host.test'],
    TXT: ['v=spf1 -all', ['part one ', 'part two']],
    NS: ['ns1.host.test'],
    ttl: 120,
  },
  'v4only.test': { A: ['192.0.2.7'] },
  'xn--bcher-kva.test': { A: ['192.0.2.8'] },
  '1.2.0.192.in-addr.arpa': { PTR: ['Mail.Host.Test.'] },
  '9.2.0.192.in-addr.arpa': { PTR: ['liar.host.test'] },
  'liar.host.test': { A: ['192.0.2.200'] },
  'mail.host.test': { A: ['192.0.2.1'] },
  '8.2.0.192.in-addr.arpa': { PTR: ['servfail.test'] },
  '7.2.0.192.in-addr.arpa': { behaviour: 'servfail' as const },
  '6.2.0.192.in-addr.arpa': { PTR: ['192.0.2.6'] },
  '192.0.2.6': { A: ['192.0.2.6'] },
  // 2001:db8::1
  '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa': { PTR: ['v6.host.test'] },
  'servfail.test': { behaviour: 'servfail' as const },
  'refused.test': { behaviour: 'refused' as const },
  'hang.test': { behaviour: 'timeout' as const },
  'garbage.test': { behaviour: 'malformed' as const },
  'huge.test': { behaviour: 'huge' as const },
  'slow.test': { A: ['192.0.2.50'], delayMs: 150 },
};

let dns: DnsTestServer;
before(async () => {
  dns = await startDnsServer(ZONE);
});
after(async () => {
  await dns.stop();
});

const resolver = () => createResolver({ servers: [dns.address], timeoutMs: 2000 });

async function dnsErrorOf(p: Promise<unknown>): Promise<DnsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DnsError, `expected DnsError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the lookup to fail');
}

describe('resolver', () => {
  test('A and AAAA records come with their TTL', async () => {
    const r = resolver();
    assert.deepEqual(await r.a('host.test'), [
      { address: '192.0.2.1', ttl: 120 },
      { address: '192.0.2.2', ttl: 120 },
    ]);
    assert.deepEqual(await r.aaaa('HOST.test.'), [{ address: '2001:db8::1', ttl: 120 }]);
  });

  test('MX names are lower-case without trailing dot', async () => {
    const mx = await resolver().mx('host.test');
    assert.deepEqual(
      mx.sort((x, y) => x.priority - y.priority),
      [
        { exchange: 'mx1.host.test', priority: 10 },
        { exchange: 'mx2.host.test', priority: 20 },
      ],
    );
  });

  test('TXT records keep their character-strings', async () => {
    const txt = await resolver().txt('host.test');
    assert.deepEqual(txt.sort(), [['part one ', 'part two'], ['v=spf1 -all']].sort());
  });

  test('NS records', async () => {
    assert.deepEqual(await resolver().ns('host.test'), ['ns1.host.test']);
  });

  test('ptr builds the in-addr.arpa name and lower-cases the answer', async () => {
    assert.deepEqual(await resolver().ptr('192.0.2.1'), ['mail.host.test']);
    assert.ok(dns.queries.includes('1.2.0.192.in-addr.arpa PTR'));
  });

  test('ptr of an IPv4-mapped IPv6 address queries in-addr.arpa', async () => {
    assert.deepEqual(await resolver().ptr('::ffff:192.0.2.1'), ['mail.host.test']);
  });

  test('ptr builds the ip6.arpa name from 32 nibbles', async () => {
    assert.deepEqual(await resolver().ptr('2001:DB8::1'), ['v6.host.test']);
  });

  test('an unknown name is NXDOMAIN, a known name without the type is NODATA', async () => {
    const r = resolver();
    const nx = await dnsErrorOf(r.a('nowhere.test'));
    assert.equal(nx.code, 'NXDOMAIN');
    assert.equal(nx.query, 'nowhere.test');
    assert.equal(nx.temporary, false);
    const nodata = await dnsErrorOf(r.aaaa('v4only.test'));
    assert.equal(nodata.code, 'NODATA');
    assert.equal(nodata.temporary, false);
  });

  test('SERVFAIL and REFUSED are temporary errors', async () => {
    const sf = await dnsErrorOf(resolver().a('servfail.test'));
    assert.equal(sf.code, 'SERVFAIL');
    assert.equal(sf.temporary, true);
    const ref = await dnsErrorOf(resolver().txt('refused.test'));
    assert.equal(ref.code, 'REFUSED');
  });

  test('a server that never answers ends in TIMEOUT within the deadline', async () => {
    const r = createResolver({ servers: [dns.address], timeoutMs: 300 });
    const err = await dnsErrorOf(r.a('hang.test'));
    assert.equal(err.code, 'TIMEOUT');
    assert.equal(err.temporary, true);
  });

  test('a per-call timeout overrides the default deadline', async () => {
    const r = createResolver({ servers: [dns.address], timeoutMs: 60_000 });
    const err = await dnsErrorOf(r.a('hang.test', { timeoutMs: 200 }));
    assert.equal(err.code, 'TIMEOUT');
  });

  test('an answer slower than the deadline is a TIMEOUT, a faster one succeeds', async () => {
    const r = resolver();
    assert.deepEqual(await r.a('slow.test'), [{ address: '192.0.2.50', ttl: 300 }]);
    const err = await dnsErrorOf(r.a('slow.test', { timeoutMs: 50 }));
    assert.equal(err.code, 'TIMEOUT');
  });

  test('a server port where nothing listens gives a temporary error', async () => {
    const port = await unusedUdpPort();
    const r = createResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 300 });
    const err = await dnsErrorOf(r.a('host.test'));
    assert.equal(err.temporary, true);
  });

  test('a malformed answer is reported as FORMERR', async () => {
    const err = await dnsErrorOf(resolver().a('garbage.test'));
    assert.equal(err.code, 'FORMERR');
  });

  test(`an answer with more than ${MAX_RECORDS} records is an error`, async () => {
    const r = resolver();
    const err = await dnsErrorOf(r.a('huge.test'));
    assert.equal(err.code, 'ERROR');
    assert.match(err.message, /records/);
    const txt = await dnsErrorOf(r.txt('huge.test'));
    assert.equal(txt.code, 'ERROR');
    // The UDP answer was truncated and the client retried over TCP.
    assert.ok(dns.queries.filter((q) => q === 'huge.test A').length >= 2);
  });

  test('IDN names are queried as A-labels', async () => {
    assert.deepEqual(await resolver().a('Bücher.test'), [{ address: '192.0.2.8', ttl: 300 }]);
    assert.ok(dns.queries.includes('xn--bcher-kva.test A'));
  });

  test('an invalid name fails without a query', async () => {
    const before = dns.queries.length;
    const err = await dnsErrorOf(resolver().a(`${'a'.repeat(64)}.test`));
    assert.equal(err.code, 'FORMERR');
    assert.equal((await dnsErrorOf(resolver().a('a..test'))).code, 'FORMERR');
    assert.equal(dns.queries.length, before);
  });

  test('server specs are validated', () => {
    assert.equal(parseServerSpec('127.0.0.1:5353'), '127.0.0.1:5353');
    assert.equal(parseServerSpec('[::1]:53'), '[::1]:53');
    assert.equal(parseServerSpec('::1'), '::1');
    assert.throws(() => parseServerSpec('dns.example.test'), /invalid DNS server/);
    assert.throws(() => parseServerSpec('127.0.0.1:99999'), /invalid DNS server/);
    assert.throws(() => createResolver({ servers: ['nope'], timeoutMs: 1000 }), /invalid DNS server/);
  });
});

describe('names', () => {
  test('IPv4-mapped IPv6 normalises to IPv4 and IPv6 to RFC 5952 text', () => {
    assert.equal(normaliseIp('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseIp('::ffff:c000:0201'), '192.0.2.1');
    assert.equal(normaliseIp('2001:0DB8:0:0:0:0:0:0001'), '2001:db8::1');
    assert.equal(normaliseIp('2001:db8:0:1:0:0:0:1'), '2001:db8:0:1::1');
    assert.equal(normaliseIp('not-an-ip'), null);
  });

  test('reverse names', () => {
    assert.equal(reverseName('192.0.2.1'), '1.2.0.192.in-addr.arpa');
    assert.equal(
      reverseName('2001:db8::567:89ab'),
      'b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa',
    );
  });
});

describe('fcrdns', () => {
  test('a PTR name whose A records include the IP is confirmed', async () => {
    assert.equal(await fcrdns(resolver(), '192.0.2.1'), 'mail.host.test');
  });

  test('a PTR name that does not resolve back to the IP is not', async () => {
    assert.equal(await fcrdns(resolver(), '192.0.2.9'), null);
  });

  test('an IP without PTR has no name', async () => {
    assert.equal(await fcrdns(resolver(), '192.0.2.77'), null);
  });

  test('a PTR name that looks like an IP is ignored', async () => {
    assert.equal(await fcrdns(resolver(), '192.0.2.6'), null);
  });

  test('a temporary failure is thrown, not taken for "no name"', async () => {
    await assert.rejects(fcrdns(resolver(), '192.0.2.8'), (e: unknown) => e instanceof DnsError && e.code === 'SERVFAIL');
    await assert.rejects(fcrdns(resolver(), '192.0.2.7'), (e: unknown) => e instanceof DnsError && e.code === 'SERVFAIL');
  });

  test('resolverFromConfig uses server.dns.servers', async () => {
    const c = makeHostCall().env.config;
    c.server.dns.servers = [dns.address];
    c.server.dns.timeout = '2s';
    assert.deepEqual(await resolverFromConfig(c).a('v4only.test'), [{ address: '192.0.2.7', ttl: 300 }]);
  });
});

const builtin = (name: string) => findBuiltin(dnsBuiltins, name);

async function vslErrorOf(p: Value | Promise<Value>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VslError, `expected VslError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a runtime error');
}

type Value = import('../../src/vsl/values/value.js').Value;

describe('dns:: built-ins', () => {
  const call = () =>
    makeHostCall({
      stage: 'connect',
      resolver: createResolver({ servers: [dns.address], timeoutMs: 5000 }),
      configure: (c) => {
        c.server.dns.timeout = '300ms';
      },
    });

  test('registered from connect, as I/O, with their v1 aliases', () => {
    for (const n of ['dns::lookup', 'lookup', 'dns::rlookup', 'rlookup']) {
      const b = builtin(n);
      assert.equal(b.from, 'connect');
      assert.equal(b.io, true);
      assert.equal(b.arity, 1);
    }
  });

  test('dns::lookup returns the A then the AAAA addresses', async () => {
    assert.deepEqual(await builtin('dns::lookup').fn(call(), ['host.test']), ['192.0.2.1', '192.0.2.2', '2001:db8::1']);
  });

  test('dns::lookup of a name with only A records returns them', async () => {
    assert.deepEqual(await builtin('lookup').fn(call(), ['v4only.test']), ['192.0.2.7']);
  });

  test('dns::lookup throws "no record" for an unknown name', async () => {
    assert.equal(await vslErrorOf(builtin('dns::lookup').fn(call(), ['nowhere.test'])), 'dns::lookup: no record for nowhere.test');
  });

  test('dns::lookup throws on timeout using server.dns.timeout', async () => {
    assert.equal(await vslErrorOf(builtin('dns::lookup').fn(call(), ['hang.test'])), 'dns::lookup: timeout for hang.test');
  });

  test('dns::lookup throws on SERVFAIL', async () => {
    assert.match(await vslErrorOf(builtin('dns::lookup').fn(call(), ['servfail.test'])), /^dns::lookup: SERVFAIL for servfail\.test/);
  });

  test('dns::rlookup returns PTR names lower-case without trailing dot', async () => {
    assert.deepEqual(await builtin('dns::rlookup').fn(call(), ['192.0.2.1']), ['mail.host.test']);
    assert.deepEqual(await builtin('rlookup').fn(call(), ['::ffff:192.0.2.1']), ['mail.host.test']);
  });

  test('dns::rlookup throws when there is no PTR record', async () => {
    assert.equal(await vslErrorOf(builtin('dns::rlookup').fn(call(), ['192.0.2.77'])), 'dns::rlookup: no record for 77.2.0.192.in-addr.arpa');
  });

  test('dns::rlookup refuses a non-IP and wrong argument types', async () => {
    assert.equal(await vslErrorOf(builtin('dns::rlookup').fn(call(), ['host.test'])), "dns::rlookup: invalid IP address 'host.test'");
    assert.match(await vslErrorOf(builtin('dns::lookup').fn(call(), [42n])), /^dns::lookup: host must be a string, got i64/);
    assert.match(await vslErrorOf(builtin('dns::lookup').fn(call(), [])), /^dns::lookup: expected 1 argument/);
  });
});
