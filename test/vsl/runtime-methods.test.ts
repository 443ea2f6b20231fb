import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { callGlobal, callMethod, hasGlobalFunction } from '../../src/vsl/guest/methods.js';
import { VStepRange } from '../../src/vsl/guest/ops.js';
import { I64_MAX, I64_MIN, VChar, VFn, VObject, VRange, VslError, type Value } from '../../src/vsl/values/value.js';

const ch = (c: string) => new VChar(c);
const map = (...entries: [string, Value][]) => new Map<string, Value>(entries);
/** The evaluation context handed to callbacks; the runtime only passes it through. */
const X = { name: 'ctx' };

function call(recv: Value, name: string, ...args: Value[]): Value {
  return callMethod(X, recv, name, args)[0];
}

function throwsVsl(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof VslError, `expected a VslError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

/** A script function of one or two parameters, recording the context it got. */
function fn1(f: (item: Value) => Value): VFn {
  return new VFn('f1', (x: unknown, item: Value) => {
    assert.equal(x, X);
    return f(item);
  }, 1);
}
function fn2(f: (a: Value, b: Value) => Value): VFn {
  return new VFn('f2', (x: unknown, a: Value, b: Value) => {
    assert.equal(x, X);
    return f(a, b);
  }, 2);
}

class FakeFqdn extends VObject {
  readonly type = 'fqdn';
  constructor(readonly name: string) {
    super();
  }
  text(): string {
    return this.name;
  }
  equals(other: Value): boolean {
    return typeof other === 'string' && other.toLowerCase() === this.name;
  }
}

class FakeService extends VObject {
  readonly type = 'service';
  text(): string {
    return 'svc';
  }
  equals(): boolean {
    return false;
  }
}

describe('string methods count code points', () => {
  // e + combining acute, an emoji outside the BMP, and ASCII.
  const s = 'e\u0301😀ab';
  const cases: [string, Value, string, Value[], Value][] = [
    ['len', s, 'len', [], 5n],
    ['len of ""', '', 'len', [], 0n],
    ['is_empty', '', 'is_empty', [], true],
    ['contains string', s, 'contains', ['😀a'], true],
    ['contains char', s, 'contains', [ch('\u0301')], true],
    ['contains missing', s, 'contains', ['z'], false],
    ['starts_with', s, 'starts_with', ['e'], true],
    ['ends_with char', s, 'ends_with', [ch('b')], true],
    ['index_of after an emoji', s, 'index_of', ['a'], 3n],
    ['index_of the emoji', s, 'index_of', [ch('😀')], 2n],
    ['index_of absent', s, 'index_of', ['zz'], -1n],
    ['index_of from', 'abcabc', 'index_of', ['b', 2n], 4n],
    ['index_of from a negative start', 'abcabc', 'index_of', ['a', -3n], 3n],
    ['index_of from past the end', 'abc', 'index_of', ['a', 9n], -1n],
    ['sub_string from', s, 'sub_string', [2n], '😀ab'],
    ['sub_string from and length', s, 'sub_string', [1n, 2n], '\u0301😀'],
    ['sub_string length is clamped', s, 'sub_string', [3n, 100n], 'ab'],
    ['sub_string negative start', s, 'sub_string', [-2n], 'ab'],
    ['sub_string at the end', s, 'sub_string', [5n], ''],
    ['sub_string of a range', s, 'sub_string', [new VRange(1n, 3n, false)], '\u0301😀'],
    ['sub_string of an inclusive range', s, 'sub_string', [new VRange(1n, 3n, true)], '\u0301😀a'],
    ['to_upper', 'straße', 'to_upper', [], 'STRASSE'],
    ['to_lower', 'ÀB', 'to_lower', [], 'àb'],
    ['chars', 'a😀', 'chars', [], [ch('a'), ch('😀')]],
    ['get', s, 'get', [2n], ch('😀')],
    ['get negative', s, 'get', [-1n], ch('b')],
    ['get out of range is ()', s, 'get', [5n], undefined],
    ['split on a string', 'a, b, c', 'split', [', '], ['a', 'b', 'c']],
    ['split on a char', 'a:b::c', 'split', [ch(':')], ['a', 'b', '', 'c']],
    ['split with a limit', 'a:b:c:d', 'split', [':', 2n], ['a', 'b:c:d']],
    ['split with a large limit', 'a:b', 'split', [':', 5n], ['a', 'b']],
    ['split() on whitespace', '  one\ttwo \n three ', 'split', [], ['one', 'two', 'three']],
    ['split() of blanks', '   ', 'split', [], []],
    ['split on "" gives code points', 'a😀', 'split', [''], ['a', '😀']],
    ['split at a position', 'a😀bc', 'split', [2n], ['a😀', 'bc']],
    ['to_string', 'x', 'to_string', [], 'x'],
    ['to_debug quotes', 'a"b', 'to_debug', [], '"a\\"b"'],
    ['type_of', 'x', 'type_of', [], 'string'],
  ];
  for (const [name, recv, method, args, want] of cases) {
    test(`${name}: ${JSON.stringify(recv)}.${method}(…)`, () => {
      const [result, self] = callMethod(X, recv, method, args);
      assert.deepEqual(result, want);
      assert.equal(self, recv);
    });
  }
  const errors: [Value, string, Value[], string][] = [
    [s, 'sub_string', [6n], 'sub_string: index out of range'],
    [s, 'sub_string', [-6n], 'sub_string: index out of range'],
    [s, 'sub_string', [0n, -1n], 'sub_string: length must not be negative, got -1'],
    [s, 'sub_string', ['1'], 'sub_string: index must be an int, got string'],
    [s, 'starts_with', [1n], 'starts_with: argument must be a string, got i64'],
    [s, 'split', [':', 0n], 'split: count must be at least 1, got 0'],
    [s, 'len', [1n], 'len: expected 0 arguments, got 1'],
    [s, 'sub_string', [], 'sub_string: expected 1 to 2 arguments, got 0'],
    [s, 'push', [1n], "no method 'push' for string"],
    [1n, 'trim', [], "no method 'trim' for i64"],
    [undefined, 'len', [], "no method 'len' for ()"],
  ];
  for (const [recv, method, args, message] of errors) {
    test(`${method} fails with "${message}"`, () => throwsVsl(() => callMethod(X, recv, method, args), message));
  }
});

describe('in-place string methods return the new string as self', () => {
  const cases: [string, string, Value[], string][] = [
    ['  hi \n', 'trim', [], 'hi'],
    ['aé', 'make_upper', [], 'AÉ'],
    ['AÉ', 'make_lower', [], 'aé'],
    ['a.b.c', 'replace', ['.', '::'], 'a::b::c'],
    ['a😀a', 'replace', [ch('😀'), ch('-')], 'a-a'],
    ['ab', 'replace', ['', '-'], '-a-b-'],
    ['e\u0301😀ab', 'truncate', [2n], 'e\u0301'],
    ['ab', 'truncate', [5n], 'ab'],
    ['ab', 'truncate', [-1n], ''],
    ['😀', 'pad', [3n, ch('.')], '😀..'],
    ['a', 'pad', [4n, 'xy'], 'axyx'],
    ['abc', 'pad', [2n, ch('.')], 'abc'],
    ['a😀bcd', 'crop', [1n, 2n], '😀b'],
    ['a😀bcd', 'crop', [-2n], 'cd'],
    ['a-b-c', 'remove', ['-'], 'abc'],
    ['a-b-c', 'remove', [ch('b')], 'a--c'],
    ['abc', 'clear', [], ''],
  ];
  for (const [recv, method, args, want] of cases) {
    test(`${JSON.stringify(recv)}.${method}(…) makes ${JSON.stringify(want)}`, () => {
      const [result, self] = callMethod(X, recv, method, args);
      assert.equal(result, undefined);
      assert.equal(self, want);
    });
  }
  test('the function form returns () and leaves the argument unchanged', () => {
    assert.equal(callGlobal(X, 'trim', ['  x ']), undefined);
  });
});

describe('string methods on text-like objects', () => {
  const host = new FakeFqdn('mail.example.org');
  test('pure string methods read the text and keep the object as self', () => {
    const [result, self] = callMethod(X, host, 'ends_with', ['.org']);
    assert.equal(result, true);
    assert.equal(self, host);
    assert.equal(call(host, 'len'), 16n);
    assert.equal(call('mail.example.org', 'starts_with', new FakeFqdn('mail')), true);
  });
  test('in-place string methods are not offered on objects', () => {
    throwsVsl(() => call(host, 'make_upper'), "no method 'make_upper' for fqdn");
  });
  test('objects that are not text-like get no string methods', () => {
    throwsVsl(() => call(new FakeService(), 'len'), "no method 'len' for service");
  });
  test('every value has to_string, to_debug, to_json and type_of', () => {
    assert.equal(call(host, 'to_string'), 'mail.example.org');
    assert.equal(call(host, 'to_debug'), 'fqdn("mail.example.org")');
    assert.equal(call(host, 'to_json'), '"mail.example.org"');
    assert.equal(call(host, 'type_of'), 'fqdn');
    assert.equal(call(undefined, 'to_string'), '()');
  });
});

describe('array methods', () => {
  test('pure queries', () => {
    const a: Value[] = [3n, 'x', [1n], 2.5];
    assert.equal(call(a, 'len'), 4n);
    assert.equal(call([], 'is_empty'), true);
    assert.equal(call(a, 'contains', 'x'), true);
    assert.equal(call(a, 'contains', 1n), true, 'nested arrays are searched');
    assert.equal(call(a, 'index_of', 'x'), 1n);
    assert.equal(call(a, 'index_of', 2.5), 3n);
    assert.equal(call(a, 'index_of', 1n), -1n, 'index_of wants an equal element');
    assert.equal(call(a, 'index_of', 3n, 1n), -1n);
    assert.equal(call(a, 'get', -1n), 2.5);
    assert.equal(call(a, 'get', 4n), undefined);
    assert.deepEqual(call(a, 'extract', 1n), ['x', [1n], 2.5]);
    assert.deepEqual(call(a, 'extract', 1n, 2n), ['x', [1n]]);
    assert.deepEqual(call(a, 'extract', -1n), [2.5]);
    assert.deepEqual(call(a, 'extract', new VRange(0n, 1n, true)), [3n, 'x']);
    assert.equal(call(a, 'join', ', '), '3, x, [1], 2.5');
    assert.equal(call(['a', ch('b')], 'join'), 'ab');
    throwsVsl(() => call(a, 'extract', 5n), 'extract: index out of range');
  });
  test('get returns a copy, not the stored array', () => {
    const inner: Value[] = [1n];
    const got = call([inner], 'get', 0n) as Value[];
    got.push(2n);
    assert.deepEqual(inner, [1n]);
  });
  test('callbacks may take (item) or (item, index)', () => {
    const a: Value[] = [10n, 20n, 30n];
    assert.deepEqual(call(a, 'map', fn1((v) => (v as bigint) * 2n)), [20n, 40n, 60n]);
    assert.deepEqual(call(a, 'map', fn2((v, i) => [v, i])), [[10n, 0n], [20n, 1n], [30n, 2n]]);
    assert.deepEqual(call(a, 'filter', fn1((v) => (v as bigint) > 15n)), [20n, 30n]);
    assert.deepEqual(call(a, 'filter', fn2((_v, i) => i !== 1n)), [10n, 30n]);
    assert.equal(call(a, 'some', fn1((v) => v === 20n)), true);
    assert.equal(call(a, 'all', fn1((v) => v === 20n)), false);
    assert.equal(call(a, 'all', fn2((_v, i) => (i as bigint) < 3n)), true);
    assert.equal(call(a, 'find', fn1((v) => (v as bigint) > 15n)), 20n);
    assert.equal(call(a, 'find', fn1(() => false)), undefined);
    assert.equal(call(a, 'index_of', fn2((_v, i) => i === 2n)), 2n);
  });
  test('reduce passes (acc, item) or (acc, item, index)', () => {
    const a: Value[] = [1n, 2n, 3n];
    const sum = new VFn('sum', (_x: unknown, acc: Value, v: Value) => (acc as bigint) + (v as bigint), 2);
    assert.equal(call(a, 'reduce', sum, 10n), 16n);
    const trail = new VFn('trail', (_x: unknown, acc: Value, v: Value, i: Value) => `${String(acc)}${String(v)}@${String(i)};`, 3);
    assert.equal(call(a, 'reduce', trail, ''), '1@0;2@1;3@2;');
    assert.equal(call([], 'reduce', sum, 7n), 7n);
  });
  test('callbacks get copies: changing the item does not change the array', () => {
    const a: Value[] = [[1n]];
    call(a, 'map', fn1((v) => (v as Value[]).push(2n) && undefined));
    assert.deepEqual(a, [[1n]]);
  });
  test('callback errors', () => {
    throwsVsl(() => call([1n], 'filter', fn1(() => 1n)), 'filter: the callback must return a bool, got i64');
    throwsVsl(() => call([1n], 'map', 5n), 'map: the callback must be a function, got i64');
    throwsVsl(
      () => call([1n], 'map', new VFn('g', () => 0n, 0)),
      'map: the callback must take 1 or 2 parameters, g takes 0',
    );
    throwsVsl(
      () => call([1n], 'map', new VFn('io', async () => 0n, 1)),
      'map: I/O built-ins cannot run inside a map/filter callback',
    );
  });
  test('an error thrown by the callback passes through unchanged', () => {
    // A script `throw #{code: 42}` and an error whose message looks like an
    // engine message must both reach the catch block as they were thrown.
    for (const thrown of [new VslError('my own error', map(['code', 42n])), new VslError('plain message')]) {
      assert.throws(
        () => call([1n], 'map', fn1(() => {
          throw thrown;
        })),
        (e: unknown) => e === thrown && (e as VslError).message === thrown.message,
      );
    }
  });
});

