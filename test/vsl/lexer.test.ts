import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenize, type Token } from '../../src/vsl/lexer.js';

/** Tokens without EOF, as `kind:text`. */
function kinds(src: string): string[] {
  const { tokens, diagnostics } = tokenize(src, 'main.vsl');
  assert.deepEqual(diagnostics, [], `unexpected diagnostics for ${src}`);
  return tokens.slice(0, -1).map((t) => `${t.kind}:${t.text}`);
}

function one(src: string): Token {
  const { tokens, diagnostics } = tokenize(src, 'main.vsl');
  assert.deepEqual(diagnostics, [], `unexpected diagnostics for ${src}`);
  assert.equal(tokens.length, 2, `expected one token in ${src}`);
  return tokens[0]!;
}

/** Lexical errors as `line:col message`. */
function errors(src: string): string[] {
  return tokenize(src, 'main.vsl').diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message}`);
}

function at(t: Token): string {
  return `${t.pos.line}:${t.pos.col}`;
}

// ---------------------------------------------------------------- numbers

test('integer literals in every base give their value as bigint', () => {
  const cases: Array<[string, bigint]> = [
    ['42', 42n], ['0', 0n], ['0xff', 255n], ['0XFF', 255n], ['0o17', 15n], ['0b1010', 10n],
    ['1_000', 1000n], ['0xff_ff', 65535n], ['007', 7n], ['9223372036854775807', 9223372036854775807n],
  ];
  for (const [src, value] of cases) {
    const t = one(src);
    assert.equal(t.kind, 'Int', src);
    assert.equal(t.intValue, value, src);
    assert.equal(t.text, src);
  }
});

test('float literals with fraction and exponent', () => {
  const cases: Array<[string, number]> = [
    ['1.5', 1.5], ['2.0e-3', 0.002], ['1e3', 1000], ['1E+2', 100], ['1_0.2_5', 10.25], ['0.0', 0],
  ];
  for (const [src, value] of cases) {
    const t = one(src);
    assert.equal(t.kind, 'Float', src);
    assert.equal(t.floatValue, value, src);
  }
});

test('1..3 is a range of two ints, and 1.abs is a method on an int', () => {
  assert.deepEqual(kinds('1..3'), ['Int:1', 'Punct:..', 'Int:3']);
  assert.deepEqual(kinds('1..=3'), ['Int:1', 'Punct:..=', 'Int:3']);
  assert.deepEqual(kinds('1.abs()'), ['Int:1', 'Punct:.', 'Ident:abs', 'Punct:(', 'Punct:)']);
  assert.deepEqual(kinds('1.5..2.5'), ['Float:1.5', 'Punct:..', 'Float:2.5']);
});

test('minus is a separate token: -5 lexes as - then 5', () => {
  assert.deepEqual(kinds('-5'), ['Punct:-', 'Int:5']);
});

test('2^63 lexes without error (the parser accepts it after unary minus)', () => {
  const t = one('9223372036854775808');
  assert.equal(t.intValue, 9223372036854775808n);
  assert.equal(t.bad, undefined);
});

test('integer literal beyond 2^63 is an error', () => {
  assert.deepEqual(errors('let x = 99999999999999999999;'), ['1:9 integer literal out of range']);
  assert.deepEqual(errors('0x1_0000_0000_0000_0000'), ['1:1 integer literal out of range']);
});

test('malformed numbers are reported and lexing goes on', () => {
  assert.deepEqual(errors('12abc x'), ["1:1 invalid number literal '12abc'"]);
  assert.deepEqual(errors('1e'), ["1:1 invalid number literal '1e'"]);
  assert.deepEqual(errors('0x;'), ["1:1 expected hexadecimal digits after '0x'"]);
  assert.deepEqual(errors('0b102'), ["1:1 invalid digit '2' in binary literal"]);
  assert.deepEqual(errors('0o8'), ["1:1 invalid digit '8' in octal literal"]);
  assert.deepEqual(errors('0xfg'), ["1:1 invalid digit 'g' in hexadecimal literal"]);
  assert.deepEqual(errors('1e999'), ['1:1 float literal out of range']);
  const { tokens } = tokenize('12abc x', 'f');
  assert.equal(tokens[1]!.text, 'x');
});

// ---------------------------------------------------------------- chars and strings

test('char literals hold one code point, escapes included', () => {
  const cases: Array<[string, string]> = [
    ["'a'", 'a'], ["'\\n'", '\n'], ["'\\u00e9'", 'é'], ["'\\''", "'"], ["'😀'", '😀'], ["'\"'", '"'],
  ];
  for (const [src, value] of cases) {
    const t = one(src);
    assert.equal(t.kind, 'Char', src);
    assert.equal(t.strValue, value, src);
  }
});

test('char literal with two characters is an error at its quote', () => {
  assert.deepEqual(errors("let c = 'ab';"), ['1:9 char literal must contain exactly one character']);
  assert.deepEqual(errors("''"), ['1:1 empty char literal']);
  assert.deepEqual(errors("let c = 'a\nx"), ['1:9 unterminated char literal']);
});

test('string escapes decode to their characters', () => {
  const t = one(String.raw`"a\\b\"c\'d\ne\rf\tg\0h\x41\u00e9\U0001F600"`);
  assert.equal(t.kind, 'Str');
  assert.equal(t.strValue, 'a\\b"c\'d\ne\rf\tg\0hAé😀');
});

test('backslash-newline continues a string and skips the next line\'s leading blanks', () => {
  assert.equal(one('"abc\\\n    \tdef"').strValue, 'abcdef');
  assert.equal(one('"abc\\\r\n  def"').strValue, 'abcdef');
  const { tokens } = tokenize('"a\\\n  b" x', 'f');
  assert.equal(at(tokens[1]!), '2:6');
});

test('unterminated string is reported at its opening quote', () => {
  assert.deepEqual(errors('let x = "abc;\nlet y = 2;'), ['1:9 unterminated string']);
  assert.deepEqual(errors('"abc'), ['1:1 unterminated string']);
  const { tokens, diagnostics } = tokenize('  let x = "abc;\nlet', 'f');
  assert.equal(diagnostics[0]!.hint, 'close the string with "');
  // The string stops at the line end; the next line lexes normally.
  assert.equal(tokens[3]!.strValue, 'abc;');
  assert.equal(`${tokens[4]!.kind}:${tokens[4]!.text}@${at(tokens[4]!)}`, 'Keyword:let@2:1');
});

test('bad escapes are reported at the backslash', () => {
  assert.deepEqual(errors('let s = "a\\q";'), ["1:11 unknown escape sequence '\\q'"]);
  assert.deepEqual(errors('"\\x4"'), ["1:2 invalid escape '\\x4': expected 2 hex digits after \\x"]);
  assert.deepEqual(errors('"\\uD800"'), ["1:2 invalid unicode escape '\\uD800': not a character"]);
  assert.deepEqual(errors('"\\UFFFFFFFF"'), ["1:2 invalid unicode escape '\\UFFFFFFFF': not a character"]);
  assert.deepEqual(errors('"\\u{41}"'), ["1:2 invalid escape '\\u': expected 4 hex digits after \\u"]);
});

// ---------------------------------------------------------------- templates

test('template literal: text and ${} parts with raw source and start position', () => {
  const t = one('`a ${x + 1} b`');
  assert.equal(t.kind, 'Template');
  assert.equal(t.parts!.length, 3);
  assert.equal(t.parts![0], 'a ');
  const p = t.parts![1]!;
  assert.ok(typeof p !== 'string');
  assert.equal(p.source, 'x + 1');
  assert.deepEqual(p.pos, { file: 'main.vsl', line: 1, col: 6 });
  assert.deepEqual(p.tokens.map((k) => `${k.kind}:${k.text}@${at(k)}`),
    ['Ident:x@1:6', 'Punct:+@1:8', 'Int:1@1:10', 'EOF:}@1:11']);
  assert.equal(t.parts![2], ' b');
});

test('template: two backticks stand for one, no escapes, multi-line text', () => {
  assert.deepEqual(one('`a``b \\n $x`').parts, ['a`b \\n $x']);
  assert.deepEqual(one('``').parts, []);
  assert.deepEqual(one('`line1\nline2`').parts, ['line1\nline2']);
  assert.deepEqual(one('`crlf\r\nend`').parts, ['crlf\nend']);
});

