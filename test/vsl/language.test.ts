// The vSL language of SPEC §2–§3, evaluated end to end: each construct is
// compiled, run in the QuickJS sandbox by the production loader, and its value
// read back. Several expressions share one policy load (a load costs tens of
// milliseconds): `values()` exports each one as a constant of one main.vsl.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { loadFiles, describe as describeLoad, loadError, TestPolicy, session, txn } from '../helpers/vsl.js';
import { VChar, VObject, type Value } from '../../src/vsl/values/value.js';

/**
 * Evaluates every expression of `cases` after the top-level code `prelude`
 * (and beside the extra `files`) in one policy load; returns the values by key.
 * Expressions may be blocks (`{ let a = 1; a + 1 }`).
 */
async function values(cases: Record<string, string>, prelude = '', files: Record<string, string> = {}): Promise<Record<string, Value>> {
  const keys = Object.keys(cases);
  const body = keys.map((k, i) => `export const v${i} = ${cases[k]};`).join('\n');
  const r = await loadFiles({ ...files, 'main.vsl': `${prelude}\n${body}\n#{}\n` });
  if (!r.ok) {
    fs.rmSync(r.dir, { recursive: true, force: true });
    throw new Error(describeLoad(r));
  }
  try {
    const out: Record<string, Value> = {};
    keys.forEach((k, i) => { out[k] = r.version.exported(`v${i}`); });
    return out;
  } finally {
    r.version.dispose();
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
}

/** Asserts each key of `expected` against the value computed for it. */
function expectAll(got: Record<string, Value>, expected: Record<string, Value>): void {
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(got[k], v, `case '${k}'`);
}

const ch = (c: string) => new VChar(c);
const text = (v: Value) => (v instanceof VObject ? v.text() : v);

// ---------------------------------------------------------------- §2.2 literals

describe('literals (SPEC §2.2)', () => {
  test('ints in every base, with underscores, and their type', async () => {
    const v = await values({
      dec: '42', hex: '0xff', oct: '0o17', bin: '0b1010', under: '1_000', neg: '-5', max: '9223372036854775807',
      min: '-9223372036854775808', big: '9007199254740993 + 2', type: 'type_of(0xff)', hexUpper: '0xFF_FF',
    });
    expectAll(v, {
      dec: 42n, hex: 255n, oct: 15n, bin: 10n, under: 1000n, neg: -5n, max: 9223372036854775807n,
      min: -9223372036854775808n, big: 9007199254740995n, type: 'i64', hexUpper: 65535n,
    });
  });

  test('floats, bools, unit and their types', async () => {
    const v = await values({
      f1: '1.5', f2: '2.0e-3', f3: '1e3', tf: 'type_of(1e3)', t: 'true', f: 'false', u: '()', tu: 'type_of(())',
      tb: 'type_of(true)', s1: '1e3.to_string()', s2: '2.0.to_string()', s3: '0.1 + 0.2',
    });
    expectAll(v, {
      f1: 1.5, f2: 0.002, f3: 1000, tf: 'f64', t: true, f: false, u: undefined, tu: '()', tb: 'bool',
      s1: '1000.0', s2: '2.0', s3: 0.30000000000000004,
    });
  });

  test('chars with escapes and their type', async () => {
    const v = await values({
      a: "'a'", nl: "'\\n'", e: "'\\u00e9'", q: "'\\''", x: "'\\x41'", big: "'\\U0001F600'", t: "type_of('a')",
      plus: "'a' + 'b'", eqs: '"a" == \'a\'',
    });
    expectAll(v, { a: ch('a'), nl: ch('\n'), e: ch('é'), q: ch("'"), x: ch('A'), big: ch('😀'), t: 'char', plus: 'ab', eqs: true });
  });

  test('strings decode every escape', async () => {
    const v = await values({
      all: String.raw`"\\ \" \' \n \r \t \0 \x41 \u00e9 \U0001F600"`,
      t: 'type_of("")',
      len: String.raw`"\U0001F600é".len()`,
    });
    expectAll(v, { all: '\\ " \' \n \r \t \0 A é 😀', t: 'string', len: 2n });
  });

  test('a backslash before a line break continues the string and skips the next line\'s leading blanks', async () => {
    const v = await values({ cont: '"one \\\n      two"', crlf: '"a\\\r\n\t  b"' });
    expectAll(v, { cont: 'one two', crlf: 'ab' });
  });

  test('templates interpolate to_string(), span lines, keep escapes raw and double backticks', async () => {
    const v = await values({
      simple: '`a ${1 + 2} b`',
      nested: '`${ `in ${"x"}` }!`',
      multi: '`line1\nline2`',
      raw: '`no \\n escape`',
      tick: '`a``b`',
      values: '`${1.0} ${\'c\'} ${[1, "x"]} ${#{ k: 1 }} ${true}`',
      unit: '`${()}` == ().to_string()',
      block: '`${ { let z = 5; z * 2 } }`',
      empty: '``',
      t: 'type_of(`x`)',
    });
    expectAll(v, {
      simple: 'a 3 b', nested: 'in x!', multi: 'line1\nline2', raw: 'no \\n escape', tick: 'a`b',
      values: '1.0 c [1, "x"] #{"k": 1} true', unit: true, block: '10', empty: '', t: 'string',
    });
  });

  test('arrays, maps (insertion order, quoted keys, trailing commas) and ranges', async () => {
    const v = await values({
      arr: '[1, "two", \'3\', [4],]', ta: 'type_of([])',
      map: '#{ b: 1, "any key": 2, a: 3, }', keys: '#{ b: 1, "any key": 2, a: 3 }.keys()', tm: 'type_of(#{})',
      r: '{ let s = []; for i in 1..4 { s.push(i) } s }', ri: '{ let s = []; for i in 1..=4 { s.push(i) } s }',
      tr: 'type_of(1..2)', tri: 'type_of(1..=2)', inr: '3 in 1..4', notin: '4 in 1..4', inri: '4 in 1..=4',
      rstep: '{ let s = []; for i in range(0, 10, 3) { s.push(i) } s }', rdown: '{ let s = []; for i in range(3, 0, -1) { s.push(i) } s }',
      tf: 'type_of(|| 1)',
    });
    expectAll(v, {
      arr: [1n, 'two', ch('3'), [4n]], ta: 'array',
      map: new Map<string, Value>([['b', 1n], ['any key', 2n], ['a', 3n]]), keys: ['b', 'any key', 'a'], tm: 'map',
      r: [1n, 2n, 3n], ri: [1n, 2n, 3n, 4n], tr: 'range', tri: 'range=', inr: true, notin: false, inri: true,
      rstep: [0n, 3n, 6n, 9n], rdown: [3n, 2n, 1n], tf: 'Fn',
    });
  });
});

// ---------------------------------------------------------------- §2.3 variables

describe('variables and assignment (SPEC §2.3)', () => {
  test('let, let without value, const, shadowing and block scope', async () => {
    const v = await values({
      unit: '{ let x; x }',
      shadow: '{ let x = 1; let x = x + 10; x }',
      inner: '{ let x = 1; { let x = 2; x = 3; } x }',
      outerWrite: '{ let x = 1; { x = 5; } x }',
      shadowType: '{ let x = "s"; let x = x.len(); x }',
      constVal: '{ const K = 7; K * 2 }',
      loopScope: '{ let x = 0; for i in 0..3 { let x = i; } x }',
    });
    expectAll(v, { unit: undefined, shadow: 11n, inner: 1n, outerWrite: 5n, shadowType: 1n, constVal: 14n, loopScope: 0n });
  });

  test('every compound assignment operator', async () => {
    const v = await values({
      add: '{ let a = 5; a += 3; a }', sub: '{ let a = 5; a -= 3; a }', mul: '{ let a = 5; a *= 3; a }',
      div: '{ let a = 17; a /= 3; a }', mod: '{ let a = 17; a %= 5; a }', pow: '{ let a = 3; a **= 4; a }',
      shl: '{ let a = 1; a <<= 10; a }', shr: '{ let a = -16; a >>= 2; a }', and: '{ let a = 12; a &= 10; a }',
      or: '{ let a = 12; a |= 3; a }', xor: '{ let a = 12; a ^= 10; a }',
      str: '{ let s = "ab"; s += "c"; s += 1; s }', arr: '{ let a = [1]; a += 2; a += [3, 4]; a }',
      map: '{ let m = #{ a: 1 }; m += #{ b: 2, a: 9 }; m }', fl: '{ let f = 1; f += 0.5; f }',
      bools: '{ let b = true; b &= false; let c = false; c |= true; let d = true; d ^= true; [b, c, d] }',
    });
    expectAll(v, {
      add: 8n, sub: 2n, mul: 15n, div: 5n, mod: 2n, pow: 81n, shl: 1024n, shr: -4n, and: 8n, or: 15n, xor: 6n,
      str: 'abc1', arr: [1n, 2n, 3n, 4n], map: new Map<string, Value>([['a', 9n], ['b', 2n]]), fl: 1.5,
      bools: [false, true, false],
    });
  });

  test('index and property assignment chains, including compound ones', async () => {
    const v = await values({
      chain: '{ let m = #{ a: #{ b: [1, #{ c: 0 }] } }; m.a.b[1].c = 5; m.a.b[0] = "x"; m }',
      nested: '{ let a = [[1, 2], [3, 4]]; a[1][0] = 9; a[0][1] += 10; a }',
      strKey: '{ let m = #{}; m["two words"] = 1; m.k = 2; m["two words"] += 4; m }',
      create: '{ let m = #{}; m.x = #{}; m.x.y = 1; m }',
      neg: '{ let a = [1, 2, 3]; a[-1] = 30; a }',
      strIdx: '{ let s = "abc"; s[1] = \'X\'; s }',
      mapInArr: '{ let a = [#{ n: 1 }]; a[0].n *= 7; a }',
    });
    const M = (e: Array<[string, Value]>) => new Map<string, Value>(e);
    expectAll(v, {
      chain: M([['a', M([['b', ['x', M([['c', 5n]])]]])]]),
      nested: [[1n, 12n], [9n, 4n]],
      strKey: M([['two words', 5n], ['k', 2n]]),
      create: M([['x', M([['y', 1n]])]]),
      neg: [1n, 2n, 30n],
      strIdx: 'aXc',
      mapInArr: [M([['n', 7n]])],
    });
  });
});

// ---------------------------------------------------------------- §2.6–2.7 numbers and operators

describe('numbers and operators (SPEC §2.6, §2.7)', () => {
  const err = (e: string) => `try { ${e}; "no error" } catch (e) { e }`;

  test('integer overflow is an error for each operation', async () => {
    const v = await values({
      add: err('9223372036854775807 + 1'), sub: err('-9223372036854775808 - 1'), mul: err('4611686018427387904 * 2'),
      pow: err('2 ** 63'), neg: err('{ let m = -9223372036854775808; -m }'), abs: err('(-9223372036854775808).abs()'),
      divMin: err('-9223372036854775808 / -1'), addAssign: err('{ let a = 9223372036854775807; a += 1 }'),
      powOk: '2 ** 62', mulOk: '-4611686018427387904 * 2',
    });
    for (const k of ['add', 'sub', 'mul', 'pow', 'neg', 'abs', 'divMin', 'addAssign']) {
      assert.match(String(v[k]), /arithmetic overflow/, `case ${k}: ${String(v[k])}`);
    }
    expectAll(v, { powOk: 4611686018427387904n, mulOk: -9223372036854775808n });
  });

  test('division truncates toward zero, modulo takes the dividend\'s sign, zero divisors and negative exponents fail', async () => {
    const v = await values({
      d1: '-7 / 2', d2: '7 / -2', d3: '7 / 2', m1: '-7 % 2', m2: '7 % -2', m3: '-7 % -2',
      z1: err('1 / 0'), z2: err('1 % 0'), negExp: err('2 ** -1'),
      shlBad: err('1 << 64'), shlNeg: err('1 >> -1'), shr: '-8 >> 1', shlMin: '-1 << 63', shl62: '1 << 62',
    });
    expectAll(v, { d1: -3n, d2: -3n, d3: 3n, m1: -1n, m2: 1n, m3: -1n, shr: -4n, shlMin: -9223372036854775808n, shl62: 4611686018427387904n });
    assert.match(String(v.z1), /division by zero/);
    assert.match(String(v.z2), /division by zero/);
    assert.match(String(v.negExp), /negative/);
    assert.notEqual(v.shlBad, 'no error');
    assert.notEqual(v.shlNeg, 'no error');
  });

  test('mixing ints and floats gives floats; IEEE rules for floats; conversions', async () => {
    const v = await values({
      mix: '1 + 0.5', mixT: 'type_of(2 * 1.0)', div: '1 / 2.0', inf: '1.0 / 0.0', ninf: '-1.0 / 0.0', nan: '(0.0 / 0.0).is_nan()',
      eq: '1 == 1.0', lt: '1 < 1.5', toInt: 'to_int(-2.9)', toFloat: 'to_float(3)', pi: 'parse_int("-42")', ph: 'parse_int("ff", 16)',
      pf: 'parse_float("2.5e1")', toIntNaN: err('to_int(0.0 / 0.0)'), toIntBig: err('to_int(1e19)'), piBad: err('parse_int("x1")'),
      big: '9223372036854775807 - 1', floor: '2.7.floor()', round: '(-2.5).round()', sqrt: '16.0.sqrt()', sign: '(-3).sign()',
      min: '3.min(5)', max: '3.max(5.0)', pow: '2.0 ** 3', modf: '7.5 % 2',
    });
    expectAll(v, {
      mix: 1.5, mixT: 'f64', div: 0.5, inf: Infinity, ninf: -Infinity, nan: true, eq: true, lt: true, toInt: -2n,
      toFloat: 3, pi: -42n, ph: 255n, pf: 25, big: 9223372036854775806n, floor: 2, round: -3, sqrt: 4, sign: -1n,
      min: 3n, max: 5, pow: 8, modf: 1.5,
    });
    for (const k of ['toIntNaN', 'toIntBig', 'piBad']) assert.notEqual(v[k], 'no error', k);
    assert.match(String(v.piBad), /^parse_int: /);
  });

  test('comparison, equality, logic and bitwise operators follow the SPEC table', async () => {
    const v = await values({
      strCmp: '"abc" < "abd"', chCmp: "'a' < 'b'", mixedCmp: err('1 < "1"'), unitEq: '() == ()', unitNe: '() == 0',
      arrEq: '[1, [2]] == [1, [2]]', mapEq: '#{ a: 1 } == #{ a: 1 }', typeNe: '1 == "1"', strChar: '"a" == \'a\'',
      noTruth: err('if 1 { 2 }'), andErr: err('true && 1'), notErr: err('!1'),
      short: 'false && (1 / 0 == 0)', shortOr: 'true || (1 / 0 == 0)', bitAnd: '6 & 3', bitOr: '6 | 3', bitXor: '6 ^ 3',
      boolAnd: 'true & false', boolOr: 'false | true', boolXor: 'true ^ true', not: '!false',
      prec: '1 + 2 * 3 ** 2', powRight: '2 ** 3 ** 2', concat: '"n=" + 1 + 2', concat2: '1 + 2 + "x"', chars: "'a' + 'b'",
      arrAdd: '[1] + [2]', mapAdd: '#{ a: 1, b: 1 } + #{ b: 2 }', unaryPlus: '+5', unaryNeg: '-(2 + 3)',
    });
    expectAll(v, {
      strCmp: true, chCmp: true, unitEq: true, unitNe: false, arrEq: true, mapEq: true, typeNe: false, strChar: true,
      short: false, shortOr: true, bitAnd: 2n, bitOr: 7n, bitXor: 5n, boolAnd: false, boolOr: true, boolXor: false, not: true,
      prec: 19n, powRight: 512n, concat: 'n=12', concat2: '3x', chars: 'ab', arrAdd: [1n, 2n],
      mapAdd: new Map<string, Value>([['a', 1n], ['b', 2n]]), unaryPlus: 5n, unaryNeg: -5n,
    });
    for (const k of ['mixedCmp', 'noTruth', 'andErr', 'notErr']) assert.notEqual(v[k], 'no error', k);
  });

  test('is and not are == and !=; in and !in test membership; ?? ?. ?[] handle unit', async () => {
    const v = await values({
      is: '1 is 1', isNot: '1 is 2', not: '1 not 2', notSame: '"a" not "a"', statusIs: 'next() is next()', statusNot: 'next() not accept()',
      inArr: '2 in [1, 2]', notInArr: '5 !in [1, 2]', inStr: '"ell" in "hello"', inMap: '"k" in #{ k: 1 }', chInStr: "'e' in \"hello\"",
      inRg: '"192.168.1.7" in rg4("192.168.1.0/24")', outRg: '"10.0.0.1" !in rg4("192.168.1.0/24")',
      inBad: err('1 in 5'),
      coalesce: '() ?? 5', coalesceKeep: '0 ?? 5', coalesceFalse: 'false ?? true',
      optProp: '{ let m = (); m?.k }', optPropMap: '{ let m = #{ k: #{ j: 3 } }; m?.k?.j }', optIdx: '{ let a = (); a?[0] }',
      optIdxVal: '{ let a = [7]; a?[0] }', propOfUnit: err('{ let m = (); m.k }'), missingKey: '#{ a: 1 }.b',
      optMethod: '{ let s = (); s?.len() }', chain: '{ let m = #{}; m.a?.b ?? "dflt" }',
    });
    expectAll(v, {
      is: true, isNot: false, not: true, notSame: false, statusIs: true, statusNot: true, inArr: true, notInArr: true,
      inStr: true, inMap: true, chInStr: true, inRg: true, outRg: true, coalesce: 5n, coalesceKeep: 0n, coalesceFalse: false,
      optProp: undefined, optPropMap: 3n, optIdx: undefined, optIdxVal: 7n, missingKey: undefined, optMethod: undefined, chain: 'dflt',
    });
    assert.match(String(v.inBad), /cannot test membership in i64/);
    assert.notEqual(v.propOfUnit, 'no error');
  });
});

// ---------------------------------------------------------------- §2.8 standard library

describe('standard library through vSL (SPEC §2.8)', () => {
  test('string methods, pure and in place', async () => {
    const v = await values({
      len: '"héllo".len()', empty: '"".is_empty()', contains: '"hello".contains("ell")', sw: '"hello".starts_with("he")',
      ew: '"hello".ends_with("lo")', idx: '"hello".index_of("l")', idxFrom: '"hello".index_of("l", 3)', idxNone: '"hello".index_of("z")',
      sub: '"hello".sub_string(1, 3)', subNeg: '"hello".sub_string(-3)', split: '"a,b,c".split(",")', splitN: '"a,b,c".split(",", 2)',
      splitWs: '"  a  b ".split()', upper: '"abc".to_upper()', lower: '"ABC".to_lower()', chars: '"ab".chars()', get: '"abc".get(5)',
      index: '"abc"[-1]', indexBad: 'try { "abc"[5] } catch (e) { e }',
      trim: '{ let s = "  x  "; s.trim(); s }', mu: '{ let s = "ab"; s.make_upper(); s }', rep: '{ let s = "a-b-c"; s.replace("-", "+"); s }',
      trunc: '{ let s = "hello"; s.truncate(2); s }', pad: "{ let s = \"ab\"; s.pad(4, '.'); s }", crop: '{ let s = "hello"; s.crop(1, 3); s }',
      remove: '{ let s = "banana"; s.remove("an"); s }', clear: '{ let s = "x"; s.clear(); s }',
      callForm: '{ let s = "  x "; trim(s); s }', toStr: '42.to_string()', dbg: '"a".to_debug()', json: '#{ a: [1, "x"] }.to_json()',
      parseJson: 'parse_json("{\\"a\\": [1, 2.5, null]}")',
    });
    expectAll(v, {
      len: 5n, empty: true, contains: true, sw: true, ew: true, idx: 2n, idxFrom: 3n, idxNone: -1n, sub: 'ell', subNeg: 'llo',
      split: ['a', 'b', 'c'], splitN: ['a', 'b,c'], splitWs: ['a', 'b'], upper: 'ABC', lower: 'abc', chars: [ch('a'), ch('b')],
      get: undefined, index: ch('c'), trim: 'x', mu: 'AB', rep: 'a+b+c', trunc: 'he', pad: 'ab..', crop: 'ell', remove: 'ba',
      clear: '', callForm: '  x ', toStr: '42', dbg: '"a"', json: '{"a":[1,"x"]}',
      parseJson: new Map<string, Value>([['a', [1n, 2.5, undefined]]]),
    });
    assert.match(String(v.indexBad), /out of range/);
  });

  test('array methods, callbacks with (item) and (item, index), in place methods', async () => {
    const v = await values({
      map: '[1, 2, 3].map(|x| x * 2)', mapIdx: '[5, 6].map(|x, i| i)', filter: '[1, 2, 3, 4].filter(|x| x % 2 == 0)',
      reduce: '[1, 2, 3].reduce(|acc, x| acc + x, 10)', some: '[1, 2].some(|x| x > 1)', all: '[1, 2].all(|x| x > 1)',
      find: '[1, 2, 3].find(|x| x > 1)', findNone: '[1].find(|x| x > 5)', idx: '[1, 2, 3].index_of(2)', contains: '[1, [2]].contains([2])',
      extract: '[1, 2, 3, 4].extract(1, 2)', join: '[1, "a", \'c\'].join("-")', get: '[1].get(3)', len: '[1, 2].len()',
      push: '{ let a = [1]; a.push(2); a }', append: '{ let a = [1]; a.append([2, 3]); a }', insert: '{ let a = [1, 3]; a.insert(1, 2); a }',
      pop: '{ let a = [1, 2]; let p = a.pop(); [p, a] }', popEmpty: '{ let a = []; a.pop() }', shift: '{ let a = [1, 2]; let s = a.shift(); [s, a] }',
      remove: '{ let a = [1, 2, 3]; let r = a.remove(1); [r, a] }', reverse: '{ let a = [1, 2, 3]; a.reverse(); a }',
      sort: '{ let a = [3, 1, 2]; a.sort(); a }', sortStr: '{ let a = ["b", "a"]; a.sort(); a }', sortMixed: 'try { let a = [1, "a"]; a.sort(); a } catch (e) { e }',
      truncate: '{ let a = [1, 2, 3]; a.truncate(1); a }', clear: '{ let a = [1]; a.clear(); a }',
      pushCall: '{ let a = [1]; push(a, 2); a }',
    });
    expectAll(v, {
      map: [2n, 4n, 6n], mapIdx: [0n, 1n], filter: [2n, 4n], reduce: 16n, some: true, all: false, find: 2n, findNone: undefined,
      idx: 1n, contains: true, extract: [2n, 3n], join: '1-a-c', get: undefined, len: 2n, push: [1n, 2n], append: [1n, 2n, 3n],
      insert: [1n, 2n, 3n], pop: [2n, [1n]], popEmpty: undefined, shift: [1n, [2n]], remove: [2n, [1n, 3n]], reverse: [3n, 2n, 1n],
      sort: [1n, 2n, 3n], sortStr: ['a', 'b'], truncate: [1n], clear: [], pushCall: [1n],
    });
    assert.match(String(v.sortMixed), /sort/);
  });

  test('map methods and key access', async () => {
    const M = (e: Array<[string, Value]>) => new Map<string, Value>(e);
    const v = await values({
      len: '#{ a: 1, b: 2 }.len()', empty: '#{}.is_empty()', keys: '#{ a: 1, b: 2 }.keys()', values: '#{ a: 1, b: 2 }.values()',
      contains: '#{ a: 1 }.contains("a")', get: '#{ a: 1 }.get("z")', dot: '#{ a: 1 }.a', idx: '#{ "x y": 1 }["x y"]',
      set: '{ let m = #{}; m.set("k", 1); m }', remove: '{ let m = #{ a: 1, b: 2 }; let old = m.remove("a"); [old, m] }',
      mixin: '{ let m = #{ a: 1 }; m.mixin(#{ a: 2, c: 3 }); m }', clear: '{ let m = #{ a: 1 }; m.clear(); m }',
      iterErr: 'try { for x in #{ a: 1 } {} } catch (e) { e }',
    });
    expectAll(v, {
      len: 2n, empty: true, keys: ['a', 'b'], values: [1n, 2n], contains: true, get: undefined, dot: 1n, idx: 1n,
      set: M([['k', 1n]]), remove: [1n, M([['b', 2n]])], mixin: M([['a', 2n], ['c', 3n]]), clear: M([]),
    });
    assert.equal(typeof v.iterErr, 'string');
    assert.notEqual(v.iterErr, undefined);
  });
});

// ---------------------------------------------------------------- §2.5 control flow

describe('control flow (SPEC §2.5)', () => {
  test('switch: literals, alternatives, ranges, guards, _, arrays, type-strict, no match is ()', async () => {
    const sw = (subject: string) => `switch ${subject} { 1 => "one", 2 | 3 => "two-three", "x" if true => "x-guarded", "x" => "x", 10..20 => "teens", 20..=25 => "twenties", [1, 2] => "pair", 'c' => "char", 1.5 => "float", true => "bool", () => "unit", _ => "other" }`;
    const v = await values({
      one: sw('1'), three: sw('3'), x: sw('"x"'), teen: sw('15'), twenty: sw('20'), twentyFive: sw('25'), pair: sw('[1, 2]'),
      chr: sw("'c'"), flt: sw('1.5'), bool: sw('true'), unit: sw('()'), other: sw('99'), strict: sw('1.0'), strictStr: sw('"1"'),
      guardFalse: 'switch "x" { "x" if false => 1, "x" => 2 }', noMatch: 'switch 5 { 1 => "a" }',
      firstWins: 'switch 2 { 2 => "first", 2 => "second" }', guardVar: '{ let n = 7; switch n { 0..10 if n % 2 == 1 => "odd small", _ => "?" } }',
      neg: 'switch -3 { -3 => "minus three", _ => "?" }', mapCase: 'switch #{ a: 1 } { #{ a: 1 } => "map", _ => "?" }',
      blockArm: 'switch 1 { 1 => { let y = 2; y * 3 }, _ => 0 }',
    });
    expectAll(v, {
      one: 'one', three: 'two-three', x: 'x-guarded', teen: 'teens', twenty: 'twenties', twentyFive: 'twenties', pair: 'pair',
      chr: 'char', flt: 'float', bool: 'bool', unit: 'unit', other: 'other', strict: 'other', strictStr: 'other',
      guardFalse: 2n, noMatch: undefined, firstWins: 'first', guardVar: 'odd small', neg: 'minus three', mapCase: 'map', blockArm: 6n,
    });
  });

  test('loops: while, do-while, do-until, loop+break, for over arrays, ranges and strings, with index', async () => {
    const v = await values({
      whileL: '{ let i = 0; let s = 0; while i < 5 { i += 1; s += i; } s }',
      doWhile: '{ let i = 10; let n = 0; do { n += 1; } while i < 5; n }',
      doUntil: '{ let i = 0; do { i += 1; } until i >= 3; i }',
      loopBreak: '{ let i = 0; loop { i += 1; if i == 4 { break; } } i }',
      forArr: '{ let s = []; for x in [3, 4] { s.push(x * 10) } s }',
      forIdx: '{ let s = []; for (x, i) in ["a", "b"] { s.push(`${i}:${x}`) } s }',
      forStr: '{ let s = []; for c in "hé" { s.push(c) } s }',
      forRangeIdx: '{ let s = []; for (x, i) in 5..7 { s.push([x, i]) } s }',
      loopValue: '{ let i = 0; while i < 1 { i += 1 } }',
      forCopy: '{ let a = [1, 2]; for x in a { a.push(x) } a }',
    });
    expectAll(v, {
      whileL: 15n, doWhile: 1n, doUntil: 3n, loopBreak: 4n, forArr: [30n, 40n], forIdx: ['0:a', '1:b'], forStr: [ch('h'), ch('é')],
      forRangeIdx: [[5n, 0n], [6n, 1n]], loopValue: undefined, forCopy: [1n, 2n, 1n, 2n],
    });
  });

  test('continue works in every kind of loop', async () => {
    const v = await values({
      w: '{ let i = 0; let s = []; while i < 5 { i += 1; if i % 2 == 0 { continue; } s.push(i) } s }',
      dw: '{ let i = 0; let s = []; do { i += 1; if i == 2 { continue; } s.push(i) } while i < 4; s }',
      du: '{ let i = 0; let s = []; do { i += 1; if i == 2 { continue; } s.push(i) } until i >= 4; s }',
      l: '{ let i = 0; let s = []; loop { i += 1; if i > 4 { break; } if i == 3 { continue; } s.push(i) } s }',
      f: '{ let s = []; for x in 0..5 { if x == 1 || x == 3 { continue; } s.push(x) } s }',
      nested: '{ let s = []; for a in 0..2 { for b in 0..3 { if b == 1 { continue; } if b == 2 { break; } s.push([a, b]) } } s }',
    });
    expectAll(v, {
      w: [1n, 3n, 5n], dw: [1n, 3n, 4n], du: [1n, 3n, 4n], l: [1n, 2n, 4n], f: [0n, 2n, 4n], nested: [[0n, 0n], [1n, 0n]],
    });
  });

  test('if is an expression, blocks are values, a missing else gives ()', async () => {
    const v = await values({
      ifElse: 'if 1 > 2 { "a" } else if 2 > 1 { "b" } else { "c" }', noElse: 'if false { 1 }', block: '{ let a = 2; { a * 3 } }',
      emptyBlock: '{}', stmtEnd: '{ let a = 1; a = 2; }', arg: '[if true { 1 } else { 2 }, { 3 }]', inExpr: '1 + if true { 2 } else { 0 }',
      semiLast: '{ 5; }',
    });
    expectAll(v, { ifElse: 'b', noElse: undefined, block: 6n, emptyBlock: undefined, stmtEnd: undefined, arg: [1n, 3n], inExpr: 3n, semiLast: 5n });
  });

  test('break and continue outside a loop are load errors', async () => {
    assert.equal(await loadError({ 'main.vsl': 'fn f() {\n  break;\n}\n#{}' }), "main.vsl:2:3: 'break' outside a loop");
    assert.equal(await loadError({ 'main.vsl': 'let f = || { continue; };\n#{}' }), "main.vsl:1:14: 'continue' outside a loop");
    // A closure inside a loop body is not in the loop.
    assert.equal(await loadError({ 'main.vsl': 'for x in [1] {\n  let f = || { break; };\n}\n#{}' }), "main.vsl:2:16: 'break' outside a loop");
  });
});

// ---------------------------------------------------------------- §2.4 functions

describe('functions (SPEC §2.4, §2.9)', () => {
  const fns = `
fn area(w) { w * w }
fn area(w, h) { w * h }
fn fact(n) { if n <= 1 { 1 } else { n * fact(n - 1) } }
fn early(n) { if n > 0 { return "positive"; } "not positive" }
fn bare() { return; }
fn later() { defined_after() }
fn defined_after() { "after" }
fn bump() { this += 1; }
fn grow(n) { this.push(n); this.len() }
fn describe_me() { \`<\${this}>\` }
fn failing(v) { throw v; }
fn twice(f, v) { f.call(f.call(v)) }
fn inc(v) { v + 1 }
fn modify(a) { a.push(99); a }
`;

  test('overloading by arity, recursion, return, call order independence', async () => {
    const v = await values({
      a1: 'area(3)', a2: 'area(3, 4)', fact: 'fact(20)', early: 'early(1)', late: 'early(0)', bare: 'bare()', later: 'later()',
    }, fns);
    expectAll(v, { a1: 9n, a2: 12n, fact: 2432902008176640000n, early: 'positive', late: 'not positive', bare: undefined, later: 'after' });
  });

  test('throw, try/catch of thrown values and of built-in errors with prefixed messages, catch {} form', async () => {
    const v = await values({
      str: 'try { throw "boom"; } catch (e) { e }', map: 'try { throw #{ code: 42 }; } catch (e) { e.code }',
      unit: 'try { throw; } catch (e) { type_of(e) }', fromFn: 'try { failing([1]); } catch (e) { e }',
      builtin: 'try { parse_int("zz") } catch (e) { e }', method: 'try { "abc".sub_string(10) } catch (e) { e }',
      ctor: 'try { rg4("300.1.1.0/24") } catch (e) { e }', noVar: 'try { throw 1; } catch { "caught" }',
      value: 'try { 5 } catch { 0 }', nested: 'try { try { throw 1; } catch (e) { throw e + 1; } } catch (e) { e }',
      rethrowType: 'try { 1 / 0 } catch (e) { type_of(e) }', afterCatch: '{ let r = []; try { r.push(1); throw 0; r.push(2); } catch { r.push(3); } r }',
      code: 'try { code("999 bad") } catch (e) { e }',
    }, fns);
    expectAll(v, {
      str: 'boom', map: 42n, unit: '()', fromFn: [1n], noVar: 'caught', value: 5n, nested: 2n, rethrowType: 'string', afterCatch: [1n, 3n],
    });
    assert.match(String(v.builtin), /^parse_int: /);
    assert.match(String(v.method), /^sub_string: /);
    assert.match(String(v.ctor), /^rg4: /);
    assert.match(String(v.code), /^code: /);
  });

  test('method-call sugar binds this and writes back to variables, map keys and indexes', async () => {
    const v = await values({
      variable: '{ let n = 1; n.bump(); n }',
      mapKey: '{ let m = #{ n: 1 }; m.n.bump(); m.n.bump(); m }',
      index: '{ let a = [1, 2]; a[1].bump(); a }',
      deep: '{ let m = #{ l: [1] }; let len = m.l.grow(5); [len, m.l] }',
      result: '{ let a = []; a.grow(1) }',
      temp: '[1].grow(2)',
      str: '"x".describe_me()',
      builtinWrite: '{ let m = #{ l: [] }; m.l.push(1); m.l.push(2); m }',
      idxWrite: '{ let a = [[]]; a[0].push("x"); a }',
      scriptFirst: '{ let a = [3]; a.inc_all() }',
    }, `${fns}\nfn inc_all() { this.map(|x| x + 1) }`);
    expectAll(v, {
      variable: 2n, mapKey: new Map<string, Value>([['n', 3n]]), index: [1n, 3n], deep: [2n, [1n, 5n]], result: 1n, temp: 2n,
      str: '<x>', builtinWrite: new Map<string, Value>([['l', [1n, 2n]]]), idxWrite: [['x']], scriptFirst: [4n],
    });
  });

  test('Fn pointers: .call(), call(), overloads, passing and storing them', async () => {
    const v = await values({
      dot: 'Fn("inc").call(1)', global: 'call(Fn("inc"), 2)', over1: 'Fn("area").call(3)', over2: 'Fn("area").call(3, 4)',
      passed: 'twice(Fn("inc"), 0)', closure: '{ let f = |x| x * 10; f.call(2) }', direct: '{ let f = |x| x * 10; f(3) }',
      stored: '{ let fs = [Fn("inc"), |x| x - 1]; fs.map(|f| f.call(10)) }', name: 'Fn("inc") == Fn("inc")',
      wrongArity: 'try { Fn("inc").call(1, 2) } catch (e) { e }', typ: 'type_of(Fn("inc"))',
    }, fns);
    expectAll(v, { dot: 2n, global: 3n, over1: 9n, over2: 12n, passed: 2n, closure: 20n, direct: 30n, stored: [11n, 9n], name: true, typ: 'Fn' });
    assert.match(String(v.wrongArity), /argument/);
  });

  test('functions whose only I/O could come through a pointer or a service method run at load and in callbacks', async () => {
    const lib = `
fn get_or(m, k, d) { m.get(k) ?? d }
fn apply(f, v) { f.call(v) }
fn apply_global(f, v) { call(f, v) }
fn apply_var(f, v) { f(v) }
fn lookup(h) { dns::lookup(h) }
fn inc(v) { v + 1 }`;
    const v = await values({
      get: 'get_or(#{ a: 1 }, "a", 0)', dflt: 'get_or(#{}, "a", 0)', ptr: 'apply(Fn("inc"), 1)', glob: 'apply_global(Fn("inc"), 2)',
      var: 'apply_var(Fn("inc"), 3)', inMap: '[#{ a: 5 }, #{}].map(|m| get_or(m, "a", -1))', ptrInMap: '[1, 2].map(|n| apply(Fn("inc"), n))',
      ioRefused: 'try { apply(Fn("lookup"), "x.test") } catch (e) { e }',
    }, lib);
    expectAll(v, { get: 1n, dflt: 0n, ptr: 2n, glob: 3n, var: 4n, inMap: [5n, -1n], ptrInMap: [2n, 3n],
      ioRefused: "cannot call 'lookup' here: it does I/O, which only rules and actions (and the functions they call) can do" });
    const p = await TestPolicy.load({
      'main.vsl': `${lib}
#{
  helo: [
    rule "callback" || { if [#{ a: 1 }].map(|m| get_or(m, "a", 0)) == [1] { next() } else { deny() } },
    rule "through pointer" || { apply(Fn("lookup"), "x.test"); accept() },
  ],
  mail: [ rule "io in callback" || { ["x.test"].map(|h| apply(Fn("lookup"), h)); accept() } ],
}`,
    });
    try {
      // The rule awaited the I/O function called through the pointer: the lookup itself failed (no DNS at load).
      const helo = (await p.run('helo', session())).verdict;
      assert.equal(helo.rule, 'through pointer');
      assert.match(helo.error!, /failed at helo: dns::lookup: /);
      const mail = (await p.run('mail', session(), txn('a@b.test', null))).verdict;
      assert.match(mail.error!, /cannot call 'lookup' here: it does I\/O/);
    } finally {
      p.close();
    }
  });

  test('value semantics: assignment, arguments and insertion copy; push(a, 1) leaves a unchanged', async () => {
    const v = await values({
      assign: '{ let a = [1]; let b = a; b.push(2); [a, b] }',
      arg: '{ let a = [1]; let r = modify(a); [a, r] }',
      insert: '{ let a = [1]; let m = #{ k: a }; a.push(2); [a, m.k] }',
      nested: '{ let m = #{ l: [1] }; let l = m.l; l.push(2); m }',
      pushFn: '{ let a = [1]; push(a, 1); a }',
      pushMethod: '{ let a = [1]; a.push(1); a }',
      mapCopy: '{ let m = #{ a: 1 }; let n = m; n.a = 2; [m.a, n.a] }',
      closureArg: '{ let a = [1]; let f = |x| { x.push(5); x }; let r = f.call(a); [a, r] }',
      forVar: '{ let a = [[1]]; for x in a { x.push(2) } a }',
      constCopy: '{ let c = global::LIST; c.push(4); [c, global::LIST] }',
    }, `${fns}\nconst LIST = [1, 2, 3];`);
    const M = (e: Array<[string, Value]>) => new Map<string, Value>(e);
    expectAll(v, {
      assign: [[1n], [1n, 2n]], arg: [[1n], [1n, 99n]], insert: [[1n, 2n], [1n]], nested: M([['l', [1n]]]), pushFn: [1n],
      pushMethod: [1n, 1n], mapCopy: [1n, 2n], closureArg: [[1n], [1n, 5n]], forVar: [[1n]], constCopy: [[1n, 2n, 3n, 4n], [1n, 2n, 3n]],
    });
  });

  test('functions see global::CONST, objects and other functions but no outer locals', async () => {
    const v = await values({
      viaGlobal: 'limit_plus(1)', obj: 'is_internal("10.1.2.3")', objOut: 'is_internal("11.0.0.1")', engine: 'engine_const()',
      closureGlobal: '{ let f = || global::LIMIT * 2; f.call() }',
    }, `const LIMIT = 10;
object inside rg4 = "10.0.0.0/8";
fn limit_plus(n) { global::LIMIT + n }
fn is_internal(ip) { ip in global::inside }
fn engine_const() { type_of(net_192) }`);
    expectAll(v, { viaGlobal: 11n, obj: true, objOut: false, engine: 'rg4', closureGlobal: 20n });
  });

  test('closures do not capture: an outer local or top-level let is a load error with the SPEC message', async () => {
    assert.equal(await loadError({ 'main.vsl': 'let limit = 5;\nfn f() { limit }\n#{}' }),
      'main.vsl:2:10: limit is not visible here: functions do not capture; pass it as a parameter or use global::limit');
    assert.equal(await loadError({ 'main.vsl': '{\n  let limit = 5;\n  let f = || limit + 1;\n}\n#{}' }),
      'main.vsl:3:14: limit is not visible here: functions do not capture; pass it as a parameter or use global::limit');
    assert.equal(await loadError({ 'main.vsl': 'const K = 1;\nfn f() { K }\n#{}' }),
      'main.vsl:2:10: K is not visible here: functions do not capture; pass it as a parameter or use global::K');
    assert.equal(await loadError({ 'main.vsl': 'fn f(a) { let g = || a; g }\n#{}' }),
      'main.vsl:1:22: a is not visible here: functions do not capture; pass it as a parameter or use global::a');
  });

  test('call depth is limited to 64 script calls, and the limit is not catchable', async () => {
    const r = await loadFiles({ 'main.vsl': 'fn deep(n) { if n == 0 { 0 } else { 1 + deep(n - 1) } }\nexport const ok = deep(60);\nconst bad = try { deep(100) } catch { -1 };\n#{}' });
    assert.equal(r.ok, false);
    fs.rmSync(r.dir, { recursive: true, force: true });
    assert.match(describeLoad(r), /call depth exceeded: more than 64 nested calls/);
  });
});

// ---------------------------------------------------------------- §6 objects

describe('objects (SPEC §6.1, §6.2)', () => {
  const dataFiles = {
    'lists/hosts.txt': '# blocked hosts\nspam.example.\n\n  Evil.Example  \n',
    'lists/nets.txt': '10.0.0.0/8\n192.168.0.0/16\n',
    'lists/people.txt': 'alice@example.org\nbob@example.net\n',
  };
  const v1 = `
object ip ip4 = "192.0.2.1";
object ip_six ip6 = "2001:DB8::1";
object net rg4 = "192.168.1.0/24";
object net_six rg6 = "2001:db8::/32";
object dom fqdn = "Mail.Example.ORG";
object who address = "alice@Example.org";
object user identifier = "alice";
object s string = "plain text";
object spam regex = "(?i)^spam";
object hosts file:fqdn = "lists/hosts.txt";
object nets file:rg4 = "lists/nets.txt";
object people file:address = "lists/people.txt";
object admins group = [ object bob address = "bob@example.org", net, "literal" ];
object outer group = [ admins, object inner group = [ ip ] ];
object no code = #{ code: 550, enhanced: "5.7.1", text: "go away" };
object no_str code = "451 4.7.1 later";
object meta ip4 = #{ value: "198.51.100.7", note: "metadata is ignored" };
fn uses_object() { "192.168.1.20" in global::net }
`;

  test('v1 declarations of every type give typed objects, constants and exports', async () => {
    const v = await values({
      ip: 'type_of(ip) + " " + ip', ip6: 'type_of(ip_six) + " " + ip_six', rg4: 'type_of(net) + " " + net', rg6: 'type_of(net_six) + " " + net_six',
      fqdn: 'type_of(dom) + " " + dom', addr: 'type_of(who) + " " + who', ident: 'type_of(user) + " " + user', str: 'type_of(s) + " " + s',
      re: 'type_of(spam) + " " + spam', reMatch: '"SPAMMER" == spam', hosts: 'hosts.map(|h| h.to_string())', hostsType: 'type_of(hosts[0])',
      nets: '"10.9.9.9" in nets', people: 'people.map(|p| p.domain.to_string())', group: 'type_of(admins)', groupLen: 'admins.len()',
      nestedDecl: 'bob.to_string()', nestedInner: 'inner.len()', groupIn: '"192.168.1.3" in admins', groupIn2: '"literal" in admins',
      outerIn: '"192.0.2.1" in outer', outerInDeep: '"192.168.1.9" in outer', code: 'no.to_string()', codeType: 'type_of(no)', codeStr: 'no_str.to_string()',
      meta: 'meta.to_string()', inFn: 'uses_object()', addrEq: 'who == "alice@example.org"', fqdnEq: 'dom == "mail.example.org."',
    }, v1, dataFiles);
    expectAll(v, {
      ip: 'ip4 192.0.2.1', ip6: 'ip6 2001:db8::1', rg4: 'rg4 192.168.1.0/24', rg6: 'rg6 2001:db8::/32', fqdn: 'fqdn mail.example.org',
      addr: 'address alice@example.org', ident: 'identifier alice', str: 'string plain text', re: 'regex (?i)^spam', reMatch: true,
      hosts: ['spam.example', 'evil.example'], hostsType: 'fqdn', nets: true, people: ['example.org', 'example.net'], group: 'array',
      groupLen: 3n, nestedDecl: 'bob@example.org', nestedInner: 1n, groupIn: true, groupIn2: true, outerIn: true, outerInDeep: true,
      code: '550 5.7.1 go away', codeType: 'code', codeStr: '451 4.7.1 later', meta: '198.51.100.7', inFn: true, addrEq: true, fqdnEq: true,
    });
  });

  test('v2 constructors build the same objects', async () => {
    const v = await values({
      ip4: 'ip4("192.0.2.1") == ip4("192.0.2.1")', ip6: 'ip6("::ffff:192.0.2.1").to_string()', rg4: 'rg4("10.0.0.0/8").contains("10.1.1.1")',
      rg6: '"2001:db8::5" in rg6("2001:db8::/64")', addr: 'address("a@B.example").domain.to_string()', local: 'address("a@b.example").local_part',
      fqdn: 'fqdn("EXAMPLE.com").to_string()', re: 'regex("^a.c$") == "abc"', ident: 'identifier("x").to_string()',
      code3: 'code(550, "5.7.1", "text").to_string()', code2: 'code(451, "later").to_string()', code1: 'code("250 ok").to_string()',
      file: 'file("lists/hosts.txt", "fqdn").len()', same: 'address("a@b.example") == new_address("a@b.example")',
      v1: 'object x ip4 = "1.2.3.4"', types: '[type_of(ip4("1.1.1.1")), type_of(rg6("::/0")), type_of(regex("a")), type_of(identifier("a"))]',
    }, '', dataFiles);
    expectAll(v, {
      ip4: true, ip6: '::ffff:192.0.2.1', rg4: true, rg6: true, addr: 'b.example', local: 'a', fqdn: 'example.com', re: true, ident: 'x',
      code3: '550 5.7.1 text', code2: '451 later', code1: '250 ok', file: 2n, same: true, types: ['ip4', 'rg6', 'regex', 'identifier'],
    });
    assert.equal(text(v.v1), '1.2.3.4');
  });
});

// ---------------------------------------------------------------- §3 directives and the stage map

describe('directives and the stage map (SPEC §3)', () => {
  test('rules decide, actions are ignored, the map form and spliced arrays run in order', async () => {
    const p = await TestPolicy.load({
      'main.vsl': `
import "shared" as lib;
const picky = rule "stored" || if ctx::helo() == "stored.test" { deny() } else { next() };
#{
  helo: [
    action "noise" || { deny() },
    [ [ rule "nested" || if ctx::helo() == "nested.test" { accept("250 nested") } else { next() } ] ],
    lib::rules,
    picky,
    rule "described" #{ evaluate: || if ctx::helo() == "map.test" { reject("550 5.7.1 from the map form") } else { next() }, description: "the map form" },
    rule "block" || { let h = ctx::helo(); if h == "block.test" { return faccept(); } next() },
  ],
  rcpt: [ rule "r" || check_rcpt_relay([]) ],
}`,
      'shared.vsl': 'export const rules = [ rule "from module" || if ctx::helo() == "module.test" { quarantine("held") } else { next() } ];',
    });
    try {
      const run = async (helo: string) => (await p.run('helo', session({ helo }))).verdict;
      const nested = await run('nested.test');
      assert.equal(nested.status, 'accept');
      assert.equal(nested.rule, 'nested');
      assert.equal(nested.reply?.code, 250);
      assert.deepEqual(nested.reply?.lines, ['nested']);
      assert.deepEqual(nested.trace.map((t) => [t.rule, t.status]), [['noise', 'action'], ['nested', 'accept']]);
      assert.equal((await run('module.test')).status, 'quarantine');
      assert.equal((await run('module.test')).rule, 'from module');
      assert.equal((await run('stored.test')).status, 'deny');
      const m = await run('map.test');
      assert.equal(m.status, 'reject');
      assert.equal(m.rule, 'described');
      assert.equal((await run('block.test')).status, 'faccept');
      const none = await run('other.test');
      assert.equal(none.status, 'next');
      assert.deepEqual(none.trace.map((t) => t.rule), ['noise', 'nested', 'from module', 'stored', 'described', 'block']);
      assert.deepEqual(p.version.stages.helo.map((r) => [r.name, r.kind]), [
        ['noise', 'action'], ['nested', 'rule'], ['from module', 'rule'], ['stored', 'rule'], ['described', 'rule'], ['block', 'rule'],
      ]);
      assert.equal(p.version.stages.helo[0]!.at, 'main.vsl:6:5');
    } finally {
      p.close();
    }
  });

  test('a directive is a value with a type, a name and a description', async () => {
    const v = await values({
      rt: 'type_of(rule "a" || next())', at: 'type_of(action "b" || ())', name: '(rule "c" || next()).name',
      desc: '(rule "d" #{ evaluate: || next(), description: "why" }).description',
    });
    expectAll(v, { rt: 'rule', at: 'action', name: 'c', desc: 'why' });
  });

  test('a rule returning a non-status is an error naming the rule and the type; actions may return anything', async () => {
    const p = await TestPolicy.load({
      'main.vsl': '#{ mail: [ action "a" || 42, rule "bad" || 42 ], rcpt: [ rule "u" || { let x = 1; } ] }',
    });
    try {
      const mail = await p.run('mail', session(), txn('a@b.test', null));
      assert.equal(mail.verdict.source, 'error');
      assert.match(mail.verdict.error!, /rule 'bad' returned i64, expected a status/);
      const rcpt = await p.run('rcpt', session(), txn('a@b.test', 'c@d.test'));
      assert.match(rcpt.verdict.error!, /rule 'u' returned \(\), expected a status/);
    } finally {
      p.close();
    }
  });

  test('duplicate rule names anywhere in the map are load errors naming the first position', async () => {
    assert.equal(await loadError({ 'main.vsl': '#{\n  helo: [ rule "x" || next() ],\n  mail: [ rule "x" || next() ],\n}' }),
      "main.vsl:3:11: duplicate rule name 'x' (first at main.vsl:2:11)");
    assert.equal(await loadError({ 'main.vsl': 'const r = rule "same" || next();\n#{ helo: [r], mail: [r] }' }),
      "main.vsl:1:11: duplicate rule name 'same' (first at main.vsl:1:11)");
  });
});