describe('in-place array methods and the function-call form', () => {
  const cases: [string, Value[], string, Value[], Value, Value[]][] = [
    // [name, receiver, method, args, result, receiver after]
    ['push', [1n], 'push', [2n], undefined, [1n, 2n]],
    ['push an array as one item', [1n], 'push', [[2n]], undefined, [1n, [2n]]],
    ['append', [1n], 'append', [[2n, 3n]], undefined, [1n, 2n, 3n]],
    ['insert', [1n, 3n], 'insert', [1n, 2n], undefined, [1n, 2n, 3n]],
    ['insert negative', [1n, 3n], 'insert', [-1n, 2n], undefined, [1n, 2n, 3n]],
    ['insert past the end', [1n], 'insert', [9n, 2n], undefined, [1n, 2n]],
    ['pop', [1n, 2n], 'pop', [], 2n, [1n]],
    ['pop empty', [], 'pop', [], undefined, []],
    ['shift', [1n, 2n], 'shift', [], 1n, [2n]],
    ['shift empty', [], 'shift', [], undefined, []],
    ['remove', [1n, 2n, 3n], 'remove', [1n], 2n, [1n, 3n]],
    ['remove negative', [1n, 2n, 3n], 'remove', [-1n], 3n, [1n, 2n]],
    ['remove out of range', [1n], 'remove', [5n], undefined, [1n]],
    ['truncate', [1n, 2n, 3n], 'truncate', [1n], undefined, [1n]],
    ['truncate longer', [1n], 'truncate', [3n], undefined, [1n]],
    ['clear', [1n, 2n], 'clear', [], undefined, []],
    ['reverse', [1n, 2n, 3n], 'reverse', [], undefined, [3n, 2n, 1n]],
    ['sort ints and floats', [3n, 1.5, -2n, 2n ** 60n], 'sort', [], undefined, [-2n, 1.5, 3n, 2n ** 60n]],
    ['sort strings by code point', ['b', '😀', '\uffff', 'a'], 'sort', [], undefined, ['a', 'b', '\uffff', '😀']],
    ['sort chars', [ch('c'), ch('a')], 'sort', [], undefined, [ch('a'), ch('c')]],
  ];
  for (const [name, recv, method, args, result, after] of cases) {
    test(`a.${name} changes a in place`, () => {
      const a = recv.slice();
      const [r, self] = callMethod(X, a, method, args);
      assert.deepEqual(r, result);
      assert.equal(self, a, 'self is the same array');
      assert.deepEqual(a, after);
    });
    test(`${name}(a, …) leaves a unchanged and returns the result`, () => {
      const a = recv.slice();
      const r = callGlobal(X, method, [a, ...args]);
      assert.deepEqual(r, result);
      assert.deepEqual(a, recv);
    });
  }
  test('pushed values are copies', () => {
    const item: Value[] = [1n];
    const a: Value[] = [];
    call(a, 'push', item);
    item.push(2n);
    assert.deepEqual(a, [[1n]]);
  });
  test('sort with a comparator', () => {
    const a: Value[] = [1n, 3n, 2n];
    call(a, 'sort', fn2((p, q) => (q as bigint) - (p as bigint)));
    assert.deepEqual(a, [3n, 2n, 1n]);
  });
  test('sorting mixed types is an error and leaves the array alone', () => {
    const a: Value[] = [1n, 'a', 2n];
    throwsVsl(() => call(a, 'sort'), 'sort: cannot sort mixed types (i64 and string)');
    assert.deepEqual(a, [1n, 'a', 2n]);
    throwsVsl(() => call([[1n], [2n]], 'sort'), 'sort: cannot sort values of type array');
    throwsVsl(() => call([1n, NaN], 'sort'), 'sort: cannot sort NaN');
  });
  test('append needs an array', () => {
    throwsVsl(() => call([], 'append', 1n), 'append: argument must be an array, got i64');
  });
});

