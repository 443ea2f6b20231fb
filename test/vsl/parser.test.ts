import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseExpression, parseProgram } from '../../src/vsl/parser.js';
import type { Expr, Stmt } from '../../src/vsl/ast.js';
import { formatDiagnostic } from '../../src/vsl/diagnostics.js';

const POS_KEYS = new Set(['pos', 'namePos', 'keyPos', 'varPos', 'indexPos', 'catchPos', 'pathPos', 'aliasPos',
  'typePos', 'kindPos']);

/** A copy of an AST value without positions, for shape comparisons. */
function strip(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(strip);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!POS_KEYS.has(k)) out[k] = strip(x);
    return out;
  }
  return v;
}

function parseOk(src: string): Stmt[] {
  const { program, diagnostics } = parseProgram(src, 'main.vsl');
  assert.deepEqual(diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`), [], `diagnostics for ${src}`);
  return program.body;
}

/** The single expression statement of `src`, without positions. */
function expr(src: string): unknown {
  const body = parseOk(src);
  assert.equal(body.length, 1, `one statement expected in ${src}`);
  const s = body[0]!;
  assert.equal(s.kind, 'ExprStmt');
  return strip((s as { expr: Expr }).expr);
}

function stmts(src: string): unknown {
  return strip(parseOk(src));
}

/** Diagnostics as `line:col message`. */
function errors(src: string): string[] {
  return parseProgram(src, 'main.vsl').diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`);
}

const id = (name: string) => ({ kind: 'Ident', name });
const int = (value: bigint) => ({ kind: 'Int', value });
const str = (value: string) => ({ kind: 'Str', value });
const bin = (op: string, left: unknown, right: unknown) => ({ kind: 'Binary', op, left, right });
const call = (callee: string[], args: unknown[]) => ({ kind: 'Call', callee, args });
const block = (...body: unknown[]) => ({ kind: 'Block', body });
const es = (e: unknown, semi = false) => ({ kind: 'ExprStmt', expr: e, semi });

// ---------------------------------------------------------------- literals

test('literals: int, float, bool, unit, char, string, array, map', () => {
  assert.deepEqual(expr('42'), int(42n));
  assert.deepEqual(expr('1.5'), { kind: 'Float', value: 1.5 });
  assert.deepEqual(expr('true'), { kind: 'Bool', value: true });
  assert.deepEqual(expr('false'), { kind: 'Bool', value: false });
  assert.deepEqual(expr('()'), { kind: 'Unit' });
  assert.deepEqual(expr("'x'"), { kind: 'Char', value: 'x' });
  assert.deepEqual(expr('"s\\n"'), str('s\n'));
  assert.deepEqual(expr('[1, "a", [],]'), { kind: 'Array', items: [int(1n), str('a'), { kind: 'Array', items: [] }] });
  assert.deepEqual(expr('#{ k: 1, "any key": 2, if: 3, }'), {
    kind: 'Map', entries: [{ key: 'k', value: int(1n) }, { key: 'any key', value: int(2n) }, { key: 'if', value: int(3n) }],
  });
  assert.deepEqual(expr('#{}'), { kind: 'Map', entries: [] });
});

test('-9223372036854775808 is i64::MIN as one literal', () => {
  assert.deepEqual(expr('-9223372036854775808'), int(-9223372036854775808n));
  assert.deepEqual(expr('-5'), { kind: 'Unary', op: '-', operand: int(5n) });
  assert.deepEqual(expr('- -9223372036854775808'), { kind: 'Unary', op: '-', operand: int(-9223372036854775808n) });
});

test('integer literal 2^63 without a minus is out of range', () => {
  assert.deepEqual(errors('let i = 9223372036854775808;'), ['1:9 integer literal out of range']);
  assert.deepEqual(errors('let i = -9223372036854775808.abs();'), ['1:10 integer literal out of range']);
  assert.deepEqual(errors('let i = 99999999999999999999;'), ['1:9 integer literal out of range']);
});

test('template: text parts and parsed expressions with their real positions', () => {
  const { program, diagnostics } = parseProgram('let t = `é ${x + 1}\n${ `in ${y}` }`;', 'main.vsl');
  assert.deepEqual(diagnostics, []);
  const init = (program.body[0] as { init: Expr }).init;
  assert.deepEqual(strip(init), {
    kind: 'Template',
    parts: ['é ', bin('+', id('x'), int(1n)), '\n', { kind: 'Template', parts: ['in ', id('y')] }],
  });
  assert.ok(init.kind === 'Template');
  const sum = init.parts[1] as Expr;
  assert.deepEqual(sum.pos, { file: 'main.vsl', line: 1, col: 16 });
  assert.ok(sum.kind === 'Binary');
  assert.deepEqual(sum.left.pos, { file: 'main.vsl', line: 1, col: 14 });
  const inner = init.parts[3] as Expr;
  assert.ok(inner.kind === 'Template');
  assert.deepEqual((inner.parts[1] as Expr).pos, { file: 'main.vsl', line: 2, col: 10 });
});

