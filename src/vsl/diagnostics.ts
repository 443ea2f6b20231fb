// Load errors and warnings about vSL source, and how they are printed
// (SPEC §1.2, §11.2): `file:line:col: error: message`, the source line with
// its number, a caret under the column, then an optional hint.

import type { Pos } from './ast.js';

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  severity: Severity;
  pos: Pos;
  message: string;
  hint?: string;
  /** Caret width in code points; 1 when absent. */
  length?: number;
}

/** Thrown when a policy cannot be loaded; carries every diagnostic found. */
export class LoadError extends Error {
  readonly diagnostics: Diagnostic[];

  constructor(diagnostics: Diagnostic[], message?: string) {
    super(message ?? summarise(diagnostics));
    this.name = 'LoadError';
    this.diagnostics = diagnostics;
  }
}

function summarise(diagnostics: Diagnostic[]): string {
  if (diagnostics.length === 0) return 'policy failed to load';
  return diagnostics.map(headline).join('\n');
}

export function errorAt(pos: Pos, message: string, hint?: string, length?: number): Diagnostic {
  const d: Diagnostic = { severity: 'error', pos, message };
  if (hint !== undefined) d.hint = hint;
  if (length !== undefined && length > 1) d.length = length;
  return d;
}

export function warningAt(pos: Pos, message: string, hint?: string, length?: number): Diagnostic {
  return { ...errorAt(pos, message, hint, length), severity: 'warning' };
}

/** Orders diagnostics by file, then line, then column (stable for ties). */
export function sortDiagnostics(diagnostics: Diagnostic[]): Diagnostic[] {
  return diagnostics
    .map((d, i) => ({ d, i }))
    .sort((a, b) =>
      a.d.pos.file < b.d.pos.file ? -1 : a.d.pos.file > b.d.pos.file ? 1
        : a.d.pos.line - b.d.pos.line || a.d.pos.col - b.d.pos.col || a.i - b.i)
    .map((x) => x.d);
}

function headline(d: Diagnostic): string {
  // Line 0: a problem outside any file (a command-line override).
  if (d.pos.line === 0) return `${d.pos.file}: ${d.severity}: ${d.message}`;
  return `${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.severity}: ${d.message}`;
}

/** The text of 1-based line `line` without its line terminator ('' when absent). */
function sourceLine(text: string, line: number): string {
  let start = 0;
  for (let n = 1; n < line; n++) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) return '';
    start = nl + 1;
  }
  let end = text.indexOf('\n', start);
  if (end < 0) end = text.length;
  if (end > start && text.charCodeAt(end - 1) === 13) end--;
  let s = text.slice(start, end);
  if (line === 1 && s.charCodeAt(0) === 0xfeff) s = s.slice(1); // the BOM is not a column
  return s;
}

/** Blanks that bring a caret under column `col`: tabs stay tabs so the caret
 *  lines up whatever the terminal's tab width. */
function caretPadding(lineText: string, col: number): string {
  let pad = '';
  let n = 1;
  for (const ch of lineText) {
    if (n >= col) break;
    pad += ch === '\t' ? '\t' : ' ';
    n++;
  }
  if (n < col) pad += ' '.repeat(col - n);
  return pad;
}

/**
 * Renders one diagnostic:
 * ```
 * main.vsl:3:11: error: unterminated string
 *    3 |   let x = "abc;
 *      |           ^
 *   = hint: close the string with "
 * ```
 * Without the source text only the first line is printed.
 */
export function formatDiagnostic(d: Diagnostic, sourceText: string | undefined): string {
  const head = headline(d);
  if (sourceText === undefined) return head;
  const text = sourceLine(sourceText, d.pos.line);
  const gutter = String(d.pos.line).padStart(4);
  const blank = ' '.repeat(gutter.length);
  const width = Math.max(1, d.length ?? 1);
  const lines = [
    head,
    `${gutter} | ${text}`,
    `${blank} | ${caretPadding(text, d.pos.col)}${'^'.repeat(width)}`,
  ];
  if (d.hint !== undefined) lines.push(`  = hint: ${d.hint}`);
  return lines.join('\n');
}

/** Formats several diagnostics, looking each file's text up with `sourceOf`. */
export function formatDiagnostics(
  diagnostics: Diagnostic[],
  sourceOf: (file: string) => string | undefined,
): string {
  return diagnostics.map((d) => formatDiagnostic(d, sourceOf(d.pos.file))).join('\n');
}

/** The shape of one diagnostic in `mta check --json`. */
export interface DiagnosticJson {
  severity: Severity;
  file: string;
  line: number;
  column: number;
  message: string;
  hint?: string;
  length?: number;
}

export function diagnosticToJson(d: Diagnostic): DiagnosticJson {
  const j: DiagnosticJson = {
    severity: d.severity,
    file: d.pos.file,
    line: d.pos.line,
    column: d.pos.col,
    message: d.message,
  };
  if (d.hint !== undefined) j.hint = d.hint;
  if (d.length !== undefined) j.length = d.length;
  return j;
}

function samePos(a: Pos, b: Pos): boolean {
  return a.file === b.file && a.line === b.line && a.col === b.col;
}

/**
 * The diagnostics of one compilation; every compiler pass reports into it.
 * An error is kept once per position (the first cause is the useful one), a
 * warning once per position and message.
 */
export class DiagnosticList {
  readonly items: Diagnostic[] = [];

  error(pos: Pos, message: string, hint?: string): void {
    if (this.items.some((d) => d.severity === 'error' && samePos(d.pos, pos))) return;
    this.items.push({ severity: 'error', pos, message, hint });
  }

  warn(pos: Pos, message: string, hint?: string): void {
    if (this.items.some((d) => d.severity === 'warning' && d.message === message && samePos(d.pos, pos))) return;
    this.items.push({ severity: 'warning', pos, message, hint });
  }
}
