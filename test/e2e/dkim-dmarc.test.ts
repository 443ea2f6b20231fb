// DKIM and DMARC through the real server (issue "Core built-ins",
// must-show 5), with keys the test generates and records served by a real
// DNS server on 127.0.0.1:
//
// - dkim::sign in postq (key from dkim.keys), the message delivered by
//   `transport::forward` to a next-hop SMTP sink, and the copy the sink
//   received verified by mailauth;
// - dmarc::check at preq: pass, fail under p=none, quarantine, reject, and
//   the strict-alignment case mailauth 4.13 gets wrong (a passing signature
//   of mail.strict.dmarc.test is not strictly aligned with From:
//   strict.dmarc.test), with the relaxed control case. Those messages are
//   signed by mailauth in the test, so the server's DKIM verification is
//   exercised too.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { promises as dnsPromises } from 'node:dns';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dkimSign, dkimVerify } from 'mailauth';
import { startDnsServer, type DnsTestServer } from '../helpers/dns-server.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { headerValues, queuedId, sendData, startTestServer, tempDir, transaction, type TestServer } from '../helpers/server.js';

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_PEM = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const KEY_RECORD = `v=DKIM1; k=rsa; p=${keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;

function message(from: string, to: string, subject: string): string {
  return [
    `From: Sender <${from}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    'Date: Sat, 22 Nov 2025 10:00:00 +0000',
    `Message-ID: <${subject.replace(/\W+/g, '-')}@e2e.test>`,
    '',
    'A message whose signature must survive the trip.',
    '',
  ].join('\r\n');
}

/** A mailauth resolver asking the test DNS server (what a receiving MTA would do). */
function resolverFor(dns: DnsTestServer) {
  const r = new dnsPromises.Resolver();
  r.setServers([dns.address]);
  return async (name: string, rrtype: string): Promise<string[][] | string[]> => {
    if (rrtype === 'TXT') return r.resolveTxt(name);
    return (await r.resolve(name, rrtype)) as string[];
  };
}

