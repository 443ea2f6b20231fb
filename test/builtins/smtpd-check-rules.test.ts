// smtpd_check_rules (SPEC §8.3): the e-smith default file of the how-to
// (examples/esmith/smtpd_check_rules), the address patterns of its deny list,
// every source form, delays through an injected clock, malformed lines, and
// the data-file cache that reloads the file when it changes.

import { fromRoot } from '../helpers/paths.js';
import { fakeResolver, type Zone } from '../helpers/fake-resolver.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { DnsError, type Clock, type Resolver } from '../../src/host/ports.js';
import { legacyBuiltins } from '../../src/builtins/legacy/builtins.js';
import { DataFileCache, DataFileError, validateDataFile } from '../../src/builtins/legacy/data-files.js';
import { resolverLookups } from '../../src/builtins/legacy/lookups.js';
import { evaluateSmtpdCheckRules, parseSmtpdCheckRules, smtpdInputFromProbe, type SmtpdCheckInput, type SmtpdRules } from '../../src/builtins/legacy/smtpd-check-rules.js';
import type { MailAddress } from '../../src/mail/types.js';
import { Status } from '../../src/vsl/values/status.js';
import { makeHostCall } from '../helpers/host-call.js';

const ESMITH = fromRoot('examples/esmith/smtpd_check_rules');
const OUTSIDE = '203.0.113.9';

// ------------------------------------------------------------------ test doubles


/** A clock that records the waits instead of waiting. */
function recordingClock(): Clock & { waits: number[] } {
  const waits: number[] = [];
  return { waits, now: () => 1_700_000_000_000, sleep: async (ms) => void waits.push(ms) };
}

function logger(records: Array<Record<string, unknown>>): pino.Logger {
  return pino({ level: 'trace', base: null, timestamp: false }, { write: (l: string) => void records.push(JSON.parse(l)) });
}

function parse(text: string): SmtpdRules {
  const r = parseSmtpdCheckRules(text, 'rules');
  assert.deepEqual(r.diagnostics, [], 'the test rules parse cleanly');
  return r.value;
}

const esmith = parse(readFileSync(ESMITH, 'utf8'));

interface RunOpts {
  ip?: string;
  trusted?: boolean;
  resolver?: Resolver;
  clock?: Clock & { waits: number[] };
  logs?: Array<Record<string, unknown>>;
  notoDelayMs?: number;
  denyDelayMs?: number;
}

function run(table: SmtpdRules, sender: string, recipient: string, o: RunOpts = {}) {
  const ip = o.ip ?? OUTSIDE;
  const input: SmtpdCheckInput = { clientIp: ip, trusted: o.trusted ?? false, sender, recipient };
  const log = logger(o.logs ?? []);
  return evaluateSmtpdCheckRules(table, input, {
    lookups: resolverLookups(o.resolver ?? fakeResolver({}), { clientIp: ip, log, timeoutMs: 1000, dnsblTimeoutMs: 1000 }),
    clock: o.clock ?? recordingClock(),
    log,
    notoDelayMs: o.notoDelayMs ?? 10_000,
    denyDelayMs: o.denyDelayMs ?? 10_000,
  });
}

/** A client with a forward-confirmed name. */
function named(ip: string, name: string, extra: Zone = {}): Resolver {
  return fakeResolver({ ...extra, ptr: { [ip]: [name], ...extra.ptr }, a: { [name]: [ip], ...extra.a } });
}

// ------------------------------------------------------------------ the e-smith file