test('errors inside a template interpolation point into the template', () => {
  assert.deepEqual(errors("let t = `a ${x +}`;"), ["1:17 expected an expression, found '}'"]);
  assert.deepEqual(errors('let t = `a ${x y}`;'), ["1:16 expected '}' to end the interpolation, found 'y'"]);
  assert.deepEqual(errors('let t = `a ${}`;'), ['1:14 empty ${} in template']);
});

// ---------------------------------------------------------------- names, calls, access

test('names, paths, calls, this, global', () => {
  assert.deepEqual(expr('x'), id('x'));
  assert.deepEqual(expr('a::b::c'), { kind: 'Path', segments: ['a', 'b', 'c'] });
  assert.deepEqual(expr('global::X'), { kind: 'Path', segments: ['global', 'X'] });
  assert.deepEqual(expr('f(1, 2,)'), call(['f'], [int(1n), int(2n)]));
  assert.deepEqual(expr('state::deny(code::c554_7_1())'),
    call(['state', 'deny'], [call(['code', 'c554_7_1'], [])]));
  assert.deepEqual(expr('Fn("name")'), call(['Fn'], [str('name')]));
  assert.deepEqual(expr('this'), { kind: 'This' });
  assert.deepEqual(expr('object'), id('object'));
});

test('postfix: method calls, properties, indexes, optional forms, chained', () => {
  assert.deepEqual(expr('x.f(1)'), { kind: 'MethodCall', receiver: id('x'), name: 'f', args: [int(1n)], optional: false });
  assert.deepEqual(expr('x?.f()'), { kind: 'MethodCall', receiver: id('x'), name: 'f', args: [], optional: true });
  assert.deepEqual(expr('ctx().client_ip'), { kind: 'Prop', object: call(['ctx'], []), name: 'client_ip', optional: false });
  assert.deepEqual(expr('m?.k'), { kind: 'Prop', object: id('m'), name: 'k', optional: true });
  assert.deepEqual(expr('a[0]?[1]'), {
    kind: 'Index', object: { kind: 'Index', object: id('a'), index: int(0n), optional: false }, index: int(1n), optional: true,
  });
  assert.deepEqual(expr('1.abs()'), { kind: 'MethodCall', receiver: int(1n), name: 'abs', args: [], optional: false });
});

test('positions: a method call and a property sit on their name, an index on its bracket', () => {
  const e = parseExpression('a.b.c(1)[2]', 'main.vsl').expr!;
  assert.ok(e.kind === 'Index');
  assert.deepEqual(e.pos, { file: 'main.vsl', line: 1, col: 9 });
  assert.ok(e.object.kind === 'MethodCall');
  assert.equal(e.object.pos.col, 5);
  assert.ok(e.object.receiver.kind === 'Prop');
  assert.equal(e.object.receiver.pos.col, 3);
});

test('parseExpression honours a start position', () => {
  const r = parseExpression('x +\n y', 'main.vsl', { file: 'main.vsl', line: 10, col: 5 });
  assert.deepEqual(r.diagnostics, []);
  assert.ok(r.expr?.kind === 'Binary');
  assert.deepEqual(r.expr.pos, { file: 'main.vsl', line: 10, col: 7 });
  assert.deepEqual(r.expr.right.pos, { file: 'main.vsl', line: 11, col: 2 });
});

// ---------------------------------------------------------------- operators

test('binary precedence follows SPEC §2.6 from ?? up to << >>', () => {
  assert.deepEqual(expr('a ?? b || c && d == e < f in g .. h + i * j ** k << l'),
    bin('??', id('a'), { kind: 'Logical', op: '||', left: id('b'), right: { kind: 'Logical', op: '&&', left: id('c'),
      right: bin('==', id('d'), bin('<', id('e'), bin('in', id('f'), bin('..', id('g'),
        bin('+', id('h'), bin('*', id('i'), bin('**', id('j'), bin('<<', id('k'), id('l'))))))))) } }));
});

test('| and ^ share the level of ||; & shares the level of &&', () => {
  assert.deepEqual(expr('a | b & c'), bin('|', id('a'), bin('&', id('b'), id('c'))));
  assert.deepEqual(expr('a ^ b || c'), { kind: 'Logical', op: '||', left: bin('^', id('a'), id('b')), right: id('c') });
});

test('left associativity, and ** is right-associative', () => {
  assert.deepEqual(expr('a - b - c'), bin('-', bin('-', id('a'), id('b')), id('c')));
  assert.deepEqual(expr('a ** b ** c'), bin('**', id('a'), bin('**', id('b'), id('c'))));
});

test('unary binds tighter than binary, looser than postfix', () => {
  assert.deepEqual(expr('-a.b + !c'), bin('+', { kind: 'Unary', op: '-', operand: { kind: 'Prop', object: id('a'), name: 'b', optional: false } },
    { kind: 'Unary', op: '!', operand: id('c') }));
  assert.deepEqual(expr('+-!x'), { kind: 'Unary', op: '+', operand: { kind: 'Unary', op: '-', operand: { kind: 'Unary', op: '!', operand: id('x') } } });
  assert.deepEqual(expr('-2 ** 2'), bin('**', { kind: 'Unary', op: '-', operand: int(2n) }, int(2n)));
});

