import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContainsIp, cidrInside, formatCidr, formatIPv4, formatIPv6, isLoopback, normalizeIp, parseCidr, parseCidr4, parseCidr6, parseIp, parseIPv4, parseIPv6, reversedName, reversedV4, reversedV6, sameCidr, sameIp } from '../../src/vsl/values/net.js';

function ip(s: string) {
  const v = parseIp(s);
  assert.ok(v, `${s} should parse`);
  return v;
}

function cidr(s: string) {
  const v = parseCidr(s);
  assert.ok(v, `${s} should parse`);
  return v;
}

test('dotted quads parse to their 32-bit value and print back', () => {
  const cases: Array<[string, number]> = [
    ['0.0.0.0', 0],
    ['1.2.3.4', 0x01020304],
    ['192.168.1.5', 0xc0a80105],
    ['255.255.255.255', 0xffffffff],
  ];
  for (const [s, n] of cases) {
    assert.equal(parseIPv4(s), n, s);
    assert.equal(formatIPv4(n), s);
  }
});

test('malformed IPv4 text is refused, leading zeros included', () => {
  for (const s of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.04', '1..2.3', '1.2.3.4 ', ' 1.2.3.4', '0x7f.0.0.1', '1.2.3.-4', 'a.b.c.d', '1.2.3.4/32', '1234.1.1.1']) {
    assert.equal(parseIPv4(s), null, JSON.stringify(s));
  }
});

test('IPv6 text is printed in RFC 5952 canonical form', () => {
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1::', '1::'],
    ['2001:0db8::0001', '2001:db8::1'],
    ['2001:DB8::ABCD', '2001:db8::abcd'],
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    // a single zero group is not compressed
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:db8::1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    // the longest run wins, then the first of equal runs
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    // embedded IPv4 input; mixed output only for IPv4-mapped addresses
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::FFFF:C000:0201', '::ffff:192.0.2.1'],
    ['0:0:0:0:0:ffff:c0a8:105', '::ffff:192.168.1.5'],
  ];
  for (const [input, canonical] of cases) {
    const n = parseIPv6(input);
    assert.notEqual(n, null, input);
    assert.equal(formatIPv6(n!), canonical, input);
  }
});

test('malformed IPv6 text, zone ids and brackets are refused', () => {
  for (const s of [
    '',
    ':',
    ':::',
    '1::2::3',
    ':1::',
    '1::2:',
    '12345::',
    'g::1',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    'fe80::1%eth0',
    '[::1]',
    '::ffff:1.2.3',
    '::ffff:1.2.3.04',
    '1.2.3.4::',
    '::1.2.3.4:1',
    ' ::1',
  ]) {
    assert.equal(parseIPv6(s), null, JSON.stringify(s));
  }
});

test('a mapped IPv6 address is the same IP as its IPv4', () => {
  assert.ok(sameIp(ip('::ffff:192.168.1.5'), ip('192.168.1.5')));
  assert.ok(sameIp(ip('::ffff:c0a8:105'), ip('192.168.1.5')));
  assert.ok(!sameIp(ip('::192.168.1.5'), ip('192.168.1.5')), 'IPv4-compatible is not mapped');
  assert.ok(!sameIp(ip('::ffff:192.168.1.6'), ip('192.168.1.5')));
  assert.ok(sameIp(ip('2001:db8::1'), ip('2001:DB8:0::0:1')));
});

test('CIDR networks clear host bits and flag that they did', () => {
  const cases: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.0.0.0/8', false],
    ['10.1.2.3/8', '10.0.0.0/8', true],
    ['192.168.1.5/24', '192.168.1.0/24', true],
    ['192.168.1.5/32', '192.168.1.5/32', false],
    ['255.255.255.255/0', '0.0.0.0/0', true],
    ['0.0.0.0/0', '0.0.0.0/0', false],
    ['203.0.113.129/25', '203.0.113.128/25', true],
    ['2001:db8::/32', '2001:db8::/32', false],
    ['2001:db8::1/32', '2001:db8::/32', true],
    ['2001:DB8:1:2:3:4:5:6/64', '2001:db8:1:2::/64', true],
    ['::1/128', '::1/128', false],
    ['::/0', '::/0', false],
  ];
  for (const [input, text, hostBits] of cases) {
    const c = cidr(input);
    assert.equal(formatCidr(c), text, input);
    assert.equal(c.hostBitsSet, hostBits, input);
  }
});

