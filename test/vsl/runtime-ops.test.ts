import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { VStepRange, add, asBool, band, bor, bxor, contains, copyValue, div, eq, ge, getIndex, getProp, gt, iterate, le, lt, matchCase, matchRange, mod, mul, ne, neg, not, plus, pow, range, setIndex, setProp, shl, shr, sub, typeOf } from '../../src/vsl/guest/ops.js';
import { I64_MAX, I64_MIN, VChar, VFn, VObject, VRange, VslError, type Value } from '../../src/vsl/values/value.js';

const MAX = I64_MAX;
const MIN = I64_MIN;
const ch = (c: string) => new VChar(c);
const map = (...entries: [string, Value][]) => new Map<string, Value>(entries);

/** A network-like container: holds strings starting with its prefix. */
class FakeNet extends VObject {
  readonly type = 'rg4';
  constructor(readonly prefix: string) {
    super();
  }
  text(): string {
    return `${this.prefix}0/24`;
  }
  equals(other: Value): boolean {
    return (other instanceof FakeNet && other.prefix === this.prefix) || other === this.text();
  }
  override contains(x: Value): boolean {
    if (typeof x !== 'string') throw new VslError(`cannot test membership of ${typeOf(x)} in rg4`);
    return x.startsWith(this.prefix);
  }
}

/** An address-like object: a container too, but arrays must not look inside it. */
class FakeAddress extends VObject {
  readonly type = 'address';
  constructor(
    readonly local: string,
    readonly domain: string,
  ) {
    super();
  }
  text(): string {
    return `${this.local}@${this.domain}`;
  }
  equals(other: Value): boolean {
    return other === this.text() || (other instanceof FakeAddress && other.text() === this.text());
  }
  override contains(x: Value): boolean {
    return x === this.local || x === this.domain;
  }
  override getProp(name: string): Value {
    if (name === 'local_part') return this.local;
    if (name === 'domain') return this.domain;
    return super.getProp(name);
  }
}

/** A regex-like object whose equality means "matches", defined on its side only. */
class FakeRegex extends VObject {
  readonly type = 'regex';
  constructor(readonly re: RegExp) {
    super();
  }
  text(): string {
    return this.re.source;
  }
  equals(other: Value): boolean {
    if (other instanceof FakeRegex) return other.re.source === this.re.source;
    if (typeof other === 'string') return this.re.test(other);
    if (other instanceof VObject) return this.re.test(other.text());
    return false;
  }
  override contains(x: Value): boolean {
    if (typeof x === 'string') return this.re.test(x);
    throw new VslError('regex: expected text');
  }
}

function throwsVsl(f: () => unknown, message: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof VslError, `expected a VslError, got ${String(e)}`);
    assert.equal(e.message, message);
    return true;
  });
}

describe('arithmetic on ints is exact i64', () => {
  const cases: [string, (a: Value, b: Value) => Value, Value, Value, Value][] = [
    ['1 + 2', add, 1n, 2n, 3n],
    ['MAX - 1 + 1', add, MAX - 1n, 1n, MAX],
    ['MIN + -1 + 1', add, MIN + 1n, -1n, MIN],
    ['2^53 + 1 stays exact', add, 2n ** 53n, 1n, 9007199254740993n],
    ['5 - 7', sub, 5n, 7n, -2n],
    ['MIN + 1 - 1', sub, MIN + 1n, 1n, MIN],
    ['6 * 7', mul, 6n, 7n, 42n],
    ['2^62 * -2 is MIN', mul, 2n ** 62n, -2n, MIN],
    ['-7 / 2 truncates toward zero', div, -7n, 2n, -3n],
    ['7 / -2 truncates toward zero', div, 7n, -2n, -3n],
    ['-7 % 2 takes the dividend sign', mod, -7n, 2n, -1n],
    ['7 % -2 takes the dividend sign', mod, 7n, -2n, 1n],
    ['MIN % -1 is 0', mod, MIN, -1n, 0n],
    ['2 ** 10', pow, 2n, 10n, 1024n],
    ['2 ** 62', pow, 2n, 62n, 2n ** 62n],
    ['-2 ** 63 is MIN', pow, -2n, 63n, MIN],
    ['0 ** 0', pow, 0n, 0n, 1n],
    ['-1 ** 1000001', pow, -1n, 1000001n, -1n],
    ['1 ** MAX', pow, 1n, MAX, 1n],
    ['1 << 62', shl, 1n, 62n, 2n ** 62n],
    ['-1 << 63 is MIN', shl, -1n, 63n, MIN],
    ['5 << 0', shl, 5n, 0n, 5n],
    ['-8 >> 1 is arithmetic', shr, -8n, 1n, -4n],
    ['-1 >> 63 stays -1', shr, -1n, 63n, -1n],
    ['MAX >> 62', shr, MAX, 62n, 1n],
    ['12 & 10', band, 12n, 10n, 8n],
    ['12 | 10', bor, 12n, 10n, 14n],
    ['12 ^ 10', bxor, 12n, 10n, 6n],
    ['-1 & MIN', band, -1n, MIN, MIN],
  ];
  for (const [name, op, a, b, want] of cases) {
    test(`${name} == ${String(want)}`, () => {
      const got = op(a, b);
      assert.equal(typeof got, 'bigint');
      assert.equal(got, want);
    });
  }
});