test('is and not are equality; !in is membership negated; ranges', () => {
  assert.deepEqual(expr('ctx::client_ip() is "127.0.0.1"'), bin('==', call(['ctx', 'client_ip'], []), str('127.0.0.1')));
  assert.deepEqual(expr('next() not accept()'), bin('!=', call(['next'], []), call(['accept'], [])));
  assert.deepEqual(expr('x !in list'), bin('!in', id('x'), id('list')));
  assert.deepEqual(expr('1..=3'), bin('..=', int(1n), int(3n)));
  assert.deepEqual(expr('(a + b) * c'), bin('*', bin('+', id('a'), id('b')), id('c')));
});

test('closures: |a, b| expr, || expr, || { block } and | as an infix operator', () => {
  assert.deepEqual(expr('|a, b| a + b'), { kind: 'Closure', params: [{ name: 'a' }, { name: 'b' }], body: bin('+', id('a'), id('b')) });
  assert.deepEqual(expr('|| { 1 }'), { kind: 'Closure', params: [], body: block(es(int(1n))) });
  assert.deepEqual(expr('xs.filter(|x| x | 1)'), {
    kind: 'MethodCall', receiver: id('xs'), name: 'filter', optional: false,
    args: [{ kind: 'Closure', params: [{ name: 'x' }], body: bin('|', id('x'), int(1n)) }],
  });
  assert.deepEqual(expr('a || b'), { kind: 'Logical', op: '||', left: id('a'), right: id('b') });
});

// ---------------------------------------------------------------- statements

test('let, const, export forms and import', () => {
  assert.deepEqual(stmts('let x; let y = 1; const Z = 2; export const A = 3; export let B = 4; export N; export N as M;'), [
    { kind: 'Let', name: 'x', isConst: false, exported: false },
    { kind: 'Let', name: 'y', isConst: false, exported: false, init: int(1n) },
    { kind: 'Let', name: 'Z', isConst: true, exported: false, init: int(2n) },
    { kind: 'Let', name: 'A', isConst: true, exported: true, init: int(3n) },
    { kind: 'Let', name: 'B', isConst: false, exported: true, init: int(4n) },
    { kind: 'ExportName', name: 'N' },
    { kind: 'ExportName', name: 'N', as: 'M' },
  ]);
  assert.deepEqual(stmts('import "objects" as doe; import "lib/net";'), [
    { kind: 'Import', path: 'objects', alias: 'doe' }, { kind: 'Import', path: 'lib/net' },
  ]);
  assert.deepEqual(stmts('{ import "x" as y; }'), [es(block({ kind: 'Import', path: 'x', alias: 'y' }))]);
});

test('statement positions: first token, names on their identifiers', () => {
  const body = parseOk('  export const A = 1;\nfn f(a, b) { a }\nimport "m" as z;');
  assert.ok(body[0]!.kind === 'Let');
  assert.deepEqual([body[0].pos.col, body[0].namePos.col], [3, 16]);
  assert.ok(body[1]!.kind === 'Fn');
  assert.deepEqual([body[1].pos.line, body[1].pos.col, body[1].namePos.col, body[1].params[1]!.pos.col], [2, 1, 4, 9]);
  assert.ok(body[2]!.kind === 'Import');
  assert.deepEqual([body[2].pathPos.col, body[2].aliasPos!.col], [8, 15]);
});

test('functions: fn, private fn, parameters; last statement without ;', () => {
  assert.deepEqual(stmts('fn f(a, b) { a + b } private fn g() { return; }'), [
    { kind: 'Fn', name: 'f', params: [{ name: 'a' }, { name: 'b' }], body: block(es(bin('+', id('a'), id('b')))), isPrivate: false },
    { kind: 'Fn', name: 'g', params: [], body: block({ kind: 'Return' }), isPrivate: true },
  ]);
});

test('assignments: plain, compound, indexed, chained, this', () => {
  const ops = ['=', '+=', '-=', '*=', '/=', '%=', '**=', '<<=', '>>=', '&=', '|=', '^='];
  for (const op of ops) {
    assert.deepEqual(stmts(`x ${op} 1;`), [{ kind: 'Assign', op, target: id('x'), value: int(1n) }], op);
  }
  assert.deepEqual(stmts('a.b[1].c = e;'), [{
    kind: 'Assign', op: '=', value: id('e'),
    target: { kind: 'Prop', name: 'c', optional: false, object: { kind: 'Index', optional: false, index: int(1n),
      object: { kind: 'Prop', object: id('a'), name: 'b', optional: false } } },
  }]);
  assert.deepEqual(stmts('m["k"] = 1; this.x = 2; this = 3;'), [
    { kind: 'Assign', op: '=', target: { kind: 'Index', object: id('m'), index: str('k'), optional: false }, value: int(1n) },
    { kind: 'Assign', op: '=', target: { kind: 'Prop', object: { kind: 'This' }, name: 'x', optional: false }, value: int(2n) },
    { kind: 'Assign', op: '=', target: { kind: 'This' }, value: int(3n) },
  ]);
});

test('assignment to a non-assignable target is an error at the target', () => {
  assert.deepEqual(errors('f() = 3;'), ['1:1 cannot assign to this expression']);
  assert.deepEqual(errors('let a = 1;\n  a?.b = 1;'), ['2:3 cannot assign to this expression']);
  assert.deepEqual(errors('1 + x = 2;'), ['1:1 cannot assign to this expression']);
  assert.deepEqual(errors('global::X = 2;'), ['1:1 cannot assign to this expression']);
});