describe('e-smith default smtpd_check_rules', () => {
  const relaying = (h: string, from: string, to: string) =>
    `551 Sorry ${h} (${OUTSIDE}), I don't allow unauthorized relaying. You can't use me to send mail from ${from} to ${to}.`;

  test('a bang path recipient is refused with 551 and %H (%I), %F, %T substituted', async () => {
    const d = await run(esmith, 'alice@example.net', 'a!b@x');
    assert.equal(d.kind, 'reject');
    assert.equal(d.reply, relaying('unknown', 'alice@example.net', 'a!b@x'));
    assert.equal(d.matched?.line, 11);
  });

  test('a recipient with two @s (as received) is refused by the two-@ line', async () => {
    const d = await run(esmith, 'alice@example.net', 'a@b@c');
    assert.equal(d.kind, 'reject');
    assert.equal(d.reply, relaying('unknown', 'alice@example.net', 'a@b@c'));
    assert.equal(d.matched?.line, 14);
  });

  test('a %-hack recipient is refused by the % line', async () => {
    const d = await run(esmith, 'alice@example.net', 'a%b@c');
    assert.equal(d.reply, relaying('unknown', 'alice@example.net', 'a%b@c'));
    assert.equal(d.matched?.line, 17);
  });

  test('%H is the forward-confirmed client name', async () => {
    const d = await run(esmith, 'alice@example.net', 'a!b@x', { resolver: named(OUTSIDE, 'mail.example.net') });
    assert.equal(d.reply, relaying('mail.example.net', 'alice@example.net', 'a!b@x'));
  });

  test('routing tricks are refused even from the local network (those lines come first)', async () => {
    const d = await run(esmith, 'bob@yourdomain.com', 'u%evil.test@yourdomain.com', { ip: '192.168.1.7' });
    assert.equal(d.kind, 'reject');
    assert.match(d.reply!, /^551 Sorry unknown \(192\.168\.1\.7\)/);
  });

  test('the source-routed form the client wrote is what the rules see', async () => {
    const rcpt: MailAddress = { local: 'bob', domain: 'yourdomain.com', raw: '<@relay.test:bob@yourdomain.com>', isNull: false };
    const sender: MailAddress = { local: 'alice', domain: 'example.net', raw: '<alice@example.net>', isNull: false };
    const input = smtpdInputFromProbe({
      clientIp: OUTSIDE, clientPort: 4000, serverIp: '192.0.2.1', serverPort: 25, helo: 'x', sender, recipient: rcpt,
      authenticated: false, relayNetworks: ['127.0.0.0/8'], localDomains: { domain: 'yourdomain.com', virtual: [] },
      recipientDelimiter: '+', pipeliningViolation: false,
    });
    assert.equal(input.recipient, '@relay.test:bob@yourdomain.com');
    const d = await run(esmith, input.sender, input.recipient);
    assert.equal(d.matched?.line, 14, 'two @s');
  });

  test('everyone@yourdomain.com from outside is refused: cannot send mail from outside our local network', async () => {
    for (const to of ['everyone@yourdomain.com', 'everyone@sales.yourdomain.com']) {
      const d = await run(esmith, 'alice@example.net', to);
      assert.equal(d.kind, 'reject');
      assert.equal(d.reply, `551 Sorry unknown (${OUTSIDE}), you cannot send mail to ${to} from outside our local network.`);
    }
    const shared = await run(esmith, 'alice@example.net', 'shared@yourdomain.com');
    assert.equal(shared.matched?.line, 25);
  });

  test('everyone@yourdomain.com from the local network is accepted', async () => {
    const d = await run(esmith, 'bob@yourdomain.com', 'everyone@yourdomain.com', { ip: '192.168.1.20' });
    assert.equal(d.kind, 'accept');
    assert.equal(d.matched?.line, 21);
  });

  test('bob@yourdomain.com from outside is accepted by "allow any of our domains"', async () => {
    const d = await run(esmith, 'alice@example.net', 'bob@yourdomain.com');
    assert.equal(d.kind, 'accept');
    assert.equal(d.matched?.line, 28);
    const sub = await run(esmith, 'alice@example.net', 'bob@mail.yourdomain.com');
    assert.equal(sub.kind, 'accept', '*.yourdomain.com matches the whole address');
  });

  test("any other recipient from outside is refused: I don't allow unauthorized relaying", async () => {
    const d = await run(esmith, 'alice@example.net', 'u@external.test');
    assert.equal(d.kind, 'reject');
    assert.equal(
      d.reply,
      `551 Sorry unknown(${OUTSIDE}), I don't allow unauthorized relaying. Please use another SMTP host to mail from alice@example.net to u@external.test`,
    );
    const look = await run(esmith, 'alice@example.net', 'bob@yourdomain.com.evil.test');
    assert.equal(look.kind, 'reject', 'a look-alike domain is not ours');
  });

  test('the null sender reads <> in the reply', async () => {
    const d = await run(esmith, '', 'u@external.test');
    assert.match(d.reply!, /mail from <> to u@external\.test$/);
  });

  test('clients in 192.168.1.0/24 and 127.0.0.1 may relay anywhere', async () => {
    for (const ip of ['192.168.1.1', '192.168.1.254', '127.0.0.1']) {
      const d = await run(esmith, 'bob@yourdomain.com', 'u@external.test', { ip });
      assert.equal(d.kind, 'accept', ip);
    }
    const d = await run(esmith, 'bob@yourdomain.com', 'u@external.test', { ip: '192.168.2.1' });
    assert.equal(d.kind, 'reject');
  });
});

