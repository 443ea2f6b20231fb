import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Code, PREDEFINED, code, codeFromMap, formatReply, parseReply, parseReplyOrNull, predefinedCode, replyLines, toReply } from '../../src/vsl/values/code.js';
import { DEFAULT_DENY_REPLY, Status, makeStatus, statusFromWire } from '../../src/vsl/values/status.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { regex } from '../../src/vsl/values/objects.js';

function fields(c: Code): [number, string, string] {
  return [c.code, c.enhanced, c.message];
}

function map(o: Record<string, Value>): Map<string, Value> {
  return new Map(Object.entries(o));
}

/** Asserts `f` throws a VslError whose message is exactly `message`. */
function throwsVsl(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof VslError, `expected VslError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

// ---------------------------------------------------------------- parsing

test('reply strings parse into code, enhanced code and text', () => {
  const cases: Array<[string, [number, string, string]]> = [
    ['550 5.7.1 go away', [550, '5.7.1', 'go away']],
    ['550-5.7.1-go away', [550, '5.7.1', 'go away']],
    ['550 5.7.1', [550, '5.7.1', '']],
    ['550', [550, '', '']],
    ['550 go away', [550, '', 'go away']],
    ['550 ', [550, '', '']],
    ['250 2.0.0 Ok', [250, '2.0.0', 'Ok']],
    ['451 4.7.24 SPF validation error', [451, '4.7.24', 'SPF validation error']],
    ['451 5.7.24 kept as written', [451, '5.7.24', 'kept as written']],
    ['554 5.123.456 x', [554, '5.123.456', 'x']],
    ['200 x', [200, '', 'x']],
    ['599 x', [599, '', 'x']],
    ['550 5.7 partial is text', [550, '', '5.7 partial is text']],
    ['550 5.7.1 line one\nline two', [550, '5.7.1', 'line one\nline two']],
    ['550 text with 5.7.1 inside', [550, '', 'text with 5.7.1 inside']],
  ];
  for (const [s, f] of cases) assert.deepEqual(fields(parseReply(s)), f, s);
});

test('malformed reply strings are runtime errors', () => {
  for (const s of [
    '',
    '55',
    '5500 x',
    '199 x',
    '600 x',
    '099 x',
    '550x',
    '550_5.7.1 x',
    'abc',
    ' 550 x',
    '550 6.7.1 bad class',
    '550 3.7.1 bad class',
    '550 5.7.1234 long detail',
    '550 5.1234.1 long subject',
    '550 55.7.1 long class',
  ]) {
    assert.equal(parseReplyOrNull(s), null, JSON.stringify(s));
  }
  throwsVsl(() => parseReply('650 x'), "code: invalid reply '650 x'");
  throwsVsl(() => parseReply('650 x', 'deny'), "deny: invalid reply '650 x'");
});

test('code() accepts (int, text), (int, enhanced, text), a reply string and a v1 code map', () => {
  assert.deepEqual(fields(code(550n, 'go away')), [550, '', 'go away']);
  assert.deepEqual(fields(code(550n, '5.7.1', 'go away')), [550, '5.7.1', 'go away']);
  assert.deepEqual(fields(code(550n, '', 'go away')), [550, '', 'go away']);
  assert.deepEqual(fields(code('550 5.7.1 go away')), [550, '5.7.1', 'go away']);
  assert.deepEqual(fields(code(map({ code: 550n, enhanced: '5.7.1', text: 'go away' }))), [550, '5.7.1', 'go away']);
  assert.deepEqual(fields(code(map({ code: 550n, enhanced: '', text: 'go away' }))), [550, '', 'go away']);
  assert.equal(code('550 5.7.1 go away').text(), '550 5.7.1 go away');
  assert.equal(code(550n, 'go away').text(), '550 go away');
  assert.equal(code('550').text(), '550');
  assert.equal(code('550 x').type, 'code');
});

test('code() refuses bad arguments with messages naming it', () => {
  throwsVsl(() => code(550, 'x'), 'code: reply code must be an integer, got f64');
  throwsVsl(() => code(650n, 'x'), 'code: reply code 650 is not in 200..599');
  throwsVsl(() => code(199n, 'x'), 'code: reply code 199 is not in 200..599');
  throwsVsl(() => code(550n, '5.7', 'x'), "code: invalid enhanced code '5.7'");
  throwsVsl(() => code(550n, '6.7.1', 'x'), "code: invalid enhanced code '6.7.1'");
  throwsVsl(() => code(550n, 1n), 'code: reply text must be a string, got i64');
  throwsVsl(() => code(map({ code: 550n, text: 'x' })), "code: code map needs the key 'enhanced'");
  throwsVsl(() => code(map({ code: 550n, enhanced: '5.7.1' })), "code: code map needs the key 'text'");
  throwsVsl(() => code(map({ code: '550', enhanced: '5.7.1', text: 'x' })), 'code: reply code must be an integer, got string');
  throwsVsl(() => code(true), 'code: expected a code, a reply string or a code map, got bool');
  throwsVsl(() => code(), 'code: expected 1 to 3 arguments, got 0');
  throwsVsl(() => code('nonsense'), "code: invalid reply 'nonsense'");
  throwsVsl(() => codeFromMap(map({}), 'object'), "object: code map needs the key 'code'");
});

test('codes are equal when code, enhanced code and text are equal', () => {
  assert.ok(code('550 5.7.1 x').equals(code(550n, '5.7.1', 'x')));
  assert.ok(!code('550 5.7.1 x').equals(code('550 5.7.2 x')));
  assert.ok(!code('550 5.7.1 x').equals(code('550 5.7.1 y')));
  assert.ok(!code('550 5.7.1 x').equals(code('551 5.7.1 x')));
  assert.ok(!code('550 5.7.1 x').equals('550 5.7.1 x'), 'a code is not equal to a string (SPEC §6.3: other)');
  assert.ok(code('550 5.7.1 x').equals(regex('^550 ')), 'a regex on the other side matches the text');
  assert.ok(!code('550 5.7.1 x').equals(regex('^451')));
  assert.equal(code('550 5.7.1 x').getProp('code'), 550n);
  assert.equal(code('550 5.7.1 x').getProp('enhanced'), '5.7.1');
  assert.equal(code('550 5.7.1 x').getProp('text'), 'x');
  throwsVsl(() => code('550 x').getProp('nope'), "code has no property 'nope'");
  throwsVsl(() => code('550 x').contains('x'), 'cannot test membership in code');
});

// ---------------------------------------------------------------- output

test('a one-line reply is sent as code, enhanced code and text', () => {
  assert.deepEqual(replyLines(code('550 5.7.1 go away')), ['550 5.7.1 go away']);
  assert.deepEqual(replyLines(code('550 go away')), ['550 go away']);
  assert.deepEqual(replyLines(code('550 5.7.1')), ['550 5.7.1']);
  assert.deepEqual(replyLines(code('550')), ['550']);
});

test('the enhanced class is aligned with the reply code on output', () => {
  assert.deepEqual(replyLines(code('451 5.7.24 SPF validation error')), ['451 4.7.24 SPF validation error']);
  assert.deepEqual(replyLines(code('550 4.7.1 x')), ['550 5.7.1 x']);
  assert.deepEqual(replyLines(code('250 5.0.0 Ok')), ['250 2.0.0 Ok']);
  assert.deepEqual(replyLines(code('354 2.0.0 go ahead')), ['354 go ahead'], 'there is no class-3 enhanced code');
  assert.deepEqual(toReply(code('451 5.7.24 x')), { code: 451, enhanced: '4.7.24', lines: ['x'] });
});

test('multi-line text repeats the codes on every line, with - on all but the last', () => {
  assert.deepEqual(replyLines(code('550 5.7.1 first\nsecond\r\nthird')), [
    '550-5.7.1 first',
    '550-5.7.1 second',
    '550 5.7.1 third',
  ]);
  assert.deepEqual(replyLines(code(451n, 'a\nb')), ['451-a', '451 b']);
  assert.deepEqual(replyLines(code(550n, '5.7.1', 'a\n\nb')), ['550-5.7.1 a', '550-5.7.1', '550 5.7.1 b']);
  assert.deepEqual(replyLines(code(550n, '5.7.1', 'only line\n')), ['550 5.7.1 only line']);
});

test('control characters other than tab are removed from reply text', () => {
  assert.deepEqual(replyLines(code(550n, '5.7.1', 'a\u0000b\u0007c\td\re\u007ff\u0085g\u001bh')), ['550 5.7.1 abc\tdefgh']);
});

test('lines over 510 octets are split at a space', () => {
  const word = 'x'.repeat(99);
  const text = Array.from({ length: 12 }, () => word).join(' '); // 1199 octets
  const lines = replyLines(code(550n, '5.7.1', text));
  assert.ok(lines.length > 1);
  for (const l of lines) {
    assert.ok(Buffer.byteLength(l, 'utf8') <= 510, `${l.length} octets`);
    assert.match(l, /^550[- ]5\.7\.1 x/);
  }
  // Five words fit in 510 - 10 = 500 octets (499 with spaces); nothing is lost.
  assert.equal(lines[0], `550-5.7.1 ${Array.from({ length: 5 }, () => word).join(' ')}`);
  assert.equal(lines.map((l) => l.slice(10)).join(' '), text);
  assert.ok(lines[lines.length - 1]!.startsWith('550 '));
});

test('a word longer than a line is cut at the octet limit without splitting characters', () => {
  const lines = replyLines(code(550n, 'é'.repeat(400)));
  assert.deepEqual(lines.map((l) => Buffer.byteLength(l, 'utf8')), [510, 4 + 800 - 506]);
  assert.equal(lines.map((l) => l.slice(4)).join(''), 'é'.repeat(400));
});

test('formatReply prints a Reply as the wire lines', () => {
  assert.deepEqual(formatReply({ code: 250, enhanced: '2.1.5', lines: ['Ok'] }), ['250 2.1.5 Ok']);
  assert.deepEqual(formatReply({ code: 220, enhanced: '', lines: ['mx.example.org Service ready'] }), ['220 mx.example.org Service ready']);
  assert.deepEqual(formatReply({ code: 250, enhanced: '', lines: ['mx', 'PIPELINING', 'SIZE 10'] }), ['250-mx', '250-PIPELINING', '250 SIZE 10']);
  assert.deepEqual(formatReply({ code: 421, enhanced: '4.3.2', lines: [] }), ['421 4.3.2']);
});

// ---------------------------------------------------------------- predefined codes

test('predefined codes carry the replies of SPEC §5.9 under v2 and v1 names', () => {
  const table: Array<[string, string | null, string]> = [
    ['c554_7_1', 'code554_7_1', '554 5.7.1 Relay access denied'],
    ['c550_7_20', 'code550_7_20', '550 5.7.20 No passing DKIM signature found'],
    ['c550_7_21', 'code550_7_21', '550 5.7.21 No acceptable DKIM signature found'],
    ['c550_7_22', 'code550_7_22', '550 5.7.22 No valid author-matched DKIM signature found'],
    ['c550_7_23', 'code550_7_23', '550 5.7.23 SPF validation failed'],
    ['c550_7_24', 'code550_7_24', '550 5.7.24 SPF validation error'],
    ['c451_7_24', 'code451_7_24', '451 4.7.24 SPF validation error'],
    ['c550_7_25', 'code550_7_25', '550 5.7.25 Reverse DNS validation failed'],
    ['c550_7_26', 'code550_7_26', '550 5.7.26 Multiple authentication checks failed'],
    ['c500_7_26', null, '550 5.7.26 Multiple authentication checks failed'],
    ['c550_7_27', 'code550_7_27', '550 5.7.27 Sender address has null MX'],
    ['c556_1_10', 'code556_1_10', '556 5.1.10 Recipient address has null MX'],
    ['c451_7_1', 'code_greylist', '451 4.7.1 Sender is not authorized. Please try again.'],
    ['c451_3_0', null, '451 4.3.0 Multiple destination domains per transaction is unsupported. Please try again.'],
    ['c550_1_1', null, '550 5.1.1 The email account that you tried to reach does not exist. Please try again.'],
  ];
  const expectedNames = new Set<string>();
  for (const [v2, v1, reply] of table) {
    assert.equal(PREDEFINED[v2], reply, v2);
    expectedNames.add(v2);
    if (v1 !== null) {
      assert.equal(PREDEFINED[v1], reply, v1);
      expectedNames.add(v1);
    }
    assert.equal(predefinedCode(v2)!.text(), reply);
  }
  assert.deepEqual(new Set(Object.keys(PREDEFINED)), expectedNames, 'no other names, and no v1 code500_7_26 / code451_3_0 / code550_1_1 / code451_7_1');
  assert.equal(predefinedCode('toString'), undefined);
  assert.equal(predefinedCode('c999_9_9'), undefined);
});

// ---------------------------------------------------------------- statuses

test('status constructors accept codes, reply strings and v1 code maps', () => {
  const c = code('550 5.7.1 x');
  assert.equal(makeStatus('deny', c).code, c);
  assert.deepEqual(fields(makeStatus('deny', '451 4.7.1 later').code!), [451, '4.7.1', 'later']);
  assert.deepEqual(fields(makeStatus('reject', map({ code: 550n, enhanced: '', text: 'no' })).code!), [550, '', 'no']);
  assert.deepEqual(fields(makeStatus('info', '550 5.7.1 v1').code!), [550, '5.7.1', 'v1']);
  assert.deepEqual(fields(makeStatus('accept', '250 2.0.0 welcome').code!), [250, '2.0.0', 'welcome']);
  assert.equal(makeStatus('accept').code, undefined);
  assert.equal(makeStatus('deny').code, undefined);
  assert.equal(makeStatus('next').kind, 'next');
  assert.equal(makeStatus('quarantine', 'spam_box-1').quarantine, 'spam_box-1');
  assert.equal(makeStatus('quarantine', 'q'.repeat(64)).quarantine, 'q'.repeat(64));
});

test('status constructors refuse what SPEC §5.1 forbids, naming the constructor', () => {
  throwsVsl(() => makeStatus('deny', '354 go ahead'), 'deny: 3xx replies are not allowed');
  throwsVsl(() => makeStatus('accept', '354 go ahead'), 'accept: 3xx replies are not allowed');
  throwsVsl(() => makeStatus('faccept', code(354n, 'x')), 'faccept: 3xx replies are not allowed');
  throwsVsl(() => makeStatus('deny', '250 ok'), 'deny: needs a 4xx or 5xx reply, got 250');
  throwsVsl(() => makeStatus('reject', '250 ok'), 'reject: needs a 4xx or 5xx reply, got 250');
  throwsVsl(() => makeStatus('info', '250 ok'), 'info: needs a 4xx or 5xx reply, got 250');
  throwsVsl(() => makeStatus('info'), 'info: a reply code is required');
  throwsVsl(() => makeStatus('deny', 550n), 'deny: expected a code, a reply string or a code map, got i64');
  throwsVsl(() => makeStatus('reject', 'go away'), "reject: invalid reply 'go away'");
  throwsVsl(() => makeStatus('deny', map({ code: 550n })), "deny: code map needs the key 'enhanced'");
  throwsVsl(() => makeStatus('next', '250 ok'), 'next: takes no argument');
  throwsVsl(() => makeStatus('quarantine'), 'quarantine: expects a quarantine name string, got ()');
  for (const bad of ['', 'a b', 'a/b', '../x', 'é', 'q'.repeat(65)]) {
    throwsVsl(() => makeStatus('quarantine', bad), `quarantine: invalid quarantine name '${bad}': use 1 to 64 of A-Z a-z 0-9 _ -`);
  }
});

test('accept and faccept may carry 4xx/5xx, recorded as refusing', () => {
  assert.equal(makeStatus('accept', '550 5.7.1 no').refuses, true);
  assert.equal(makeStatus('faccept', '451 4.3.0 later').refuses, true);
  assert.equal(makeStatus('accept', '250 ok').refuses, false);
  assert.equal(makeStatus('accept').refuses, false);
  assert.equal(makeStatus('deny', '550 x').refuses, false);
});

test('statuses compare by kind only; info is reject', () => {
  assert.ok(makeStatus('deny').equals(makeStatus('deny', '550 x')));
  assert.ok(!makeStatus('next').equals(makeStatus('accept')));
  assert.ok(makeStatus('info', '550 x').equals(makeStatus('reject')));
  assert.ok(makeStatus('quarantine', 'a').equals(makeStatus('quarantine', 'b')));
  assert.ok(!makeStatus('deny').equals('deny'));
  assert.ok(!makeStatus('deny').equals(code('550 x')));
  assert.ok(makeStatus('deny').equals(regex('^de')));
});

test('a status prints its kind, and its reply in debug form', () => {
  assert.equal(makeStatus('deny', '550 5.7.1 x').text(), 'deny');
  assert.equal(makeStatus('deny', '550 5.7.1 x').debug(), 'deny(550 5.7.1 x)');
  assert.equal(makeStatus('deny').debug(), `deny(${DEFAULT_DENY_REPLY})`);
  assert.equal(makeStatus('reject').debug(), 'reject(550 5.7.1 Command rejected by policy)');
  assert.equal(makeStatus('accept').debug(), 'accept()');
  assert.equal(makeStatus('next').debug(), 'next()');
  assert.equal(makeStatus('quarantine', 'spam').debug(), 'quarantine(spam)');
  assert.equal(makeStatus('quarantine', 'spam').type, 'status');
});

test('statuses and codes survive the wire form exactly', () => {
  for (const st of [
    makeStatus('next'),
    makeStatus('deny', code(550n, '5.7.1 looks enhanced but is text')),
    makeStatus('accept', '250 2.0.0 hi\nthere'),
    makeStatus('quarantine', 'spam'),
  ]) {
    const back = statusFromWire(st.wireText)!;
    assert.ok(back instanceof Status);
    assert.equal(back.kind, st.kind);
    assert.equal(back.quarantine, st.quarantine);
    assert.equal(back.code === undefined, st.code === undefined);
    if (st.code) assert.ok(back.code!.equals(st.code));
  }
  assert.equal(statusFromWire('["quarantine", null, null]'), null);
  assert.equal(statusFromWire('["bogus", null, null]'), null);
  assert.equal(statusFromWire('not json'), null);
});