test('break, continue, return and throw with and without values', () => {
  assert.deepEqual(stmts('loop { break; continue }'), [es({ kind: 'Loop', body: block({ kind: 'Break' }, { kind: 'Continue' }) })]);
  assert.deepEqual(stmts('return; return 1; throw; throw "x"'), [
    { kind: 'Return' }, { kind: 'Return', value: int(1n) }, { kind: 'Throw' }, { kind: 'Throw', value: str('x') },
  ]);
});

test('semicolons may be omitted after block-ended statements and the last statement', () => {
  assert.deepEqual(stmts('if a { 1 } while b { } loop { } for x in y { } try { } catch { } { } do { } while c\nswitch x { } z'), [
    es({ kind: 'If', cond: id('a'), then: block(es(int(1n))) }),
    es({ kind: 'While', cond: id('b'), body: block() }),
    es({ kind: 'Loop', body: block() }),
    es({ kind: 'For', varName: 'x', iterable: id('y'), body: block() }),
    es({ kind: 'Try', body: block(), handler: block() }),
    es(block()),
    es({ kind: 'DoLoop', body: block(), cond: id('c'), until: false }),
    es({ kind: 'Switch', subject: id('x'), arms: [] }),
    es(id('z')),
  ]);
  assert.deepEqual(stmts('f();'), [es(call(['f'], []), true)]);
});

test('an if at the start of a statement does not continue into a following -1', () => {
  assert.deepEqual(stmts('if a { 1 }\n-1'), [
    es({ kind: 'If', cond: id('a'), then: block(es(int(1n))) }),
    es({ kind: 'Unary', op: '-', operand: int(1n) }),
  ]);
});

// ---------------------------------------------------------------- control flow

test('if / else if / else is an expression', () => {
  assert.deepEqual(stmts('let x = if a > 1 { 1 } else if b { 2 } else { 3 };'), [{
    kind: 'Let', name: 'x', isConst: false, exported: false,
    init: { kind: 'If', cond: bin('>', id('a'), int(1n)), then: block(es(int(1n))),
      else: { kind: 'If', cond: id('b'), then: block(es(int(2n))), else: block(es(int(3n))) } },
  }]);
  assert.deepEqual(expr('if (a) { }'), { kind: 'If', cond: id('a'), then: block() });
});

test('a long else-if chain parses without deep recursion', () => {
  const src = 'if a { 0 }' + ' else if a { 1 }'.repeat(2000) + ' else { 2 }';
  const e = expr(src) as { else: unknown };
  let n = 0;
  let cur: unknown = e;
  while ((cur as { kind: string }).kind === 'If') {
    cur = (cur as { else: unknown }).else;
    n++;
  }
  assert.equal(n, 2001);
});

test('loops: while, do-while, do-until, loop, for, for with index', () => {
  assert.deepEqual(expr('while x < 3 { x += 1; }'), {
    kind: 'While', cond: bin('<', id('x'), int(3n)), body: block({ kind: 'Assign', op: '+=', target: id('x'), value: int(1n) }),
  });
  assert.deepEqual(stmts('do { } until done;'), [es({ kind: 'DoLoop', body: block(), cond: id('done'), until: true }, true)]);
  assert.deepEqual(expr('for (x, i) in 0..10 { }'), {
    kind: 'For', varName: 'x', indexName: 'i', iterable: bin('..', int(0n), int(10n)), body: block(),
  });
  const { program } = parseProgram('for (x, i) in a {}', 'main.vsl');
  const f = (program.body[0] as { expr: Expr }).expr;
  assert.ok(f.kind === 'For');
  assert.deepEqual([f.varPos.col, f.indexPos!.col], [6, 9]);
});

test('try / catch with and without a variable', () => {
  assert.deepEqual(expr('try { throw 1; } catch (e) { e }'), {
    kind: 'Try', body: block({ kind: 'Throw', value: int(1n) }), catchVar: 'e', handler: block(es(id('e'))),
  });
  assert.deepEqual(expr('try { } catch { }'), { kind: 'Try', body: block(), handler: block() });
});

test('switch: alternatives, guards, ranges, negative numbers, arrays, maps, unit, wildcard', () => {
  const c = (value: unknown) => ({ kind: 'Const', value });
  assert.deepEqual(expr(`switch v {
    1 => a, 2 | 3 => b, "x" if g => c, 10..20 => d, 10..=20 => { d } -1 => e,
    -1.5 => f, [1, [2]] => g, #{ k: 'c' } => h, () => i, true => j, -9223372036854775808..=-1 => k, _ => l,
  }`), {
    kind: 'Switch', subject: id('v'), arms: [
      { patterns: [c(int(1n))], body: id('a') },
      { patterns: [c(int(2n)), c(int(3n))], body: id('b') },
      { patterns: [c(str('x'))], guard: id('g'), body: id('c') },
      { patterns: [{ kind: 'Range', from: 10n, to: 20n, inclusive: false }], body: id('d') },
      { patterns: [{ kind: 'Range', from: 10n, to: 20n, inclusive: true }], body: block(es(id('d'))) },
      { patterns: [c(int(-1n))], body: id('e') },
      { patterns: [c({ kind: 'Float', value: -1.5 })], body: id('f') },
      { patterns: [c({ kind: 'Array', items: [int(1n), { kind: 'Array', items: [int(2n)] }] })], body: id('g') },
      { patterns: [c({ kind: 'Map', entries: [{ key: 'k', value: { kind: 'Char', value: 'c' } }] })], body: id('h') },
      { patterns: [c({ kind: 'Unit' })], body: id('i') },
      { patterns: [c({ kind: 'Bool', value: true })], body: id('j') },
      { patterns: [{ kind: 'Range', from: -9223372036854775808n, to: -1n, inclusive: true }], body: id('k') },
      { patterns: [{ kind: 'Wild' }], body: id('l') },
    ],
  });
});