// ------------------------------------------------------------------ deny lines and address patterns

describe('address patterns (e-smith 10DenyList)', () => {
  const deny = (pattern: string) => parse(`deny:ALL:${pattern}:ALL\n`);

  test('deny:ALL:$EmailBlocks:ALL denies (closes) with the default message', async () => {
    const d = await run(deny('spamford@cyberpromo.com'), 'spamford@cyberpromo.com', 'bob@yourdomain.com');
    assert.equal(d.kind, 'deny');
    assert.equal(d.reply, `550 Mail from spamford@cyberpromo.com to bob@yourdomain.com prohibited from your location (unknown@unknown ip=${OUTSIDE})`);
  });

  test('an exact address matches case-insensitively and nothing else', async () => {
    const t = deny('spamford@cyberpromo.com');
    assert.equal((await run(t, 'SpamFord@CyberPromo.COM', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'other@cyberpromo.com', 'b@y.test')).kind, 'next');
  });

  test('ALL@cyberpromo.com and *@cyberpromo.com match any user of that domain only', async () => {
    for (const p of ['ALL@cyberpromo.com', '*@cyberpromo.com']) {
      const t = deny(p);
      assert.equal((await run(t, 'x@cyberpromo.com', 'b@y.test')).kind, 'deny', p);
      assert.equal((await run(t, 'x@mail.cyberpromo.com', 'b@y.test')).kind, 'next', p);
    }
  });

  test('ALL@*cyberpromo.com matches domains ending in cyberpromo.com', async () => {
    const t = deny('ALL@*cyberpromo.com');
    assert.equal((await run(t, 'x@mail.cyberpromo.com', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'x@cyberpromo.com', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'x@cyberpromo.com.example', 'b@y.test')).kind, 'next');
  });

  test('sales@ALL matches "sales" from anywhere', async () => {
    const t = deny('sales@ALL');
    assert.equal((await run(t, 'sales@anything.test', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'bob@anything.test', 'b@y.test')).kind, 'next');
  });

  test('/^[0-9]+@.*$/ matches all-numeric user parts', async () => {
    const t = deny('/^[0-9]+@.*$/');
    assert.equal((await run(t, '12345@spam.test', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'a12345@spam.test', 'b@y.test')).kind, 'next');
  });

  test('a regex may contain spaces, commas and colons', async () => {
    const t = deny('/^(?:ab){1,2}@x\\.test$/ nobody@x.test');
    assert.equal(t.rules[0]!.froms.items.length, 2);
    assert.equal((await run(t, 'abab@x.test', 'b@y.test')).kind, 'deny');
    assert.equal((await run(t, 'ababab@x.test', 'b@y.test')).kind, 'next');
  });

  test('ALL@NS=*cyberpromo.com matches domains served by a cyberpromo.com nameserver or MX', async () => {
    const t = deny('ALL@NS=*cyberpromo.com');
    const resolver = fakeResolver({
      ns: { 'spamdomain.test': ['ns1.cyberpromo.com'], 'clean.test': ['ns.clean.test'], 'mx-only.test': ['ns.clean.test'] },
      mx: { 'mx-only.test': ['mx.cyberpromo.com'] },
    });
    assert.equal((await run(t, 'x@spamdomain.test', 'b@y.test', { resolver })).kind, 'deny');
    assert.equal((await run(t, 'x@sub.spamdomain.test', 'b@y.test', { resolver })).kind, 'deny', 'the enclosing zone is found');
    assert.equal((await run(t, 'x@mx-only.test', 'b@y.test', { resolver })).kind, 'deny', 'MX hosts count');
    assert.equal((await run(t, 'x@clean.test', 'b@y.test', { resolver })).kind, 'next');
  });

  test('NS= matches a nameserver by address, and NS=UNKNOWN a domain without NS or MX', async () => {
    const resolver = fakeResolver({ ns: { 'spam.test': ['ns.spam.test'] }, a: { 'ns.spam.test': ['198.51.100.7'] } });
    assert.equal((await run(deny('NS=198.51.100.0/24'), 'x@spam.test', 'b@y.test', { resolver })).kind, 'deny');
    assert.equal((await run(deny('NS=198.51.100.*'), 'x@spam.test', 'b@y.test', { resolver })).kind, 'deny');
    assert.equal((await run(deny('ALL@NS=UNKNOWN'), 'x@nowhere.test', 'b@y.test', { resolver })).kind, 'deny');
    assert.equal((await run(deny('ALL@NS=UNKNOWN'), 'x@spam.test', 'b@y.test', { resolver })).kind, 'next');
  });

  test('a pattern with @ never matches an address without one (the null sender)', async () => {
    assert.equal((await run(deny('*@*'), '', 'b@y.test')).kind, 'next');
    assert.equal((await run(deny('ALL'), '', 'b@y.test')).kind, 'deny');
    assert.equal((await run(deny('*'), '', 'b@y.test')).kind, 'deny', 'a pattern without @ matches the whole (empty) address');
  });

  test('ident items (USER@host) never match and say so in the debug log', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const d = await run(deny('USER@obtuse.com'), 'user@obtuse.com', 'b@y.test', { logs });
    assert.equal(d.kind, 'next');
    assert.ok(logs.some((r) => r.level === 20 && /ident/.test(String(r.msg))), 'debug log mentions ident');
    const src = await run(parse('deny:root@client.test:ALL:ALL\n'), 'a@b.test', 'c@d.test', { logs });
    assert.equal(src.kind, 'next');
  });
});