test('malformed networks are refused', () => {
  for (const s of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/33', '10.0.0.0/08', '10.0.0.0/-1', '300.1.1.0/24', '10.0.0.0/8/8', '10.0.0.0 /8', '/8']) {
    assert.equal(parseCidr4(s), null, s);
  }
  for (const s of ['2001:db8::', '2001:db8::/129', '2001:db8::/032', 'fe80::%1/64', '10.0.0.0/8']) {
    assert.equal(parseCidr6(s), null, s);
  }
});

test('an IP is in a network exactly when its prefix matches', () => {
  const cases: Array<[string, string, boolean]> = [
    ['192.168.1.0/24', '192.168.1.0', true],
    ['192.168.1.0/24', '192.168.1.255', true],
    ['192.168.1.0/24', '192.168.2.1', false],
    ['192.168.1.0/24', '::ffff:192.168.1.5', true],
    ['192.168.1.0/24', '::ffff:192.168.2.5', false],
    ['192.168.1.0/24', '::192.168.1.5', false],
    ['192.168.1.0/24', '2001:db8::1', false],
    ['0.0.0.0/0', '255.255.255.255', true],
    ['0.0.0.0/0', '::1', false],
    ['128.0.0.0/1', '200.0.0.1', true],
    ['128.0.0.0/1', '100.0.0.1', false],
    ['10.0.0.5/32', '10.0.0.5', true],
    ['10.0.0.5/32', '10.0.0.4', false],
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['2001:db8::/32', '10.0.0.1', false],
    ['::ffff:10.0.0.0/104', '10.1.2.3', true],
    ['::ffff:10.0.0.0/104', '11.1.2.3', false],
    ['::/0', '10.0.0.1', true],
  ];
  for (const [net, addr, inside] of cases) {
    assert.equal(cidrContainsIp(cidr(net), ip(addr)), inside, `${addr} in ${net}`);
  }
});

test('a network lies inside another when it is equal or narrower', () => {
  const cases: Array<[string, string, boolean]> = [
    ['192.168.1.0/24', '192.168.0.0/16', true],
    ['192.168.0.0/16', '192.168.1.0/24', false],
    ['192.168.1.0/24', '192.168.1.0/24', true],
    ['192.169.1.0/24', '192.168.0.0/16', false],
    ['10.0.0.0/8', '0.0.0.0/0', true],
    ['2001:db8:1::/48', '2001:db8::/32', true],
    ['2001:db8::/32', '2001:db8:1::/48', false],
    ['::ffff:192.168.1.0/120', '192.168.0.0/16', true],
    ['192.168.1.0/24', '::ffff:192.168.0.0/112', true],
    ['192.168.1.0/24', '::ffff:0:0/96', true],
    ['192.168.1.0/24', '2001:db8::/32', false],
    ['2001:db8::/32', '0.0.0.0/0', false],
  ];
  for (const [inner, outer, inside] of cases) {
    assert.equal(cidrInside(cidr(inner), cidr(outer)), inside, `${inner} inside ${outer}`);
  }
  assert.ok(sameCidr(cidr('::ffff:10.0.0.0/104'), cidr('10.0.0.0/8')));
  assert.ok(!sameCidr(cidr('10.0.0.0/8'), cidr('10.0.0.0/16')));
});

test('reverse names give reversed octets for IPv4 and mapped IPv6, 32 nibbles for IPv6', () => {
  assert.equal(reversedV4(parseIPv4('192.0.2.1')!), '1.2.0.192');
  assert.equal(reversedName('1.2.3.4'), '4.3.2.1');
  assert.equal(reversedName('::ffff:1.2.3.4'), '4.3.2.1');
  // RFC 3596 §2.5 example
  assert.equal(
    reversedV6(parseIPv6('4321:0:1:2:3:4:567:89ab')!),
    'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4',
  );
  assert.equal(reversedName('::1'), '1' + '.0'.repeat(31));
  assert.equal(reversedName('not an ip'), null);
});

test('normalizeIp maps IPv4-mapped clients to IPv4 and canonicalises IPv6', () => {
  const cases: Array<[string, string]> = [
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:7f00:1', '127.0.0.1'],
    ['203.0.113.9', '203.0.113.9'],
    ['2001:DB8:0::1', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
  ];
  for (const [input, out] of cases) assert.equal(normalizeIp(input), out, input);
});

test('loopback covers 127.0.0.0/8, ::1 and mapped 127.0.0.0/8', () => {
  for (const s of ['127.0.0.1', '127.255.0.9', '::1', '::ffff:127.0.0.1']) assert.ok(isLoopback(ip(s)), s);
  for (const s of ['128.0.0.1', '10.0.0.1', '::2', '::', '::ffff:10.0.0.1']) assert.ok(!isLoopback(ip(s)), s);
});