test('template interpolation may nest braces, maps, strings and templates', () => {
  const t = one('`${ #{a: "}"}.a } ${ `in ${y}` } ${ if c { 1 } else { 2 } }`');
  const exprs = t.parts!.filter((p) => typeof p !== 'string');
  assert.equal(exprs.length, 3);
  assert.deepEqual(exprs.map((p) => typeof p === 'string' ? p : p.source),
    [' #{a: "}"}.a ', ' `in ${y}` ', ' if c { 1 } else { 2 } ']);
  const nested = exprs[1]!;
  assert.ok(typeof nested !== 'string');
  assert.equal(nested.tokens[0]!.kind, 'Template');
});

test('template positions continue across lines', () => {
  const { tokens } = tokenize('`a\n  ${x}` y', 'f');
  const p = tokens[0]!.parts![1]!;
  assert.ok(typeof p !== 'string');
  assert.equal(at(p.tokens[0]!), '2:5');
  assert.equal(at(tokens[1]!), '2:9');
});

test('unterminated template and interpolation are reported once', () => {
  assert.deepEqual(errors('let t = `abc'), ['1:9 unterminated template']);
  assert.deepEqual(errors('let t = `a ${x'), ["1:12 unterminated '${' in template"]);
  assert.deepEqual(errors('`${`${`${'), ["1:8 unterminated '${' in template"]);
});