test('switch patterns that are not constants are refused', () => {
  assert.deepEqual(errors('switch v { x => 1 }'), ["1:12 switch patterns must be literals, integer ranges or '_'"]);
  assert.deepEqual(errors('switch v { 1.5..2 => 1 }'), ["1:15 expected '=>', found '..'"]);
  assert.deepEqual(errors('switch v { 1..x => 1 }'), ["1:15 expected an integer to end the range, found 'x'"]);
});

test("'_' must be the last switch arm", () => {
  assert.deepEqual(errors('switch x {\n  _ => 1,\n  2 => 3,\n  4 => 5 }'), ["2:3 '_' must be the last switch arm"]);
});

// ---------------------------------------------------------------- directives and v1 declarations

test('directives: rule and action with closure, block and map bodies', () => {
  assert.deepEqual(expr('rule "relay" || check_mail_relay(x)'), {
    kind: 'Directive', directive: 'rule', name: 'relay',
    body: { kind: 'Closure', params: [], body: call(['check_mail_relay'], [id('x')]) },
  });
  assert.deepEqual(expr('action "log" || { print(1) }'), {
    kind: 'Directive', directive: 'action', name: 'log',
    body: { kind: 'Closure', params: [], body: block(es(call(['print'], [int(1n)]))) },
  });
  assert.deepEqual(expr('rule "m" #{ evaluate: || accept(), description: "d" }'), {
    kind: 'Directive', directive: 'rule', name: 'm',
    body: { kind: 'Map', entries: [
      { key: 'evaluate', value: { kind: 'Closure', params: [], body: call(['accept'], []) } },
      { key: 'description', value: str('d') },
    ] },
  });
  assert.deepEqual(expr('rule "f" my_rule_fn'), { kind: 'Directive', directive: 'rule', name: 'f', body: id('my_rule_fn') });
});

test('the canonical stage map of SPEC §1.3 parses', () => {
  const body = parseOk(`// -- main.vsl
import "objects" as doe;

#{
  mail: [
    rule "relay mail from" || check_mail_relay(doe::internal_net),
  ],

  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(doe::internal_net),
  ],
  authenticate: [
    rule "auth /etc/shadow" || {
        authenticate()
      }
    ],
}
`);
  assert.equal(body.length, 2);
  const map = (body[1] as { expr: Expr }).expr;
  assert.ok(map.kind === 'Map');
  assert.deepEqual(map.entries.map((e) => e.key), ['mail', 'rcpt', 'authenticate']);
  const rule = (map.entries[1]!.value as { items: Expr[] }).items[0]!;
  assert.ok(rule.kind === 'Directive');
  assert.deepEqual([rule.pos.line, rule.pos.col, rule.namePos.col], [10, 5, 10]);
  assert.deepEqual(strip(rule.body), {
    kind: 'Closure', params: [], body: call(['check_rcpt_relay'], [{ kind: 'Path', segments: ['doe', 'internal_net'] }]),
  });
});

test('v1 object declarations, nested in groups, and services', () => {
  assert.deepEqual(stmts(`object relay_net rg4 = "192.168.1.0/24";
object blocklist file:fqdn = "/etc/mta/blocklist.txt";
object admins group = [ object alice address = "alice@example.org", relay_net ];
object no code = #{ code: 550, enhanced: "5.7.1", text: "go away" };
service db db:csv = #{ connector: "greylist.csv" };
service scan cmd = #{ command: "/usr/bin/scan" };`), [
    es({ kind: 'Object', name: 'relay_net', type: 'rg4', value: str('192.168.1.0/24') }, true),
    es({ kind: 'Object', name: 'blocklist', type: 'file', element: 'fqdn', value: str('/etc/mta/blocklist.txt') }, true),
    es({ kind: 'Object', name: 'admins', type: 'group', value: { kind: 'Array', items: [
      { kind: 'Object', name: 'alice', type: 'address', value: str('alice@example.org') }, id('relay_net')] } }, true),
    es({ kind: 'Object', name: 'no', type: 'code', value: { kind: 'Map', entries: [
      { key: 'code', value: int(550n) }, { key: 'enhanced', value: str('5.7.1') }, { key: 'text', value: str('go away') }] } }, true),
    es({ kind: 'Service', name: 'db', serviceKind: 'db:csv', value: { kind: 'Map', entries: [{ key: 'connector', value: str('greylist.csv') }] } }, true),
    es({ kind: 'Service', name: 'scan', serviceKind: 'cmd', value: { kind: 'Map', entries: [{ key: 'command', value: str('/usr/bin/scan') }] } }, true),
  ]);
  const { program } = parseProgram('object net rg4 = "x";', 'o.vsl');
  const o = (program.body[0] as { expr: Expr }).expr;
  assert.ok(o.kind === 'Object');
  assert.deepEqual([o.pos.col, o.namePos.col, o.typePos.col], [1, 8, 12]);
});

