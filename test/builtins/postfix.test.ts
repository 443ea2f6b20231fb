// postfix:: restrictions (SPEC §8.2): every restriction with its reply as
// Postfix words it, access-map formats and lookup order, every action, and
// the host built-ins. DNS comes from a table-driven Resolver double.

import { fromRoot } from '../helpers/paths.js';
import { fakeResolver, type Zone } from '../helpers/fake-resolver.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { DnsError, type Resolver } from '../../src/host/ports.js';
import { addressKeys, clientKeys, domainChain, heloKeys, parseAccessMap, splitMapSpec, type AccessMap } from '../../src/builtins/legacy/access-map.js';
import { LEGACY_DATA_FILE_ARGS, legacyBuiltins } from '../../src/builtins/legacy/builtins.js';
import { validateDataFile, validateDataFileAt } from '../../src/builtins/legacy/data-files.js';
import type { LegacyDecision } from '../../src/builtins/legacy/decision.js';
import { resolverLookups } from '../../src/builtins/legacy/lookups.js';
import { RESTRICTION_NAMES, checkAction, parseAction, runRestriction, type RestrictionName } from '../../src/builtins/legacy/postfix.js';
import type { LegacyProbe } from '../../src/builtins/legacy/probe.js';
import type { Header, MailAddress, Stage } from '../../src/mail/types.js';
import { Status } from '../../src/vsl/values/status.js';
import { makeHostCall } from '../helpers/host-call.js';

const SENDER_ACCESS = fromRoot('examples/postfix-restrictions/sender_access');
const IP = '203.0.113.9';

// ------------------------------------------------------------------ doubles


function mail(text: string): MailAddress {
  if (text === '') return { local: '', domain: '', raw: '<>', isNull: true };
  const at = text.lastIndexOf('@');
  return { local: text.slice(0, at), domain: text.slice(at + 1).toLowerCase(), raw: `<${text}>`, isNull: false };
}

function probe(over: Partial<LegacyProbe> = {}): LegacyProbe {
  return {
    clientIp: IP,
    clientPort: 40000,
    serverIp: '192.0.2.25',
    serverPort: 25,
    helo: 'mail.example.net',
    sender: mail('alice@example.net'),
    recipient: mail('bob@example.org'),
    authenticated: false,
    relayNetworks: ['127.0.0.0/8', '192.168.1.0/24'],
    localDomains: { domain: 'example.org', virtual: ['intranet'] },
    recipientDelimiter: '+',
    pipeliningViolation: false,
    ...over,
  };
}

interface Harness {
  logs: Array<Record<string, unknown>>;
  headers: Header[];
  run(name: RestrictionName, args?: string[]): Promise<LegacyDecision>;
}

/** Runs restrictions against a probe, with access maps given as text keyed by their spec. */
function harness(over: Partial<LegacyProbe> = {}, o: { resolver?: Resolver; stage?: Stage; maps?: Record<string, string> } = {}): Harness {
  const logs: Array<Record<string, unknown>> = [];
  const headers: Header[] = [];
  const log = pino({ level: 'trace', base: null, timestamp: false }, { write: (l: string) => void logs.push(JSON.parse(l)) });
  const p = probe(over);
  const lookups = resolverLookups(o.resolver ?? fakeResolver({}), { clientIp: p.clientIp, log, timeoutMs: 1000, dnsblTimeoutMs: 1000 });
  const loadMap = async (spec: string): Promise<AccessMap> => {
    const text = o.maps?.[spec];
    if (text === undefined) throw new Error(`no map ${spec}`);
    const r = parseAccessMap(text, spec, splitMapSpec(spec).type, checkAction);
    assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
    return r.value;
  };
  return {
    logs,
    headers,
    run: (name, args) =>
      runRestriction({ probe: p, stage: o.stage ?? 'rcpt', lookups, loadMap, log, addHeader: (h) => void headers.push(h) }, name, args),
  };
}

const next = { kind: 'next' };
const accept = { kind: 'accept' };
const refused = (reply: string) => ({ kind: 'reject', reply });

