import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { applyHeaderEffects, coreBuiltins, currentHeaders, foldHeader } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import type { StageEffect } from '../../src/mail/types.js';
import { address } from '../../src/vsl/values/objects.js';
import type { Value } from '../../src/vsl/values/value.js';
import { makeHostCall, mailAddress, type HostCallInit, throwsVsl } from '../helpers/host-call.js';

const MESSAGE = [
  'Received: from client.example.test by mx.example.test; Mon, 1 Jan 2024 12:00:00 +0000',
  'From: "Alice Example" <alice@sender.test>',
  'To: Bob <bob@example.org>, carol@example.org',
  'Subject: a subject',
  '  folded onto a second line ',
  'X-Tag: one',
  'x-tag: two',
  '',
  'Body line 1',
  'From: not a header',
  '',
].join('\r\n');

function call(init: HostCallInit = {}) {
  return makeHostCall({ stage: 'preq', message: MESSAGE, ...init });
}

function run(c: HostCall, name: string, ...args: Value[]): Value {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  const r = b.fn(c, args);
  assert.ok(!(r instanceof Promise), `${name} is synchronous`);
  return r as Value;
}

describe('msg:: reads', () => {
  test('has_header and count_header compare names case-insensitively', () => {
    const c = call();
    assert.equal(run(c, 'msg::has_header', 'subject'), true);
    assert.equal(run(c, 'msg::has_header', 'X-Missing'), false);
    assert.equal(run(c, 'msg::count_header', 'X-TAG'), 2n);
    assert.equal(run(c, 'msg::count_header', 'X-Missing'), 0n);
  });

  test('get_header gives the first value unfolded and trimmed, "" when absent', () => {
    const c = call();
    assert.equal(run(c, 'msg::get_header', 'Subject'), 'a subject  folded onto a second line');
    assert.equal(run(c, 'msg::get_header', 'x-tag'), 'one');
    assert.equal(run(c, 'msg::get_header', 'X-Missing'), '');
  });

  test('get_all_headers() lists every field as "Name: value"; get_all_headers(n) the values of n', () => {
    const c = call();
    const all = run(c, 'msg::get_all_headers') as string[];
    assert.equal(all.length, 6);
    assert.equal(all[1], 'From: "Alice Example" <alice@sender.test>');
    assert.equal(all[5], 'x-tag: two');
    assert.deepEqual(run(c, 'msg::get_all_headers', 'X-Tag'), ['one', 'two']);
    assert.deepEqual(run(c, 'msg::get_all_headers', 'X-Missing'), []);
  });

  test('get_header_untouched gives the raw lines, continuation included', () => {
    const c = call();
    assert.deepEqual(run(c, 'msg::get_header_untouched', 'subject'), ['Subject: a subject\r\n  folded onto a second line ']);
  });

  test('mail() and to_string() give the whole message, body included', () => {
    const c = call();
    assert.equal(run(c, 'msg::mail'), MESSAGE);
    assert.equal(run(c, 'msg::to_string'), MESSAGE);
  });

  test('a header name that is not printable ASCII without ":" is an error', () => {
    const c = call();
    for (const bad of ['X Tag', 'X:Tag', '', 'Ünïcode', 'X\tTag']) {
      throwsVsl(() => run(c, 'msg::get_header', bad), /^msg::get_header: invalid header name/);
    }
    throwsVsl(() => run(c, 'msg::has_header', 5n), /^msg::has_header: header name must be a string/);
  });

  test('reads before the message exists are refused', () => {
    const c = makeHostCall({ stage: 'rcpt' });
    throwsVsl(() => run(c, 'msg::get_header', 'Subject'), /no message before the preq stage/);
  });
});

