import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../src/host/ports.js';
import { createResolver } from '../../src/builtins/dns/resolver.js';
import { dnsblBuiltins, DnsblCache, dnsblLookup, dnsblQueryName, DNSBL_MAX_CACHE_MS, parseZone, rhsblLookup } from '../../src/builtins/dnsbl.js';
import { VslError } from '../../src/vsl/values/value.js';
import { startDnsServer, type DnsTestServer, type Records } from '../helpers/dns-server.js';
import { findBuiltin, makeHostCall, type HostCallInit, statusReply } from '../helpers/host-call.js';

const V6_CLIENT = '2001:db8::1';
const V6_NIBBLES = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2';

const ZONE: Records = {
  // 192.0.2.99 is listed with two codes
  '99.2.0.192.bl.test': { A: ['127.0.0.2', '127.0.0.4'], ttl: 600 },
  [`${V6_NIBBLES}.bl.test`]: { A: ['127.0.0.3'] },
  // answers outside 127/8 (a hijacked or wildcarded zone)
  '98.2.0.192.bl.test': { A: ['192.0.2.1'] },
  // "query refused" answer
  '97.2.0.192.bl.test': { A: ['127.255.255.254'] },
  '96.2.0.192.broken.test': { behaviour: 'servfail' },
  '95.2.0.192.slow.test': { behaviour: 'timeout' },
  'spammer.test.dbl.test': { A: ['127.0.1.2'] },
};

let dns: DnsTestServer;
before(async () => {
  dns = await startDnsServer(ZONE);
});
after(async () => {
  await dns.stop();
});

function frozenClock(start = 1_700_000_000_000): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    sleep: async () => {},
    advance(ms: number) {
      t += ms;
    },
  };
}

function call(init: HostCallInit = {}) {
  return makeHostCall({
    stage: 'mail',
    resolver: createResolver({ servers: [dns.address], timeoutMs: 5000 }),
    configure: (c) => {
      c.server.dns.dnsbl_timeout = '300ms';
    },
    ...init,
  });
}

const builtin = (name: string) => findBuiltin(dnsblBuiltins, name);

const reply = statusReply;

const opts = () => ({ timeoutMs: 300, cache: new DnsblCache() });
const resolver = () => createResolver({ servers: [dns.address], timeoutMs: 5000 });