// ------------------------------------------------------------------ restrictions

describe('restrictions', () => {
  test('permit_mynetworks accepts clients in server.relay_networks or the given networks', async () => {
    assert.deepEqual(await harness({ clientIp: '192.168.1.9' }).run('permit_mynetworks'), accept);
    assert.deepEqual(await harness().run('permit_mynetworks'), next);
    assert.deepEqual(await harness().run('permit_mynetworks', ['203.0.113.0/24']), accept);
    assert.deepEqual(await harness().run('permit_mynetworks', []), next);
  });

  test('permit_sasl_authenticated accepts authenticated clients', async () => {
    assert.deepEqual(await harness({ authenticated: true }).run('permit_sasl_authenticated'), accept);
    assert.deepEqual(await harness().run('permit_sasl_authenticated'), next);
  });

  test('reject_unauth_destination refuses non-local recipients with 554 5.7.1 <rcpt>: Relay access denied', async () => {
    assert.deepEqual(await harness().run('reject_unauth_destination'), next);
    assert.deepEqual(await harness({ recipient: mail('u@intranet') }).run('reject_unauth_destination'), next);
    assert.deepEqual(
      await harness({ recipient: mail('u@external.test') }).run('reject_unauth_destination'),
      refused('554 5.7.1 <u@external.test>: Relay access denied'),
    );
    assert.deepEqual(
      await harness({ recipient: mail('u%evil.test@example.org') }).run('reject_unauth_destination'),
      refused('554 5.7.1 <u%evil.test@example.org>: Relay access denied'),
      'sender-specified routing is not an authorised destination',
    );
  });

  test('reject_non_fqdn_helo_hostname wants a dotted name or an address literal', async () => {
    assert.deepEqual(
      await harness({ helo: 'localhost' }).run('reject_non_fqdn_helo_hostname'),
      refused('504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname'),
    );
    assert.deepEqual(await harness({ helo: '[192.0.2.1]' }).run('reject_non_fqdn_helo_hostname'), next);
    assert.deepEqual(await harness({ helo: 'mail.example.net' }).run('reject_non_fqdn_helo_hostname'), next);
    assert.equal((await harness({ helo: '192.0.2.1' }).run('reject_non_fqdn_helo_hostname')).kind, 'reject');
  });

  test('reject_invalid_helo_hostname refuses malformed names with 501 5.5.2 Invalid name', async () => {
    for (const helo of ['bad!name', '-lead.example', 'a..b', '[300.1.1.1]', 'x'.repeat(64) + '.test']) {
      assert.deepEqual(
        await harness({ helo }).run('reject_invalid_helo_hostname'),
        refused(`501 5.5.2 <${helo}>: Helo command rejected: Invalid name`),
        helo,
      );
    }
    for (const helo of ['localhost', 'mail.example.net', '[192.0.2.1]', '[IPv6:2001:db8::1]', '192.0.2.1', 'under_score.test']) {
      assert.deepEqual(await harness({ helo }).run('reject_invalid_helo_hostname'), next, helo);
    }
  });

  test('reject_unknown_helo_hostname needs an A, AAAA or MX record', async () => {
    const resolver = fakeResolver({ a: { 'mail.example.net': ['198.51.100.1'] }, mx: { 'mx-only.example.net': ['mx.example.net'] } });
    assert.deepEqual(await harness({ helo: 'mail.example.net' }, { resolver }).run('reject_unknown_helo_hostname'), next);
    assert.deepEqual(await harness({ helo: 'mx-only.example.net' }, { resolver }).run('reject_unknown_helo_hostname'), next);
    assert.deepEqual(
      await harness({ helo: 'ghost.example.net' }, { resolver }).run('reject_unknown_helo_hostname'),
      refused('450 4.7.1 <ghost.example.net>: Helo command rejected: Host not found'),
    );
    assert.deepEqual(await harness({ helo: '[192.0.2.1]' }, { resolver }).run('reject_unknown_helo_hostname'), next);
  });

  test('reject_non_fqdn_sender / _recipient want a fully-qualified domain', async () => {
    assert.deepEqual(
      await harness({ sender: mail('u@localhost') }).run('reject_non_fqdn_sender'),
      refused('504 5.5.2 <u@localhost>: Sender address rejected: need fully-qualified address'),
    );
    assert.deepEqual(await harness({ sender: mail('') }).run('reject_non_fqdn_sender'), next, 'the null sender passes');
    assert.deepEqual(await harness({ sender: mail('u@[192.0.2.1]') }).run('reject_non_fqdn_sender'), next);
    assert.deepEqual(
      await harness({ recipient: mail('u@mailhost') }).run('reject_non_fqdn_recipient'),
      refused('504 5.5.2 <u@mailhost>: Recipient address rejected: need fully-qualified address'),
    );
    assert.deepEqual(await harness({ recipient: mail('u@intranet') }).run('reject_non_fqdn_recipient'), next, 'local domains pass');
  });

  test('reject_unknown_sender_domain: MX, else A/AAAA; 450 4.1.8 when not found, 550 5.7.27 for a null MX', async () => {
    const resolver = fakeResolver({
      mx: { 'mx.test': ['mx1.mx.test'], 'nullmx.test': [''] },
      a: { 'a-only.test': ['198.51.100.2'] },
      aaaa: { 'aaaa-only.test': ['2001:db8::2'] },
      ns: {},
    });
    const run = (s: string) => harness({ sender: mail(s) }, { resolver }).run('reject_unknown_sender_domain');
    for (const ok of ['u@mx.test', 'u@a-only.test', 'u@aaaa-only.test', '', 'u@example.org']) assert.deepEqual(await run(ok), next, ok);
    assert.deepEqual(await run('u@nx.test'), refused('450 4.1.8 <u@nx.test>: Sender address rejected: Domain not found'));
    assert.deepEqual(
      await run('u@nullmx.test'),
      refused('550 5.7.27 <u@nullmx.test>: Sender address rejected: Domain nullmx.test does not accept mail (nullMX)'),
    );
  });

  test('reject_unknown_sender_domain defers (450) on a temporary DNS failure', async () => {
    const resolver = fakeResolver({ mx: { 'flaky.test': 'SERVFAIL' } });
    const d = await harness({ sender: mail('u@flaky.test') }, { resolver }).run('reject_unknown_sender_domain');
    assert.deepEqual(d, refused('450 4.1.8 <u@flaky.test>: Sender address rejected: Domain not found'));
  });

  test('reject_unknown_recipient_domain: 450 4.1.2, 556 5.1.10 for a null MX, local domains pass', async () => {
    const resolver = fakeResolver({ mx: { 'nullmx.test': ['.'] } });
    const run = (r: string) => harness({ recipient: mail(r) }, { resolver }).run('reject_unknown_recipient_domain');
    assert.deepEqual(await run('u@nx.test'), refused('450 4.1.2 <u@nx.test>: Recipient address rejected: Domain not found'));
    assert.deepEqual(
      await run('u@nullmx.test'),
      refused('556 5.1.10 <u@nullmx.test>: Recipient address rejected: Domain nullmx.test does not accept mail (nullMX)'),
    );
    assert.deepEqual(await run('u@example.org'), next);
  });

  test('reject_unauth_pipelining reads the session flag', async () => {
    assert.deepEqual(
      await harness({ pipeliningViolation: true }).run('reject_unauth_pipelining'),
      refused('503 5.5.0 Error: improper use of SMTP command pipelining'),
    );
    assert.deepEqual(await harness().run('reject_unauth_pipelining'), next);
  });

  test('reject_rbl_client refuses listed clients: Service unavailable; Client host [ip] blocked using zone', async () => {
    const resolver = fakeResolver({ a: { '9.113.0.203.zen.example': ['127.0.0.4'] } });
    assert.deepEqual(
      await harness({}, { resolver }).run('reject_rbl_client', ['zen.example']),
      refused(`554 5.7.1 Service unavailable; Client host [${IP}] blocked using zen.example`),
    );
    assert.deepEqual(await harness({}, { resolver }).run('reject_rbl_client', ['zen.example=127.0.0.2']), next, 'answer filter');
    assert.deepEqual(await harness({ clientIp: '198.51.100.1' }, { resolver }).run('reject_rbl_client', ['zen.example']), next);
  });
});