test('object and service stay ordinary names when not followed by a name', () => {
  assert.deepEqual(stmts('let object = 1; object + service; service(1);'), [
    { kind: 'Let', name: 'object', isConst: false, exported: false, init: int(1n) },
    es(bin('+', id('object'), id('service')), true),
    es(call(['service'], [int(1n)]), true),
  ]);
});

test('object/service declarations without a type or = are reported', () => {
  assert.deepEqual(errors('object x = "a";'), ['1:10 missing type in object declaration']);
  assert.deepEqual(errors('object y rg4 "b";'), ['1:14 expected \'=\', found "b"']);
  assert.deepEqual(errors('object y file: = "b";'), ["1:16 expected the element type after 'file:', found '='"]);
  assert.deepEqual(errors('service z = 1;'), ['1:11 missing kind in service declaration']);
});

// ---------------------------------------------------------------- pinned negative cases

test('unterminated string: one error at the quote, the next line still parses', () => {
  const r = parseProgram('let x = "abc;\nlet y = 2;', 'main.vsl');
  assert.deepEqual(r.diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`), ['1:9 unterminated string']);
  assert.equal(r.program.body.length, 2);
});

test('unterminated block comment', () => {
  assert.deepEqual(errors('let x = 1;\n/* open /* nested */'), ['2:1 unterminated block comment']);
});

test('bad token', () => {
  assert.deepEqual(errors('let x = 1 § 2;'), ["1:11 unexpected character '§'"]);
});

test('missing { after # (bare #)', () => {
  assert.deepEqual(errors('let m = #[1];'), ["1:9 expected '{' after '#'"]);
  assert.deepEqual(errors('let m = # a: 1 };'), ["1:9 expected '{' after '#'"]);
});

test('rule without a name, and with an empty name', () => {
  assert.deepEqual(errors('#{ mail: [ rule || accept() ] }'), ['1:17 rule needs a name: rule "name" || …']);
  assert.deepEqual(errors('#{ mail: [ action || accept() ] }'), ['1:19 action needs a name: action "name" || …']);
  assert.deepEqual(errors('#{ mail: [ rule "" || accept() ] }'), ['1:17 rule name cannot be empty']);
  assert.deepEqual(errors('#{ mail: [ rule "x", ] }'), ['1:20 expected the body of rule "x", found \',\'']);
});

test('reserved words cannot be names', () => {
  assert.deepEqual(errors('let var = 1;'), ["1:5 'var' is a reserved word and cannot be used as a name"]);
  assert.deepEqual(errors('fn f(null) { }'), ["1:6 'null' is a reserved word and cannot be used as a name"]);
  assert.deepEqual(errors('let x = nil;'), ["1:9 'nil' is a reserved word and cannot be used as a name"]);
  assert.deepEqual(errors('for match in x {}'), ["1:5 'match' is a reserved word and cannot be used as a name"]);
  assert.deepEqual(errors('let if = 1;'), ["1:5 'if' is a keyword and cannot be used as a name"]);
  assert.deepEqual(errors('let is = 1;'), ["1:5 'is' is a keyword and cannot be used as a name"]);
});

test('delegate is not supported, wherever it appears', () => {
  assert.deepEqual(errors('#{ rcpt: [ delegate svc "scan" || { accept() }, rule "r" || next() ] }'),
    ['1:12 delegate is not supported']);
  assert.deepEqual(errors('let d = delegate;'), ['1:9 delegate is not supported']);
});

test('fn inside a block is refused', () => {
  assert.deepEqual(errors('fn ok() {\n  fn inner() { 1 }\n  2\n}'), ['2:3 functions can only be defined at the top level']);
  assert.deepEqual(errors('let f = || { fn g() {} };'), ['1:14 functions can only be defined at the top level']);
  assert.deepEqual(errors('let f = fn(x) { x };'), ['1:9 functions can only be defined at the top level']);
});

test('missing ; between statements is reported where the ; belongs', () => {
  const r = parseProgram('let x = 1\nlet y = 2;', 'main.vsl');
  assert.deepEqual(r.diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`), ["1:10 expected ';', found 'let'"]);
  assert.equal(r.program.body.length, 2, 'the next statement is still parsed');
  assert.deepEqual(errors('let x = 1 2;\nlet y = 3'), ["1:10 expected ';', found '2'"]);
});