describe('int overflow is the runtime error `arithmetic overflow`', () => {
  const cases: [string, () => Value][] = [
    ['MAX + 1', () => add(MAX, 1n)],
    ['MIN + -1', () => add(MIN, -1n)],
    ['MIN - 1', () => sub(MIN, 1n)],
    ['MAX - -1', () => sub(MAX, -1n)],
    ['MAX * 2', () => mul(MAX, 2n)],
    ['MIN * -1', () => mul(MIN, -1n)],
    ['MIN / -1', () => div(MIN, -1n)],
    ['2 ** 63', () => pow(2n, 63n)],
    ['3 ** 40', () => pow(3n, 40n)],
    ['2 ** MAX', () => pow(2n, MAX)],
    ['-MIN', () => neg(MIN)],
    ['1 << 63', () => shl(1n, 63n)],
    ['MAX << 1', () => shl(MAX, 1n)],
    ['MIN << 1', () => shl(MIN, 1n)],
  ];
  for (const [name, f] of cases) {
    test(`${name} overflows`, () => throwsVsl(f, 'arithmetic overflow'));
  }
});

describe('division and exponent errors', () => {
  test('int / 0 is division by zero', () => throwsVsl(() => div(1n, 0n), 'division by zero'));
  test('int % 0 is division by zero', () => throwsVsl(() => mod(1n, 0n), 'division by zero'));
  test('a negative int exponent is an error', () =>
    throwsVsl(() => pow(2n, -1n), 'cannot raise an int to a negative power'));
  test('float division by zero follows IEEE', () => {
    assert.equal(div(1.0, 0.0), Infinity);
    assert.equal(div(-1n, 0.0), -Infinity);
    assert.ok(Number.isNaN(div(0.0, 0n) as number));
    assert.ok(Number.isNaN(mod(1n, 0.0) as number));
  });
  test('shift counts outside 0..=63 are errors', () => {
    throwsVsl(() => shl(1n, 64n), 'shift count must be in 0..=63, got 64');
    throwsVsl(() => shr(1n, -1n), 'shift count must be in 0..=63, got -1');
  });
});

describe('mixing int and float gives a float', () => {
  const cases: [string, () => Value, number][] = [
    ['1 + 0.5', () => add(1n, 0.5), 1.5],
    ['0.5 + 1', () => add(0.5, 1n), 1.5],
    ['2 * 1.5', () => mul(2n, 1.5), 3],
    ['3 - 0.5', () => sub(3n, 0.5), 2.5],
    ['7 / 2.0', () => div(7n, 2.0), 3.5],
    ['-7.5 % 2', () => mod(-7.5, 2n), -1.5],
    ['2 ** 0.5', () => pow(2n, 0.5), Math.SQRT2],
    ['2.0 ** -1', () => pow(2.0, -1n), 0.5],
    ['-(1.5)', () => neg(1.5), -1.5],
  ];
  for (const [name, f, want] of cases) {
    test(`${name} == ${want}`, () => {
      const got = f();
      assert.equal(typeof got, 'number');
      assert.equal(got, want);
    });
  }
});