describe('dkim::sign in postq, delivered with transport::forward, verified by mailauth', () => {
  let dns: DnsTestServer;
  let sink: SmtpSink;
  let s: TestServer;
  let keyDir: string;
  before(async () => {
    dns = await startDnsServer({ 's1._domainkey.example.org': { TXT: [KEY_RECORD] } });
    sink = await startSmtpSink();
    keyDir = tempDir('vsl-e2e-dkim-');
    const keyPath = path.join(keyDir, 'dkim.pem');
    writeFileSync(keyPath, PRIVATE_PEM, { mode: 0o600 });
    s = await startTestServer({
      deliver: true,
      files: {
        'main.vsl': `
fn on_config(config) {
  config.server.name = "mx.example.org";
  config.server.domain = "example.org";
  config.dkim.keys = #{ "example.org": [#{ selector: "s1", private_key: ${JSON.stringify(keyPath)} }] };
  config.delivery.timeout = "5s";
  config
}
#{
  rcpt: [
    action "to the next hop" || transport::forward(ctx::rcpt(), ${JSON.stringify(sink.address)}),
    rule "relay from loopback" || check_rcpt_relay(rg4("127.0.0.0/8")),
  ],
  postq: [
    action "sign" || { dkim::sign(#{ selector: "s1" }); },
  ],
}
`,
      },
      set: [`server.dns.servers=["${dns.address}"]`],
    });
  });
  after(async () => {
    await s?.stop();
    await sink?.close();
    await dns?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  test('the delivered message carries a DKIM-Signature of example.org that verifies; a changed body does not', async () => {
    const c = await s.client();
    const replies = await transaction(c, 'alice@example.org', ['bob@remote.test']);
    assert.deepEqual(replies.slice(1).map((r) => r.code), [250, 250]);
    const { end } = await sendData(c, message('alice@example.org', 'bob@remote.test', 'dkim round trip'));
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();

    await sink.waitForMessages(1, 15_000);
    const got = sink.messages[0]!;
    assert.deepEqual(got.rcptTo, ['bob@remote.test']);
    const text = got.data.toString('latin1');
    assert.equal(headerValues(text, 'DKIM-Signature').length, 1);
    assert.match(headerValues(text, 'Received')[0]!, new RegExp(`id ${queuedId(end)};`), 'the message is the one we queued');

    const resolver = resolverFor(dns);
    const verified = await dkimVerify(got.data, { resolver });
    const sig = verified.results[0]!;
    assert.equal(sig.status.result, 'pass', JSON.stringify(verified.results));
    assert.equal(sig.signingDomain, 'example.org');
    assert.equal(sig.selector, 's1');

    const tampered = Buffer.from(text.replace('must survive the trip', 'was changed on the way'), 'latin1');
    const broken = await dkimVerify(tampered, { resolver });
    assert.notEqual(broken.results[0]!.status.result, 'pass');
  });
});

const DMARC_ZONE = {
  // SPF: only pass.dmarc.test authorises 127.0.0.1.
  'pass.dmarc.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
  'none.dmarc.test': { TXT: ['v=spf1 -all'] },
  'quarantine.dmarc.test': { TXT: ['v=spf1 -all'] },
  'reject.dmarc.test': { TXT: ['v=spf1 -all'] },
  'strict.dmarc.test': { TXT: ['v=spf1 -all'] },
  'relaxed.dmarc.test': { TXT: ['v=spf1 -all'] },
  // DMARC policies.
  '_dmarc.pass.dmarc.test': { TXT: ['v=DMARC1; p=reject'] },
  '_dmarc.none.dmarc.test': { TXT: ['v=DMARC1; p=none'] },
  '_dmarc.quarantine.dmarc.test': { TXT: ['v=DMARC1; p=quarantine'] },
  '_dmarc.reject.dmarc.test': { TXT: ['v=DMARC1; p=reject'] },
  // quarantine rather than reject, so the message and its Authentication-Results can be read.
  '_dmarc.strict.dmarc.test': { TXT: ['v=DMARC1; p=quarantine; adkim=s; aspf=s'] },
  '_dmarc.relaxed.dmarc.test': { TXT: ['v=DMARC1; p=reject'] },
  // DKIM keys of the signing subdomains.
  's1._domainkey.mail.strict.dmarc.test': { TXT: [KEY_RECORD] },
  's1._domainkey.mail.relaxed.dmarc.test': { TXT: [KEY_RECORD] },
};

describe('dmarc::check at preq with records from the loopback DNS server', () => {
  let dns: DnsTestServer;
  let s: TestServer;
  before(async () => {
    dns = await startDnsServer(DMARC_ZONE);
    s = await startTestServer({
      files: {
        'main.vsl': `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = [];
  config
}
#{ preq: [ rule "dmarc" || dmarc::check() ] }
`,
      },
      set: [`server.dns.servers=["${dns.address}"]`],
    });
  });
  after(async () => {
    await s?.stop();
    await dns?.stop();
  });

  /** Sends a message From: and MAIL FROM the same domain, optionally DKIM-signed for `signer`; returns the end-of-data reply. */
  async function send(domain: string, signer?: string) {
    let body = message(`user@${domain}`, 'u@test.example', `dmarc ${domain}`);
    if (signer) {
      // mailauth 4.13 signs only what is listed in signatureData (its typings show the top-level keys).
      const key = { signingDomain: signer, selector: 's1', privateKey: PRIVATE_PEM };
      const signed = await dkimSign(body, { ...key, canonicalization: 'relaxed/relaxed', signatureData: [key] });
      assert.deepEqual(signed.errors, []);
      assert.match(signed.signatures, /^DKIM-Signature: /);
      body = signed.signatures + body;
    }
    const c = await s.client();
    const replies = await transaction(c, `user@${domain}`, ['u@test.example']);
    assert.deepEqual(replies.slice(1).map((r) => r.code), [250, 250]);
    const { end } = await sendData(c, body);
    return { c, end };
  }
  const spooled = async (id: string) => (await s.spooled()).find((m) => m.id === id)!;

  test('an aligned SPF pass: dmarc=pass, queued, one Authentication-Results with dkim, spf and dmarc', async () => {
    const { c, end } = await send('pass.dmarc.test');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const m = await spooled(queuedId(end));
    assert.equal(m.place, 'active');
    assert.deepEqual(headerValues(m.eml, 'Authentication-Results'), [
      'mx.test.example; dkim=none; spf=pass smtp.mailfrom=user@pass.dmarc.test; dmarc=pass (p=reject) header.from=pass.dmarc.test',
    ]);
  });

  test('a failure under p=none is queued normally with dmarc=fail', async () => {
    const { c, end } = await send('none.dmarc.test');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const m = await spooled(queuedId(end));
    assert.equal(m.place, 'active');
    assert.match(headerValues(m.eml, 'Authentication-Results')[0]!, /; dmarc=fail \(p=none\) header\.from=none\.dmarc\.test$/);
  });

  test('a failure under p=quarantine is queued into quarantine "dmarc"', async () => {
    const { c, end } = await send('quarantine.dmarc.test');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    assert.equal((await spooled(queuedId(end))).place, 'quarantine/dmarc');
  });

  test('a failure under p=reject gets 550 5.7.1 DMARC policy violation, the connection closes and nothing is queued', async () => {
    const before = (await s.spooled()).length;
    const { c, end } = await send('reject.dmarc.test');
    assert.equal(end.last, '550 5.7.1 DMARC policy violation');
    assert.ok(await c.closedWithin(2000));
    assert.equal((await s.spooled()).length, before);
  });

  test('strict alignment: a passing signature of mail.strict.dmarc.test does not align with From: strict.dmarc.test (mailauth 4.13 says it does)', async () => {
    const { c, end } = await send('strict.dmarc.test', 'mail.strict.dmarc.test');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const m = await spooled(queuedId(end));
    assert.equal(m.place, 'quarantine/dmarc', 'the p=quarantine policy applied');
    const ar = headerValues(m.eml, 'Authentication-Results')[0]!;
    assert.match(ar, /dkim=pass header\.d=mail\.strict\.dmarc\.test/, 'the signature itself is good');
    assert.match(ar, /dmarc=fail \(p=quarantine\) header\.from=strict\.dmarc\.test$/);
  });

  test('relaxed alignment: the same kind of signature of mail.relaxed.dmarc.test passes DMARC for relaxed.dmarc.test', async () => {
    const { c, end } = await send('relaxed.dmarc.test', 'mail.relaxed.dmarc.test');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const m = await spooled(queuedId(end));
    assert.equal(m.place, 'active');
    const ar = headerValues(m.eml, 'Authentication-Results')[0]!;
    assert.match(ar, /dkim=pass header\.d=mail\.relaxed\.dmarc\.test/);
    assert.match(ar, /dmarc=pass \(p=reject\) header\.from=relaxed\.dmarc\.test$/);
  });
});