test('10,000 nested templates give one diagnostic, not a stack overflow', () => {
  const src = '`${'.repeat(10000) + 'x' + '}`'.repeat(10000);
  assert.deepEqual(errors(src), ['1:769 nesting too deep (more than 256 levels)']);
});

// ---------------------------------------------------------------- words

test('keywords, identifiers, contextual object/service and the lone _', () => {
  assert.deepEqual(kinds('let x_1 = _; _y object service rule action delegate this global'), [
    'Keyword:let', 'Ident:x_1', 'Punct:=', 'Wildcard:_', 'Punct:;', 'Ident:_y', 'Ident:object',
    'Ident:service', 'Keyword:rule', 'Keyword:action', 'Keyword:delegate', 'Keyword:this', 'Keyword:global',
  ]);
  for (const w of ['true', 'false', 'const', 'if', 'else', 'switch', 'while', 'do', 'until', 'loop', 'for',
    'in', 'break', 'continue', 'return', 'throw', 'try', 'catch', 'fn', 'private', 'import', 'export', 'as']) {
    assert.equal(one(w).kind, 'Keyword', w);
  }
});

test('reserved words lex as identifiers (the parser refuses them as names)', () => {
  for (const w of ['var', 'null', 'match', 'default', 'eval']) assert.equal(one(w).kind, 'Ident', w);
});

test('is lexes as == and not as != (never a negation)', () => {
  const { tokens } = tokenize('a is b not c', 'f');
  assert.deepEqual(tokens.slice(0, -1).map((t) => `${t.kind}:${t.text}:${t.remappedFrom ?? ''}`), [
    'Ident:a:', 'Punct:==:is', 'Ident:b:', 'Punct:!=:not', 'Ident:c:',
  ]);
  assert.deepEqual(kinds('island nothing'), ['Ident:island', 'Ident:nothing']);
});

// ---------------------------------------------------------------- operators