describe('msg:: writes', () => {
  test('each write records its header effect', () => {
    const c = call();
    run(c, 'msg::append_header', 'X-A', 'a');
    run(c, 'msg::prepend_header', 'X-B', '  b  ');
    run(c, 'msg::set_header', 'X-Tag', 'three');
    run(c, 'msg::rename_header', 'X-Tag', 'X-Old-Tag');
    assert.equal(run(c, 'msg::rm_header', 'Subject'), true);
    assert.deepEqual(c.effects.list(), [
      { kind: 'header', op: 'append', name: 'X-A', value: 'a' },
      { kind: 'header', op: 'prepend', name: 'X-B', value: 'b' },
      { kind: 'header', op: 'set', name: 'X-Tag', value: 'three' },
      { kind: 'header', op: 'rename', name: 'X-Tag', newName: 'X-Old-Tag' },
      { kind: 'header', op: 'remove', name: 'Subject' },
    ]);
  });

  test('reads see the writes made earlier in the same evaluation', () => {
    const c = call();
    run(c, 'msg::append_header', 'X-Spam', 'yes');
    assert.equal(run(c, 'msg::get_header', 'x-spam'), 'yes');
    run(c, 'msg::prepend_header', 'X-First', 'first');
    assert.equal((run(c, 'msg::get_all_headers') as string[])[0], 'X-First: first');
    run(c, 'msg::set_header', 'X-Tag', 'replaced');
    assert.deepEqual(run(c, 'msg::get_all_headers', 'x-tag'), ['replaced', 'two']);
    run(c, 'msg::rename_header', 'x-tag', 'X-Label');
    assert.equal(run(c, 'msg::count_header', 'X-Tag'), 0n);
    assert.equal(run(c, 'msg::count_header', 'X-Label'), 2n);
    assert.equal(run(c, 'msg::rm_header', 'X-Label'), true);
    assert.equal(run(c, 'msg::rm_header', 'X-Label'), false);
    assert.equal(run(c, 'msg::has_header', 'X-Label'), false);
    const mail = run(c, 'msg::mail') as string;
    assert.match(mail, /^X-First: first\r\nReceived: /);
    assert.match(mail, /X-Spam: yes\r\n\r\nBody line 1\r\nFrom: not a header\r\n$/);
  });

  test('headers added by other built-ins (effects.addHeader) are seen too', () => {
    const c = call();
    c.effects.addHeader({ name: 'Authentication-Results', value: 'mx.example.test; spf=pass' }, 'top');
    assert.equal(run(c, 'msg::get_header', 'authentication-results'), 'mx.example.test; spf=pass');
  });

  test('a value containing CR or LF is an error and records nothing', () => {
    const c = call();
    throwsVsl(() => run(c, 'msg::append_header', 'X-A', 'a\r\nBcc: victim@example.org'), /^msg::append_header: value of header X-A contains CR or LF/);
    throwsVsl(() => run(c, 'msg::set_header', 'X-A', 'a\nb'), /contains CR or LF/);
    throwsVsl(() => run(c, 'msg::prepend_header', 'X-A', 'a\rb'), /contains CR or LF/);
    throwsVsl(() => run(c, 'msg::append_header', 'Bad Name', 'v'), /invalid header name/);
    throwsVsl(() => run(c, 'msg::rename_header', 'X-A', 'New:Name'), /invalid header name/);
    throwsVsl(() => run(c, 'msg::append_header', 'X-A', [] as Value), /must be a string/);
    assert.deepEqual(c.effects.list(), []);
  });

  test('writes are declared from connect, reads from preq', () => {
    const from = (n: string) => coreBuiltins.find((b) => b.name === n)!.from;
    for (const n of ['msg::append_header', 'msg::prepend_header', 'msg::set_header', 'msg::rename_header', 'msg::rm_header']) {
      assert.equal(from(n), 'connect', n);
    }
    for (const n of ['msg::has_header', 'msg::count_header', 'msg::get_header', 'msg::get_all_headers', 'msg::get_header_untouched', 'msg::mail', 'msg::to_string']) {
      assert.equal(from(n), 'preq', n);
    }
  });
});