describe('+ on strings, chars, arrays and maps', () => {
  test('a string on either side concatenates to_string of the other', () => {
    assert.equal(add('n=', 42n), 'n=42');
    assert.equal(add(42n, '=n'), '42=n');
    assert.equal(add('x', 1.0), 'x1.0');
    assert.equal(add('x', true), 'xtrue');
    assert.equal(add('x', undefined), 'x()');
    assert.equal(add('x', ch('y')), 'xy');
    assert.equal(add(ch('y'), 'x'), 'yx');
    assert.equal(add('a', [1n, 'b', ch('c')]), 'a[1, "b", \'c\']');
    assert.equal(add('m', map(['k', 1n])), 'm#{"k": 1}');
    assert.equal(add('ip ', new FakeNet('10.0.0.')), 'ip 10.0.0.0/24');
  });
  test('char + char is a string', () => {
    assert.equal(add(ch('a'), ch('😀')), 'a😀');
  });
  test('array + array is a new array of copies', () => {
    const inner = [1n];
    const a: Value[] = [inner];
    const b: Value[] = [2n];
    const r = add(a, b) as Value[];
    assert.deepEqual(r, [[1n], 2n]);
    assert.notEqual(r, a);
    (r[0] as Value[]).push(9n);
    assert.deepEqual(inner, [1n]);
  });
  test('map + map is a new map where the right side wins', () => {
    const a = map(['x', 1n], ['y', 2n]);
    const r = add(a, map(['y', 3n], ['z', 4n])) as Map<string, Value>;
    assert.deepEqual([...r], [['x', 1n], ['y', 3n], ['z', 4n]]);
    assert.equal(a.get('y'), 2n);
  });
  test('other pairs cannot be added', () => {
    throwsVsl(() => add(true, 1n), 'cannot add bool and i64');
    throwsVsl(() => add([1n], 1n), 'cannot add array and i64');
    throwsVsl(() => add(undefined, undefined), 'cannot add () and ()');
    throwsVsl(() => add(ch('a'), 1n), 'cannot add char and i64');
  });
  test('- * / % ** accept numbers only', () => {
    throwsVsl(() => sub('a', 1n), "cannot apply '-' to string and i64");
    throwsVsl(() => mul('a', 2n), "cannot apply '*' to string and i64");
    throwsVsl(() => div([1n], 1n), "cannot apply '/' to array and i64");
    throwsVsl(() => mod(true, 1n), "cannot apply '%' to bool and i64");
    throwsVsl(() => pow(2n, '1'), "cannot apply '**' to i64 and string");
    throwsVsl(() => shl(1.0, 1n), "cannot apply '<<' to f64 and i64");
  });
});

describe('unary and boolean operators', () => {
  test('& | ^ on bools are logical', () => {
    assert.equal(band(true, false), false);
    assert.equal(bor(true, false), true);
    assert.equal(bxor(true, true), false);
    assert.equal(bxor(true, false), true);
    throwsVsl(() => band(true, 1n), "cannot apply '&' to bool and i64");
  });
  test('! takes a bool only', () => {
    assert.equal(not(false), true);
    throwsVsl(() => not(1n), "operand of '!' must be a bool, got i64");
    throwsVsl(() => not(undefined), "operand of '!' must be a bool, got ()");
  });
  test('unary - and + on numbers', () => {
    assert.equal(neg(5n), -5n);
    assert.equal(neg(MAX), MIN + 1n);
    assert.ok(Object.is(neg(0.0), -0));
    assert.equal(plus(3n), 3n);
    throwsVsl(() => neg('a'), 'cannot negate string');
    throwsVsl(() => plus('a'), "cannot apply unary '+' to string");
  });
  test('asBool refuses truthiness', () => {
    assert.equal(asBool(true, 'if condition'), true);
    throwsVsl(() => asBool(1n, 'if condition'), 'if condition must be a bool, got i64');
    throwsVsl(() => asBool('', 'if condition'), 'if condition must be a bool, got string');
  });
});

