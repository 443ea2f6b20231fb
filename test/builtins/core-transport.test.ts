import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { coreBuiltins, parseForwardTarget } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import { addressText, type Transport } from '../../src/mail/types.js';
import { fqdn, ip4, ip6 } from '../../src/vsl/values/objects.js';
import type { Value } from '../../src/vsl/values/value.js';
import { rcptCall, throwsVsl } from '../helpers/host-call.js';

function run(c: HostCall, name: string, ...args: Value[]): Value {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return b.fn(c, args) as Value;
}

/** `rcpt => transport` for every transport effect, in order. */
function transports(c: HostCall): Array<[string, Transport]> {
  return c.effects.list().flatMap((e) => (e.kind === 'transport' ? [[addressText(e.rcpt), e.transport] as [string, Transport]] : []));
}

describe('transport:: for one recipient', () => {
  test('deliver, maildir, mbox and disable_delivery set the transport of that recipient', () => {
    const c = rcptCall();
    run(c, 'transport::deliver', 'a@example.org');
    run(c, 'transport::maildir', 'b@example.org');
    run(c, 'transport::mbox', 'c@example.org');
    run(c, 'transport::disable_delivery', 'a@example.org');
    assert.deepEqual(transports(c), [
      ['a@example.org', { kind: 'mx' }],
      ['b@example.org', { kind: 'maildir' }],
      ['c@example.org', { kind: 'mbox' }],
      ['a@example.org', { kind: 'none' }],
    ]);
    assert.ok(c.logs.some((l) => l.level === 'info' && /delivery disabled/.test(String(l.msg))), 'disabling is logged');
  });

  test('forward validates and stores the target', () => {
    const c = rcptCall();
    run(c, 'transport::forward', 'c@example.org', 'smtp://relay.example.net:2525?tls=required');
    run(c, 'transport::forward', 'a@example.org', ip4('192.0.2.25'));
    assert.deepEqual(transports(c), [
      ['c@example.org', { kind: 'forward', target: 'smtp://relay.example.net:2525?tls=required' }],
      ['a@example.org', { kind: 'forward', target: '192.0.2.25' }],
    ]);
  });

  test('a recipient that is not in the envelope is an error', () => {
    const c = rcptCall();
    throwsVsl(() => run(c, 'transport::deliver', 'stranger@example.org'), /^transport::deliver: stranger@example\.org is not a recipient/);
    run(c, 'envelop::rm_rcpt', 'b@example.org');
    throwsVsl(() => run(c, 'transport::mbox', 'b@example.org'), /is not a recipient/);
    run(c, 'envelop::add_rcpt', 'added@example.org');
    run(c, 'transport::maildir', 'added@example.org');
    assert.deepEqual(transports(c), [['added@example.org', { kind: 'maildir' }]]);
  });

  test('a bad forward target fails the call and records nothing', () => {
    const c = rcptCall();
    for (const bad of ['', 'smtp://', 'ftp://relay.example', 'relay.example:99999', 'bad host!', 'smtps://relay.example?tls=none', 'smtp://relay.example?tls=maybe', 'smtp://relay.example/path']) {
      throwsVsl(() => run(c, 'transport::forward', 'a@example.org', bad), /^transport::forward: /);
    }
    throwsVsl(() => run(c, 'transport::forward', 'a@example.org', 25n), /forward target must be/);
    assert.deepEqual(transports(c), []);
  });
});

describe('transport:: *_all', () => {
  test('covers the recipients present at the call: accepted, current, added; not removed ones', () => {
    const c = rcptCall();
    run(c, 'envelop::rm_rcpt', 'a@example.org');
    run(c, 'envelop::add_rcpt', 'added@example.org');
    run(c, 'transport::forward_all', 'relay.example.net:587');
    assert.deepEqual(transports(c), [
      ['b@example.org', { kind: 'forward', target: 'relay.example.net:587' }],
      ['c@example.org', { kind: 'forward', target: 'relay.example.net:587' }],
      ['added@example.org', { kind: 'forward', target: 'relay.example.net:587' }],
    ]);
  });

  test('deliver_all, maildir_all, mbox_all and disable_delivery_all set one transport per recipient', () => {
    for (const [name, kind] of [
      ['transport::deliver_all', 'mx'],
      ['transport::maildir_all', 'maildir'],
      ['transport::mbox_all', 'mbox'],
      ['transport::disable_delivery_all', 'none'],
    ] as const) {
      const c = rcptCall();
      run(c, name);
      assert.deepEqual(transports(c), ['a', 'b', 'c'].map((l) => [`${l}@example.org`, { kind }]), name);
    }
  });

  test('every transport built-in is declared from rcpt', () => {
    const names = coreBuiltins.filter((b) => b.name.startsWith('transport::'));
    assert.equal(names.length, 12);
    for (const b of names) assert.equal(b.from, 'rcpt', b.name);
  });
});

describe('parseForwardTarget', () => {
  test('accepts the forms of SPEC §7.6 with their defaults', () => {
    assert.deepEqual(parseForwardTarget('relay.example.net'), { host: 'relay.example.net', port: 25, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget('Relay.Example.NET:587'), { host: 'relay.example.net', port: 587, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget('192.0.2.1'), { host: '192.0.2.1', port: 25, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget('[2001:db8::1]:2525'), { host: '2001:db8::1', port: 2525, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget(ip6('2001:db8::1')), { host: '2001:db8::1', port: 25, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget(fqdn('relay.example.net')), { host: 'relay.example.net', port: 25, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget('smtp://relay.example.net'), { host: 'relay.example.net', port: 25, tls: 'opportunistic', auth: null });
    assert.deepEqual(parseForwardTarget('smtp://u%40example.org:p%3Ass@relay.example.net:2525?tls=none'), {
      host: 'relay.example.net',
      port: 2525,
      tls: 'none',
      auth: { user: 'u@example.org', pass: 'p:ss' },
    });
    assert.deepEqual(parseForwardTarget('smtp://relay.example.net?tls=tunnel'), { host: 'relay.example.net', port: 465, tls: 'tunnel', auth: null });
    assert.deepEqual(parseForwardTarget('smtps://relay.example.net'), { host: 'relay.example.net', port: 465, tls: 'tunnel', auth: null });
    assert.deepEqual(parseForwardTarget('smtps://relay.example.net:4650'), { host: 'relay.example.net', port: 4650, tls: 'tunnel', auth: null });
  });

  test('refuses anything else with a message naming the target', () => {
    for (const bad of ['', 'http://relay.example', 'relay.example:0', 'relay..example', '[not-an-ip]:25', 'smtp://relay.example?tls=required&x=1']) {
      assert.throws(() => parseForwardTarget(bad), /invalid forward target|forward target/, bad);
    }
  });
});