describe('msg:: writes before DATA act on the pending list', () => {
  test('rm_header at connect reports whether the session list (and this evaluation) had the header', () => {
    const c = makeHostCall({ stage: 'connect', session: { pendingHeaders: [{ name: 'X-Conn', value: '1' }] } });
    assert.equal(run(c, 'msg::rm_header', 'x-conn'), true);
    assert.equal(run(c, 'msg::rm_header', 'x-conn'), false);
    run(c, 'msg::append_header', 'X-New', 'v');
    assert.equal(run(c, 'msg::rm_header', 'X-New'), true);
  });

  test('rm_header at mail looks at the transaction list, which it acts on', () => {
    const c = makeHostCall({
      stage: 'mail',
      session: { pendingHeaders: [{ name: 'X-Session', value: '1' }] },
      txn: { pendingHeaders: [{ name: 'Received-SPF', value: 'pass' }] },
    });
    assert.equal(run(c, 'msg::rm_header', 'received-spf'), true);
    assert.equal(run(c, 'msg::rm_header', 'X-Session'), false);
  });

  test('currentHeaders replays set/rename on the pending list', () => {
    const c = makeHostCall({ stage: 'rcpt', txn: { pendingHeaders: [{ name: 'X-A', value: '1' }, { name: 'X-A', value: '2' }] } });
    run(c, 'msg::set_header', 'x-a', 'one');
    run(c, 'msg::rename_header', 'X-A', 'X-B');
    assert.deepEqual(
      currentHeaders(c).map((h) => [h.name, h.value]),
      [['X-B', 'one'], ['X-B', '2']],
    );
  });
});

describe('msg:: From:/To: edits', () => {
  test('rw_mail_from, rw_rcpt, add_rcpt and rm_rcpt record message effects with canonical addresses', () => {
    const c = call();
    run(c, 'msg::rw_mail_from', 'Alice@New.Example');
    run(c, 'msg::rw_rcpt', 'bob@example.org', address('robert@example.org'));
    run(c, 'msg::add_rcpt', 'dave@example.org');
    run(c, 'msg::rm_rcpt', 'carol@example.org');
    const effects = c.effects.list().map((e) => JSON.parse(JSON.stringify(e, (k, v) => (k === 'raw' ? undefined : v))));
    assert.deepEqual(effects, [
      { kind: 'msg_from', address: { local: 'Alice', domain: 'new.example', isNull: false } },
      { kind: 'msg_rcpt', op: 'rw', address: { local: 'bob', domain: 'example.org', isNull: false }, to: { local: 'robert', domain: 'example.org', isNull: false } },
      { kind: 'msg_rcpt', op: 'add', address: { local: 'dave', domain: 'example.org', isNull: false } },
      { kind: 'msg_rcpt', op: 'rm', address: { local: 'carol', domain: 'example.org', isNull: false } },
    ]);
  });

  test('reads after a From:/To: edit see the new addresses, display names kept', () => {
    const c = call();
    run(c, 'msg::rw_mail_from', 'alice@new.example');
    run(c, 'msg::rw_rcpt', 'bob@example.org', 'robert@example.org');
    assert.equal(run(c, 'msg::get_header', 'From'), '"Alice Example" <alice@new.example>');
    assert.equal(run(c, 'msg::get_header', 'To'), 'Bob <robert@example.org>, carol@example.org');
  });

  test('invalid or null addresses are errors', () => {
    const c = call();
    throwsVsl(() => run(c, 'msg::rw_mail_from', 'not an address'), /^msg::rw_mail_from: invalid address/);
    throwsVsl(() => run(c, 'msg::rw_mail_from', ''), /null sender/);
    throwsVsl(() => run(c, 'msg::add_rcpt', 5n), /must be an address or a string/);
  });
});