describe('== across types', () => {
  const fn = (name: string) => new VFn(name, () => undefined, 0);
  const net = new FakeNet('10.0.0.');
  const cases: [string, Value, Value, boolean][] = [
    ['1 == 1.0', 1n, 1.0, true],
    ['1.0 == 1', 1.0, 1n, true],
    ['1 == 1.5', 1n, 1.5, false],
    ['2^53 + 1 != 2^53 as float', 2n ** 53n + 1n, 2 ** 53, false],
    ['2^53 == 2^53 as float', 2n ** 53n, 2 ** 53, true],
    ['NaN != NaN', NaN, NaN, false],
    ['1 != inf', 1n, Infinity, false],
    ['0.0 == -0.0', 0.0, -0.0, true],
    ['"a" == \'a\'', 'a', ch('a'), true],
    ["'a' == \"a\"", ch('a'), 'a', true],
    ['"ab" != \'a\'', 'ab', ch('a'), false],
    ["'a' == 'a'", ch('a'), ch('a'), true],
    ['() == ()', undefined, undefined, true],
    ['() != false', undefined, false, false],
    ['() != 0', undefined, 0n, false],
    ['() != ""', undefined, '', false],
    ['[1, [2]] == [1, [2]]', [1n, [2n]], [1n, [2n]], true],
    ['[1, [2]] == [1.0, [2]]', [1n, [2n]], [1.0, [2n]], true],
    ['[1, [2]] != [1, [3]]', [1n, [2n]], [1n, [3n]], false],
    ['[1] != [1, 1]', [1n], [1n, 1n], false],
    ['maps structurally, any order', map(['a', 1n], ['b', 'x']), map(['b', 'x'], ['a', 1n]), true],
    ['maps with different values', map(['a', 1n]), map(['a', 2n]), false],
    ['maps with different keys', map(['a', 1n]), map(['b', 1n]), false],
    ['1 != "1"', 1n, '1', false],
    ['true != 1', true, 1n, false],
    ['"1" != 1', '1', 1n, false],
    ['functions by name', fn('f'), fn('f'), true],
    ['functions with other names', fn('f'), fn('g'), false],
    ['ranges by bounds', new VRange(1n, 5n, false), new VRange(1n, 5n, false), true],
    ['a..b != a..=b', new VRange(1n, 5n, false), new VRange(1n, 5n, true), false],
    ['object == its text', net, '10.0.0.0/24', true],
    ['text == object', '10.0.0.0/24', net, true],
    ['object != other text', net, '10.0.1.0/24', false],
    ['object != int', net, 1n, false],
    ['regex == matching string', new FakeRegex(/^a/), 'abc', true],
    ['address == regex asks the regex side too', new FakeAddress('ann', 'x.test'), new FakeRegex(/ann/), true],
    ['address != non-matching regex', new FakeAddress('bob', 'x.test'), new FakeRegex(/ann/), false],
  ];
  for (const [name, a, b, want] of cases) {
    test(`${name} is ${want}`, () => {
      assert.equal(eq(a, b), want);
      assert.equal(ne(a, b), !want);
    });
  }
  test('an object whose equals throws compares unequal instead of failing', () => {
    class Broken extends FakeNet {
      override equals(): boolean {
        throw new VslError('boom');
      }
    }
    assert.equal(eq(new Broken('1.'), 'x'), false);
  });
});

describe('ordering', () => {
  const cases: [string, Value, Value, [boolean, boolean, boolean, boolean]][] = [
    // [lt, le, gt, ge]
    ['1 vs 2', 1n, 2n, [true, true, false, false]],
    ['2 vs 2.0', 2n, 2.0, [false, true, false, true]],
    ['1 vs 1.5', 1n, 1.5, [true, true, false, false]],
    ['-1 vs -1.5', -1n, -1.5, [false, false, true, true]],
    ['2^53 + 1 vs 2^53 float', 2n ** 53n + 1n, 2 ** 53, [false, false, true, true]],
    ['2.5 vs 3', 2.5, 3n, [true, true, false, false]],
    ['MAX vs inf', MAX, Infinity, [true, true, false, false]],
    ['MIN vs -inf', MIN, -Infinity, [false, false, true, true]],
    ['1 vs NaN is unordered', 1n, NaN, [false, false, false, false]],
    ['"abc" vs "abd"', 'abc', 'abd', [true, true, false, false]],
    ['"ab" vs "abc"', 'ab', 'abc', [true, true, false, false]],
    ['"b" vs "abc"', 'b', 'abc', [false, false, true, true]],
    // U+FFFF sorts before U+1F600 by code point, though not by UTF-16 unit.
    ['"\\uFFFF" vs "😀"', '\uffff', '😀', [true, true, false, false]],
    ["'a' vs 'b'", ch('a'), ch('b'), [true, true, false, false]],
    ["'\\uFFFF' vs '😀'", ch('\uffff'), ch('😀'), [true, true, false, false]],
  ];
  for (const [name, a, b, [l, leq, g, geq]] of cases) {
    test(`${name}: < ${l}, <= ${leq}, > ${g}, >= ${geq}`, () => {
      assert.deepEqual([lt(a, b), le(a, b), gt(a, b), ge(a, b)], [l, leq, g, geq]);
    });
  }
  const errors: [Value, Value, string][] = [
    [1n, '1', 'cannot compare i64 with string'],
    ['a', ch('a'), 'cannot compare string with char'],
    [undefined, 1n, 'cannot compare () with i64'],
    [[1n], [2n], 'cannot compare array with array'],
    [true, false, 'cannot compare bool with bool'],
  ];
  for (const [a, b, message] of errors) {
    test(`comparing ${typeOf(a)} with ${typeOf(b)} is an error`, () => {
      throwsVsl(() => lt(a, b), message);
      throwsVsl(() => ge(a, b), message);
    });
  }
});

