// SPF and DNSBL through the real server (issue "Core built-ins", must-show 2
// and 3): records come from a real DNS server on 127.0.0.1
// (test/helpers/dns-server.ts) named in `server.dns.servers`; the client
// connects from 127.0.0.1, the IP SPF and the DNSBLs evaluate.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startDnsServer, unusedUdpPort, type DnsTestServer } from '../helpers/dns-server.js';
import { headerFields, headerValues, queuedId, sampleMessage, sendData, startTestServer, transaction, type TestServer } from '../helpers/server.js';

const ZONE = {
  'pass.spf.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
  'fail.spf.test': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
  'softfail.spf.test': { TXT: ['v=spf1 ip4:192.0.2.1 ~all'] },
  'neutral.spf.test': { TXT: ['v=spf1 ?all'] },
  // A domain that exists but publishes no SPF record.
  'none.spf.test': { A: ['192.0.2.7'], TXT: ['google-site-verification=abc'] },
  // This name is never answered: the query times out (server.dns.timeout).
  'temperror.spf.test': { behaviour: 'timeout' as const },
  'permerror.spf.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all', 'v=spf1 -all'] },
};

const SPF_POLICY = `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = [];
  config.server.dns.timeout = "400ms";
  config
}

// The local part of the sender picks the call: a rule (its status decides
// the MAIL reply) or an action (its status is ignored, the headers stay).
#{
  mail: [
    rule "spf v1" || if ctx::mail_from().local_part == "v1" { check_spf("both", "soft") } else { next() },
    rule "spf v2" || if ctx::mail_from().local_part == "v2" { spf::check(#{ header: "both", policy: "soft" }) } else { next() },
    action "spf v1 headers" || { if ctx::mail_from().local_part == "v1hdr" { check_spf("both", "soft"); } },
    action "spf v2 headers" || { if ctx::mail_from().local_part == "v2hdr" { spf::check(#{ header: "both", policy: "soft" }); } },
  ],
}
`;

type SpfResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';
const RESULTS: SpfResult[] = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'];

// SPEC §7.9, policy "soft": the MAIL reply of each result in each dialect.
const OK = '250 2.1.0 Ok';
const FAILED = '550 5.7.23 SPF validation failed';
const EXPECTED_REPLY: Record<'v1' | 'v2', Record<SpfResult, string>> = {
  v1: { pass: OK, softfail: OK, fail: FAILED, neutral: OK, none: OK, temperror: '451 4.7.24 SPF validation error', permerror: '550 5.7.24 SPF validation error' },
  v2: { pass: OK, softfail: OK, fail: FAILED, neutral: FAILED, none: FAILED, temperror: '451 4.7.24 SPF validation error', permerror: '550 5.7.24 SPF validation error' },
};
// The mechanism that matched, for the Received-SPF header. A value that is
// not a dot-atom is a quoted-string (RFC 7208 §9.1 key-value-pair).
const MECHANISM: Partial<Record<SpfResult, string>> = { pass: '"ip4:127.0.0.1"', fail: '-all', softfail: '~all', neutral: '?all' };

function expectedReceivedSpf(result: SpfResult, sender: string): RegExp | string {
  const head = `${result} client-ip=127.0.0.1; envelope-from=${sender}; helo=client.example; receiver=mx.test.example; identity=mailfrom`;
  if (MECHANISM[result]) return `${head}; mechanism=${MECHANISM[result]}`;
  if (result === 'none') return head;
  return new RegExp(`^${head.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; problem=\\S.*$`);
}

describe('check_spf("both", "soft") and spf::check(#{header: "both", policy: "soft"}) at mail', () => {
  let dns: DnsTestServer;
  let s: TestServer;
  before(async () => {
    dns = await startDnsServer(ZONE);
    s = await startTestServer({ files: { 'main.vsl': SPF_POLICY }, set: [`server.dns.servers=["${dns.address}"]`] });
  });
  after(async () => {
    await s?.stop();
    await dns?.stop();
  });

  for (const dialect of ['v1', 'v2'] as const) {
    for (const result of RESULTS) {
      test(`${dialect} ${result}: MAIL gets "${EXPECTED_REPLY[dialect][result]}"; the spooled message carries Received-SPF and Authentication-Results`, async () => {
        // The decision, over the socket.
        const c = await s.client();
        const [, mail] = await transaction(c, `${dialect}@${result}.spf.test`, []);
        const expected = EXPECTED_REPLY[dialect][result];
        assert.equal(mail!.last, expected);
        if (expected.startsWith('250')) {
          assert.equal((await c.command('RCPT TO:<u@test.example>')).code, 250);
          const { end } = await sendData(c, sampleMessage(`${dialect}@${result}.spf.test`, 'u@test.example'));
          const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
          assert.equal(headerValues(m.eml, 'Received-SPF').length, 1);
          c.destroy();
        } else {
          assert.ok(await c.closedWithin(2000), 'an SPF deny closes the connection');
        }

        // The headers, in the spooled message (an action: the status is ignored, so every result reaches DATA).
        const sender = `${dialect}hdr@${result}.spf.test`;
        const d = await s.client();
        const replies = await transaction(d, sender, ['u@test.example']);
        assert.deepEqual(replies.slice(1).map((r) => r.code), [250, 250]);
        const { end } = await sendData(d, sampleMessage(sender, 'u@test.example'));
        d.destroy();
        const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
        const spf = headerValues(m.eml, 'Received-SPF');
        assert.equal(spf.length, 1, m.eml);
        const want = expectedReceivedSpf(result, sender);
        if (typeof want === 'string') assert.equal(spf[0], want);
        else assert.match(spf[0]!, want);
        assert.deepEqual(headerValues(m.eml, 'Authentication-Results'), [`mx.test.example; spf=${result} smtp.mailfrom=${sender}`]);
        // Pending headers go below Received: and above the message's own headers (SPEC §7.5).
        const names = headerFields(m.eml).map(([n]) => n);
        assert.equal(names[0], 'Received');
        assert.ok(names.indexOf('Received-SPF') < names.indexOf('From') && names.indexOf('Authentication-Results') < names.indexOf('From'));
      });
    }
  }

  test('v1 check_spf does not evaluate a local sender domain; spf::check does', async () => {
    const before = dns.queries.length;
    const c = await s.client();
    assert.equal((await transaction(c, 'v1@test.example', []))[1]!.last, OK);
    assert.equal(dns.queries.length, before, 'no DNS query for a local sender');
    c.destroy();
    const d = await s.client();
    // test.example publishes nothing here: none, which v2 treats as a failure.
    assert.equal((await transaction(d, 'v2@test.example', []))[1]!.last, FAILED);
    assert.ok(dns.queries.slice(before).includes('test.example TXT'));
    d.destroy();
  });
});

