import { test } from 'node:test';
import assert from 'node:assert/strict';
import { installNodePlatform } from '../../src/vsl/host-platform.js';
import { canonicalDomain, isLocalDomain, localDomainMatcher, normalizeIp, parseMailbox, parsePath, parsePathArgument, type PathOptions } from '../../src/vsl/values/address.js';
import { asciiOnlyPlatform, platform, setPlatform } from '../../src/vsl/values/platform.js';

installNodePlatform();

const RCPT: PathOptions = { kind: 'rcpt', smtputf8: false, serverDomain: 'example.org' };
const MAIL: PathOptions = { kind: 'mail', smtputf8: false, serverDomain: 'example.org' };
const UTF8 = { smtputf8: true };

const BAD_RCPT = '501 5.1.3 Bad recipient address syntax';
const BAD_MAIL = '501 5.1.7 Bad sender address syntax';
const RELAY = '554 5.7.1 Relay access denied';
const NON_ASCII = '553 5.6.7 Non-ASCII address requires SMTPUTF8';

/** `local@domain` of an accepted path, or the reply of a refused one. */
function outcome(raw: string, opts: PathOptions): string {
  const r = parsePath(raw, opts);
  if (!r.ok) return r.reply;
  return r.address.isNull ? '<>' : `${r.address.local}@${r.address.domain}`;
}

function check(cases: Array<[string, string]>, opts: PathOptions): void {
  for (const [raw, expected] of cases) assert.equal(outcome(raw, opts), expected, `${opts.kind} ${raw}`);
}

test('plain paths are accepted and the domain is lower-cased', () => {
  const cases: Array<[string, string]> = [
    ['<user@example.net>', 'user@example.net'],
    ['<User.Name+tag@Mail.EXAMPLE.net>', 'User.Name+tag@mail.example.net'],
    ["<#$&'*+-/=?^_`{|}~@example.net>", "#$&'*+-/=?^_`{|}~@example.net"],
    ['  <u@example.net>  ', 'u@example.net'],
    ['<u@a-b.example>', 'u@a-b.example'],
    ['<u@localhost>', 'u@localhost'],
  ];
  check(cases, RCPT);
  check(cases, MAIL);
  check([["<!#$%&'*+-/=?^_`{|}~@example.net>", "!#$%&'*+-/=?^_`{|}~@example.net"]], MAIL);
});

test('a source route is dropped', () => {
  check(
    [
      ['<@a.example,@b.example:user@d.example>', 'user@d.example'],
      ['<@relay.example:user@d.example>', 'user@d.example'],
      ['<@[192.0.2.1]:user@d.example>', 'user@d.example'],
    ],
    RCPT,
  );
  check([['<@a.example,@b.example:user@d.example>', 'user@d.example']], MAIL);
  check(
    [
      ['<@a.example,user@d.example>', BAD_RCPT],
      ['<@:user@d.example>', BAD_RCPT],
      ['<@a..b:user@d.example>', BAD_RCPT],
      ['<@a.example,:user@d.example>', BAD_RCPT],
    ],
    RCPT,
  );
});

test('IDN domains are converted to A-labels, with SMTPUTF8 only', () => {
  check([['<u@bücher.example>', 'u@xn--bcher-kva.example'], ['<u@BÜCHER.Example>', 'u@xn--bcher-kva.example']], { ...RCPT, ...UTF8 });
  check([['<u@bücher.example>', NON_ASCII]], RCPT);
  check([['<u@bücher.example>', NON_ASCII]], MAIL);
  check([['<jörg@example.net>', 'jörg@example.net']], { ...MAIL, ...UTF8 });
  check([['<jörg@example.net>', NON_ASCII]], MAIL);
});

test('a trailing dot in the domain is a syntax error', () => {
  check([['<u@example.org.>', BAD_RCPT], ['<u@bücher.example.>', BAD_RCPT]], { ...RCPT, ...UTF8 });
  check([['<u@example.org.>', BAD_MAIL]], MAIL);
});

test('invalid domains are syntax errors, and nothing numeric passes as a name', () => {
  check(
    [
      ['<u@-a.example>', BAD_RCPT],
      ['<u@a-.example>', BAD_RCPT],
      ['<u@a..example>', BAD_RCPT],
      ['<u@.example>', BAD_RCPT],
      ['<u@exa_mple.org>', BAD_RCPT],
      ['<u@exa mple.org>', BAD_RCPT],
      ['<u@a%41.example>', BAD_RCPT],
      ['<u@1.2.3.4>', BAD_RCPT],
      ['<u@' + 'a'.repeat(64) + '.example>', BAD_RCPT],
      ['<u@' + 'a.'.repeat(127) + 'ex>', BAD_RCPT],
    ],
    RCPT,
  );
  // Full-width digits map to an IPv4-looking name under IDNA: still refused.
  check([['<u@１２７.0.0.1>', BAD_RCPT], ['<u@0x7f.1>', BAD_RCPT]], { ...RCPT, ...UTF8 });
});