describe('membership', () => {
  const net = new FakeNet('192.168.1.');
  const cases: [string, Value, Value, boolean][] = [
    ['substring in string', 'ell', 'hello', true],
    ['missing substring', 'xyz', 'hello', false],
    ['char in string', ch('😀'), 'a😀b', true],
    ['text object in string', new FakeAddress('a', 'b.test'), 'to a@b.test', true],
    ['key in map', 'k', map(['k', undefined]), true],
    ['char key in map', ch('k'), map(['k', 1n]), true],
    ['object text as map key', net, map(['192.168.1.0/24', true]), true],
    ['absent key', 'q', map(['k', 1n]), false],
    ['equal element', 2n, [1n, 2n], true],
    ['element equal numerically', 2.0, [1n, 2n], true],
    ['string equals char element', 'a', [ch('a')], true],
    ['no equal element', 3n, [1n, 2n], false],
    ['inside a nested array', 3n, [1n, [2n, [3n]]], true],
    ['inside a network element', '192.168.1.7', ['x', net], true],
    ['outside every network', '10.0.0.1', [net], false],
    ['non-text value next to a network does not fail', 5n, [net], false],
    ['regex element matches', 'spam@x.test', [new FakeRegex(/^spam@/)], true],
    ['arrays do not look inside address elements', 'ann', [new FakeAddress('ann', 'x.test')], false],
    ['arrays do find an equal address', 'ann@x.test', [new FakeAddress('ann', 'x.test')], true],
    ['object container', '192.168.1.9', net, true],
    ['int in range', 4n, new VRange(1n, 5n, false), true],
    ['end excluded', 5n, new VRange(1n, 5n, false), false],
    ['end included', 5n, new VRange(1n, 5n, true), true],
    ['below range', 0n, new VRange(1n, 5n, true), false],
    ['stepped range hit', 7n, new VStepRange(1n, 10n, 3n), true],
    ['stepped range miss', 6n, new VStepRange(1n, 10n, 3n), false],
    ['descending stepped range hit', 4n, new VStepRange(10n, 0n, -3n), true],
    ['descending stepped range end excluded', 0n, new VStepRange(9n, 0n, -3n), false],
  ];
  for (const [name, x, c, want] of cases) {
    test(`${name}: ${want}`, () => assert.equal(contains(c, x), want));
  }
  const errors: [Value, Value, string][] = [
    [1n, 5n, 'cannot test membership in i64'],
    [1n, undefined, 'cannot test membership in ()'],
    [1n, true, 'cannot test membership in bool'],
    [1n, 'abc', 'cannot test membership of i64 in string'],
    [1n, map(['1', 1n]), 'cannot test membership of i64 in map'],
    ['a', new VRange(1n, 2n, false), 'cannot test membership of string in range'],
    [1n, new VFn('f', () => undefined, 0), 'cannot test membership in Fn'],
  ];
  for (const [x, c, message] of errors) {
    test(`x in ${typeOf(c)} fails with "${message}"`, () => throwsVsl(() => contains(c, x), message));
  }
  test('a non-container object raises its own error', () => {
    class Plain extends FakeAddress {
      override contains(x: Value): boolean {
        return VObject.prototype.contains.call(this, x);
      }
    }
    throwsVsl(() => contains(new Plain('a', 'b'), 'a'), 'cannot test membership in address');
  });
});

