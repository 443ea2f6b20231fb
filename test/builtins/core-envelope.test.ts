import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { coreBuiltins } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import { addressText, type StageEffect } from '../../src/mail/types.js';
import { address } from '../../src/vsl/values/objects.js';
import type { Value } from '../../src/vsl/values/value.js';
import { makeHostCall, rcptCall, throwsVsl } from '../helpers/host-call.js';

function run(c: HostCall, name: string, ...args: Value[]): Value {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return b.fn(c, args) as Value;
}

/** Effects with addresses shown as text, for readable comparisons. */
function shown(effects: readonly StageEffect[]): string[] {
  return effects.map((e) => {
    switch (e.kind) {
      case 'mail_from':
      case 'add_rcpt':
      case 'rm_rcpt':
      case 'msg_from':
        return `${e.kind} ${addressText(e.address)}`;
      case 'rw_rcpt':
        return `rw_rcpt ${addressText(e.from)} -> ${addressText(e.to)}`;
      default:
        return e.kind;
    }
  });
}

describe('envelop::rw_mail_from', () => {
  test('records the new sender, canonical (domain lower-cased)', () => {
    const c = makeHostCall({ stage: 'mail' });
    run(c, 'envelop::rw_mail_from', 'Bounce@Lists.Example.ORG');
    const e = c.effects.list()[0]!;
    assert.equal(e.kind, 'mail_from');
    assert.equal(e.kind === 'mail_from' && addressText(e.address), 'Bounce@lists.example.org');
  });

  test('accepts the null sender and address objects; refuses junk', () => {
    const c = makeHostCall({ stage: 'mail' });
    run(c, 'envelop::rw_mail_from', '');
    run(c, 'envelop::rw_mail_from', address('x@example.net'));
    assert.deepEqual(shown(c.effects.list()), ['mail_from ', 'mail_from x@example.net']);
    throwsVsl(() => run(c, 'envelop::rw_mail_from', 'x@@y'), /^envelop::rw_mail_from: invalid address/);
    throwsVsl(() => run(c, 'envelop::rw_mail_from', 1n), /must be an address or a string/);
  });

  test('without a transaction it is an error', () => {
    const c = makeHostCall({ stage: 'helo', txn: null });
    throwsVsl(() => run(c, 'envelop::rw_mail_from', 'a@b.test'), /no transaction/);
  });
});

describe('envelop::add_rcpt and bcc', () => {
  test('record a new recipient; one already in the envelope is ignored', () => {
    const c = rcptCall();
    run(c, 'envelop::add_rcpt', 'archive@example.org');
    run(c, 'envelop::bcc', 'audit@example.org');
    run(c, 'envelop::add_rcpt', 'a@example.org'); // accepted earlier
    run(c, 'envelop::bcc', 'c@example.org'); // under evaluation
    run(c, 'envelop::add_rcpt', 'archive@EXAMPLE.ORG'); // added just above (domains compare case-insensitively)
    assert.deepEqual(shown(c.effects.list()), ['add_rcpt archive@example.org', 'add_rcpt audit@example.org']);
  });

  test('a recipient with source-routing characters or no domain is refused', () => {
    const c = makeHostCall({ stage: 'mail' });
    throwsVsl(() => run(c, 'envelop::add_rcpt', 'victim%other.test@example.org'), /^envelop::add_rcpt: invalid recipient/);
    throwsVsl(() => run(c, 'envelop::add_rcpt', 'user!host@example.org'), /invalid recipient/);
    throwsVsl(() => run(c, 'envelop::bcc', 'nodomain'), /invalid recipient/);
    throwsVsl(() => run(c, 'envelop::bcc', ''), /invalid recipient/);
    assert.deepEqual(c.effects.list(), []);
  });

  test('a bare postmaster means postmaster@server.domain', () => {
    const c = makeHostCall({ stage: 'mail', configure: (cfg) => { cfg.server.domain = 'example.org'; } });
    run(c, 'envelop::add_rcpt', 'postmaster');
    assert.deepEqual(shown(c.effects.list()), ['add_rcpt postmaster@example.org']);
  });
});

describe('envelop::rw_rcpt and rm_rcpt', () => {
  test('rw_rcpt replaces a recipient of the current envelope', () => {
    const c = rcptCall();
    run(c, 'envelop::rw_rcpt', 'c@example.org', 'c.user@example.org');
    run(c, 'envelop::rw_rcpt', address('a@example.org'), 'alias@example.net');
    assert.deepEqual(shown(c.effects.list()), ['rw_rcpt c@example.org -> c.user@example.org', 'rw_rcpt a@example.org -> alias@example.net']);
  });

  test('rw_rcpt of an address not in the envelope is an error', () => {
    const c = rcptCall();
    throwsVsl(() => run(c, 'envelop::rw_rcpt', 'nobody@example.org', 'x@example.org'), /^envelop::rw_rcpt: nobody@example\.org is not a recipient/);
    // Rewritten away earlier in the evaluation: no longer there.
    run(c, 'envelop::rw_rcpt', 'a@example.org', 'z@example.org');
    throwsVsl(() => run(c, 'envelop::rw_rcpt', 'a@example.org', 'y@example.org'), /is not a recipient/);
    run(c, 'envelop::rw_rcpt', 'z@example.org', 'y@example.org');
  });

  test('rm_rcpt returns whether the recipient was there and records only a real removal', () => {
    const c = rcptCall();
    assert.equal(run(c, 'envelop::rm_rcpt', 'b@example.org'), true);
    assert.equal(run(c, 'envelop::rm_rcpt', 'b@example.org'), false);
    assert.equal(run(c, 'envelop::rm_rcpt', 'unknown@example.org'), false);
    run(c, 'envelop::add_rcpt', 'new@example.org');
    assert.equal(run(c, 'envelop::rm_rcpt', 'new@example.org'), true);
    assert.deepEqual(shown(c.effects.list()), ['rm_rcpt b@example.org', 'add_rcpt new@example.org', 'rm_rcpt new@example.org']);
    throwsVsl(() => run(c, 'envelop::rw_rcpt', 'b@example.org', 'x@example.org'), /is not a recipient/);
  });
});

describe('v1 rewrite_mail_from', () => {
  test('rewrites the envelope sender and the From: header', () => {
    const c = makeHostCall({ stage: 'mail' });
    run(c, 'rewrite_mail_from', 'news@example.org');
    assert.deepEqual(shown(c.effects.list()), ['mail_from news@example.org', 'msg_from news@example.org']);
  });

  test('the null sender cannot be written into From:', () => {
    const c = makeHostCall({ stage: 'mail' });
    throwsVsl(() => run(c, 'rewrite_mail_from', '<>'), /^rewrite_mail_from: .*null sender/);
  });
});

describe('declarations', () => {
  test('stages follow SPEC §7.4', () => {
    const from = (n: string) => coreBuiltins.find((b) => b.name === n)!.from;
    assert.equal(from('envelop::rw_mail_from'), 'mail');
    assert.equal(from('envelop::add_rcpt'), 'mail');
    assert.equal(from('envelop::bcc'), 'mail');
    assert.equal(from('envelop::rw_rcpt'), 'rcpt');
    assert.equal(from('envelop::rm_rcpt'), 'rcpt');
    assert.equal(from('rewrite_mail_from'), 'mail');
  });
});