test('unbalanced parentheses and brackets', () => {
  assert.deepEqual(errors('let x = (1 + 2));'), ["1:16 unmatched ')'"]);
  assert.deepEqual(errors('let x = f(1, 2;\nlet y = 1;'), ["1:15 expected ',' or ')', found ';'"]);
  assert.deepEqual(errors('let x = f(1, 2'), ["1:10 unclosed '('"]);
  assert.deepEqual(errors('fn f() {\n  1'), ["1:8 unclosed '{'"]);
  assert.deepEqual(errors('let a = [1, 2;'), ["1:14 expected ',' or ']', found ';'"]);
  assert.deepEqual(errors('}\nlet x = 1;'), ["1:1 unmatched '}'"]);
  assert.deepEqual(errors('f(]);'), ["1:3 unmatched ']'"]);
});

test('let without a name', () => {
  assert.deepEqual(errors('let = 5;'), ["1:5 expected a variable name after 'let', found '='"]);
  assert.deepEqual(errors('let;'), ["1:4 expected a variable name after 'let', found ';'"]);
  assert.deepEqual(errors('const X;'), ["1:8 expected '=' and a value for const X, found ';'"]);
});

test('other helpful diagnostics: tuples, map syntax, duplicate keys, _ as a value, export in a block', () => {
  assert.deepEqual(errors('let t = (1, 2);'), ['1:11 tuples are not supported']);
  assert.deepEqual(errors('let m = #{ a = 1 };'), ["1:14 expected ':', found '='"]);
  assert.deepEqual(errors('let m = #{ a: 1, "a": 2 };'), ["1:18 duplicate key 'a' in map"]);
  assert.deepEqual(errors('let x = _;'), ["1:9 '_' is only a switch wildcard, not a value or a name"]);
  assert.deepEqual(errors('{ export const A = 1; }'), ['1:3 export is only allowed at the top level of a file']);
  assert.deepEqual(errors('if x = 1 { }'), ["1:6 expected '{' after the if condition, found '='"]);
  assert.deepEqual(errors('fn f(a, a) { }'), ["1:9 duplicate parameter 'a'"]);
  assert.deepEqual(errors('import objects;'), ["1:8 expected the module path as a string after 'import', found 'objects'"]);
  assert.deepEqual(errors('global;'), ["1:7 expected '::' after 'global', found ';'"]);
});

test('hints are attached where they help', () => {
  const d = parseProgram('if x = 1 { }', 'main.vsl').diagnostics[0]!;
  assert.equal(d.hint, 'to compare values, use ==');
  const m = parseProgram('let m = #[1];', 'main.vsl').diagnostics[0]!;
  assert.equal(m.hint, 'maps are written #{ key: value }');
});

// ---------------------------------------------------------------- recovery

test('independent errors in separate statements are all reported', () => {
  assert.deepEqual(errors('let = 1;\nlet y = (2;\nfn f() { let var = 1; }\nlet ok = 1;\nrule "" || x;'), [
    "1:5 expected a variable name after 'let', found '='",
    "2:11 expected ')', found ';'",
    "3:14 'var' is a reserved word and cannot be used as a name",
    '5:6 rule name cannot be empty',
  ]);
});

test('errors in rule bodies inside one stage map are reported per inner statement', () => {
  assert.deepEqual(errors(`#{
  mail: [
    rule "a" || { let = 1; accept() },
    rule "b" || { let x = ; accept() },
  ],
}`), ["3:23 expected a variable name after 'let', found '='", "4:27 expected an expression, found ';'"]);
});

test('one statement with several problems gives one diagnostic', () => {
  assert.deepEqual(errors('let x = (1 + ) * ] + [;'), ["1:14 expected an expression, found ')'"]);
  assert.deepEqual(errors('let x = "abc\nlet y = 1;'), ['1:9 unterminated string']);
});

