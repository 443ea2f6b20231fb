import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoadError, diagnosticToJson, errorAt, formatDiagnostic, formatDiagnostics, sortDiagnostics, warningAt, type Diagnostic } from '../../src/vsl/diagnostics.js';
import { parseProgram } from '../../src/vsl/parser.js';

const pos = (line: number, col: number, file = 'main.vsl') => ({ file, line, col });

test('an error prints the location line, the source line, a caret and the hint', () => {
  const src = 'let a = 1;\nlet b = 2;\n  let x = "abc;\n';
  const d: Diagnostic = { severity: 'error', pos: pos(3, 11), message: 'unterminated string', hint: 'close the string with "' };
  assert.equal(formatDiagnostic(d, src), [
    'main.vsl:3:11: error: unterminated string',
    '   3 |   let x = "abc;',
    '     |           ^',
    '  = hint: close the string with "',
  ].join('\n'));
});

test('without a hint there is no hint line; warnings say warning', () => {
  const d = warningAt(pos(1, 1), 'no rcpt rules: the built-in relay guard applies');
  assert.equal(formatDiagnostic(d, '#{}'), [
    'main.vsl:1:1: warning: no rcpt rules: the built-in relay guard applies',
    '   1 | #{}',
    '     | ^',
  ].join('\n'));
});

test('without the source text only the first line is printed', () => {
  const d = errorAt(pos(7, 3), 'delegate is not supported', 'use a rule');
  assert.equal(formatDiagnostic(d, undefined), 'main.vsl:7:3: error: delegate is not supported');
});

test('the caret padding keeps tabs and counts code points, not UTF-16 units', () => {
  const src = '\tlet é😀 = "x" §;';
  const d = errorAt(pos(1, 15), "unexpected character '§'");
  assert.equal(formatDiagnostic(d, src), [
    "main.vsl:1:15: error: unexpected character '§'",
    '   1 | \tlet é😀 = "x" §;',
    '     | \t             ^',
  ].join('\n'));
});

test('length widens the caret', () => {
  const d = errorAt(pos(1, 5), "'var' is a reserved word and cannot be used as a name", undefined, 3);
  assert.equal(formatDiagnostic(d, 'let var = 1;').split('\n')[2], '     |     ^^^');
});

test('a CRLF line ending is not printed; a BOM is not a column', () => {
  const d = errorAt(pos(1, 5), 'x');
  assert.deepEqual(formatDiagnostic(d, '\uFEFFlet a\r\nb').split('\n').slice(1), ['   1 | let a', '     |     ^']);
});

test('a position past the end of its line or file still prints', () => {
  assert.equal(formatDiagnostic(errorAt(pos(1, 8), 'e'), 'let x').split('\n')[2], '     |        ^');
  assert.deepEqual(formatDiagnostic(errorAt(pos(5, 1), 'e'), 'a\nb').split('\n').slice(1), ['   5 | ', '     | ^']);
});

test('the gutter grows for line numbers of five digits', () => {
  const src = 'x\n'.repeat(12344) + 'oops';
  assert.deepEqual(formatDiagnostic(errorAt(pos(12345, 2), 'e'), src).split('\n').slice(1),
    ['12345 | oops', '      |  ^']);
});

test('a parser diagnostic formats end to end', () => {
  const src = 'let x = 1;\nlet m = #[1];\n';
  const { diagnostics } = parseProgram(src, 'objects.vsl');
  assert.equal(formatDiagnostics(diagnostics, (f) => (f === 'objects.vsl' ? src : undefined)), [
    "objects.vsl:2:9: error: expected '{' after '#'",
    '   2 | let m = #[1];',
    '     |         ^',
    '  = hint: maps are written #{ key: value }',
  ].join('\n'));
});

test('formatDiagnostics prints each diagnostic with its own file', () => {
  const ds = [errorAt(pos(1, 1, 'a.vsl'), 'one'), errorAt(pos(1, 2, 'b.vsl'), 'two')];
  assert.equal(formatDiagnostics(ds, (f) => (f === 'a.vsl' ? 'aaa' : undefined)),
    'a.vsl:1:1: error: one\n   1 | aaa\n     | ^\nb.vsl:1:2: error: two');
});

test('diagnosticToJson gives file, line, column, severity, message and hint', () => {
  assert.deepEqual(diagnosticToJson(errorAt(pos(3, 14), 'unterminated string', 'close it', 2)), {
    severity: 'error', file: 'main.vsl', line: 3, column: 14, message: 'unterminated string', hint: 'close it', length: 2,
  });
  assert.deepEqual(diagnosticToJson(warningAt(pos(1, 1), 'w')), {
    severity: 'warning', file: 'main.vsl', line: 1, column: 1, message: 'w',
  });
});

test('LoadError carries its diagnostics and names them in its message', () => {
  const ds = [errorAt(pos(1, 2), 'first'), errorAt(pos(3, 4, 'x.vsl'), 'second')];
  const e = new LoadError(ds);
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'LoadError');
  assert.equal(e.diagnostics, ds);
  assert.equal(e.message, 'main.vsl:1:2: error: first\nx.vsl:3:4: error: second');
});

test('sortDiagnostics orders by file, line and column, keeping ties in order', () => {
  const ds = [errorAt(pos(2, 1), 'c'), errorAt(pos(1, 5), 'b'), errorAt(pos(1, 5), 'b2'), errorAt(pos(1, 1), 'a'),
    errorAt(pos(1, 1, 'a.vsl'), 'z')];
  assert.deepEqual(sortDiagnostics(ds).map((d) => d.message), ['z', 'a', 'b', 'b2', 'c']);
});