// ------------------------------------------------------------------ lookup keys

describe('access-map lookup order', () => {
  test('address keys: u+ext@d, u@d, the domain chain of d, u+ext@, u@', () => {
    assert.deepEqual(addressKeys(mail('User+Tag@a.b.c'), '+').partial, [
      'user+tag@a.b.c', 'user@a.b.c', 'a.b.c', '.b.c', 'b.c', '.c', 'c', 'user+tag@', 'user@',
    ]);
    assert.deepEqual(addressKeys(mail('u@d.test'), '+').partial, ['u@d.test', 'd.test', '.test', 'test', 'u@']);
    assert.deepEqual(addressKeys(mail('u-x@d.test'), '+-').partial.slice(0, 2), ['u-x@d.test', 'u@d.test']);
    assert.deepEqual(addressKeys(mail('+x@d.test'), '+').partial[1], 'd.test', 'a leading delimiter is no extension');
    assert.deepEqual(addressKeys(mail(''), '+').partial, ['<>']);
  });

  test('client keys: the domain chain of its name, then the address and its prefixes', () => {
    assert.deepEqual(clientKeys('mx.example.net', '192.0.2.7').partial, [
      'mx.example.net', '.example.net', 'example.net', '.net', 'net', '192.0.2.7', '192.0.2', '192.0', '192',
    ]);
    assert.deepEqual(clientKeys(null, '2001:db8::7').partial, [
      '2001:db8::7', '2001:db8:0:0:0:0:0', '2001:db8:0:0:0:0', '2001:db8:0:0:0', '2001:db8:0:0', '2001:db8:0', '2001:db8', '2001',
    ]);
  });

  test('HELO keys: its domain chain', () => {
    assert.deepEqual(heloKeys('Mail.Example.Net').partial, ['mail.example.net', '.example.net', 'example.net', '.net', 'net']);
    assert.deepEqual(domainChain('[192.0.2.1]'), ['[192.0.2.1]']);
  });

  test('the first key found wins, and DUNNO stops the search', async () => {
    const maps = { s: 'u@d.test DUNNO\nd.test REJECT\nu+x@d.test OK\n' };
    assert.deepEqual(await harness({ sender: mail('u+x@d.test') }, { maps }).run('check_sender_access', ['s']), { ...accept, matched: { file: 's', line: 3 } });
    assert.deepEqual(await harness({ sender: mail('u+y@d.test') }, { maps }).run('check_sender_access', ['s']), { ...next, matched: { file: 's', line: 1 } });
    assert.equal((await harness({ sender: mail('w@d.test') }, { maps }).run('check_sender_access', ['s'])).kind, 'reject');
  });
});