test('after an error inside a block, the rest of the block and file parse', () => {
  const r = parseProgram('fn f() {\n  let x = ;\n  x\n}\nfn g() { 1 }', 'main.vsl');
  assert.deepEqual(r.diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`), ['2:11 expected an expression, found \';\'']);
  assert.deepEqual(r.program.body.map((s) => s.kind === 'Fn' ? s.name : s.kind), ['f', 'g']);
});

// ---------------------------------------------------------------- robustness

test('10,000 nested brackets give one "nesting too deep" diagnostic, not a stack overflow', () => {
  for (const [open, close] of [['[', ']'], ['(', ')'], ['{', '}'], ['#{a:', '}']] as const) {
    for (const balanced of [true, false]) {
      const src = 'let x = ' + open.repeat(10000) + '1' + (balanced ? close.repeat(10000) : '') + ';';
      const { diagnostics } = parseProgram(src, 'main.vsl');
      assert.equal(diagnostics.length, 1, `${open} balanced=${balanced}`);
      assert.equal(diagnostics[0]!.message, 'nesting too deep (more than 256 levels)');
    }
  }
  assert.deepEqual(errors('let x = ' + '['.repeat(10000)), ['1:264 nesting too deep (more than 256 levels)']);
  assert.deepEqual(errors('{'.repeat(10000) + '}'.repeat(10000)), ['1:257 nesting too deep (more than 256 levels)']);
});

test('deep chains without brackets are bounded too: closures, **, directives, unary', () => {
  for (const [prefix, suffix] of [['|| ', '1'], ['2 ** ', '2'], ['rule "x" ', 'f'], ['if a { ', '}']]) {
    const src = 'let x = ' + prefix!.repeat(10000) + suffix + ';';
    const { diagnostics } = parseProgram(src, 'main.vsl');
    assert.deepEqual(diagnostics.map((d) => d.message), ['nesting too deep (more than 256 levels)'], prefix);
  }
  // Prefix operators are collected in a loop: no depth limit needed.
  assert.deepEqual(errors('let x = ' + '-'.repeat(10000) + '1;'), []);
});

test('200 levels of nesting are fine', () => {
  assert.deepEqual(errors('let x = ' + '['.repeat(200) + ']'.repeat(200) + ';'), []);
  assert.deepEqual(errors('{'.repeat(200) + '}'.repeat(200)), []);
});

test('random garbage never throws and never hits an internal error', () => {
  const pieces = ['let', 'x', '=', ';', '{', '}', '(', ')', '[', ']', '#{', '#', ':', ',', '"s"', '"', "'", "'a'",
    '`a${', '}`', '`', 'rule', '"n"', '||', '|', 'if', 'else', 'switch', '=>', '_', '1', '-', '..', '..=', 'fn',
    'object', 'service', 'rg4', 'import', 'export', 'as', 'for', 'in', '!', 'try', 'catch', 'do', 'while', '/*',
    '*/', '//', '\n', '?.', '?[', '::', 'global', 'this', 'delegate', '9223372036854775808', '0x', '1e', '\\',
    '§', 'é', '😀', 'is', 'not', 'return', 'break', 'private', '.', '+=', 'var'];
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let k = 0; k < 3000; k++) {
    let src = '';
    const n = rnd(80);
    if (k % 4 === 0) {
      for (let j = 0; j < n; j++) src += String.fromCharCode(rnd(0x3000));
    } else {
      for (let j = 0; j < n; j++) src += pieces[rnd(pieces.length)]! + (rnd(3) ? ' ' : '');
    }
    const r = parseProgram(src, 'g.vsl');
    for (const d of r.diagnostics) {
      assert.ok(!d.message.startsWith('internal'), `${JSON.stringify(src)}: ${d.message}`);
      assert.ok(d.pos.line >= 1 && d.pos.col >= 1);
    }
  }
});

test('a 10 MB file of valid statements parses', { timeout: 60_000 }, () => {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 10_000_000; i++) {
    const line = `let x${i} = foo(${i}, "abc") + 2 * y.bar[3] ?? #{ a: [1, 2.5, 'c'], b: |v| v is ${i} };\n`;
    lines.push(line);
    size += line.length;
  }
  const { program, diagnostics } = parseProgram(lines.join(''), 'big.vsl');
  assert.deepEqual(diagnostics, []);
  assert.equal(program.body.length, lines.length);
});

test('pinned load errors: file:line:col and message, one per case', () => {
  const cases: Array<[string, string]> = [
    ['let x = "abc;\n', 'main.vsl:1:9: error: unterminated string'],
    ['let a = 1;\n  /* never closed', 'main.vsl:2:3: error: unterminated block comment'],
    ['let x = 1 § 2;', "main.vsl:1:11: error: unexpected character '§'"],
    ['let m = #[1];', "main.vsl:1:9: error: expected '{' after '#'"],
    ['#{ mail: [ rule || accept() ] }', 'main.vsl:1:17: error: rule needs a name: rule "name" || …'],
    ['#{ mail: [ rule "" || accept() ] }', 'main.vsl:1:17: error: rule name cannot be empty'],
    ['let var = 1;', "main.vsl:1:5: error: 'var' is a reserved word and cannot be used as a name"],
    ['#{ rcpt: [ delegate svc "x" || { accept() } ] }', 'main.vsl:1:12: error: delegate is not supported'],
    ['if true {\n    fn f() { 1 }\n}', 'main.vsl:2:5: error: functions can only be defined at the top level'],
    ['switch x { _ => 1, 2 => 3 }', "main.vsl:1:12: error: '_' must be the last switch arm"],
    ['let s = "a\\qb";', "main.vsl:1:11: error: unknown escape sequence '\\q'"],
    ["let c = 'ab';", 'main.vsl:1:9: error: char literal must contain exactly one character'],
    ['let i = 9223372036854775808;', 'main.vsl:1:9: error: integer literal out of range'],
    ['let i = 18446744073709551616;', 'main.vsl:1:9: error: integer literal out of range'],
    ['let x = 1\nlet y = 2;', "main.vsl:1:10: error: expected ';', found 'let'"],
    ['let x = (1 + 2));', "main.vsl:1:16: error: unmatched ')'"],
    ['f() = 3;', 'main.vsl:1:1: error: cannot assign to this expression'],
    ['let = 5;', "main.vsl:1:5: error: expected a variable name after 'let', found '='"],
    ['let x = ' + '['.repeat(10000) + ']'.repeat(10000) + ';', 'main.vsl:1:264: error: nesting too deep (more than 256 levels)'],
  ];
  for (const [src, expected] of cases) {
    const { diagnostics } = parseProgram(src, 'main.vsl');
    assert.deepEqual(diagnostics.map((d) => formatDiagnostic(d, undefined)), [expected], JSON.stringify(src.slice(0, 60)));
  }
});
