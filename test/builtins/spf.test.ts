import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Resolver } from '../../src/host/ports.js';
import { createResolver } from '../../src/builtins/dns/resolver.js';
import { evaluateSpf, spfBuiltins } from '../../src/builtins/spf.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { startDnsServer, unusedUdpPort, type DnsTestServer, type Records } from '../helpers/dns-server.js';
import { findBuiltin, makeHostCall, mailAddress, type HostCallInit, statusReply } from '../helpers/host-call.js';

const CLIENT = '192.0.2.10';
const HELO = 'client.example.test';
const RECEIVER = 'mx.example.test';

const includeChain: Records = {};
for (let i = 0; i < 11; i++) includeChain[`chain${i}.test`] = { TXT: [`v=spf1 include:chain${i + 1}.test -all`] };
includeChain['chain11.test'] = { TXT: ['v=spf1 -all'] };

const ZONE: Records = {
  'pass.test': { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
  'fail.test': { TXT: ['v=spf1 -all'] },
  'softfail.test': { TXT: ['v=spf1 ~all'] },
  'neutral.test': { TXT: ['v=spf1 ?all'] },
  'none.test': { A: ['192.0.2.200'], TXT: ['some other text'] },
  'permerror.test': { TXT: ['v=spf1 -all', `v=spf1 ip4:${CLIENT} -all`] },
  'timeout.test': { behaviour: 'timeout' },
  'helo.test': { TXT: ['v=spf1 a -all'], A: [CLIENT] },
  'viamx.test': { TXT: ['v=spf1 mx -all'], MX: ['10 mx1.viamx.test'] },
  'mx1.viamx.test': { A: [CLIENT] },
  'include.test': { TXT: ['v=spf1 include:pass.test -all'] },
  'voids.test': { TXT: ['v=spf1 a:nx1.test a:nx2.test a:nx3.test -all'] },
  'xn--bcher-kva.test': { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
  'example.org': { TXT: ['v=spf1 -all'] },
  ...includeChain,
};

let dns: DnsTestServer;
let deadPort: number;
before(async () => {
  dns = await startDnsServer(ZONE);
  deadPort = await unusedUdpPort();
});
after(async () => {
  await dns.stop();
});

const liveResolver = (): Resolver => createResolver({ servers: [dns.address], timeoutMs: 2000 });

function call(mailFrom: string, init: HostCallInit = {}) {
  return makeHostCall({
    stage: 'mail',
    resolver: liveResolver(),
    mailFrom,
    session: { clientIp: CLIENT, helo: HELO },
    configure: (c) => {
      c.server.name = RECEIVER;
      c.server.domain = 'example.org';
      c.server.dns.timeout = '500ms';
    },
    ...init,
  });
}

const builtin = (name: string) => findBuiltin(spfBuiltins, name);

const reply = statusReply;

const DENY_FAILED = 'deny 550 5.7.23 SPF validation failed';
const DENY_ERROR = 'deny 550 5.7.24 SPF validation error';
const DENY_TEMP = 'deny 451 4.7.24 SPF validation error';

interface Case {
  result: string;
  sender: string;
  /** v1 check_spf("both", "soft"), v1 check_spf("both") (strict), v2 spf::check(). */
  soft: string;
  strict: string;
  v2: string;
  /** What follows `identity=mailfrom; ` in Received-SPF. */
  tail: string;
  deadDns?: boolean;
}

const CASES: Case[] = [
  { result: 'pass', sender: 'alice@pass.test', soft: 'next', strict: 'next', v2: 'next', tail: `mechanism="ip4:${CLIENT}"` },
  { result: 'fail', sender: 'alice@fail.test', soft: DENY_FAILED, strict: DENY_FAILED, v2: DENY_FAILED, tail: 'mechanism=-all' },
  { result: 'softfail', sender: 'alice@softfail.test', soft: 'next', strict: DENY_FAILED, v2: DENY_FAILED, tail: 'mechanism=~all' },
  { result: 'neutral', sender: 'alice@neutral.test', soft: 'next', strict: 'next', v2: DENY_FAILED, tail: 'mechanism=?all' },
  { result: 'none', sender: 'alice@none.test', soft: 'next', strict: 'next', v2: DENY_FAILED, tail: '' },
  {
    result: 'temperror',
    sender: 'alice@pass.test',
    soft: DENY_TEMP,
    strict: DENY_TEMP,
    v2: DENY_TEMP,
    tail: 'problem=',
    deadDns: true,
  },
  { result: 'permerror', sender: 'alice@permerror.test', soft: DENY_ERROR, strict: DENY_ERROR, v2: DENY_ERROR, tail: 'problem="multiple SPF records found for permerror.test"' },
];

describe('SPF results, decisions and headers (SPEC §7.9)', () => {
  for (const c of CASES) {
    const variants: Array<[string, string, Value[], string]> = [
      ['v1 check_spf("both", "soft")', 'check_spf', ['both', 'soft'], c.soft],
      ['v1 check_spf("both") (strict)', 'check_spf', ['both'], c.strict],
      ['v2 spf::check()', 'spf::check', [], c.v2],
    ];
    for (const [label, name, args, expected] of variants) {
      test(`${c.result}: ${label} gives ${expected} and writes Received-SPF and Authentication-Results`, async () => {
        const resolver = c.deadDns ? createResolver({ servers: [`127.0.0.1:${deadPort}`], timeoutMs: 500 }) : liveResolver();
        const k = call(c.sender, { resolver });
        assert.equal(reply(await builtin(name).fn(k, args)), expected);
        assert.equal(k.headers.length, 2);
        const [spf, auth] = k.headers;
        assert.equal(spf!.name, 'Received-SPF');
        assert.equal(spf!.where, 'top');
        const prefix = `${c.result} client-ip=${CLIENT}; envelope-from=${c.sender}; helo=${HELO}; receiver=${RECEIVER}; identity=mailfrom`;
        if (c.tail === '') assert.equal(spf!.value, prefix);
        else assert.ok(spf!.value.startsWith(`${prefix}; ${c.tail}`), spf!.value);
        assert.deepEqual(auth, {
          name: 'Authentication-Results',
          value: `${RECEIVER}; spf=${c.result} smtp.mailfrom=${c.sender}`,
          where: 'top',
        });
      });
    }
  }
});

describe('SPF identity and evaluation', () => {
  test('the null sender is checked as postmaster@<helo> with the HELO identity', async () => {
    const k = call('', { session: { clientIp: CLIENT, helo: 'helo.test' } });
    assert.equal(reply(await builtin('spf::check').fn(k, [])), 'next');
    assert.deepEqual(
      k.headers.map((h) => `${h.name}: ${h.value}`),
      [
        `Received-SPF: pass client-ip=${CLIENT}; envelope-from=postmaster@helo.test; helo=helo.test; receiver=${RECEIVER}; identity=helo; mechanism="a:helo.test"`,
        `Authentication-Results: ${RECEIVER}; spf=pass smtp.helo=helo.test`,
      ],
    );
  });

  test('an address-literal HELO with the null sender gives none without a query', async () => {
    const before = dns.queries.length;
    const k = call('', { session: { clientIp: CLIENT, helo: '[192.0.2.10]' } });
    const raw = (await builtin('spf::check_raw').fn(k, [])) as Map<string, Value>;
    assert.equal(raw.get('result'), 'none');
    assert.equal(dns.queries.length, before);
    assert.equal(reply(await builtin('check_spf').fn(k, ['both'])), 'next');
    assert.equal(reply(await builtin('spf::check').fn(k, [])), DENY_FAILED);
  });

  test('v1 check_spf skips a local sender domain: next, no headers, no query', async () => {
    const before = dns.queries.length;
    const k = call('postmaster@Example.ORG');
    assert.equal(reply(await builtin('check_spf').fn(k, ['both', 'strict'])), 'next');
    assert.equal(k.headers.length, 0);
    assert.equal(dns.queries.length, before);
  });

  test('v2 spf::check evaluates a local sender domain', async () => {
    const k = call('postmaster@example.org');
    assert.equal(reply(await builtin('spf::check').fn(k, [new Map([['header', 'none']])])), DENY_FAILED);
    assert.equal(k.headers.length, 0);
  });

  test('the result is computed once per transaction and headers are written once', async () => {
    const k = call('bob@include.test');
    const count = () => dns.queries.filter((q) => q === 'include.test TXT').length;
    const start = count();
    assert.equal(reply(await builtin('check_spf').fn(k, ['both'])), 'next');
    assert.equal(reply(await builtin('spf::check').fn(k, [new Map([['header', 'both'], ['policy', 'soft']])])), 'next');
    const raw = (await builtin('check_spf_inner').fn(k, [])) as Map<string, Value>;
    assert.deepEqual([...raw], [['result', 'pass'], ['mechanism', 'include:pass.test']]);
    assert.equal(count(), start + 1);
    assert.equal(k.headers.length, 2);
  });

  test('header "spf" writes only Received-SPF, "auth" only Authentication-Results', async () => {
    const k = call('alice@fail.test');
    await builtin('spf::check').fn(k, [new Map([['header', 'spf']])]);
    assert.deepEqual(k.headers.map((h) => h.name), ['Received-SPF']);
    const k2 = call('alice@fail.test');
    await builtin('check_spf').fn(k2, ['auth', 'soft']);
    assert.deepEqual(k2.headers.map((h) => h.name), ['Authentication-Results']);
  });

  test('check_raw reports mechanism or problem without headers or decision', async () => {
    const k = call('alice@softfail.test');
    assert.deepEqual([...((await builtin('spf::check_raw').fn(k, [])) as Map<string, Value>)], [['result', 'softfail'], ['mechanism', '~all']]);
    assert.equal(k.headers.length, 0);
    const k2 = call('alice@permerror.test');
    const raw = (await builtin('spf::check_raw').fn(k2, [])) as Map<string, Value>;
    assert.equal(raw.get('result'), 'permerror');
    assert.match(String(raw.get('problem')), /multiple SPF records/);
  });

  test('mx mechanism matches through the MX host addresses', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: CLIENT,
      mailFrom: mailAddress('a@viamx.test'),
      helo: HELO,
      receiver: RECEIVER,
      timeoutMs: 1000,
    });
    assert.equal(o.result, 'pass');
    assert.equal(o.mechanism, 'mx:mx1.viamx.test');
  });

  test('more than 10 DNS lookups is a permerror', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: CLIENT,
      mailFrom: mailAddress('a@chain0.test'),
      helo: HELO,
      receiver: RECEIVER,
      timeoutMs: 1000,
    });
    assert.equal(o.result, 'permerror');
    assert.match(o.problem ?? '', /more than 10 DNS lookups/);
  });

  test('more than 2 void lookups is a permerror', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: CLIENT,
      mailFrom: mailAddress('a@voids.test'),
      helo: HELO,
      receiver: RECEIVER,
      timeoutMs: 1000,
    });
    assert.equal(o.result, 'permerror');
    assert.match(o.problem ?? '', /void/);
  });

  test('a DNS timeout is a temperror', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: CLIENT,
      mailFrom: mailAddress('a@timeout.test'),
      helo: HELO,
      receiver: RECEIVER,
      timeoutMs: 200,
    });
    assert.equal(o.result, 'temperror');
  });

  test('an IDN HELO is converted to A-labels before lookup', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: CLIENT,
      mailFrom: null,
      helo: 'Bücher.test',
      receiver: RECEIVER,
      timeoutMs: 1000,
    });
    assert.equal(o.result, 'pass');
    assert.equal(o.sender, 'postmaster@xn--bcher-kva.test');
  });

  test('an IPv4-mapped client address is checked as IPv4', async () => {
    const o = await evaluateSpf(liveResolver(), {
      ip: `::ffff:${CLIENT}`,
      mailFrom: mailAddress('a@pass.test'),
      helo: HELO,
      receiver: RECEIVER,
      timeoutMs: 1000,
    });
    assert.equal(o.result, 'pass');
    assert.equal(o.ip, CLIENT);
  });

  test('bad arguments are runtime errors naming the function', async () => {
    const k = call('alice@pass.test');
    const err = async (p: Promise<unknown> | unknown, re: RegExp) =>
      assert.rejects(async () => p, (e: unknown) => e instanceof VslError && re.test(e.message));
    await err(builtin('check_spf').fn(k, ['all']), /^check_spf: header must be/);
    await err(builtin('check_spf').fn(k, ['both', 'lenient']), /^check_spf: policy must be/);
    await err(builtin('spf::check').fn(k, ['both']), /^spf::check: options must be a map/);
    await err(builtin('spf::check').fn(k, [new Map([['polcy', 'soft']])]), /^spf::check: unknown option 'polcy'/);
  });

  test('registered from mail, as I/O', () => {
    for (const n of ['spf::check', 'check_spf', 'spf::check_raw', 'check_spf_inner']) {
      assert.equal(builtin(n).from, 'mail');
      assert.equal(builtin(n).io, true);
    }
  });
});