describe('SPF with a DNS server that does not answer at all', () => {
  test('check_spf gives 451 4.7.24 (temperror), never a pass', async () => {
    const port = await unusedUdpPort();
    const s = await startTestServer({ files: { 'main.vsl': SPF_POLICY }, set: [`server.dns.servers=["127.0.0.1:${port}"]`] });
    try {
      const c = await s.client();
      assert.equal((await transaction(c, 'v1@pass.spf.test', []))[1]!.last, '451 4.7.24 SPF validation error');
      assert.ok(await c.closedWithin(2000));
    } finally {
      await s.stop();
    }
  });
});

describe('DNSBL at connect (SPEC §8.1)', () => {
  let dns: DnsTestServer;
  before(async () => {
    dns = await startDnsServer({
      '1.0.0.127.listed.bl.test': { A: ['127.0.0.2'] },
      '1.0.0.127.outside.bl.test': { A: ['10.0.0.2'] },
      '1.0.0.127.servfail.bl.test': { behaviour: 'servfail' },
      '1.0.0.127.timeout.bl.test': { behaviour: 'timeout' },
    });
  });
  after(() => dns?.stop());

  test('a listed client is refused at connect with the zone in the reply, and the connection closes', async () => {
    const s = await startTestServer({
      files: { 'main.vsl': '#{ connect: [ rule "dnsbl" || check_rbl("listed.bl.test") ] }\n' },
      set: [`server.dns.servers=["${dns.address}"]`],
    });
    try {
      const c = await s.connect();
      assert.equal((await c.greeting()).last, '554 5.7.1 Service unavailable; client [127.0.0.1] blocked using listed.bl.test');
      assert.ok(await c.closedWithin(2000));
      assert.ok(dns.queries.includes('1.0.0.127.listed.bl.test A'), 'the reversed client IP was asked');
    } finally {
      await s.stop();
    }
  });

  test('an answer outside 127.0.0.0/8, SERVFAIL and a timeout count as not listed, each with a warning; the timeout is server.dns.dnsbl_timeout', async () => {
    const s = await startTestServer({
      files: {
        'main.vsl': `#{ connect: [
          rule "outside" || check_rbl("outside.bl.test"),
          rule "servfail" || check_rbl("servfail.bl.test"),
          rule "timeout" || check_rbl("timeout.bl.test"),
        ] }\n`,
      },
      // The general DNS deadline is long: only dnsbl_timeout can end the silent lookup early.
      set: [`server.dns.servers=["${dns.address}"]`, 'server.dns.dnsbl_timeout="300ms"', 'server.dns.timeout="10s"'],
    });
    try {
      const started = Date.now();
      const c = await s.connect({ timeoutMs: 15_000 });
      const greeting = await c.greeting();
      const elapsed = Date.now() - started;
      assert.equal(greeting.last, `220 ${s.server.config().server.name} Service ready`, 'the normal greeting: not listed');
      assert.ok(elapsed >= 250, `the lookup waited for its deadline (${elapsed} ms)`);
      assert.ok(elapsed < 5000, `bounded by dnsbl_timeout, not server.dns.timeout (${elapsed} ms)`);
      assert.equal((await c.ehlo()).code, 250, 'the session goes on');
      c.destroy();
      const warnings = s.logs.filter((l) => l.level === 40 && typeof l.zone === 'string');
      for (const zone of ['outside.bl.test', 'servfail.bl.test', 'timeout.bl.test']) {
        const w = warnings.find((l) => l.zone === zone);
        assert.ok(w, `a warning names ${zone}: ${JSON.stringify(warnings)}`);
      }
      assert.match(String(warnings.find((l) => l.zone === 'outside.bl.test')!.msg), /10\.0\.0\.2/);
    } finally {
      await s.stop();
    }
  });
});
