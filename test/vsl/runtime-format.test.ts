import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { formatFloat, toDebug, toStr } from '../../src/vsl/values/format.js';
import { parseJson, toJson } from '../../src/vsl/guest/json.js';
import { VStepRange } from '../../src/vsl/guest/ops.js';
import { I64_MAX, I64_MIN, VChar, VFn, VObject, VRange, VslError, type Value } from '../../src/vsl/values/value.js';

const ch = (c: string) => new VChar(c);
const map = (...entries: [string, Value][]) => new Map<string, Value>(entries);

class FakeIp extends VObject {
  readonly type = 'ip4';
  constructor(readonly addr: string) {
    super();
  }
  text(): string {
    return this.addr;
  }
  equals(other: Value): boolean {
    return other === this.addr;
  }
}

function throwsVsl(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof VslError, `expected a VslError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

describe('floats print in shortest round-trip form with a . or an exponent', () => {
  const cases: [number, string][] = [
    [1.0, '1.0'],
    [0.5, '0.5'],
    [-2.0, '-2.0'],
    [0.1 + 0.2, '0.30000000000000004'],
    [100, '100.0'],
    [1e20, '100000000000000000000.0'],
    [1e21, '1e21'],
    [1e300, '1e300'],
    [1.5e-7, '1.5e-7'],
    [0.000001, '0.000001'],
    [2 ** 53 + 2, '9007199254740994.0'],
    [0.0, '0.0'],
    [-0.0, '-0.0'],
    [Infinity, 'inf'],
    [-Infinity, '-inf'],
    [NaN, 'NaN'],
  ];
  for (const [n, want] of cases) {
    test(`${String(n)} prints as ${want}`, () => {
      assert.equal(formatFloat(n), want);
      assert.equal(toStr(n), want);
    });
  }
  test('every finite printed float reads back as the same number', () => {
    for (const n of [0.1, 1 / 3, 123.456, 5e-324, 1.7976931348623157e308, -1e-10]) {
      assert.equal(Number(formatFloat(n)), n);
    }
  });
});

describe('to_string and to_debug', () => {
  const fn = new VFn('check', () => undefined, 1);
  const cases: [string, Value, string, string][] = [
    // [name, value, to_string, to_debug]
    ['int', 42n, '42', '42'],
    ['int beyond 2^53', 2n ** 53n + 1n, '9007199254740993', '9007199254740993'],
    ['i64 MIN', I64_MIN, '-9223372036854775808', '-9223372036854775808'],
    ['float', 1.0, '1.0', '1.0'],
    ['bool', true, 'true', 'true'],
    ['unit', undefined, '()', '()'],
    ['char', ch('x'), 'x', "'x'"],
    ['quote char', ch("'"), "'", "'\\''"],
    ['string', 'a"b', 'a"b', '"a\\"b"'],
    ['escapes', 'tab\there\n\\\0\u0007', 'tab\there\n\\\0\u0007', '"tab\\there\\n\\\\\\0\\u{7}"'],
    ['emoji kept as is', 'é😀', 'é😀', '"é😀"'],
    ['array', [1n, 'a', ch('c'), 2.5, undefined, [true]], '[1, "a", \'c\', 2.5, (), [true]]', '[1, "a", \'c\', 2.5, (), [true]]'],
    ['empty array', [], '[]', '[]'],
    ['map', map(['k', 1n], ['any key', 'v']), '#{"k": 1, "any key": "v"}', '#{"k": 1, "any key": "v"}'],
    ['empty map', map(), '#{}', '#{}'],
    ['function', fn, 'Fn(check)', 'Fn(check)'],
    ['range', new VRange(1n, 5n, false), '1..5', '1..5'],
    ['inclusive range', new VRange(-1n, 5n, true), '-1..=5', '-1..=5'],
    ['stepped range', new VStepRange(0n, 10n, 2n), 'range(0, 10, 2)', 'range(0, 10, 2)'],
    ['object', new FakeIp('192.0.2.1'), '192.0.2.1', 'ip4("192.0.2.1")'],
    ['object in an array', [new FakeIp('192.0.2.1')], '[ip4("192.0.2.1")]', '[ip4("192.0.2.1")]'],
  ];
  for (const [name, v, str, dbg] of cases) {
    test(`${name}: to_string ${JSON.stringify(str)}, to_debug ${JSON.stringify(dbg)}`, () => {
      assert.equal(toStr(v), str);
      assert.equal(toDebug(v), dbg);
    });
  }
});

describe('to_json', () => {
  const cases: [string, Value, string][] = [
    ['int beyond 2^53 exactly', 2n ** 53n + 1n, '9007199254740993'],
    ['i64 MAX', I64_MAX, '9223372036854775807'],
    ['float keeps its fraction', 1.0, '1.0'],
    ['float 0.1+0.2', 0.1 + 0.2, '0.30000000000000004'],
    ['large float', 1e21, '1e21'],
    ['negative zero', -0.0, '-0.0'],
    ['string with escapes', 'a"\\\n\u0001😀', '"a\\"\\\\\\n\\u0001😀"'],
    ['char', ch('c'), '"c"'],
    ['bool', false, 'false'],
    ['unit', undefined, 'null'],
    ['object text', new FakeIp('192.0.2.1'), '"192.0.2.1"'],
    ['nested', map(['b', [1n, map()]], ['a', undefined]), '{"b":[1,{}],"a":null}'],
  ];
  for (const [name, v, want] of cases) {
    test(`${name}: ${want}`, () => assert.equal(toJson(v), want));
  }
  test('values without a JSON form are errors', () => {
    throwsVsl(() => toJson(new VFn('f', () => undefined, 0)), 'to_json: cannot convert Fn to JSON');
    throwsVsl(() => toJson([new VRange(1n, 2n, false)]), 'to_json: cannot convert range to JSON');
    throwsVsl(() => toJson(NaN), 'to_json: NaN has no JSON form');
    throwsVsl(() => toJson(map(['x', -Infinity])), 'to_json: -inf has no JSON form');
  });
});

describe('parse_json', () => {
  const cases: [string, Value][] = [
    ['9007199254740993', 9007199254740993n],
    ['-9223372036854775808', I64_MIN],
    ['0', 0n],
    ['-0', 0n],
    ['1.0', 1.0],
    ['1e2', 100],
    ['-2.5E-1', -0.25],
    ['"a\\u00e9\\ud83d\\ude00\\n\\/"', 'aé😀\n/'],
    ['true', true],
    ['null', undefined],
    [' [ 1 , "x" , [ ] ] ', [1n, 'x', []]],
    ['{"b": 1, "a": {"c": null}}', map(['b', 1n], ['a', map(['c', undefined])])],
    ['{"k": 1, "k": 2}', map(['k', 2n])],
  ];
  for (const [text, want] of cases) {
    test(`${text} parses`, () => assert.deepEqual(parseJson(text), want));
  }
  test('objects keep their key order', () => {
    const m = parseJson('{"z": 1, "a": 2, "m": 3}') as Map<string, Value>;
    assert.deepEqual([...m.keys()], ['z', 'a', 'm']);
  });
  const errors: [string, string][] = [
    ['', 'parse_json: unexpected end of input at offset 0'],
    ['9223372036854775808', 'parse_json: integer 9223372036854775808 out of the i64 range at offset 0'],
    ['1e400', 'parse_json: number 1e400 out of the f64 range at offset 0'],
    ['[1,]', 'parse_json: unexpected character "]" at offset 3'],
    ['{"a" 1}', "parse_json: expected ':' at offset 5"],
    ['{a: 1}', 'parse_json: expected a string key at offset 1'],
    ['[1 2]', "parse_json: expected ',' or ']' at offset 3"],
    ['"abc', 'parse_json: unterminated string at offset 4'],
    ['"a\nb"', 'parse_json: control character in string at offset 2'],
    ['"\\x"', 'parse_json: invalid escape at offset 1'],
    ['"\\u12"', 'parse_json: invalid \\u escape at offset 1'],
    ['01', 'parse_json: unexpected content after the JSON value at offset 1'],
    ['NaN', 'parse_json: unexpected character "N" at offset 0'],
    ['tru', 'parse_json: unexpected character "t" at offset 0'],
    ['{} x', 'parse_json: unexpected content after the JSON value at offset 3'],
  ];
  for (const [text, message] of errors) {
    test(`${JSON.stringify(text)} is refused: ${message}`, () => throwsVsl(() => parseJson(text), message));
  }
  test('deep nesting is refused instead of exhausting the stack', () => {
    throwsVsl(() => parseJson('['.repeat(100000)), 'parse_json: nesting deeper than 128 at offset 128');
    assert.equal(toJson(parseJson(`${'['.repeat(128)}${']'.repeat(128)}`)), `${'['.repeat(128)}${']'.repeat(128)}`);
  });
});

describe('JSON round trips', () => {
  const values: Value[] = [
    2n ** 62n + 1n,
    I64_MIN,
    map(['big', 2n ** 53n + 3n], ['f', 1.0], ['neg', -0.0], ['list', [1n, 2.5, 'x', true, undefined]]),
    'é😀"\\',
    [map(), [], ''],
  ];
  for (const v of values) {
    test(`${toDebug(v)} survives to_json then parse_json`, () => {
      const back = parseJson(toJson(v));
      assert.deepEqual(back, v);
      assert.equal(toJson(back), toJson(v));
    });
  }
  test('an int and a float stay distinct through JSON', () => {
    assert.equal(typeof parseJson(toJson(1n)), 'bigint');
    assert.equal(typeof parseJson(toJson(1.0)), 'number');
  });
});
