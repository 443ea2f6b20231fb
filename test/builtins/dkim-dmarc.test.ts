import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/schema.js';
import { createResolver } from '../../src/builtins/dns/resolver.js';
import { canonBody, dkimBuiltins } from '../../src/builtins/dkim.js';
import { aligned, dmarcBuiltins, parseDmarcRecord } from '../../src/builtins/dmarc.js';
import { organizationalDomain, pslBuiltins } from '../../src/builtins/psl.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { startDnsServer, type DnsTestServer, type Records } from '../helpers/dns-server.js';
import { findBuiltin, makeHostCall, type HostCallInit, type TestHostCall, statusReply } from '../helpers/host-call.js';

const RECEIVER = 'mx.example.test';
const CLIENT = '192.0.2.10';

let dns: DnsTestServer;
let dir: string;
let rsa: { privateKey: KeyObject; publicKey: KeyObject };
let ed: { privateKey: KeyObject; publicKey: KeyObject };
let rsaFile: string;
let edFile: string;
let otherRsaFile: string;

function rsaRecord(k: KeyObject): string {
  return `v=DKIM1; k=rsa; p=${k.export({ type: 'spki', format: 'der' }).toString('base64')}`;
}
function edRecord(k: KeyObject): string {
  // RFC 8463: the raw 32-byte key, i.e. the end of the SPKI encoding.
  return `v=DKIM1; k=ed25519; p=${k.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64')}`;
}

/** DKIM-signing domains of the tests, all with the same RSA key under selector "s1". */
const SIGNERS = ['example.test', 'none.test', 'quar.test', 'reject.test', 'mail.strict.test', 'mail.relaxed.test', 'other.test', 'sub.org.test'];

function zone(): Records {
  const z: Records = {
    'rsa1._domainkey.example.test': { TXT: [rsaRecord(rsa.publicKey)] },
    'ed1._domainkey.example.test': { TXT: [edRecord(ed.publicKey)] },
    'testing._domainkey.example.test': { TXT: [`${rsaRecord(rsa.publicKey)}; t=y`] },
    'slow._domainkey.example.test': { behaviour: 'timeout' },
    // DMARC policies
    '_dmarc.example.test': { TXT: ['v=DMARC1; p=reject'] },
    '_dmarc.none.test': { TXT: ['v=DMARC1; p=none; rua=mailto:d@none.test'] },
    '_dmarc.quar.test': { TXT: ['v=DMARC1; p=quarantine; pct=10'] },
    '_dmarc.reject.test': { TXT: ['v=DMARC1; p=reject'] },
    '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject; adkim=s; aspf=s'] },
    '_dmarc.relaxed.test': { TXT: ['v=DMARC1; p=reject'] },
    '_dmarc.org.test': { TXT: ['v=DMARC1; p=none; sp=reject'] },
    '_dmarc.broken.test': { behaviour: 'servfail' },
    // SPF
    'spf-pass.example.test': { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
    'bounce.strict.test': { TXT: [`v=spf1 ip4:${CLIENT} -all`] },
    'reject.test': { TXT: ['v=spf1 -all'] },
    'strict.test': { TXT: ['v=spf1 -all'] },
  };
  for (const d of SIGNERS) z[`s1._domainkey.${d}`] = { TXT: [rsaRecord(rsa.publicKey)] };
  return z;
}