test('address literals are validated and kept as text', () => {
  check(
    [
      ['<u@[192.0.2.1]>', 'u@[192.0.2.1]'],
      ['<u@[IPv6:2001:DB8::1]>', 'u@[IPv6:2001:db8::1]'],
      ['<u@[ipv6:2001:db8:0:0:0:0:0:1]>', 'u@[IPv6:2001:db8::1]'],
      ['<u@[IPv6:::ffff:192.0.2.1]>', 'u@[IPv6:::ffff:192.0.2.1]'],
      ['<u@[300.0.0.1]>', BAD_RCPT],
      ['<u@[2001:db8::1]>', BAD_RCPT],
      ['<u@[IPv6:1.2.3.4]>', BAD_RCPT],
      ['<u@[tag:stuff]>', BAD_RCPT],
      ['<u@[192.0.2.1>', BAD_RCPT],
      ['<u@[192.0.2.1]x>', BAD_RCPT],
    ],
    RCPT,
  );
});

test('a recipient local part with @, % or ! is a relay attempt, quoted or not, look-alikes included', () => {
  check(
    [
      ['<"a@b"@example.org>', RELAY],
      ['<a%b@example.org>', RELAY],
      ['<"a%b"@example.org>', RELAY],
      ['<a!b@example.org>', RELAY],
      ['<"a!b"@example.org>', RELAY],
      ['<"a\\@b"@example.org>', RELAY],
      ['<a%b>', RELAY],
    ],
    RCPT,
  );
  // U+FF20 FULLWIDTH COMMERCIAL AT, U+FE6B SMALL COMMERCIAL AT, U+FF05, U+FF01 under NFKC
  check(
    [
      ['<a\uFF20b@example.org>', RELAY],
      ['<"a\uFF20b"@example.org>', RELAY],
      ['<a\uFE6Bb@example.org>', RELAY],
      ['<a\uFF05b@example.org>', RELAY],
      ['<a\uFF01b@example.org>', RELAY],
    ],
    { ...RCPT, ...UTF8 },
  );
  // Without SMTPUTF8 the look-alike is refused as non-ASCII first.
  check([['<a\uFF20b@example.org>', NON_ASCII]], RCPT);
  // Senders may have them.
  check([['<a%b@example.net>', 'a%b@example.net'], ['<"a@b"@example.net>', '"a@b"@example.net'], ['<a!b@example.net>', 'a!b@example.net']], MAIL);
});

test('a recipient without a domain is only postmaster, mapped to the server domain', () => {
  check(
    [
      ['<postmaster>', 'postmaster@example.org'],
      ['<PostMaster>', 'postmaster@example.org'],
      ['<"postmaster">', 'postmaster@example.org'],
      ['<POSTMASTER>', 'postmaster@example.org'],
      ['<root>', BAD_RCPT],
      ['<postmaster2>', BAD_RCPT],
    ],
    { ...RCPT, serverDomain: 'Example.ORG' },
  );
  check([['<postmaster>', BAD_MAIL], ['<user>', BAD_MAIL]], MAIL);
});

test('<> is the null sender for MAIL and a syntax error for RCPT', () => {
  const r = parsePath('<>', MAIL);
  assert.deepEqual(r, { ok: true, address: { local: '', domain: '', raw: '<>', isNull: true } });
  assert.equal(outcome('<>', RCPT), BAD_RCPT);
});

test('malformed paths get 501 5.1.3 for RCPT and 501 5.1.7 for MAIL', () => {
  const malformed = [
    'u@example.org', // missing <>
    '<u@example.org',
    'u@example.org>',
    '',
    '<',
    '<u@b@example.org>', // second unquoted @
    '<a\\b@example.org>', // backslash outside quotes
    '<""@example.org>', // empty local part
    '<@example.org>',
    '<u@>',
    '<.u@example.org>',
    '<u.@example.org>',
    '<u..v@example.org>',
    '<u v@example.org>',
    '<"u"v@example.org>',
    '<"unterminated@example.org>',
    '<"a\u0001b"@example.org>',
    '<"a\tb"@example.org>',
    '<u\u0000@example.org>',
    '<u@example.org >',
    '<<u@example.org>>',
    '<u@example.org,v@example.org>',
  ];
  for (const raw of malformed) {
    assert.equal(outcome(raw, RCPT), BAD_RCPT, `rcpt ${JSON.stringify(raw)}`);
    assert.equal(outcome(raw, MAIL), BAD_MAIL, `mail ${JSON.stringify(raw)}`);
  }
});

test('non-ASCII without SMTPUTF8 is refused with 553 5.6.7', () => {
  check([['<jörg@example.net>', NON_ASCII], ['<"jörg"@example.net>', NON_ASCII], ['<u@bücher.example>', NON_ASCII]], MAIL);
  check([['<jörg@example.net>', NON_ASCII]], RCPT);
  // C1 controls are not characters an address may hold, even with SMTPUTF8.
  check([['<a\u0085b@example.net>', BAD_MAIL]], { ...MAIL, ...UTF8 });
});