describe('query names', () => {
  test('IPv4 octets are reversed, IPv6 gives 32 reversed nibbles, mapped IPv6 is IPv4', () => {
    assert.equal(dnsblQueryName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(dnsblQueryName(V6_CLIENT, 'bl.test'), `${V6_NIBBLES}.bl.test`);
    assert.equal(dnsblQueryName('::ffff:192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
  });

  test('zones with an answer filter', () => {
    assert.deepEqual(parseZone('BL.test'), { zone: 'bl.test', only: null });
    assert.deepEqual(parseZone('bl.test=127.0.0.2'), { zone: 'bl.test', only: '127.0.0.2' });
    assert.throws(() => parseZone('bl.test=10.0.0.1'), /127\.0\.0\.0\/8/);
    assert.throws(() => parseZone('nodot'), /invalid DNSBL zone/);
  });
});

describe('dnsblLookup', () => {
  test('a listed IPv4 client gives its answers', async () => {
    const r = await dnsblLookup(resolver(), 'bl.test', '192.0.2.99', opts());
    assert.equal(r.listed, true);
    assert.deepEqual(r.answers.sort(), ['127.0.0.2', '127.0.0.4']);
  });

  test('a listed IPv6 client is looked up by nibbles', async () => {
    const r = await dnsblLookup(resolver(), 'bl.test', V6_CLIENT, opts());
    assert.deepEqual(r.answers, ['127.0.0.3']);
    assert.ok(dns.queries.includes(`${V6_NIBBLES}.bl.test A`));
  });

  test('an IPv4-mapped client is looked up as IPv4', async () => {
    const r = await dnsblLookup(resolver(), 'bl.test', '::ffff:192.0.2.99', opts());
    assert.equal(r.listed, true);
  });

  test('zone=127.0.0.2 counts only that answer', async () => {
    const two = await dnsblLookup(resolver(), 'bl.test=127.0.0.2', '192.0.2.99', opts());
    assert.deepEqual(two.answers, ['127.0.0.2']);
    const five = await dnsblLookup(resolver(), 'bl.test=127.0.0.5', '192.0.2.99', opts());
    assert.equal(five.listed, false);
  });

  test('a client not in the list is not listed, without warning', async () => {
    const r = await dnsblLookup(resolver(), 'bl.test', '192.0.2.1', opts());
    assert.equal(r.listed, false);
    assert.equal(r.warning, undefined);
  });
});

describe('dnsbl:: built-ins', () => {
  test('dnsbl::lookup and dnsbl::listed default to the client IP', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.99' } });
    const answers = await builtin('dnsbl::lookup').fn(c, ['bl.test']);
    assert.deepEqual((answers as string[]).sort(), ['127.0.0.2', '127.0.0.4']);
    assert.equal(await builtin('dnsbl::listed').fn(c, ['bl.test']), true);
    assert.equal(await builtin('dnsbl::listed').fn(c, ['bl.test', '192.0.2.1']), false);
  });

  test('a listing is logged at info with its codes', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.99' } });
    await builtin('dnsbl::listed').fn(c, ['bl.test']);
    const info = c.logs.find((l) => l.level === 'info' && l.zone === 'bl.test');
    assert.ok(info, 'info record');
    assert.deepEqual((info.answers as string[]).sort(), ['127.0.0.2', '127.0.0.4']);
  });

  test('answers outside 127.0.0.0/8 are ignored with a warning', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.98' } });
    assert.equal(await builtin('dnsbl::listed').fn(c, ['bl.test']), false);
    const warn = c.logs.find((l) => l.level === 'warn');
    assert.ok(warn, 'warning logged');
    assert.equal(warn.zone, 'bl.test');
    assert.match(String(warn.reason), /outside 127\.0\.0\.0\/8/);
  });

  test('a 127.255.255.x answer means "query refused": not listed, warning', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.97' } });
    assert.deepEqual(await builtin('dnsbl::lookup').fn(c, ['bl.test']), []);
    assert.ok(c.logs.some((l) => l.level === 'warn' && l.zone === 'bl.test' && /refused/.test(String(l.reason))));
  });

  test('SERVFAIL counts as not listed, with a warning', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.96' } });
    assert.equal(await builtin('dnsbl::listed').fn(c, ['broken.test']), false);
    assert.ok(c.logs.some((l) => l.level === 'warn' && l.zone === 'broken.test' && /SERVFAIL/.test(String(l.reason))));
  });

  test('the dnsbl_timeout deadline counts as not listed, with a warning', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.95' } });
    assert.equal(reply(await builtin('check_rbl').fn(c, ['slow.test'])), 'next');
    assert.ok(c.logs.some((l) => l.level === 'warn' && l.zone === 'slow.test' && /timeout/.test(String(l.reason))));
  });

  test('answers are cached for their TTL, at most 15 minutes', async () => {
    const clock = frozenClock();
    const res = createResolver({ servers: [dns.address], timeoutMs: 5000 });
    const c = () => call({ stage: 'connect', session: { clientIp: '192.0.2.99' }, resolver: res, clock });
    const count = () => dns.queries.filter((q) => q === '99.2.0.192.bl.test A').length;
    const start = count();
    assert.equal(await builtin('dnsbl::listed').fn(c(), ['bl.test']), true);
    assert.equal(count(), start + 1);
    clock.advance(599_000);
    assert.equal(await builtin('dnsbl::listed').fn(c(), ['bl.test=127.0.0.4']), true);
    assert.equal(count(), start + 1, 'second lookup within the TTL is answered from the cache');
    clock.advance(2_000);
    assert.equal(await builtin('dnsbl::listed').fn(c(), ['bl.test']), true);
    assert.equal(count(), start + 2, 'expired entry is looked up again');
  });

  test('the cache never keeps an entry longer than 15 minutes', () => {
    const cache = new DnsblCache();
    cache.set('x', ['127.0.0.2'], 86_400_000, 0);
    assert.deepEqual(cache.get('x', DNSBL_MAX_CACHE_MS - 1), ['127.0.0.2']);
    assert.equal(cache.get('x', DNSBL_MAX_CACHE_MS), undefined);
  });

  test('check_rbl denies a listed client with the default reply', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '::ffff:192.0.2.99' } });
    assert.equal(
      reply(await builtin('check_rbl').fn(c, ['bl.test'])),
      'deny 554 5.7.1 Service unavailable; client [192.0.2.99] blocked using bl.test',
    );
  });

  test('check_rbl with a code uses it, and passes unlisted clients', async () => {
    const listed = call({ stage: 'connect', session: { clientIp: '192.0.2.99' } });
    assert.equal(reply(await builtin('check_rbl').fn(listed, ['bl.test', '550 5.7.1 go away'])), 'deny 550 5.7.1 go away');
    const clean = call({ stage: 'connect', session: { clientIp: '192.0.2.1' } });
    assert.equal(reply(await builtin('check_rbl').fn(clean, ['bl.test'])), 'next');
  });

  test('check_rbl with an invalid code is a runtime error naming check_rbl', async () => {
    const c = call({ stage: 'connect', session: { clientIp: '192.0.2.99' } });
    await assert.rejects(
      async () => builtin('check_rbl').fn(c, ['bl.test', '250 ok']),
      (e: unknown) => e instanceof VslError && e.message.startsWith('check_rbl: '),
    );
  });

  test('dnsbl::rhsbl and check_rhsbl look up the sender domain', async () => {
    const c = call({ mailFrom: 'bob@Spammer.test' });
    assert.equal(await builtin('dnsbl::rhsbl').fn(c, ['dbl.test']), true);
    assert.equal(await builtin('dnsbl::rhsbl').fn(c, ['dbl.test', 'clean.test']), false);
    assert.equal(await builtin('dnsbl::rhsbl').fn(c, ['dbl.test', 'someone@spammer.test']), true);
    assert.equal(
      reply(await builtin('check_rhsbl').fn(c, ['dbl.test'])),
      'deny 554 5.7.1 Service unavailable; sender domain spammer.test blocked using dbl.test',
    );
    const clean = call({ mailFrom: 'alice@clean.test' });
    assert.equal(reply(await builtin('check_rhsbl').fn(clean, ['dbl.test'])), 'next');
  });

  test('the null sender is never RHSBL-listed', async () => {
    const c = call({ mailFrom: '' });
    const before = dns.queries.length;
    assert.equal(await builtin('dnsbl::rhsbl').fn(c, ['dbl.test']), false);
    assert.equal(reply(await builtin('check_rhsbl').fn(c, ['dbl.test'])), 'next');
    assert.equal(dns.queries.length, before, 'no query made');
  });

  test('rhsblLookup ignores address literals', async () => {
    const r = await rhsblLookup(resolver(), 'dbl.test', '[192.0.2.1]', opts());
    assert.equal(r.listed, false);
  });

  test('stages, arity and argument checks', async () => {
    assert.equal(builtin('check_rbl').from, 'connect');
    assert.equal(builtin('dnsbl::lookup').from, 'connect');
    assert.equal(builtin('dnsbl::rhsbl').from, 'mail');
    assert.equal(builtin('check_rhsbl').from, 'mail');
    for (const b of dnsblBuiltins) assert.equal(b.io, true);
    const c = call({ stage: 'connect' });
    await assert.rejects(async () => builtin('dnsbl::lookup').fn(c, ['bl.test', 'not-an-ip']), /^VslError: dnsbl::lookup: invalid IP address/);
    await assert.rejects(async () => builtin('dnsbl::listed').fn(c, [1n]), /dnsbl::listed: zone must be a string/);
  });
});