before(async () => {
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  ed = generateKeyPairSync('ed25519');
  dir = await mkdtemp(path.join(os.tmpdir(), 'dkim-test-'));
  rsaFile = path.join(dir, 'rsa.pem');
  edFile = path.join(dir, 'ed.pem');
  otherRsaFile = path.join(dir, 'other.pem');
  await writeFile(rsaFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(edFile, ed.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(otherRsaFile, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  dns = await startDnsServer(zone());
});
after(async () => {
  await dns.stop();
  await rm(dir, { recursive: true, force: true });
});

function configure(c: Config): void {
  c.server.name = RECEIVER;
  c.server.domain = 'example.test';
  c.server.dns.timeout = '500ms';
  c.dkim.keys = {
    'example.test': [
      { selector: 'rsa1', private_key: rsaFile },
      { selector: 'ed1', private_key: edFile },
      { selector: 'testing', private_key: rsaFile },
      { selector: 'wrong', private_key: otherRsaFile },
    ],
  };
  for (const d of SIGNERS) (c.dkim.keys[d] ??= []).push({ selector: 's1', private_key: rsaFile });
}

function message(from = 'Alice <alice@example.test>', body = 'Hello  world \r\n\r\nsecond line\r\n\r\n\r\n'): string {
  return [
    `From: ${from}`,
    'To: Bob <bob@example.net>',
    'Subject: a test message that is long enough for its header to be folded somewhere',
    'Date: Tue, 14 Nov 2023 10:00:00 +0000',
    'Message-ID: <1@example.test>',
    '',
    body,
  ].join('\r\n');
}

function call(stage: 'preq' | 'postq', msg: string, init: HostCallInit = {}): TestHostCall {
  return makeHostCall({
    stage,
    message: msg,
    resolver: createResolver({ servers: [dns.address], timeoutMs: 2000 }),
    mailFrom: 'alice@example.test',
    session: { clientIp: CLIENT, helo: 'client.example.test' },
    configure,
    ...init,
  });
}

const builtin = (name: string) => findBuiltin([...dkimBuiltins, ...dmarcBuiltins, ...pslBuiltins], name);

/** Folds a field at whitespace within 78 columns, as the server does for headers it adds. */
function fold(name: string, value: string): string {
  const words = value.split(/(?= )/);
  const lines: string[] = [];
  let line = `${name}:`;
  for (const w of words) {
    const word = line === `${name}:` ? ` ${w.trimStart()}` : w;
    if (line.length + word.length > 78 && line.length > name.length + 1) {
      lines.push(line);
      line = word;
    } else line += word;
  }
  lines.push(line);
  return lines.join('\r\n');
}

/** Signs `msg` with dkim::sign (or another signing built-in) and returns the message with the header prepended. */
async function signed(msg: string, args: Value[], name = 'dkim::sign', init: HostCallInit = {}): Promise<string> {
  const c = call('postq', msg, init);
  assert.equal(await builtin(name).fn(c, args), undefined);
  assert.equal(c.headers.length, 1);
  const h = c.headers[0]!;
  assert.equal(h.name, 'DKIM-Signature');
  assert.equal(h.where, 'top');
  assert.ok(!/[\r\n]/.test(h.value), 'one line: the server folds it');
  return `${fold(h.name, h.value)}\r\n${msg}`;
}

function opts(entries: Record<string, Value>): Map<string, Value> {
  return new Map(Object.entries(entries));
}

async function verify(msg: string, init: HostCallInit = {}): Promise<{ result: Record<string, Value>; call: TestHostCall }> {
  const c = call('preq', msg, init);
  const m = (await builtin('dkim::verify').fn(c, [])) as Map<string, Value>;
  return { result: Object.fromEntries(m), call: c };
}

const reply = statusReply;

describe('DKIM signing and verification', () => {
  test('rsa-sha256: dkim::sign then dkim::verify passes and writes Authentication-Results', async () => {
    const msg = await signed(message(), [opts({ selector: 'rsa1' })]);
    assert.match(msg, /a=rsa-sha256; c=relaxed\/relaxed; d=example\.test; s=rsa1;/);
    assert.match(msg, /h=From:To:Date:Subject:From;/);
    const { result, call: c } = await verify(msg);
    assert.deepEqual(result, { status: 'pass', sdid: 'example.test', auid: '@example.test' });
    assert.deepEqual(
      c.headers.map((h) => [h.name, h.value, h.where]),
      [['Authentication-Results', `${RECEIVER}; dkim=pass header.d=example.test`, 'top']],
    );
  });

  test('ed25519-sha256: sign then verify passes', async () => {
    const msg = await signed(message(), [opts({ selector: 'ed1', canonicalization: 'relaxed/simple' })]);
    assert.match(msg, /a=ed25519-sha256; c=relaxed\/simple;/);
    assert.equal((await verify(msg)).result.status, 'pass');
  });

  test('a tampered body fails', async () => {
    const msg = await signed(message(), [opts({ selector: 'rsa1' })]);
    const { result, call: c } = await verify(msg.replace('second line', 'second lime'));
    assert.equal(result.status, 'fail');
    assert.equal(result.sdid, 'example.test');
    assert.equal(c.headers[0]!.value, `${RECEIVER}; dkim=fail header.d=example.test`);
  });

  test('a tampered signed header fails, an added From: fails (From is signed twice)', async () => {
    const msg = await signed(message(), [opts({ selector: 'rsa1' })]);
    assert.equal((await verify(msg.replace('Subject: a test', 'Subject: b test'))).result.status, 'fail');
    const sigEnd = msg.indexOf('\r\nFrom:');
    const extraFrom = `${msg.slice(0, sigEnd)}\r\nFrom: mallory@evil.test${msg.slice(sigEnd)}`;
    assert.equal((await verify(extraFrom)).result.status, 'fail');
  });

  test('relaxed canonicalization survives whitespace changes in body and headers', async () => {
    const msg = await signed(message(), [opts({ selector: 'rsa1' })]);
    const changed = msg.replace('Hello  world ', 'Hello world').replace('Subject: a test', 'Subject:   a  test');
    assert.equal((await verify(changed)).result.status, 'pass');
  });

  test('v1 sign_dkim signs for server.domain with the given headers', async () => {
    const msg = await signed(message('someone@elsewhere.test'), ['rsa1', ['From', 'Subject']], 'sign_dkim');
    assert.match(msg, /d=example\.test; s=rsa1;[\s\S]* h=From:Subject;/);
    assert.equal((await verify(msg)).result.status, 'pass');
  });

  test('a signature with a wrong key fails', async () => {
    // Selector "wrong" is configured with another key than the one published for rsa1.
    const c = call('postq', message());
    await builtin('dkim::sign').fn(c, [opts({ selector: 'wrong', sdid: 'example.test' })]);
    const value = c.headers[0]!.value.replace('s=wrong', 's=rsa1');
    const { result } = await verify(`DKIM-Signature: ${value}\r\n${message()}`);
    assert.equal(result.status, 'fail');
  });

  test('an unsigned message gives none', async () => {
    const { result, call: c } = await verify(message());
    assert.deepEqual(result, { status: 'none', sdid: '', auid: '' });
    assert.equal(c.headers[0]!.value, `${RECEIVER}; dkim=none`);
  });

  test('a hostile d= tag is quoted in Authentication-Results', async () => {
    const bogus = 'DKIM-Signature: v=1; a=rsa-sha256; d=x!y.test; s=k; h=From; bh=AAAA; b=AAAA\r\n';
    const { result, call: c } = await verify(bogus + message());
    assert.equal(result.sdid, 'x!y.test');
    assert.match(c.headers[0]!.value, /header\.d="x!y\.test"$/);
  });

  test('a signature whose key is published in test mode (t=y) is ignored', async () => {
    const msg = await signed(message(), [opts({ selector: 'testing' })]);
    assert.equal((await verify(msg)).result.status, 'none');
  });

  test('a key lookup timeout is a temperror', async () => {
    const c = call('postq', message());
    await builtin('dkim::sign').fn(c, [opts({ selector: 'rsa1' })]);
    const value = c.headers[0]!.value.replace('s=rsa1', 's=slow');
    assert.equal((await verify(`DKIM-Signature: ${value}\r\n${message()}`)).result.status, 'temperror');
  });

  test('expired signatures are skipped, with a 100 s tolerance', async () => {
    const require = createRequire(import.meta.url);
    const { dkimSign } = require('mailauth/lib/dkim/sign.js') as {
      dkimSign: (m: string, o: object) => Promise<{ signatures: string }>;
    };
    const now = Date.now();
    const signAt = async (expires: number) =>
      (
        await dkimSign(message(), {
          signatureData: [{ signingDomain: 'example.test', selector: 'rsa1', privateKey: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) }],
          signTime: new Date(now - 3_600_000),
          expires: new Date(expires),
        })
      ).signatures + message();
    assert.equal((await verify(await signAt(now - 3_000_000))).result.status, 'none');
    assert.equal((await verify(await signAt(now - 50_000))).result.status, 'pass');
  });

  test('only the first 5 signatures are checked', async () => {
    const good = await signed(message(), [opts({ selector: 'rsa1' })]);
    const bogus = Array.from({ length: 5 }, (_, i) => `DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=nokey${i}; h=From; bh=AAAA; b=AAAA${i}\r\n`).join('');
    const before = dns.queries.length;
    const { result } = await verify(bogus + good);
    assert.notEqual(result.status, 'pass');
    const keyLookups = dns.queries.slice(before).filter((q) => q.includes('._domainkey.'));
    assert.ok(keyLookups.length <= 5, `at most 5 key lookups, got ${keyLookups.length}`);
    assert.ok(!keyLookups.includes('rsa1._domainkey.example.test TXT'));
  });

  test('dkim::verify computes once per transaction; result, has_result and store manage the cache', async () => {
    const msg = await signed(message(), [opts({ selector: 'rsa1' })]);
    const c = call('preq', msg);
    assert.equal(builtin('dkim::has_result').fn(c, []), false);
    assert.throws(() => builtin('dkim::result').fn(c, []), /^VslError: dkim::result: no DKIM result/);
    await builtin('verify_dkim').fn(c, []);
    await builtin('dkim::verify').fn(c, []);
    assert.equal(c.headers.length, 1, 'header written once');
    assert.equal(builtin('dkim::has_result').fn(c, []), true);
    assert.equal((builtin('dkim::result').fn(c, []) as Map<string, Value>).get('status'), 'pass');
    builtin('dkim::store').fn(c, [opts({ status: 'fail', sdid: 'x.test' })]);
    assert.deepEqual(Object.fromEntries(builtin('dkim::result').fn(c, []) as Map<string, Value>), { status: 'fail', sdid: 'x.test', auid: '@x.test' });
    assert.throws(() => builtin('dkim::store').fn(c, [opts({ status: 'great' })]), /invalid status/);
  });

  test('dkim::get_private_keys returns selectors and opaque handles, never key material', () => {
    const c = call('preq', message());
    const keys = builtin('dkim::get_private_keys').fn(c, ['Example.test']) as Array<Map<string, Value>>;
    assert.deepEqual(
      keys.map((k) => Object.fromEntries(k)),
      [
        { selector: 'rsa1', private_key: 'key:example.test:rsa1' },
        { selector: 'ed1', private_key: 'key:example.test:ed1' },
        { selector: 'testing', private_key: 'key:example.test:testing' },
        { selector: 'wrong', private_key: 'key:example.test:wrong' },
        { selector: 's1', private_key: 'key:example.test:s1' },
      ],
    );
    assert.ok(!JSON.stringify(keys.map((k) => [...k])).includes(rsaFile));
    assert.deepEqual(builtin('dkim::get_private_keys').fn(c, ['unknown.test']), []);
  });

  test('dkim::sign accepts a key handle and refuses unknown handles, simple header canonicalization and missing selectors', async () => {
    const msg = await signed(message(), [opts({ selector: 'ed1', private_key: 'key:example.test:ed1' })]);
    assert.equal((await verify(msg)).result.status, 'pass');
    const c = call('postq', message());
    const sign = (o: Record<string, Value>) => builtin('dkim::sign').fn(c, [opts(o)]);
    await assert.rejects(async () => sign({ selector: 'rsa1', private_key: '/etc/passwd' }), /dkim::sign: unknown private key handle/);
    await assert.rejects(async () => sign({ selector: 'rsa1', private_key: 'key:example.test:ed1' }), /not the key of selector/);
    await assert.rejects(async () => sign({ selector: 'rsa1', canonicalization: 'simple/simple' }), /simple header canonicalization/);
    await assert.rejects(async () => sign({ sdid: 'example.test' }), /dkim::sign: selector is required/);
    await assert.rejects(async () => sign({ selector: 'nope' }), /no key for example\.test selector 'nope'/);
    await assert.rejects(async () => sign({ selector: 'rsa1', headers_field: ['Subject'] }), /must include From/);
    assert.equal(c.headers.length, 0);
  });

  test('body canonicalization (RFC 6376 §3.4.3–3.4.4)', () => {
    assert.equal(canonBody('a  b \t\r\nc\r\n\r\n\r\n', 'relaxed'), 'a b\r\nc\r\n');
    assert.equal(canonBody('', 'relaxed'), '');
    assert.equal(canonBody('', 'simple'), '\r\n');
    assert.equal(canonBody('a \r\n\r\n', 'simple'), 'a \r\n');
  });
});

/** A message From: `fromDomain`, DKIM-signed for `sdid` with selector s1 (or unsigned). */
async function dmarcMessage(fromDomain: string, sdid?: string): Promise<string> {
  const msg = message(`Someone <someone@${fromDomain}>`);
  return sdid ? signed(msg, [opts({ selector: 's1', sdid })]) : msg;
}

async function dmarc(msg: string, mailFrom: string, name = 'dmarc::check'): Promise<{ status: string; call: TestHostCall }> {
  const c = call('preq', msg, { mailFrom });
  return { status: reply(await builtin(name).fn(c, [])), call: c };
}

describe('DMARC', () => {
  test('an aligned DKIM pass passes, with one Authentication-Results for dkim, spf and dmarc', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('example.test', 'example.test'), 'alice@elsewhere.test');
    assert.equal(status, 'next');
    assert.deepEqual(
      c.headers.map((h) => `${h.name}: ${h.value}`),
      [
        `Authentication-Results: ${RECEIVER}; dkim=pass header.d=example.test; spf=none smtp.mailfrom=alice@elsewhere.test; dmarc=pass (p=reject) header.from=example.test`,
      ],
    );
  });

  test('an aligned SPF pass passes (relaxed: same organisational domain)', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('example.test'), 'bounce@spf-pass.example.test');
    assert.equal(status, 'next');
    assert.match(c.headers[0]!.value, /spf=pass smtp\.mailfrom=bounce@spf-pass\.example\.test; dmarc=pass/);
  });

  test('failure with p=none gives next', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('none.test', 'other.test'), 'a@elsewhere.test');
    assert.equal(status, 'next');
    assert.match(c.headers[0]!.value, /dmarc=fail \(p=none\) header\.from=none\.test$/);
  });

  test('failure with p=quarantine gives quarantine("dmarc") (pct taken as 100)', async () => {
    const { status } = await dmarc(await dmarcMessage('quar.test'), 'a@elsewhere.test');
    assert.equal(status, 'quarantine dmarc');
  });

  test('failure with p=reject gives deny 550 5.7.1 DMARC policy violation', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('reject.test', 'other.test'), 'a@reject.test', 'check_dmarc');
    assert.equal(status, 'deny 550 5.7.1 DMARC policy violation');
    assert.match(c.headers[0]!.value, /dkim=pass header\.d=other\.test; spf=fail smtp\.mailfrom=a@reject\.test; dmarc=fail \(p=reject\)/);
  });

  test('strict DKIM alignment: d=mail.strict.test does not align with From: strict.test (mailauth 4.13 says it does)', async () => {
    const { status } = await dmarc(await dmarcMessage('strict.test', 'mail.strict.test'), 'a@elsewhere.test');
    assert.equal(status, 'deny 550 5.7.1 DMARC policy violation');
  });

  test('the same signature aligns under relaxed alignment', async () => {
    const { status } = await dmarc(await dmarcMessage('relaxed.test', 'mail.relaxed.test'), 'a@elsewhere.test');
    assert.equal(status, 'next');
  });

  test('strict SPF alignment: an SPF pass for bounce.strict.test does not align with strict.test', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('strict.test'), 'x@bounce.strict.test');
    assert.match(c.headers[0]!.value, /spf=pass/);
    assert.equal(status, 'deny 550 5.7.1 DMARC policy violation');
  });

  test('a subdomain without its own record gets the organisational domain\'s sp', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('mail.org.test'), 'a@elsewhere.test');
    assert.equal(status, 'deny 550 5.7.1 DMARC policy violation');
    assert.match(c.headers[0]!.value, /dmarc=fail \(p=reject\) header\.from=mail\.org\.test/);
    assert.ok(dns.queries.includes('_dmarc.mail.org.test TXT'));
    assert.ok(dns.queries.includes('_dmarc.org.test TXT'));
  });

  test('no DMARC record gives next with dmarc=none', async () => {
    const { status, call: c } = await dmarc(await dmarcMessage('norecord.test'), 'a@elsewhere.test');
    assert.equal(status, 'next');
    assert.match(c.headers[0]!.value, /dmarc=none header\.from=norecord\.test$/);
  });

  test('no From: gives next', async () => {
    const msg = message().replace(/^From: .*\r\n/, '');
    const { status, call: c } = await dmarc(msg, 'a@elsewhere.test');
    assert.equal(status, 'next');
    assert.match(c.headers[0]!.value, /dmarc=none$/);
  });

  test('a forged second From: domain is judged too: the strictest failing policy wins', async () => {
    const msg = (await dmarcMessage('none.test', 'none.test')).replace('From: Someone <someone@none.test>', 'From: Someone <someone@none.test>, boss@reject.test');
    const { status } = await dmarc(msg, 'a@elsewhere.test');
    assert.equal(status, 'deny 550 5.7.1 DMARC policy violation');
  });

  test('a temporary DNS failure on the policy lookup is a runtime error', async () => {
    const c = call('preq', await dmarcMessage('broken.test'), { mailFrom: 'a@elsewhere.test' });
    await assert.rejects(
      async () => builtin('dmarc::check').fn(c, []),
      (e: unknown) => e instanceof VslError && /^dmarc::check: temporary DNS failure/.test(e.message),
    );
  });

  test('DMARC reuses a DKIM result stored by the script', async () => {
    const c = call('preq', await dmarcMessage('reject.test'), { mailFrom: 'a@elsewhere.test' });
    builtin('dkim::store').fn(c, [opts({ status: 'pass', sdid: 'reject.test' })]);
    assert.equal(reply(await builtin('dmarc::check').fn(c, [])), 'next');
  });

  test('record parsing and alignment', () => {
    assert.deepEqual(parseDmarcRecord('v=DMARC1; p=quarantine; sp=reject; adkim=s'), { p: 'quarantine', sp: 'reject', adkim: 's', aspf: 'r' });
    assert.deepEqual(parseDmarcRecord('v=DMARC1; rua=mailto:x@y.test'), { p: 'none', adkim: 'r', aspf: 'r' });
    assert.equal(parseDmarcRecord('v=DMARC1; adkim=s'), null);
    assert.equal(parseDmarcRecord('v=spf1 -all'), null);
    assert.equal(aligned('mail.example.co.uk', 'example.co.uk', 'r'), true);
    assert.equal(aligned('mail.example.co.uk', 'example.co.uk', 's'), false);
    assert.equal(aligned('example.co.uk', 'other.co.uk', 'r'), false);
    assert.equal(aligned('foo.github.io', 'bar.github.io', 'r'), false);
  });
});

describe('utils::get_root_domain', () => {
  test('returns the registrable domain by the public suffix list', () => {
    const c = call('preq', message());
    assert.equal(builtin('utils::get_root_domain').fn(c, ['a.b.example.co.uk']), 'example.co.uk');
    assert.equal(builtin('get_root_domain').fn(c, ['Mail.Example.COM']), 'example.com');
    assert.equal(builtin('get_root_domain').fn(c, ['co.uk']), 'co.uk');
    assert.equal(organizationalDomain('Bücher.example.de'), 'example.de');
  });
});