describe('map methods', () => {
  test('pure queries', () => {
    const m = map(['a', 1n], ['b', [2n]]);
    assert.equal(call(m, 'len'), 2n);
    assert.equal(call(new Map(), 'is_empty'), true);
    assert.deepEqual(call(m, 'keys'), ['a', 'b']);
    assert.deepEqual(call(m, 'values'), [1n, [2n]]);
    assert.equal(call(m, 'contains', 'a'), true);
    assert.equal(call(m, 'contains', ch('b')), true);
    assert.equal(call(m, 'contains', 'z'), false);
    assert.equal(call(m, 'get', 'a'), 1n);
    assert.equal(call(m, 'get', 'z'), undefined);
    (call(m, 'get', 'b') as Value[]).push(0n);
    (call(m, 'values') as Value[][])[1]?.push(0n);
    assert.deepEqual(m.get('b'), [2n], 'get and values return copies');
    throwsVsl(() => call(m, 'get', 1n), 'get: key must be a string, got i64');
  });
  test('set, remove, mixin and clear change the map in place', () => {
    const m = map(['a', 1n]);
    assert.deepEqual(callMethod(X, m, 'set', ['b', 2n]), [undefined, m]);
    assert.deepEqual([...m], [['a', 1n], ['b', 2n]]);
    assert.deepEqual(callMethod(X, m, 'remove', ['a']), [1n, m]);
    assert.deepEqual(callMethod(X, m, 'remove', ['a']), [undefined, m]);
    call(m, 'mixin', map(['b', 3n], ['c', 4n]));
    assert.deepEqual([...m], [['b', 3n], ['c', 4n]]);
    call(m, 'clear');
    assert.equal(m.size, 0);
  });
  test('set(m, …) in function form leaves m unchanged', () => {
    const m = map(['a', 1n]);
    assert.equal(callGlobal(X, 'set', [m, 'b', 2n]), undefined);
    assert.equal(callGlobal(X, 'remove', [m, 'a']), 1n);
    assert.deepEqual([...m], [['a', 1n]]);
  });
});