describe('types, copies and iteration', () => {
  test('type_of names every kind of value', () => {
    const cases: [Value, string][] = [
      [1n, 'i64'],
      [1.5, 'f64'],
      [true, 'bool'],
      [undefined, '()'],
      [ch('a'), 'char'],
      ['s', 'string'],
      [[], 'array'],
      [new Map(), 'map'],
      [new VFn('f', () => undefined, 0), 'Fn'],
      [new VRange(1n, 2n, false), 'range'],
      [new VRange(1n, 2n, true), 'range='],
      [new VStepRange(1n, 9n, 2n), 'range'],
      [new FakeNet('1.'), 'rg4'],
    ];
    for (const [v, want] of cases) assert.equal(typeOf(v), want);
  });
  test('copyValue copies arrays and maps deeply', () => {
    const orig: Value[] = [1n, [2n], map(['k', [3n]])];
    const copy = copyValue(orig) as Value[];
    assert.deepEqual(copy, orig);
    ((copy[1] as Value[]) as Value[]).push(0n);
    (((copy[2] as Map<string, Value>).get('k')) as Value[]).push(0n);
    assert.deepEqual(orig, [1n, [2n], map(['k', [3n]])]);
    const obj = new FakeNet('1.');
    assert.equal(copyValue(obj), obj);
  });
  test('for over an array walks a copy', () => {
    const a: Value[] = [1n, 2n];
    const seen: Value[] = [];
    for (const v of iterate(a)) {
      a.push(9n);
      seen.push(v);
    }
    assert.deepEqual(seen, [1n, 2n]);
  });
  test('for over ranges', () => {
    assert.deepEqual([...iterate(new VRange(1n, 4n, false))], [1n, 2n, 3n]);
    assert.deepEqual([...iterate(new VRange(1n, 4n, true))], [1n, 2n, 3n, 4n]);
    assert.deepEqual([...iterate(new VRange(4n, 1n, false))], []);
    assert.deepEqual([...iterate(new VStepRange(0n, 10n, 4n))], [0n, 4n, 8n]);
    assert.deepEqual([...iterate(new VStepRange(10n, 0n, -3n))], [10n, 7n, 4n, 1n]);
  });
  test('for over a string walks code points as chars', () => {
    const got = [...iterate('ae\u0301😀')].map((c) => (c as VChar).c);
    assert.deepEqual(got, ['a', 'e', '\u0301', '😀']);
  });
  test('maps and other values are not iterable', () => {
    throwsVsl(() => iterate(new Map()), 'maps are not iterable; use keys() or values()');
    throwsVsl(() => iterate(5n), 'cannot iterate over i64');
    throwsVsl(() => iterate(undefined), 'cannot iterate over ()');
  });
  test('range() needs int bounds', () => {
    assert.deepEqual(range(1n, 3n, true), new VRange(1n, 3n, true));
    throwsVsl(() => range(1n, 3.0, false), 'range bounds must be ints, got i64 and f64');
  });
});