// ------------------------------------------------------------------ sources and lists

describe('sources and lists', () => {
  const allow = (sources: string) => parse(`allow:${sources}:ALL:ALL\n`);
  const verdict = async (t: SmtpdRules, o: RunOpts) => (await run(t, 'a@b.test', 'c@d.test', o)).kind;

  test('EXCEPT nests to the right', async () => {
    const t = allow('ALL EXCEPT 10.0.0.0/8 EXCEPT 10.1.0.0/16');
    assert.equal(await verdict(t, { ip: '203.0.113.1' }), 'accept');
    assert.equal(await verdict(t, { ip: '10.2.3.4' }), 'next');
    assert.equal(await verdict(t, { ip: '10.1.2.3' }), 'accept');
  });

  test('list items are separated by spaces, commas or tabs', async () => {
    const t = allow('192.0.2.1,192.0.2.2\t192.0.2.3 192.0.2.4');
    assert.equal(t.rules[0]!.sources.items.length, 4);
    for (const ip of ['192.0.2.1', '192.0.2.3', '192.0.2.4']) assert.equal(await verdict(t, { ip }), 'accept');
    assert.equal(await verdict(t, { ip: '192.0.2.5' }), 'next');
  });

  test('IP globs, exact IPs and abbreviated networks', async () => {
    assert.equal(await verdict(allow('192.168.20.*'), { ip: '192.168.20.5' }), 'accept');
    assert.equal(await verdict(allow('192.168.20.*'), { ip: '192.168.21.5' }), 'next');
    assert.equal(await verdict(allow('192.168.2?.1'), { ip: '192.168.25.1' }), 'accept');
    assert.equal(await verdict(allow('0/0'), { ip: '198.18.0.1' }), 'accept');
    assert.equal(await verdict(allow('10/8'), { ip: '10.9.9.9' }), 'accept');
    assert.equal(await verdict(allow('192.168.1.0/255.255.255.0'), { ip: '192.168.1.9' }), 'accept');
    assert.equal(await verdict(allow('192.168.1.0/255.255.255.0'), { ip: '192.168.2.9' }), 'next');
    assert.equal(await verdict(allow('[2001:db8::]/32'), { ip: '2001:db8:5::1' }), 'accept');
    assert.equal(await verdict(allow('[2001:db8::]/32'), { ip: '2001:db9::1' }), 'next');
  });

  test('name globs match the forward-confirmed name only', async () => {
    const t = allow('*.example.net');
    assert.equal(await verdict(t, { resolver: named(OUTSIDE, 'mx1.example.net') }), 'accept');
    // A PTR name that does not resolve back to the client is not its name.
    const unconfirmed = fakeResolver({ ptr: { [OUTSIDE]: ['mx1.example.net'] }, a: { 'mx1.example.net': ['198.51.100.1'] } });
    assert.equal(await verdict(t, { resolver: unconfirmed }), 'next');
  });

  test('KNOWN and UNKNOWN test for a forward-confirmed name', async () => {
    assert.equal(await verdict(allow('KNOWN'), { resolver: named(OUTSIDE, 'mx1.example.net') }), 'accept');
    assert.equal(await verdict(allow('KNOWN'), {}), 'next');
    assert.equal(await verdict(allow('UNKNOWN'), {}), 'accept');
    assert.equal(await verdict(allow('unknown'), { resolver: named(OUTSIDE, 'mx1.example.net') }), 'next', 'keywords ignore case');
  });

  test('a PTR name that looks like an IP is ignored and logged', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const resolver = fakeResolver({ ptr: { [OUTSIDE]: ['203.0.113.9'] }, a: { '203.0.113.9': [OUTSIDE] } });
    assert.equal(await verdict(allow('UNKNOWN'), { resolver, logs }), 'accept');
    assert.ok(logs.some((r) => /looks like an IP/.test(String(r.msg))));
  });

  test('a temporary DNS failure is an error, never a guess', async () => {
    const resolver = fakeResolver({ ptr: { [OUTSIDE]: 'SERVFAIL' } });
    await assert.rejects(run(allow('UNKNOWN'), 'a@b.test', 'c@d.test', { resolver }), DnsError);
  });

  test('TRUSTED and UNTRUSTED follow server.relay_networks', async () => {
    assert.equal(await verdict(allow('TRUSTED'), { trusted: true }), 'accept');
    assert.equal(await verdict(allow('TRUSTED'), { trusted: false }), 'next');
    assert.equal(await verdict(allow('UNTRUSTED'), { trusted: false }), 'accept');
  });

  test('RBL.<zone> matches a client listed in the zone', async () => {
    const resolver = fakeResolver({ a: { '9.113.0.203.zen.example': ['127.0.0.2'], '10.113.0.203.zen.example': ['127.255.255.254'] } });
    const t = parse('deny:RBL.zen.example:ALL:ALL:554 listed\n');
    assert.equal((await run(t, 'a@b.test', 'c@d.test', { resolver })).kind, 'deny');
    assert.equal((await run(t, 'a@b.test', 'c@d.test', { resolver, ip: '203.0.113.10' })).kind, 'next', 'error answers do not list');
    assert.equal((await run(t, 'a@b.test', 'c@d.test', { resolver, ip: '203.0.113.11' })).kind, 'next');
  });

  test('NS= on a source checks the NS and MX hosts of the client domain, or of its reverse zone', async () => {
    const resolver = named(OUTSIDE, 'mail.spammer.test', { ns: { 'spammer.test': ['ns.bulk-hosting.test'] } });
    const t = parse('deny:NS=*.bulk-hosting.test:ALL:ALL\n');
    assert.equal((await run(t, 'a@b.test', 'c@d.test', { resolver })).kind, 'deny');
    const nameless = fakeResolver({ ns: { '113.0.203.in-addr.arpa': ['ns.bulk-hosting.test'] } });
    assert.equal((await run(t, 'a@b.test', 'c@d.test', { resolver: nameless })).kind, 'deny');
    assert.equal((await run(t, 'a@b.test', 'c@d.test', {})).kind, 'next');
  });

  test('/regex/ sources match the client name or IP', async () => {
    const t = allow('/^203\\.0\\.113\\./');
    assert.equal(await verdict(t, {}), 'accept');
    assert.equal(await verdict(allow('/DSL|dialup/'), { resolver: named(OUTSIDE, 'host-9.dsl.isp.test') }), 'accept');
  });

  test('the first matching line decides; no match gives next', async () => {
    const t = parse('noto:ALL:ALL:a@x.test:550 first\nnoto:ALL:ALL:ALL:550 second\n');
    assert.equal((await run(t, 'q@q.test', 'a@x.test')).reply, '550 first');
    assert.equal((await run(t, 'q@q.test', 'b@x.test')).reply, '550 second');
    assert.equal((await run(parse('noto:ALL:ALL:a@x.test\n'), 'q@q.test', 'z@x.test')).kind, 'next');
  });

  test('debug lines log their line number and scanning continues', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const t = parse('# c\ndebug:ALL:ALL:ALL\nallow:ALL:ALL:ALL\n');
    const d = await run(t, 'a@b.test', 'c@d.test', { logs });
    assert.equal(d.kind, 'accept');
    assert.equal(d.matched?.line, 3);
    assert.ok(logs.some((r) => r.line === 2 && /debug line 2/.test(String(r.msg))));
  });
});