// ------------------------------------------------------------------ actions

describe('access-map actions', () => {
  const sender = (action: string, over: Partial<LegacyProbe> = {}) => {
    const h = harness({ sender: mail('spamford@cyberpromo.com'), ...over }, { stage: 'mail', maps: { m: `spamford@cyberpromo.com ${action}\n` } });
    return { h, d: h.run('check_sender_access', ['m']) };
  };
  const key = '<spamford@cyberpromo.com>: Sender address rejected';

  test('OK and all-digit results accept; DUNNO continues', async () => {
    assert.deepEqual((await sender('OK').d).kind, 'accept');
    assert.deepEqual((await sender('1234567').d).kind, 'accept');
    assert.deepEqual((await sender('DUNNO').d).kind, 'next');
  });

  test('REJECT and DEFER use 554 5.7.1 / 450 4.7.1 and the text, default Access denied', async () => {
    assert.equal((await sender('REJECT').d).reply, `554 5.7.1 ${key}: Access denied`);
    assert.equal((await sender('reject Go away').d).reply, `554 5.7.1 ${key}: Go away`);
    assert.equal((await sender('DEFER').d).reply, `450 4.7.1 ${key}: Access denied`);
    assert.equal((await sender('REJECT 5.7.0 No spam').d).reply, `554 5.7.0 ${key}: No spam`);
  });

  test('4NN/5NN text replies get 4.7.1/5.7.1 unless they carry an enhanced code', async () => {
    assert.deepEqual(await sender('550 Go away').d, { kind: 'reject', reply: `550 5.7.1 ${key}: Go away`, matched: { file: 'm', line: 1 } });
    assert.equal((await sender('451 try later').d).reply, `451 4.7.1 ${key}: try later`);
    assert.equal((await sender('452 5.2.2 full').d).reply, `452 4.2.2 ${key}: full`, 'class aligned');
  });

  test('421 and 521 close the session (deny)', async () => {
    assert.equal((await sender('421 bye').d).kind, 'deny');
    assert.equal((await sender('521 never').d).kind, 'deny');
  });

  test('HOLD and DISCARD quarantine', async () => {
    assert.deepEqual(await sender('HOLD look at this').d, { kind: 'quarantine', quarantine: 'hold', matched: { file: 'm', line: 1 } });
    assert.equal((await sender('DISCARD').d).quarantine, 'discard');
  });

  test('WARN and INFO log and continue; PREPEND adds a header and continues', async () => {
    const w = sender('WARN suspicious sender');
    assert.equal((await w.d).kind, 'next');
    assert.ok(w.h.logs.some((r) => r.level === 40 && /suspicious sender/.test(String(r.msg))));
    const i = sender('INFO noted');
    assert.equal((await i.d).kind, 'next');
    assert.ok(i.h.logs.some((r) => r.level === 30 && /noted/.test(String(r.msg))));
    const p = sender('PREPEND X-Sender-Flag: cyberpromo');
    assert.equal((await p.d).kind, 'next');
    assert.deepEqual(p.h.headers, [{ name: 'X-Sender-Flag', value: 'cyberpromo' }]);
  });

  test('a restriction name as action gives its result', async () => {
    const unauth = harness({ sender: mail('a@b.test'), recipient: mail('u@external.test') }, { maps: { m: 'b.test reject_unauth_destination\n' } });
    assert.deepEqual((await unauth.run('check_sender_access', ['m'])).reply, '554 5.7.1 <u@external.test>: Relay access denied');
    const resolver = fakeResolver({ a: { '9.113.0.203.zen.example': ['127.0.0.2'] } });
    const rbl = harness({ sender: mail('a@b.test') }, { resolver, maps: { m: 'b.test permit_sasl_authenticated, reject_rbl_client zen.example\n' } });
    assert.match((await rbl.run('check_sender_access', ['m'])).reply!, /blocked using zen\.example/);
    const authed = harness({ sender: mail('a@b.test'), authenticated: true }, { resolver, maps: { m: 'b.test permit_sasl_authenticated, reject_rbl_client zen.example\n' } });
    assert.equal((await authed.run('check_sender_access', ['m'])).kind, 'accept');
  });

  test('a restriction named in a map before its stage is E_TOO_EARLY', async () => {
    const h = harness({}, { stage: 'connect', maps: { c: `${IP} reject_unauth_destination\n` } });
    await assert.rejects(h.run('check_client_access', ['c']), /E_TOO_EARLY: postfix::reject_unauth_destination is available from stage rcpt/);
  });

  test('a map whose action names itself is stopped', async () => {
    const h = harness({}, { stage: 'connect', maps: { c: `${IP} check_client_access c\n` } });
    await assert.rejects(h.run('check_client_access', ['c']), /nest more than/);
  });

  test('anything else is an error (reported with its line when the map is read)', () => {
    assert.match(checkAction('FILTER smtp:[127.0.0.1]:10025')!, /unknown action 'FILTER'/);
    assert.match(checkAction('250 fine')!, /must be 4xx or 5xx/);
    assert.match(checkAction('PREPEND no colon')!, /Name: value/);
    assert.match(checkAction('reject_rbl_client')!, /needs an argument/);
    assert.equal(checkAction('OK'), null);
    assert.deepEqual(parseAction('permit_mynetworks reject_unauth_destination'), {
      t: 'restrictions',
      list: [{ name: 'permit_mynetworks', args: [] }, { name: 'reject_unauth_destination', args: [] }],
    });
    const r = parseAccessMap('a OK\nb FILTER x\n', 'f', 'hash', checkAction);
    assert.deepEqual(r.diagnostics.map((d) => [d.line, d.col, d.severity]), [[2, 3, 'error']]);
  });
});

