import { test } from 'node:test';
import assert from 'node:assert/strict';
import { installNodePlatform } from '../../src/vsl/host-platform.js';
import { code } from '../../src/vsl/values/code.js';
import { Address, Fqdn, Regex, address, fqdn, identifier, ip4, ip6, objectFromWire, rg4, rg6, regex, textOf, toWire } from '../../src/vsl/values/objects.js';
import { makeStatus } from '../../src/vsl/values/status.js';
import { VChar, VFn, VObject, VRange, VslError, type Value } from '../../src/vsl/values/value.js';

installNodePlatform();

function throwsVsl(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof VslError, `expected VslError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

/** `==` as the operator sees it: either side may be the object (SPEC §6.3). */
function eq(a: Value, b: Value): boolean {
  const ab = a instanceof VObject ? a.equals(b) : (b as VObject).equals(a);
  const ba = b instanceof VObject ? b.equals(a) : (a as VObject).equals(b);
  assert.equal(ab, ba, `equality of ${String(a)} and ${String(b)} is not symmetric`);
  return ab;
}

// One sample of each type, and primitives, for the "every pairing" tables.
const samples = (): Record<string, VObject> => ({
  ip4: ip4('192.168.1.5'),
  ip6: ip6('2001:db8::1'),
  rg4: rg4('192.168.1.0/24'),
  rg6: rg6('2001:db8::/32'),
  address: address('john@example.org'),
  fqdn: fqdn('example.org'),
  identifier: identifier('john'),
  code: code('550 5.7.1 go away'),
  status: makeStatus('deny'),
});
const primitives: Value[] = [42n, 4.2, true, undefined, new VChar('x'), [1n], new Map([['k', 1n]]), new VFn('f', () => 0, 0), new VRange(0n, 3n, false)];

// ---------------------------------------------------------------- constructors

test('constructors report the SPEC §2.2 type names and canonical text', () => {
  const cases: Array<[VObject, string, string]> = [
    [ip4('10.0.0.1'), 'ip4', '10.0.0.1'],
    [ip6('2001:0DB8:0:0::1'), 'ip6', '2001:db8::1'],
    [rg4('192.168.1.0/24'), 'rg4', '192.168.1.0/24'],
    [rg6('2001:db8::/32'), 'rg6', '2001:db8::/32'],
    [address('John@Example.ORG'), 'address', 'John@example.org'],
    [fqdn('Mail.Example.ORG.'), 'fqdn', 'mail.example.org'],
    [fqdn('bücher.example'), 'fqdn', 'xn--bcher-kva.example'],
    [regex('(?i)^spam'), 'regex', '(?i)^spam'],
    [identifier('john.doe'), 'identifier', 'john.doe'],
  ];
  for (const [o, type, text] of cases) {
    assert.equal(o.type, type);
    assert.equal(o.text(), text);
  }
});

test('rg4 and rg6 clear host bits and expose that they did', () => {
  const r = rg4('192.168.1.77/24');
  assert.equal(r.text(), '192.168.1.0/24');
  assert.equal(r.hostBitsSet, true);
  assert.equal(rg4('192.168.1.0/24').hostBitsSet, false);
  assert.equal(rg6('2001:db8::1/32').text(), '2001:db8::/32');
  assert.equal(rg6('2001:db8::1/32').hostBitsSet, true);
});

test('invalid constructor input is an error naming the constructor', () => {
  throwsVsl(() => ip4('300.1.1.1'), "ip4: invalid IPv4 address '300.1.1.1'");
  throwsVsl(() => ip4('::1'), "ip4: invalid IPv4 address '::1'");
  throwsVsl(() => ip4(5n), 'ip4: invalid IPv4 address (a value of type i64)');
  throwsVsl(() => ip6('1.2.3.4'), "ip6: invalid IPv6 address '1.2.3.4'");
  throwsVsl(() => ip6('fe80::1%eth0'), "ip6: invalid IPv6 address 'fe80::1%eth0'");
  throwsVsl(() => rg4('300.1.1.0/24'), "rg4: invalid network '300.1.1.0/24'");
  throwsVsl(() => rg4('10.0.0.0'), "rg4: invalid network '10.0.0.0'");
  throwsVsl(() => rg4('2001:db8::/32'), "rg4: invalid network '2001:db8::/32'");
  throwsVsl(() => rg6('10.0.0.0/8'), "rg6: invalid network '10.0.0.0/8'");
  throwsVsl(() => address('no-at-sign'), "address: invalid address 'no-at-sign'");
  throwsVsl(() => address('a@b@c.example'), "address: invalid address 'a@b@c.example'");
  throwsVsl(() => address('x', 'new_address'), "new_address: invalid address 'x'");
  throwsVsl(() => fqdn('exa_mple.org'), "fqdn: invalid domain name 'exa_mple.org'");
  throwsVsl(() => fqdn('a..b'), "fqdn: invalid domain name 'a..b'");
  throwsVsl(() => fqdn(`${'a'.repeat(64)}.example`), `fqdn: invalid domain name '${'a'.repeat(64)}.example'`);
  throwsVsl(() => fqdn(`${'abc.'.repeat(63)}ab`), `fqdn: invalid domain name '${'abc.'.repeat(63)}ab'`);
  assert.equal(fqdn(`${'abc.'.repeat(62)}abc`).text().length, 251);
  throwsVsl(() => fqdn('1.2.3.4'), "fqdn: invalid domain name '1.2.3.4'");
  throwsVsl(() => identifier(''), "identifier: invalid identifier ''");
  throwsVsl(() => identifier('a b'), "identifier: invalid identifier 'a b'");
  throwsVsl(() => identifier('a@b'), "identifier: invalid identifier 'a@b'");
  throwsVsl(() => identifier('a\u00a0b'), "identifier: invalid identifier 'a\u00a0b'");
  assert.throws(() => regex('('), (e: unknown) => e instanceof VslError && e.message.startsWith("regex: invalid pattern '(':"));
  // Unicode mode: an escape that is lax elsewhere is an error.
  assert.throws(() => regex('\\q'), (e: unknown) => e instanceof VslError && e.message.startsWith('regex: invalid pattern'));
});

test('constructors accept the text of objects where a string is expected', () => {
  const a = address('john@example.org');
  assert.equal(fqdn(a.getProp('domain')).text(), 'example.org');
  assert.equal(identifier(a.getProp('local_part')).text(), 'john');
  assert.equal(ip4(ip4('1.2.3.4')).text(), '1.2.3.4');
});

// ---------------------------------------------------------------- equality (SPEC §6.3)

test('address == string when the string parses as the same address', () => {
  const a = address('John.Doe@Example.ORG');
  const cases: Array<[string, boolean]> = [
    ['John.Doe@example.org', true],
    ['John.Doe@EXAMPLE.org', true],
    ['<John.Doe@example.org>', true],
    ['"John.Doe"@example.org', true],
    ['john.doe@example.org', false], // local part is exact
    ['John.Doe@example.org.', false],
    ['John.Doe@example.net', false],
    ['John.Doe', false],
    ['', false],
    ['not an address', false],
  ];
  for (const [s, expected] of cases) assert.equal(eq(a, s), expected, s);
  assert.ok(eq(address('u@bücher.example'), 'u@xn--bcher-kva.example'));
  assert.ok(eq(address('u@[IPv6:2001:db8::1]'), 'u@[IPv6:2001:DB8:0::1]'));
});

test('the null sender equals "", "<>" and "null", and only those', () => {
  const n = address('<>');
  assert.equal(n.isNull, true);
  assert.equal(n.text(), '');
  for (const s of ['', '<>', 'null']) assert.ok(eq(n, s), JSON.stringify(s));
  for (const s of ['NULL', ' ', 'null@example.org', '<null>']) assert.ok(!eq(n, s), JSON.stringify(s));
  assert.ok(eq(n, address('')));
  assert.ok(!eq(n, address('a@example.org')));
  assert.ok(!eq(address('null@example.org'), 'null'));
});

test('fqdn == string case-insensitively, trailing dot ignored', () => {
  const f = fqdn('Example.ORG');
  for (const [s, expected] of [
    ['example.org', true],
    ['EXAMPLE.org.', true],
    ['example.org..', false],
    ['sub.example.org', false],
    ['evilexample.org', false],
    ['', false],
    ['exa mple.org', false],
  ] as Array<[string, boolean]>) {
    assert.equal(eq(f, s), expected, s);
  }
  assert.ok(eq(fqdn('bücher.example'), 'BÜCHER.example.'));
});

test('ip == string when it is the same IP, a mapped IPv6 equal to its IPv4', () => {
  const cases: Array<[VObject, string, boolean]> = [
    [ip4('192.168.1.5'), '192.168.1.5', true],
    [ip4('192.168.1.5'), '::ffff:192.168.1.5', true],
    [ip4('192.168.1.5'), '::FFFF:c0a8:105', true],
    [ip4('192.168.1.5'), '192.168.1.6', false],
    [ip4('192.168.1.5'), '192.168.001.5', false],
    [ip4('192.168.1.5'), '192.168.1.5/32', false],
    [ip6('2001:db8::1'), '2001:DB8:0:0:0:0:0:1', true],
    [ip6('2001:db8::1'), '2001:db8::2', false],
    [ip6('::ffff:192.168.1.5'), '192.168.1.5', true],
    [ip6('::1'), '127.0.0.1', false],
  ];
  for (const [o, s, expected] of cases) assert.equal(eq(o, s), expected, `${o.text()} == ${s}`);
  assert.ok(eq(ip6('::ffff:192.168.1.5'), ip4('192.168.1.5')), 'mapped ip6 object equals the ip4 object');
  assert.ok(!eq(ip6('::1'), ip4('0.0.0.1')));
});

test('rg == string when it is the same network', () => {
  const cases: Array<[VObject, string, boolean]> = [
    [rg4('192.168.1.0/24'), '192.168.1.0/24', true],
    [rg4('192.168.1.0/24'), '192.168.1.9/24', true],
    [rg4('192.168.1.0/24'), '192.168.1.0/25', false],
    [rg4('192.168.1.0/24'), '192.168.1.0', false],
    [rg4('192.168.1.0/24'), '::ffff:192.168.1.0/120', true],
    [rg6('2001:db8::/32'), '2001:DB8:0::/32', true],
    [rg6('2001:db8::/32'), '2001:db8::/48', false],
  ];
  for (const [o, s, expected] of cases) assert.equal(eq(o, s), expected, `${o.text()} == ${s}`);
});

test('identifier == string when the text is the same', () => {
  assert.ok(eq(identifier('john'), 'john'));
  assert.ok(!eq(identifier('john'), 'John'));
  assert.ok(!eq(identifier('john'), 'john '));
});

test('regex == string or non-regex object means the regex matches its text (unanchored)', () => {
  assert.ok(eq(regex('spam'), 'this is spam mail'));
  assert.ok(!eq(regex('^spam'), 'this is spam mail'));
  assert.ok(!eq(regex('SPAM'), 'spam'));
  assert.ok(eq(regex('(?i)SPAM'), 'a spam'));
  assert.ok(eq(regex('^é.$'), 'é😀'), 'Unicode mode: an astral character is one .');
  assert.ok(eq(address('spammer@bad.example'), regex('@bad\\.example$')));
  assert.ok(!eq(address('user@good.example'), regex('@bad\\.example$')));
  assert.ok(eq(fqdn('mail.bad.example'), regex('\\.bad\\.example$')));
  assert.ok(eq(ip4('10.1.2.3'), regex('^10\\.')));
  assert.ok(eq(rg4('10.0.0.0/8'), regex('/8$')));
  assert.ok(eq(identifier('john'), regex('^jo')));
  assert.ok(eq(code('550 5.7.1 x'), regex('^550')));
  assert.ok(eq(makeStatus('deny'), regex('^deny$')));
  // Same type: same source, not a match.
  assert.ok(eq(regex('a+'), regex('a+')));
  assert.ok(!eq(regex('a+'), regex('(?i)a+')));
  assert.ok(!eq(regex('a'), regex('a+')));
  // Repeated tests give the same answer (no lastIndex state).
  const r = regex('x');
  assert.deepEqual([r.equals('x'), r.equals('x'), r.equals('x')], [true, true, true]);
});

test('same-type objects are equal when their values are equal', () => {
  assert.ok(eq(ip4('1.2.3.4'), ip4('1.2.3.4')));
  assert.ok(!eq(ip4('1.2.3.4'), ip4('1.2.3.5')));
  assert.ok(eq(ip6('::1'), ip6('0::1')));
  assert.ok(eq(rg4('10.0.0.0/8'), rg4('10.9.9.9/8')));
  assert.ok(!eq(rg4('10.0.0.0/8'), rg4('10.0.0.0/9')));
  assert.ok(eq(rg6('2001:db8::/32'), rg6('2001:db8:1::/32')));
  assert.ok(eq(address('a@EXAMPLE.org'), address('<a@example.org>')));
  assert.ok(!eq(address('a@example.org'), address('A@example.org')));
  assert.ok(eq(fqdn('a.example'), fqdn('A.EXAMPLE.')));
  assert.ok(eq(identifier('x'), identifier('x')));
  assert.ok(!eq(identifier('x'), identifier('y')));
});

test('every other pairing is false and never throws', () => {
  const s = samples();
  const names = Object.keys(s);
  for (const a of names) {
    for (const b of names) {
      if (a === b) continue;
      // ip4/ip6 compare as IPs (mapped addresses); the samples are not mapped.
      assert.equal(eq(s[a]!, s[b]!), false, `${a} == ${b}`);
    }
    for (const p of primitives) {
      assert.equal(s[a]!.equals(p), false, `${a} == ${String(p)}`);
    }
    assert.equal(regex('.').equals(42n), false);
    assert.equal(regex('.').equals(undefined), false);
    assert.equal(regex('.').equals(new VChar('x')), false);
  }
  // Strings that do not parse never throw either.
  for (const a of names) {
    for (const str of ['', 'garbage', '\u0000', '[', '@', '::', '1.2.3.4/99', 'ü'.repeat(300)]) {
      assert.doesNotThrow(() => s[a]!.equals(str), `${a} == ${JSON.stringify(str)}`);
    }
  }
});

// ---------------------------------------------------------------- membership (SPEC §6.4)

test('a network contains IPs, mapped IPv6, IP strings and narrower networks', () => {
  const net = rg4('192.168.1.0/24');
  const cases: Array<[Value, boolean]> = [
    [ip4('192.168.1.5'), true],
    [ip4('192.168.2.5'), false],
    [ip6('::ffff:192.168.1.5'), true],
    [ip6('::ffff:192.168.2.5'), false],
    [ip6('2001:db8::1'), false],
    ['192.168.1.5', true],
    ['::ffff:192.168.1.5', true],
    ['192.168.2.5', false],
    ['192.168.1.0/25', true],
    ['192.168.0.0/16', false],
    [rg4('192.168.1.128/25'), true],
    [rg4('192.168.0.0/16'), false],
    [rg6('::ffff:192.168.1.0/120'), true],
    ['not an ip', false],
    [42n, false],
  ];
  for (const [x, expected] of cases) assert.equal(net.contains(x), expected, `${textOf(x) ?? String(x)} in ${net.text()}`);
  const net6 = rg6('2001:db8::/32');
  assert.ok(net6.contains(ip6('2001:db8:ffff::1')));
  assert.ok(net6.contains('2001:DB8::42'));
  assert.ok(!net6.contains(ip4('192.168.1.5')));
  assert.ok(net6.contains(rg6('2001:db8:1::/48')));
  assert.ok(!net6.contains(rg6('2001::/16')));
  assert.ok(rg6('::ffff:10.0.0.0/104').contains(ip4('10.2.3.4')));
});

test('a regex contains x when the text of x matches', () => {
  const r = regex('(?i)^postmaster@');
  assert.ok(r.contains('PostMaster@example.org'));
  assert.ok(r.contains(address('postmaster@example.org')));
  assert.ok(!r.contains(address('john@example.org')));
  assert.ok(regex('^x$').contains(new VChar('x')));
  assert.ok(regex('example').contains(fqdn('example.org')));
  throwsVsl(() => r.contains(42n), 'regex: cannot match a value of type i64');
});

test('an address contains an identifier equal to its local part, an fqdn equal to its domain, or a string equal to either', () => {
  const a = address('john@example.org');
  const cases: Array<[Value, boolean]> = [
    [identifier('john'), true],
    [identifier('John'), false],
    [fqdn('example.org'), true],
    [fqdn('EXAMPLE.org'), true],
    [fqdn('sub.example.org'), false],
    ['john', true],
    ['example.org', true],
    ['Example.Org', true],
    ['JOHN', false],
    ['john@example.org', false],
    ['org', false],
    [ip4('1.2.3.4'), false],
  ];
  for (const [x, expected] of cases) assert.equal(a.contains(x), expected, `${textOf(x) ?? String(x)} in ${a.text()}`);
  const lit = address('u@[192.0.2.1]');
  assert.ok(lit.contains('[192.0.2.1]'));
  assert.ok(!lit.contains(fqdn('example.org')));
  assert.ok(!address('<>').contains(''));
});

test('types that are not containers refuse membership tests', () => {
  const s = samples();
  for (const t of ['ip4', 'ip6', 'fqdn', 'identifier', 'code', 'status']) {
    throwsVsl(() => s[t]!.contains('x'), `cannot test membership in ${t}`);
  }
});

// ---------------------------------------------------------------- address properties (SPEC §6.5)

test('address properties give the local part, the domain as an fqdn, and null-ness', () => {
  const a = address('John.Doe@Example.ORG');
  assert.equal(a.getProp('local_part'), 'John.Doe');
  const d = a.getProp('domain');
  assert.ok(d instanceof Fqdn);
  assert.equal(d.text(), 'example.org');
  assert.equal(a.getProp('is_null'), false);

  const lit = address('u@[IPv6:2001:db8::1]');
  assert.equal(lit.getProp('domain'), '[IPv6:2001:db8::1]', 'a literal domain is a string');

  const n = address('');
  assert.equal(n.getProp('local_part'), '');
  assert.equal(n.getProp('domain'), '');
  assert.equal(n.getProp('is_null'), true);
  assert.equal(n.text(), '');

  assert.equal(address('"john doe"@example.org').getProp('local_part'), '"john doe"');
  throwsVsl(() => a.getProp('user'), "address has no property 'user'");
});

// ---------------------------------------------------------------- text and wire

test('textOf gives the text of strings, chars and objects, and nothing else', () => {
  assert.equal(textOf('s'), 's');
  assert.equal(textOf(new VChar('c')), 'c');
  assert.equal(textOf(address('a@example.org')), 'a@example.org');
  assert.equal(textOf(fqdn('example.org')), 'example.org');
  assert.equal(textOf(identifier('id')), 'id');
  assert.equal(textOf(ip6('::1')), '::1');
  assert.equal(textOf(code('550 5.7.1 x')), '550 5.7.1 x');
  assert.equal(textOf(42n), undefined);
  assert.equal(textOf(undefined), undefined);
  assert.equal(textOf(['a']), undefined);
});

test('objects cross the sandbox boundary as {tag, text} and come back equal', () => {
  const all: VObject[] = [
    ...Object.values(samples()),
    ip6('::ffff:1.2.3.4'),
    address('<>'),
    address('"a b"@[192.0.2.1]'),
    address('jörg@bücher.example'),
    regex('(?i)^a.b$'),
    makeStatus('quarantine', 'q1'),
    makeStatus('deny', '550 5.7.1 x\ny'),
    code(550n, '5.7.1 text that looks enhanced'),
  ];
  for (const o of all) {
    const w = toWire(o);
    assert.ok(w, `${o.type} has a wire form`);
    assert.equal(w.tag, o.type);
    const back = objectFromWire(w.tag, w.text);
    assert.equal(back.type, o.type);
    assert.equal(back.text(), o.text());
    if (o instanceof Regex) assert.ok(back.equals(o));
    else if (o.type === 'status') assert.equal((back as typeof o).debug(), o.debug());
    else assert.ok(back.equals(o), `${o.type} ${o.text()}`);
  }
  assert.equal(toWire(address('<>'))!.text, '');
  assert.equal(toWire(address('u@[192.0.2.1]'))!.text, 'u@[192.0.2.1]');
  assert.ok(objectFromWire('address', '') instanceof Address);
  throwsVsl(() => objectFromWire('teapot', 'x'), "unknown object type 'teapot'");
  throwsVsl(() => objectFromWire('ip4', 'x'), "ip4: invalid IPv4 address 'x'");
});