test('every operator lexes as one token, longest match first', () => {
  const ops = ['+', '-', '*', '/', '%', '**', '<<', '>>', '&', '|', '^', '==', '!=', '<', '<=', '>', '>=',
    '&&', '||', '!', '??', '?.', '?[', '..', '..=', '=', '+=', '-=', '*=', '/=', '%=', '**=', '<<=', '>>=',
    '&=', '|=', '^=', '=>', '::', ',', ';', ':', '.', '(', ')', '[', ']', '{', '}', '#{'];
  const { tokens, diagnostics } = tokenize(ops.join(' '), 'f');
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(tokens.slice(0, -1).map((t) => t.text), ops);
  assert.deepEqual(kinds('a**=b'), ['Ident:a', 'Punct:**=', 'Ident:b']);
  assert.deepEqual(kinds('x?.y?[0]??z'), ['Ident:x', 'Punct:?.', 'Ident:y', 'Punct:?[', 'Int:0', 'Punct:]',
    'Punct:??', 'Ident:z']);
  assert.deepEqual(kinds('|a|a'), ['Punct:|', 'Ident:a', 'Punct:|', 'Ident:a']);
});

// ---------------------------------------------------------------- trivia and positions

test('comments: line comments and nested block comments are skipped', () => {
  assert.deepEqual(kinds('a // b c\nd /* e /* f */ g */ h'), ['Ident:a', 'Ident:d', 'Ident:h']);
});

test('unterminated block comment is reported at its opening', () => {
  assert.deepEqual(errors('x\n  /* a /* b */ c'), ['2:3 unterminated block comment']);
});

test('a BOM is ignored and does not count as a column; a shebang line is skipped', () => {
  const { tokens } = tokenize('\uFEFFlet x', 'f');
  assert.equal(at(tokens[0]!), '1:1');
  assert.equal(at(tokens[1]!), '1:5');
  assert.deepEqual(kinds('#!/usr/bin/env mta\nx'), ['Ident:x']);
});

test('columns count code points: after multi-byte characters and tabs', () => {
  const { tokens } = tokenize('"é😀" x\n\tz\r\n y', 'f');
  assert.deepEqual(tokens.map((t) => `${at(t)}-${t.endLine}:${t.endCol}`),
    ['1:1-1:5', '1:6-1:7', '2:2-2:3', '3:2-3:3', '3:3-3:3']);
});

test('unicode blanks such as a no-break space separate tokens', () => {
  assert.deepEqual(kinds('a\u00a0b'), ['Ident:a', 'Ident:b']);
});

test('unexpected characters are reported with their position, and lexing goes on', () => {
  assert.deepEqual(errors('let é = 1;'), ["1:5 unexpected character 'é'"]);
  assert.deepEqual(errors('x § y'), ["1:3 unexpected character '§'"]);
  assert.deepEqual(errors('😀 ~'), ["1:1 unexpected character '😀'", "1:3 unexpected character '~'"]);
  assert.deepEqual(errors('a\u0007'), ['1:2 unexpected character U+0007']);
  assert.deepEqual(errors('$x ? @'), ["1:1 unexpected character '$'", "1:4 unexpected character '?'",
    "1:6 unexpected character '@'"]);
  const { tokens } = tokenize('x § y', 'f');
  assert.deepEqual(tokens.map((t) => t.text), ['x', 'y', '']);
  assert.equal(tokens[1]!.bad, true, 'the token after a skipped character is marked');
});

test("a # not followed by { is an error with a hint about maps", () => {
  const { diagnostics, tokens } = tokenize('let m = #[1];', 'f');
  assert.deepEqual(diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.message} | ${d.hint}`),
    ["1:9 expected '{' after '#' | maps are written #{ key: value }"]);
  assert.equal(tokens[3]!.text, '[');
  // `# {` is recovered as a map opener.
  const r = tokenize('# { }', 'f');
  assert.equal(r.diagnostics.length, 1);
  assert.deepEqual(r.tokens.map((t) => t.text), ['#{', '}', '']);
});

test('a backslash at the end of the file gives only the unterminated-string error', () => {
  assert.deepEqual(errors('"abc\\'), ['1:1 unterminated string']);
});

test('lone surrogates and control characters are shown as U+XXXX', () => {
  assert.deepEqual(errors('x\uDC00y'), ['1:2 unexpected character U+DC00']);
  assert.deepEqual(errors('\0'), ['1:1 unexpected character U+0000']);
});