describe('applyHeaderEffects and foldHeader', () => {
  const raw = Buffer.from(MESSAGE, 'utf8');
  const effects = (...e: StageEffect[]) => e;

  test('prepend, append, set, rename and remove edit the header and leave the body alone', () => {
    const out = applyHeaderEffects(
      raw,
      effects(
        { kind: 'header', op: 'prepend', name: 'X-Top', value: 'top' },
        { kind: 'header', op: 'append', name: 'X-Bottom', value: 'bottom' },
        { kind: 'header', op: 'set', name: 'x-tag', value: 'set' },
        { kind: 'header', op: 'set', name: 'X-New', value: 'created' },
        { kind: 'header', op: 'rename', name: 'X-TAG', newName: 'X-Label' },
        { kind: 'header', op: 'remove', name: 'subject' },
      ),
    ).toString('utf8');
    assert.equal(
      out,
      [
        'X-Top: top',
        'Received: from client.example.test by mx.example.test; Mon, 1 Jan 2024 12:00:00 +0000',
        'From: "Alice Example" <alice@sender.test>',
        'To: Bob <bob@example.org>, carol@example.org',
        'X-Label: set',
        'X-Label: two',
        'X-Bottom: bottom',
        'X-New: created',
        '',
        'Body line 1',
        'From: not a header',
        '',
      ].join('\r\n'),
    );
  });

  test('From: and To: rewrites keep display names; the body "From:" line is untouched', () => {
    const out = applyHeaderEffects(
      raw,
      effects(
        { kind: 'msg_from', address: mailAddress('postmaster@new.example') },
        { kind: 'msg_rcpt', op: 'rw', address: mailAddress('bob@example.org'), to: mailAddress('robert@example.org') },
        { kind: 'msg_rcpt', op: 'rm', address: mailAddress('carol@example.org') },
        { kind: 'msg_rcpt', op: 'add', address: mailAddress('dave@example.org') },
      ),
    ).toString('utf8');
    assert.match(out, /\r\nFrom: "Alice Example" <postmaster@new\.example>\r\n/);
    assert.match(out, /\r\nTo: Bob <robert@example\.org>, dave@example\.org\r\n/);
    assert.match(out, /\r\n\r\nBody line 1\r\nFrom: not a header\r\n$/);
  });

  test('a long value is folded at whitespace into lines of at most 78 columns', () => {
    const words = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    const out = applyHeaderEffects(raw, effects({ kind: 'header', op: 'append', name: 'X-Long', value: words })).toString('utf8');
    const field = /\r\n(X-Long:[^]*?)\r\n\r\n/.exec(out)![1]!;
    const lines = field.split('\r\n');
    assert.ok(lines.length > 1, 'folded');
    for (const l of lines) assert.ok(l.length <= 78, `line within 78 columns: ${l}`);
    for (const l of lines.slice(1)) assert.match(l, /^[ \t]\S/, 'continuation starts with a blank');
    assert.equal(field.replace(/\r\n/g, ''), `X-Long: ${words}`);
    const c = call({ message: out });
    assert.equal(run(c, 'msg::get_header', 'X-Long'), words);
  });

  test('foldHeader leaves short fields on one line and ends with CRLF', () => {
    assert.equal(foldHeader('X-Short', 'value'), 'X-Short: value\r\n');
    const long = foldHeader('Subject', 'x'.repeat(40) + ' ' + 'y'.repeat(40));
    assert.equal(long, `Subject: ${'x'.repeat(40)}\r\n ${'y'.repeat(40)}\r\n`);
    assert.throws(() => foldHeader('X', 'a\r\nb'));
    assert.throws(() => foldHeader('X Y', 'a'));
  });

  test('no message effect returns the message unchanged', () => {
    const out = applyHeaderEffects(raw, effects({ kind: 'mail_from', address: mailAddress('a@b.test') }));
    assert.equal(out.toString('utf8'), MESSAGE);
  });
});