// ------------------------------------------------------------------ replies and delays

describe('replies and delays', () => {
  test('noto_delay waits opts.noto_delay (10s by default) through the clock, then rejects', async () => {
    const t = parse('noto_delay:ALL:ALL:ALL:450 slow down\n');
    const clock = recordingClock();
    const d = await run(t, 'a@b.test', 'c@d.test', { clock });
    assert.deepEqual(clock.waits, [10_000]);
    assert.equal(d.kind, 'reject');
    assert.equal(d.delayMs, 10_000);
    const c2 = recordingClock();
    await run(t, 'a@b.test', 'c@d.test', { clock: c2, notoDelayMs: 2_500 });
    assert.deepEqual(c2.waits, [2_500]);
  });

  test('deny_delay waits opts.deny_delay, then denies', async () => {
    const clock = recordingClock();
    const d = await run(parse('deny_delay:ALL:ALL:ALL\n'), 'a@b.test', 'c@d.test', { clock, denyDelayMs: 60_000, notoDelayMs: 1 });
    assert.deepEqual(clock.waits, [60_000]);
    assert.equal(d.kind, 'deny');
  });

  test('lines without delay do not wait', async () => {
    const clock = recordingClock();
    await run(parse('noto:ALL:ALL:ALL\n'), 'a@b.test', 'c@d.test', { clock });
    assert.deepEqual(clock.waits, []);
  });

  test('%C, %% and %U are substituted; a trailing # comment is allowed', async () => {
    const t = parse('noto:ALL:ALL:ALL:550 100%% sure%C %U@%H:# why\n');
    assert.equal((await run(t, 'a@b.test', 'c@d.test')).reply, '550 100% sure: unknown@unknown');
  });

  test('a message without a reply code becomes 550 Recipient not allowed, with a warning', async () => {
    const r = parseSmtpdCheckRules('noto:ALL:ALL:ALL:go away\n', 'rules');
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]!.severity, 'warning');
    assert.equal((await run(r.value, 'a@b.test', 'c@d.test')).reply, '550 Recipient not allowed');
  });

  test('replies are cut at 512 bytes', async () => {
    const long = 'x'.repeat(600);
    const d = await run(parse('noto:ALL:ALL:ALL:550 %T %T\n'), 'a@b.test', `${long}@d.test`);
    assert.equal(Buffer.byteLength(d.reply!), 512);
  });
});

