// Problems found in a legacy data file (smtpd_check_rules, mapping tables,
// access maps), with the position `mta check` and hot reload print them at
// (SPEC §1.2 "file:line:col", §7.1, §11.2). Parsers collect every problem of
// a file rather than stopping at the first, so one run shows them all.

export interface Diagnostic {
  file: string;
  /** 1-based line. */
  line: number;
  /** 1-based column, counted in code points. */
  col: number;
  severity: 'error' | 'warning';
  message: string;
}

/** What a parser returns: the table it built and what it found wrong. */
export interface Parsed<T> {
  value: T;
  diagnostics: Diagnostic[];
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** `file:line:col: severity: message`, the `mta check` format. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
}

/** The 1-based column of UTF-16 index `index` in `line`, in code points. */
export function columnOf(line: string, index: number): number {
  let col = 1;
  for (let i = 0; i < index && i < line.length; i++) {
    const c = line.charCodeAt(i);
    // The low half of a surrogate pair is part of the same code point.
    if (!(c >= 0xdc00 && c <= 0xdfff && i > 0)) col++;
  }
  return col;
}

/** Collects diagnostics for one file. */
export class DiagnosticSink {
  readonly list: Diagnostic[] = [];
  constructor(readonly file: string) {}
  error(line: number, col: number, message: string): void {
    this.list.push({ file: this.file, line, col, severity: 'error', message });
  }
  warning(line: number, col: number, message: string): void {
    this.list.push({ file: this.file, line, col, severity: 'warning', message });
  }
}

/** Splits file text into lines, dropping the CR of CRLF endings. */
export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}