describe('indexing and properties', () => {
  test('array indices count from the end when negative', () => {
    const a: Value[] = [10n, 20n, 30n];
    assert.equal(getIndex(a, 0n), 10n);
    assert.equal(getIndex(a, -1n), 30n);
    assert.equal(getIndex(a, -3n), 10n);
    throwsVsl(() => getIndex(a, 3n), 'index out of range');
    throwsVsl(() => getIndex(a, -4n), 'index out of range');
    throwsVsl(() => getIndex(a, 'x'), 'array index must be an int, got string');
  });
  test('string indices count code points and give chars', () => {
    const s = 'e\u0301😀z';
    assert.deepEqual(getIndex(s, 1n), ch('\u0301'));
    assert.deepEqual(getIndex(s, 2n), ch('😀'));
    assert.deepEqual(getIndex(s, -1n), ch('z'));
    throwsVsl(() => getIndex(s, 4n), 'index out of range');
  });
  test('map indices give the value or ()', () => {
    const m = map(['k', 1n]);
    assert.equal(getIndex(m, 'k'), 1n);
    assert.equal(getIndex(m, 'absent'), undefined);
    throwsVsl(() => getIndex(m, 1n), 'map index must be a string, got i64');
  });
  test('?[] on () gives (), [] on () is an error', () => {
    assert.equal(getIndex(undefined, 0n, true), undefined);
    throwsVsl(() => getIndex(undefined, 0n), 'cannot index ()');
    throwsVsl(() => getIndex(5n, 0n), 'cannot index i64');
  });
  test('setIndex changes arrays and maps in place and copies the value', () => {
    const a: Value[] = [1n, 2n];
    const v: Value[] = [7n];
    assert.equal(setIndex(a, -1n, v), a);
    assert.deepEqual(a, [1n, [7n]]);
    v.push(8n);
    assert.deepEqual(a, [1n, [7n]]);
    const m = map();
    assert.equal(setIndex(m, 'k', 1n), m);
    assert.equal(m.get('k'), 1n);
    throwsVsl(() => setIndex(a, 2n, 0n), 'index out of range');
  });
  test('setIndex on a string returns a new string', () => {
    const s = 'a😀c';
    assert.equal(setIndex(s, 1n, ch('b')), 'abc');
    assert.equal(setIndex(s, -1n, ch('é')), 'a😀é');
    assert.equal(s, 'a😀c');
    throwsVsl(() => setIndex(s, 0n, 1n), 'a string element must be set to a char, got i64');
  });
  test('properties of maps, objects and ()', () => {
    const m = map(['k', 1n]);
    assert.equal(getProp(m, 'k', false), 1n);
    assert.equal(getProp(m, 'absent', false), undefined);
    assert.equal(getProp(new FakeAddress('ann', 'x.test'), 'domain', false), 'x.test');
    assert.equal(getProp(undefined, 'k', true), undefined);
    throwsVsl(() => getProp(undefined, 'k', false), "cannot read property 'k' of ()");
    throwsVsl(() => getProp('s', 'len', false), "cannot read property 'len' of string");
    throwsVsl(() => getProp(new FakeAddress('a', 'b'), 'nope', false), "address has no property 'nope'");
  });
  test('local_parts and domains of an array of addresses', () => {
    const list: Value[] = [new FakeAddress('ann', 'a.test'), new FakeAddress('bob', 'b.test')];
    assert.deepEqual(getProp(list, 'local_parts', false), ['ann', 'bob']);
    assert.deepEqual(getProp(list, 'domains', false), ['a.test', 'b.test']);
    throwsVsl(() => getProp(['x'], 'domains', false), 'domains: every element must be an address, got string');
    throwsVsl(() => getProp([], 'length', false), "cannot read property 'length' of array");
  });
  test('setProp creates map keys and refuses other receivers', () => {
    const m = map();
    assert.equal(setProp(m, 'k', [1n]), m);
    assert.deepEqual(m.get('k'), [1n]);
    throwsVsl(() => setProp(new FakeNet('1.'), 'x', 1n), "cannot set property 'x' of rg4");
    throwsVsl(() => setProp(undefined, 'x', 1n), "cannot set property 'x' of ()");
  });
});

describe('switch matching is type-strict', () => {
  const cases: [string, Value, Value, boolean][] = [
    ['1 matches 1', 1n, 1n, true],
    ['1 does not match 1.0', 1n, 1.0, false],
    ['1.0 does not match 1', 1.0, 1n, false],
    ['1 does not match "1"', 1n, '1', false],
    ['"a" does not match \'a\'', 'a', ch('a'), false],
    ["'a' matches 'a'", ch('a'), ch('a'), true],
    ['"x" matches "x"', 'x', 'x', true],
    ['() matches ()', undefined, undefined, true],
    ['true does not match 1', true, 1n, false],
    ['[1, "a"] matches [1, "a"]', [1n, 'a'], [1n, 'a'], true],
    ['[1] does not match [1.0]', [1n], [1.0], false],
    ['maps match element-wise', map(['a', 1n]), map(['a', 1n]), true],
    ['maps do not mix int and float', map(['a', 1n]), map(['a', 1.0]), false],
  ];
  for (const [name, v, p, want] of cases) {
    test(name, () => assert.equal(matchCase(v, p), want));
  }
  test('range arms match ints only', () => {
    assert.equal(matchRange(10n, 10n, 20n, false), true);
    assert.equal(matchRange(20n, 10n, 20n, false), false);
    assert.equal(matchRange(20n, 10n, 20n, true), true);
    assert.equal(matchRange(15.0, 10n, 20n, false), false);
    assert.equal(matchRange('15', 10n, 20n, false), false);
  });
});