describe('number methods', () => {
  const cases: [string, Value, string, Value[], Value][] = [
    ['abs int', -5n, 'abs', [], 5n],
    ['abs MAX', I64_MAX, 'abs', [], I64_MAX],
    ['abs float', -2.5, 'abs', [], 2.5],
    ['sign negative int', -9n, 'sign', [], -1n],
    ['sign zero', 0n, 'sign', [], 0n],
    ['sign float', 0.1, 'sign', [], 1n],
    ['min ints', 3n, 'min', [2n], 2n],
    ['max ints', 3n, 'max', [2n], 3n],
    ['min int and float', 3n, 'min', [2.5], 2.5],
    ['max int and float gives a float', 3n, 'max', [2.5], 3],
    ['floor', -2.5, 'floor', [], -3],
    ['ceiling', 2.1, 'ceiling', [], 3],
    ['round half away from zero', 2.5, 'round', [], 3],
    ['round negative half away from zero', -2.5, 'round', [], -3],
    ['round down', 2.4999, 'round', [], 2],
    ['floor of an int', 7n, 'floor', [], 7n],
    ['sqrt of an int', 16n, 'sqrt', [], 4],
    ['sqrt of -1', -1.0, 'sqrt', [], NaN],
    ['is_nan', NaN, 'is_nan', [], true],
    ['is_nan int', 1n, 'is_nan', [], false],
    ['to_int truncates', -2.9, 'to_int', [], -2n],
    ['to_int of an int', 5n, 'to_int', [], 5n],
    ['to_int of a large exact float', 2 ** 62, 'to_int', [], 2n ** 62n],
    ['to_float', 2n ** 53n + 1n, 'to_float', [], 2 ** 53],
    ['to_string of a float', 1.0, 'to_string', [], '1.0'],
    ['is_odd', 3n, 'is_odd', [], true],
    ['is_even', -4n, 'is_even', [], true],
  ];
  for (const [name, recv, method, args, want] of cases) {
    test(`${name}: ${String(recv)}.${method}() == ${String(want)}`, () => {
      const got = call(recv, method, ...args);
      assert.equal(typeof got, typeof want);
      assert.ok(Object.is(got, want) || got === want, `got ${String(got)}`);
    });
  }
  test('round keeps the sign of -0.0', () => {
    assert.ok(Object.is(call(-0.2, 'round'), -0));
  });
  const errors: [Value, string, Value[], string][] = [
    [I64_MIN, 'abs', [], 'abs: arithmetic overflow'],
    [NaN, 'sign', [], 'sign: NaN has no sign'],
    [NaN, 'to_int', [], 'to_int: cannot convert NaN to an int'],
    [Infinity, 'to_int', [], 'to_int: cannot convert inf to an int'],
    [1e19, 'to_int', [], 'to_int: 10000000000000000000.0 is out of the i64 range'],
    [-1e300, 'to_int', [], 'to_int: -1e300 is out of the i64 range'],
    [9223372036854775807, 'to_int', [], 'to_int: 9223372036854776000.0 is out of the i64 range'],
    [1n, 'min', ['2'], 'min: argument must be a number, got string'],
  ];
  for (const [recv, method, args, message] of errors) {
    test(`${method} fails with "${message}"`, () => throwsVsl(() => callMethod(X, recv, method, args), message));
  }
});