// ------------------------------------------------------------------ maps by kind

describe('access maps by client, HELO and recipient; map formats', () => {
  test('the seed sender_access file: friends pass, junk and marketing are refused', async () => {
    const maps = { sa: readFileSync(SENDER_ACCESS, 'utf8') };
    const run = (s: string) => harness({ sender: mail(s) }, { stage: 'mail', maps }).run('check_sender_access', ['sa']);
    assert.equal((await run('myfriend@example.com')).kind, 'accept');
    assert.equal((await run('junk@spam.com')).reply, '554 5.7.1 <junk@spam.com>: Sender address rejected: Access denied');
    assert.equal((await run('marketing@anywhere.test')).kind, 'reject');
    assert.equal((await run('theboss@anywhere.test')).kind, 'accept');
    assert.equal((await run('x@deals.marketing.com')).kind, 'reject');
    assert.equal((await run('x@hot.deals.marketing.com')).kind, 'reject', 'parent domains match subdomains');
    assert.equal((await run('x@somedomain.com')).kind, 'accept');
    assert.equal((await run('x@other.test')).kind, 'next');
    assert.deepEqual(validateDataFile('access', `hash:${SENDER_ACCESS}`), []);
  });

  test('client access: by forward-confirmed name, then address prefixes; key <name[ip]>', async () => {
    const resolver = fakeResolver({ ptr: { [IP]: ['mx.spammer.test'] }, a: { 'mx.spammer.test': [IP] } });
    const maps = { c: 'spammer.test REJECT spam source\n' };
    const d = await harness({}, { resolver, stage: 'connect', maps }).run('check_client_access', ['c']);
    assert.equal(d.reply, `554 5.7.1 <mx.spammer.test[${IP}]>: Client host rejected: spam source`);
    const byIp = await harness({}, { stage: 'connect', maps: { c: '203.0.113 REJECT\n' } }).run('check_client_access', ['c']);
    assert.equal(byIp.reply, `554 5.7.1 <unknown[${IP}]>: Client host rejected: Access denied`);
  });

  test('client access: a name that cannot be looked up now is unknown, the address keys still apply', async () => {
    const resolver = fakeResolver({ ptr: { [IP]: 'SERVFAIL' } });
    const h = harness({}, { resolver, stage: 'connect', maps: { c: 'spammer.test OK\n203.0.113.9 REJECT\n' } });
    const d = await h.run('check_client_access', ['c']);
    assert.equal(d.reply, `554 5.7.1 <unknown[${IP}]>: Client host rejected: Access denied`);
    assert.ok(h.logs.some((r) => r.level === 40 && /client name lookup failed/.test(String(r.msg))));
  });

  test('HELO and recipient access use their own key and class', async () => {
    const helo = await harness({ helo: 'friend.Example.net' }, { stage: 'helo', maps: { h: 'example.net 550 we know you\n' } }).run('check_helo_access', ['h']);
    assert.equal(helo.reply, '550 5.7.1 <friend.Example.net>: Helo command rejected: we know you');
    const rcpt = await harness({ recipient: mail('old@example.org') }, { maps: { r: 'old@example.org REJECT gone\n' } }).run('check_recipient_access', ['r']);
    assert.equal(rcpt.reply, '554 5.7.1 <old@example.org>: Recipient address rejected: gone');
  });

  test('hash maps: comments, continuation lines, lower-cased keys; a duplicate key warns and the first wins', () => {
    const r = parseAccessMap('# c\nA@B.test  REJECT first\n   and more\n  # indented comment\na@b.test OK\n', 'f', 'hash', checkAction);
    assert.deepEqual(r.diagnostics.map((d) => [d.line, d.severity]), [[5, 'warning']]);
    assert.match(r.diagnostics[0]!.message, /duplicate key 'a@b\.test'.*line 2/);
    assert.equal(r.value.type === 'hash' && r.value.entries.get('a@b.test')?.action, 'REJECT first and more');
  });

  test('cidr maps are scanned in order against the client address', async () => {
    const maps = { 'cidr:n': '# nets\n203.0.113.0/28 OK\n203.0.113.0/24 REJECT dynamic range\n[2001:db8::]/32 REJECT v6\n' };
    assert.equal((await harness({}, { stage: 'connect', maps }).run('check_client_access', ['cidr:n'])).kind, 'accept');
    const later = await harness({ clientIp: '203.0.113.77' }, { stage: 'connect', maps }).run('check_client_access', ['cidr:n']);
    assert.match(later.reply!, /Client host rejected: dynamic range$/);
    assert.match((await harness({ clientIp: '2001:db8::5' }, { stage: 'connect', maps }).run('check_client_access', ['cidr:n'])).reply!, /v6$/);
    const warn = parseAccessMap('10.0.0.1/8 OK\n', 'f', 'cidr', checkAction);
    assert.match(warn.diagnostics[0]!.message, /host bits/);
  });

  test('regexp maps are case-insensitive, ordered, with $1 substitution and negation', async () => {
    const maps = { 'regexp:r': '/^(.*)@Spam\\.test$/ REJECT user $1 is blocked\n!/\\.test$/ REJECT not a test domain\n/^ok@/ OK\n' };
    const run = (s: string) => harness({ sender: mail(s) }, { stage: 'mail', maps }).run('check_sender_access', ['regexp:r']);
    assert.equal((await run('joe@spam.test')).reply, '554 5.7.1 <joe@spam.test>: Sender address rejected: user joe is blocked');
    assert.match((await run('joe@example.com')).reply!, /not a test domain$/);
    assert.equal((await run('ok@fine.test')).kind, 'accept');
    assert.equal((await run('joe@fine.test')).kind, 'next');
    const bad = parseAccessMap('/(/ OK\n/x/z OK\nif /a/\n', 'f', 'regexp', checkAction);
    assert.deepEqual(bad.diagnostics.map((d) => d.line), [1, 2, 3]);
  });

  test('pcre: and texthash: are accepted prefixes; unknown types are errors', () => {
    assert.deepEqual(splitMapSpec('pcre:/x'), { type: 'regexp', path: '/x' });
    assert.deepEqual(splitMapSpec('texthash:/x'), { type: 'hash', path: '/x' });
    assert.deepEqual(splitMapSpec('/etc/postfix/x'), { type: 'hash', path: '/etc/postfix/x' });
    assert.throws(() => splitMapSpec('mysql:/x'), /unsupported access map type/);
  });
});