test('quoted local parts that need no quoting are canonicalised unquoted', () => {
  check(
    [
      ['<"john"@example.net>', 'john@example.net'],
      ['<"john.doe"@example.net>', 'john.doe@example.net'],
      ['<"j\\ohn"@example.net>', 'john@example.net'],
      ['<"john doe"@example.net>', '"john doe"@example.net'],
      ['<"john..doe"@example.net>', '"john..doe"@example.net'],
      ['<".john"@example.net>', '".john"@example.net'],
      ['<"a\\"b"@example.net>', '"a\\"b"@example.net'],
      ['<"a\\\\b"@example.net>', '"a\\\\b"@example.net'],
      ['<"a>b"@example.net>', '"a>b"@example.net'],
    ],
    MAIL,
  );
});

test('the raw path is kept for logs', () => {
  const r = parsePath(' <@a.example:John@Example.NET> ', MAIL);
  assert.ok(r.ok);
  assert.equal(r.address.raw, '<@a.example:John@Example.NET>');
  assert.equal(r.address.local, 'John');
  assert.equal(r.address.domain, 'example.net');
});

test('the whole argument splits into path and parameters; junk after the path is 501 5.5.4', () => {
  const r = parsePathArgument('<u@example.net> SIZE=1000 BODY=8BITMIME', MAIL);
  assert.ok(r.ok);
  assert.equal(r.params, 'SIZE=1000 BODY=8BITMIME');
  assert.equal(r.address.domain, 'example.net');

  const q = parsePathArgument('<"a> b"@example.net>', MAIL);
  assert.ok(q.ok);
  assert.equal(q.params, '');
  assert.equal(q.address.local, '"a> b"');

  const empty = parsePathArgument('<>', MAIL);
  assert.ok(empty.ok && empty.address.isNull);

  assert.deepEqual(parsePathArgument('<u@example.net>SIZE=10', MAIL), { ok: false, reply: '501 5.5.4 Syntax error in parameters' });
  assert.deepEqual(parsePathArgument('u@example.net SIZE=10', MAIL), { ok: false, reply: BAD_MAIL });
  assert.deepEqual(parsePathArgument('u@example.net', RCPT), { ok: false, reply: BAD_RCPT });
  assert.deepEqual(parsePathArgument('<a%b@example.org> NOTIFY=NEVER', RCPT), { ok: false, reply: RELAY });
});

test('without a host IDN implementation, U-label domains are refused as syntax errors', () => {
  const saved = platform();
  setPlatform(asciiOnlyPlatform);
  try {
    assert.equal(outcome('<u@bücher.example>', { ...RCPT, ...UTF8 }), BAD_RCPT);
    assert.equal(outcome('<u@Example.NET>', RCPT), 'u@example.net');
    assert.throws(() => asciiOnlyPlatform.toASCII('bücher.example'), /IDN conversion unavailable/);
  } finally {
    setPlatform(saved);
  }
});

test('local domains match exactly, label-wise, case-insensitively after IDN conversion', () => {
  const local = { domain: 'example.org', virtual: ['Bücher.example', 'virt.example'] };
  const cases: Array<[string, boolean]> = [
    ['example.org', true],
    ['EXAMPLE.ORG', true],
    ['example.org.', true],
    ['virt.example', true],
    ['bücher.example', true],
    ['xn--bcher-kva.example', true],
    ['XN--BCHER-KVA.EXAMPLE', true],
    ['sub.example.org', false],
    ['example.org.evil.test', false],
    ['evilexample.org', false],
    ['example.or', false],
    ['example.org..', false],
    ['', false],
    ['[192.0.2.1]', false],
    ['[IPv6:::1]', false],
  ];
  const matches = localDomainMatcher(local);
  for (const [d, expected] of cases) {
    assert.equal(isLocalDomain(d, local), expected, d);
    assert.equal(matches(d), expected, d);
  }
  assert.equal(isLocalDomain('[192.0.2.1]', { domain: '[192.0.2.1]', virtual: [] }), false);
});

test('canonicalDomain lower-cases, converts IDN and validates LDH labels', () => {
  assert.equal(canonicalDomain('Mail.Example.COM'), 'mail.example.com');
  assert.equal(canonicalDomain('bücher.example'), 'xn--bcher-kva.example');
  assert.equal(canonicalDomain('example.com.'), null);
  assert.equal(canonicalDomain('a_b.example'), null);
  assert.equal(canonicalDomain('ü%2e.example'), null);
});

test('parseMailbox reads script addresses, with "" and "<>" as the null sender', () => {
  assert.equal(parseMailbox('John@Example.NET')?.domain, 'example.net');
  assert.equal(parseMailbox('<john@example.net>')?.local, 'john');
  assert.equal(parseMailbox('')?.isNull, true);
  assert.equal(parseMailbox('<>')?.isNull, true);
  assert.equal(parseMailbox('postmaster'), null);
  assert.equal(parseMailbox('a%b@example.net')?.local, 'a%b');
  assert.equal(parseMailbox('jörg@bücher.example')?.domain, 'xn--bcher-kva.example');
  assert.equal(parseMailbox('not an address'), null);
});

test('normalizeIp is re-exported for the SMTP front', () => {
  assert.equal(normalizeIp('::ffff:203.0.113.9'), '203.0.113.9');
});