// ------------------------------------------------------------------ malformed files

describe('malformed lines', () => {
  test('every malformed line is reported with its line number', () => {
    const lines = [
      '# comment', //                              1
      '', //                                       2
      'allow:ALL:ALL', //                          3 wrong field count
      'permit:ALL:ALL:ALL', //                     4 unknown action
      'noto:ALL:ALL:ALL:550 no:more', //           5 text after the message
      `noto:ALL:ALL:ALL:550 ${'x'.repeat(1024)}`, // 6 too long
      'allow::ALL:ALL', //                         7 empty source list
      'allow:ALL EXCEPT:ALL:ALL', //               8 EXCEPT at the end
      'allow:192.168.1.:ALL:ALL', //               9 incomplete IP
      'deny:ALL:/[a-/:ALL', //                    10 bad regex
      'deny:ALL:RBL.zen.test:ALL', //             11 RBL in an address list
      'allow:ALL:ALL:ALL', //                     12 fine
      'noto:ALL:ALL:ALL:550 ok:# fine', //        13 fine
    ];
    const r = parseSmtpdCheckRules(lines.join('\n'), 'rules');
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    assert.deepEqual(errors.map((d) => d.line), [3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const at = (n: number) => errors.find((d) => d.line === n)!;
    assert.match(at(3).message, /expected action:sources:froms:tos\[:message\], found 3 fields/);
    assert.match(at(4).message, /unknown action 'permit'/);
    assert.match(at(5).message, /text after the message must be a # comment/);
    assert.equal(at(5).col, 25);
    assert.match(at(6).message, /bytes/);
    assert.match(at(7).message, /empty source list/);
    assert.match(at(8).message, /EXCEPT without items after it/);
    assert.match(at(9).message, /incomplete IP address '192\.168\.1\.'/);
    assert.equal(at(9).col, 7);
    assert.match(at(10).message, /regular expression/);
    assert.match(at(11).message, /only valid in the source list/);
    assert.ok(errors.every((d) => d.file === 'rules'));
    assert.deepEqual(r.value.rules.map((x) => x.line), [12, 13], 'good lines are kept');
  });

  test('a line of 1023 bytes is fine, 1024 is not', () => {
    const base = 'noto:ALL:ALL:ALL:550 ';
    const ok = base + 'x'.repeat(1023 - base.length);
    const bad = base + 'x'.repeat(1024 - base.length);
    assert.deepEqual(parseSmtpdCheckRules(ok, 'f').diagnostics, []);
    assert.equal(parseSmtpdCheckRules(bad, 'f').diagnostics[0]?.line, 1);
  });

  test('validateDataFile reports the diagnostics of a file for mta check', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'scr-'));
    try {
      const f = path.join(dir, 'rules');
      writeFileSync(f, 'allow:ALL:ALL:ALL\nbogus\n');
      const diags = validateDataFile('smtpd_check_rules', f);
      assert.equal(diags.length, 1);
      assert.equal(diags[0]!.file, f);
      assert.equal(diags[0]!.line, 2);
      assert.deepEqual(validateDataFile('smtpd_check_rules', ESMITH), []);
      assert.match(validateDataFile('smtpd_check_rules', path.join(dir, 'none'))[0]!.message, /cannot read .*ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ data files and the built-in

describe('data-file cache and the smtpd_check_rules built-in', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'scr-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Rewrites a file with a distinct mtime so the change is seen whatever the file system's resolution. */
  let tick = 1_600_000_000;
  const write = (f: string, text: string) => {
    writeFileSync(f, text);
    tick += 10;
    utimesSync(f, tick, tick);
  };

  test('a changed file is re-read; an invalid change keeps the last good version; a vanished file is an error', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const cache = new DataFileCache(logger(logs));
    const f = path.join(dir, 'reload');
    write(f, 'noto:ALL:ALL:ALL:550 one\n');
    assert.equal((await cache.load('smtpd_check_rules', f)).rules[0]!.message, '550 one');
    write(f, 'noto:ALL:ALL:ALL:550 two\n');
    assert.equal((await cache.load('smtpd_check_rules', f)).rules[0]!.message, '550 two');
    write(f, 'nonsense\n');
    assert.equal((await cache.load('smtpd_check_rules', f)).rules[0]!.message, '550 two');
    assert.ok(logs.some((r) => r.level === 50 && /keeping the last good version/.test(String(r.msg))));
    unlinkSync(f);
    await assert.rejects(cache.load('smtpd_check_rules', f), DataFileError);
  });

  test('an invalid file with no good version is an error naming file:line', async () => {
    const f = path.join(dir, 'bad');
    write(f, 'allow:ALL:ALL:ALL\nallow:ALL\n');
    await assert.rejects(new DataFileCache().load('smtpd_check_rules', f), /bad:2:1: error: expected action/);
  });

  const builtin = legacyBuiltins.find((b) => b.name === 'smtpd_check_rules')!;

  test('the built-in runs from rcpt with one or two arguments and is I/O', () => {
    assert.equal(builtin.from, 'rcpt');
    assert.equal(builtin.io, true);
    assert.deepEqual(builtin.arity, [1, 2]);
  });

  test('the built-in reads the file relative to the calling file and returns the status', async () => {
    write(path.join(dir, 'esmith'), readFileSync(ESMITH, 'utf8'));
    const rcpt = (raw: string): MailAddress => {
      const inner = raw.slice(1, -1);
      const at = inner.lastIndexOf('@');
      return { local: inner.slice(0, at).replace(/^@[^:]*:/, ''), domain: inner.slice(at + 1), raw, isNull: false };
    };
    const call = (to: string, ip = OUTSIDE, clock?: Clock) =>
      makeHostCall({
        stage: 'rcpt',
        fileDir: dir,
        session: { clientIp: ip },
        mailFrom: 'alice@example.net',
        txn: { currentRcpt: rcpt(to) },
        ...(clock ? { clock } : {}),
      });
    const refused = (await builtin.fn(call('<u@external.test>'), ['esmith'])) as Status;
    assert.ok(refused instanceof Status);
    assert.equal(refused.kind, 'reject');
    assert.match(refused.debug(), /551 Sorry unknown\(203\.0\.113\.9\), I don't allow unauthorized relaying/);
    const ok = (await builtin.fn(call('<bob@yourdomain.com>'), ['esmith'])) as Status;
    assert.equal(ok.kind, 'accept');
    const inside = (await builtin.fn(call('<u@external.test>', '192.168.1.5'), ['esmith'])) as Status;
    assert.equal(inside.kind, 'accept');

    write(path.join(dir, 'slow'), 'noto_delay:ALL:ALL:ALL:550 later\n');
    const clock = recordingClock();
    const slow = (await builtin.fn(call('<u@external.test>', OUTSIDE, clock), ['slow', new Map([['noto_delay', '3s']])])) as Status;
    assert.equal(slow.kind, 'reject');
    assert.deepEqual(clock.waits, [3000]);
  });

  test('bad options and missing files are runtime errors of smtpd_check_rules', async () => {
    const c = makeHostCall({ stage: 'rcpt', fileDir: dir, txn: { currentRcpt: { local: 'u', domain: 'x.test', raw: '<u@x.test>', isNull: false } } });
    await assert.rejects(Promise.resolve(builtin.fn(c, ['esmith', new Map([['noto', '1s']])])), /smtpd_check_rules: unknown option 'noto'/);
    await assert.rejects(Promise.resolve(builtin.fn(c, ['esmith', new Map([['noto_delay', 'soon']])])), /invalid duration/);
    await assert.rejects(Promise.resolve(builtin.fn(c, ['no-such-file'])), /smtpd_check_rules: cannot read .*ENOENT/);
  });
});