// ------------------------------------------------------------------ built-ins

describe('postfix:: built-ins', () => {
  const byName = new Map(legacyBuiltins.map((b) => [b.name, b]));
  const dir = mkdtempSync(path.join(tmpdir(), 'pfx-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('every postfix:: name of Appendix A is registered with its stage, I/O flag and arity', () => {
    const expected: Record<string, [Stage, boolean, number | [number, number]]> = {
      permit_mynetworks: ['connect', false, [0, 1]],
      permit_sasl_authenticated: ['connect', false, [0, 0]],
      reject_unauth_destination: ['rcpt', false, [0, 0]],
      reject_non_fqdn_helo_hostname: ['helo', false, [0, 0]],
      reject_invalid_helo_hostname: ['helo', false, [0, 0]],
      reject_unknown_helo_hostname: ['helo', true, [0, 0]],
      reject_non_fqdn_sender: ['mail', false, [0, 0]],
      reject_unknown_sender_domain: ['mail', true, [0, 0]],
      reject_non_fqdn_recipient: ['rcpt', false, [0, 0]],
      reject_unknown_recipient_domain: ['rcpt', true, [0, 0]],
      reject_unauth_pipelining: ['helo', false, [0, 0]],
      reject_rbl_client: ['connect', true, [1, 1]],
      check_client_access: ['connect', true, [1, 1]],
      check_helo_access: ['helo', true, [1, 1]],
      check_sender_access: ['mail', true, [1, 1]],
      check_recipient_access: ['rcpt', true, [1, 1]],
    };
    assert.deepEqual([...RESTRICTION_NAMES].sort(), Object.keys(expected).sort());
    for (const [name, [from, io, arity]] of Object.entries(expected)) {
      const b = byName.get(`postfix::${name}`);
      assert.ok(b, name);
      assert.deepEqual([b.from, b.io, b.arity], [from, io, arity], name);
    }
  });

  test('non-I/O restrictions answer synchronously with a status', () => {
    const call = makeHostCall({ stage: 'rcpt', configure: (c) => void (c.server.domain = 'example.org'), txn: { currentRcpt: mail('u@external.test') } });
    const s = byName.get('postfix::reject_unauth_destination')!.fn(call, []);
    assert.ok(s instanceof Status);
    assert.equal(s.kind, 'reject');
    assert.match(s.debug(), /554 5\.7\.1 <u@external\.test>: Relay access denied/);
    const nets = byName.get('postfix::permit_mynetworks')!.fn(makeHostCall({ session: { clientIp: '10.1.2.3' } }), [['10.0.0.0/8']]);
    assert.equal((nets as Status).kind, 'accept');
    assert.throws(() => byName.get('postfix::permit_mynetworks')!.fn(makeHostCall(), [['not-a-net']]), /postfix::permit_mynetworks: invalid network/);
  });

  test('check_sender_access reads a map relative to the calling file; PREPEND goes through the effects', async () => {
    writeFileSync(path.join(dir, 'senders'), 'spamford@cyberpromo.com REJECT\nfriend@example.com PREPEND X-Friend: yes\n');
    const f = byName.get('postfix::check_sender_access')!;
    const bad = (await f.fn(makeHostCall({ stage: 'mail', fileDir: dir, mailFrom: 'spamford@cyberpromo.com' }), ['hash:senders'])) as Status;
    assert.equal(bad.kind, 'reject');
    assert.match(bad.debug(), /554 5\.7\.1 <spamford@cyberpromo\.com>: Sender address rejected: Access denied/);
    const call = makeHostCall({ stage: 'mail', fileDir: dir, mailFrom: 'friend@example.com' });
    assert.equal(((await f.fn(call, ['senders'])) as Status).kind, 'next');
    assert.deepEqual(call.headers, [{ name: 'X-Friend', value: 'yes', where: 'top' }]);
    await assert.rejects(Promise.resolve(f.fn(call, ['hash:missing'])), /postfix::check_sender_access: cannot read .*ENOENT/);
  });

  test('data-file arguments are declared for mta check, and validated relative to the calling file', () => {
    for (const name of Object.keys(LEGACY_DATA_FILE_ARGS)) assert.ok(byName.has(name), name);
    writeFileSync(path.join(dir, 'nets.cidr'), '10.0.0.0/8 OK\nnot-a-net REJECT\n');
    const diags = validateDataFileAt('access', dir, 'cidr:nets.cidr');
    assert.deepEqual(diags.map((d) => [d.file, d.line, d.severity]), [[path.join(dir, 'nets.cidr'), 2, 'error']]);
    assert.match(validateDataFileAt('access', dir, 'ldap:x')[0]!.message, /unsupported access map type/);
  });

  test('HOLD becomes quarantine("hold")', async () => {
    writeFileSync(path.join(dir, 'hold'), 'example.com HOLD\n');
    const s = (await byName.get('postfix::check_sender_access')!.fn(makeHostCall({ stage: 'mail', fileDir: dir, mailFrom: 'x@example.com' }), ['hold'])) as Status;
    assert.equal(s.kind, 'quarantine');
    assert.equal(s.quarantine, 'hold');
  });
});