describe('chars and ranges', () => {
  test('char methods', () => {
    assert.deepEqual(call(ch('a'), 'to_upper'), ch('A'));
    assert.deepEqual(call(ch('ß'), 'to_upper'), ch('ß'));
    assert.equal(call(ch('😀'), 'to_int'), 0x1f600n);
    assert.equal(call(ch(' '), 'is_whitespace'), true);
    assert.equal(call(ch('a'), 'to_debug'), "'a'");
  });
  test('range methods', () => {
    const r = new VRange(2n, 5n, false);
    assert.equal(call(r, 'len'), 3n);
    assert.equal(call(new VRange(2n, 5n, true), 'len'), 4n);
    assert.equal(call(new VRange(5n, 2n, false), 'is_empty'), true);
    assert.equal(call(r, 'start'), 2n);
    assert.equal(call(r, 'end'), 5n);
    assert.equal(call(r, 'contains', 4n), true);
    assert.equal(call(new VStepRange(0n, 10n, 3n), 'len'), 4n);
    assert.equal(call(new VStepRange(10n, 0n, -3n), 'len'), 4n);
  });
});

describe('global functions', () => {
  test('engine functions', () => {
    assert.equal(callGlobal(X, 'type_of', [1.5]), 'f64');
    assert.equal(callGlobal(X, 'to_string', [[1n, 'a']]), '[1, "a"]');
    assert.equal(callGlobal(X, 'to_debug', ['a']), '"a"');
    assert.equal(callGlobal(X, 'to_int', [3.9]), 3n);
    assert.equal(callGlobal(X, 'to_float', [3n]), 3);
    assert.deepEqual(callGlobal(X, 'parse_json', ['{"a":[1,2.5]}']), map(['a', [1n, 2.5]]));
    assert.equal(callGlobal(X, 'to_json', [map(['a', undefined])]), '{"a":null}');
    assert.deepEqual(callGlobal(X, 'range', [1n, 4n]), new VRange(1n, 4n, false));
    assert.deepEqual(callGlobal(X, 'range', [0n, 10n, 5n]), new VStepRange(0n, 10n, 5n));
    throwsVsl(() => callGlobal(X, 'range', [0n, 10n, 0n]), 'range: step must not be 0');
    throwsVsl(() => callGlobal(X, 'to_int', ['12']), 'to_int: cannot convert string to an int');
  });
  const ints: [Value[], bigint][] = [
    [['42'], 42n],
    [['-42'], -42n],
    [['+7'], 7n],
    [['9223372036854775807'], I64_MAX],
    [['-9223372036854775808'], I64_MIN],
    [['9007199254740993'], 9007199254740993n],
    [['ff', 16n], 255n],
    [['-101', 2n], -5n],
    [['zZ', 36n], 1295n],
  ];
  for (const [args, want] of ints) {
    test(`parse_int(${args.map(String).join(', ')}) == ${want}`, () => assert.equal(callGlobal(X, 'parse_int', args), want));
  }
  const badInts: [Value[], string][] = [
    [[''], 'parse_int: invalid number ""'],
    [['-'], 'parse_int: invalid number "-"'],
    [[' 1'], 'parse_int: invalid number " 1"'],
    [['1e3'], 'parse_int: invalid number "1e3"'],
    [['1_000'], 'parse_int: invalid number "1_000"'],
    [['0x10'], 'parse_int: invalid number "0x10"'],
    [['12', 2n], 'parse_int: invalid number "12"'],
    [['1', 37n], 'parse_int: radix must be in 2..=36, got 37'],
    [['9223372036854775808'], 'parse_int: 9223372036854775808 is out of the i64 range'],
    [['99999999999999999999999999'], 'parse_int: 99999999999999999999999999 is out of the i64 range'],
    [[12n], 'parse_int: the text must be a string, got i64'],
  ];
  for (const [args, message] of badInts) {
    test(`parse_int fails with "${message}"`, () => throwsVsl(() => callGlobal(X, 'parse_int', args), message));
  }
  const floats: [string, number][] = [
    ['1.5', 1.5],
    ['-2', -2],
    ['1e3', 1000],
    ['.5', 0.5],
    ['5.', 5],
    ['+1.5E-2', 0.015],
    ['inf', Infinity],
    ['-Infinity', -Infinity],
  ];
  for (const [text, want] of floats) {
    test(`parse_float(${JSON.stringify(text)}) == ${want}`, () => {
      const got = callGlobal(X, 'parse_float', [text]);
      assert.equal(typeof got, 'number');
      assert.equal(got, want);
    });
  }
  test('parse_float("NaN") is NaN', () => assert.ok(Number.isNaN(callGlobal(X, 'parse_float', ['NaN']) as number)));
  for (const bad of ['', 'abc', '1.5x', ' 1', '1e', '0x10', '1,5']) {
    test(`parse_float(${JSON.stringify(bad)}) is an error`, () =>
      throwsVsl(() => callGlobal(X, 'parse_float', [bad]), `parse_float: invalid number ${JSON.stringify(bad)}`));
  }
  test('function forms of methods', () => {
    assert.equal(callGlobal(X, 'len', ['a😀']), 2n);
    assert.equal(callGlobal(X, 'contains', [[1n, 2n], 2n]), true);
    assert.equal(callGlobal(X, 'max', [1n, 2n]), 2n);
    assert.equal(callGlobal(X, 'abs', [-1.5]), 1.5);
    throwsVsl(() => callGlobal(X, 'len', [1n]), "no method 'len' for i64");
    throwsVsl(() => callGlobal(X, 'nothing', []), "no function 'nothing' without arguments");
  });
  test('hasGlobalFunction knows names and arities', () => {
    const yes: [string, number][] = [
      ['type_of', 1],
      ['parse_int', 1],
      ['parse_int', 2],
      ['range', 2],
      ['range', 3],
      ['len', 1],
      ['push', 2],
      ['sub_string', 2],
      ['sub_string', 3],
      ['reduce', 3],
      ['contains', 2],
      ['min', 2],
      ['to_json', 1],
    ];
    const no: [string, number][] = [
      ['type_of', 2],
      ['range', 1],
      ['len', 0],
      ['len', 2],
      ['push', 1],
      ['print', 1],
      ['Fn', 1],
      ['lookup', 1],
      ['constructor', 1],
      ['toString', 1],
    ];
    for (const [name, n] of yes) assert.equal(hasGlobalFunction(name, n), true, `${name}/${n}`);
    for (const [name, n] of no) assert.equal(hasGlobalFunction(name, n), false, `${name}/${n}`);
  });
});
