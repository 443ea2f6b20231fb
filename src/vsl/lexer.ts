// The vSL lexer (SPEC §2.1–§2.2): turns source text into tokens carrying
// file, 1-based line and 1-based column (columns count code points).
// Lexical errors are reported as diagnostics and lexing goes on, so one bad
// character does not hide the rest of the file. Tokens are produced on demand
// (Lexer.next) so a large file never needs its whole token list in memory.

import type { Pos } from './ast.js';
import { errorAt, type Diagnostic } from './diagnostics.js';

export const KEYWORDS: ReadonlySet<string> = new Set([
  'true', 'false', 'let', 'const', 'if', 'else', 'switch', 'while', 'do', 'until', 'loop', 'for',
  'in', 'break', 'continue', 'return', 'throw', 'try', 'catch', 'fn', 'private', 'import',
  'export', 'as', 'global', 'this', 'rule', 'action', 'delegate',
]);

/** Words that lex as identifiers but are a load error when used as names. */
export const RESERVED_WORDS: ReadonlySet<string> = new Set([
  'var', 'static', 'shared', 'goto', 'exit', 'match', 'case', 'public', 'protected', 'new', 'use',
  'with', 'module', 'package', 'super', 'thread', 'spawn', 'go', 'await', 'async', 'sync', 'yield',
  'default', 'void', 'null', 'nil', 'eval',
]);

/** Deepest nesting accepted anywhere (templates here, brackets in the parser). */
export const MAX_NESTING = 256;

export const I64_MAX = (1n << 63n) - 1n;
/** 2^63: valid only as the operand of a unary minus (i64::MIN). */
export const I64_MIN_MAGNITUDE = 1n << 63n;

export type TokenKind =
  | 'Int' | 'Float' | 'Str' | 'Char' | 'Template'
  | 'Ident' | 'Keyword' | 'Punct' | 'Wildcard' | 'EOF';

/** `${…}` inside a template: its raw text, where it starts, and its tokens
 *  (ending with an EOF token placed on the closing `}`). */
export interface TemplateInterpolation {
  source: string;
  pos: Pos;
  tokens: Token[];
}
export type TemplatePart = string | TemplateInterpolation;

export interface Token {
  kind: TokenKind;
  /** Ident/Keyword: the word. Punct: the operator (`==` for `is`). Literals:
   *  the source text. EOF: '' (and '}' at the end of a template interpolation). */
  text: string;
  pos: Pos;
  /** Position just past the token's last code point. */
  endLine: number;
  endCol: number;
  /** Int: the magnitude (a `-` is a separate token). */
  intValue?: bigint;
  floatValue?: number;
  /** Str and Char: the decoded value. */
  strValue?: string;
  /** Template: literal text interleaved with interpolations. */
  parts?: TemplatePart[];
  /** Set on the `==`/`!=` tokens that were written `is`/`not`. */
  remappedFrom?: 'is' | 'not';
  /** A lexical error was reported in or just before this token; the parser
   *  stays quiet about it so one mistake gives one diagnostic. */
  bad?: boolean;
}

export interface LexerStart {
  offset: number;
  line: number;
  col: number;
}

const PUNCT3 = new Set(['**=', '<<=', '>>=', '..=']);
const PUNCT2 = new Set([
  '**', '<<', '>>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '?[', '..', '+=', '-=', '*=',
  '/=', '%=', '&=', '|=', '^=', '=>', '::', '#{',
]);
const PUNCT1 = new Set([
  '+', '-', '*', '/', '%', '&', '|', '^', '<', '>', '!', '=', ',', ';', ':', '.', '(', ')', '[',
  ']', '{', '}',
]);

const ESCAPE_HINT = 'valid escapes are \\\\ \\" \\\' \\n \\r \\t \\0 \\xHH \\uHHHH \\UHHHHHHHH';

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95;
}
function isIdentPart(c: number): boolean {
  return isIdentStart(c) || isDigit(c);
}
function isHex(c: number): boolean {
  return isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}
const UNICODE_SPACE = /^[\s\u0085]$/u;

/** A character for a message: printable ones quoted, others as U+XXXX. */
export function showChar(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0xd800 && cp <= 0xdfff)) {
    return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `'${ch}'`;
}

export class Lexer {
  private i: number;
  private line: number;
  private col: number;
  private readonly end: number;
  /** Set when a character was skipped with an error; marks the next token bad. */
  private pendingBad = false;
  private templateDepth = 0;
  /** One "unterminated … at end of file" diagnostic is enough. */
  private eofErrorReported = false;
  /** Offset where the token being lexed starts. */
  private tokenStart = 0;

  constructor(
    private readonly src: string,
    private readonly file: string,
    private readonly diagnostics: Diagnostic[],
    start?: LexerStart,
  ) {
    this.end = src.length;
    if (start) {
      this.i = start.offset;
      this.line = start.line;
      this.col = start.col;
    } else {
      this.i = 0;
      this.line = 1;
      this.col = 1;
      if (src.charCodeAt(0) === 0xfeff) this.i = 1; // BOM: not a character, not a column
      if (src.startsWith('#!', this.i)) this.skipLine(); // a shebang line
    }
  }

  private here(): Pos {
    return { file: this.file, line: this.line, col: this.col };
  }

  private report(pos: Pos, message: string, hint?: string, length?: number): void {
    this.diagnostics.push(errorAt(pos, message, hint, length));
  }

  /** Moves past one code point, keeping line and column right. */
  private step(): void {
    const c = this.src.charCodeAt(this.i);
    if (c === 10) {
      this.i++;
      this.line++;
      this.col = 1;
      return;
    }
    if (c >= 0xd800 && c <= 0xdbff && this.i + 1 < this.end) {
      const d = this.src.charCodeAt(this.i + 1);
      this.i += d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
    } else {
      this.i++;
    }
    this.col++;
  }

  private charAt(i: number): string {
    const cp = this.src.codePointAt(i);
    return cp === undefined ? '' : String.fromCodePoint(cp);
  }

  private skipLine(): void {
    while (this.i < this.end && this.src.charCodeAt(this.i) !== 10) this.step();
  }

  private make(kind: TokenKind, text: string, pos: Pos): Token {
    const t: Token = { kind, text, pos, endLine: this.line, endCol: this.col };
    if (this.pendingBad) {
      t.bad = true;
      this.pendingBad = false;
    }
    return t;
  }

  /** Whitespace and comments. */
  private skipTrivia(): void {
    const src = this.src;
    while (this.i < this.end) {
      const c = src.charCodeAt(this.i);
      if (c === 32 || c === 9 || c === 13 || c === 11 || c === 12) {
        this.i++;
        this.col++;
      } else if (c === 10) {
        this.i++;
        this.line++;
        this.col = 1;
      } else if (c === 47 && src.charCodeAt(this.i + 1) === 47) {
        this.skipLine();
      } else if (c === 47 && src.charCodeAt(this.i + 1) === 42) {
        this.skipBlockComment();
      } else if (c > 127 && UNICODE_SPACE.test(this.charAt(this.i))) {
        this.step();
      } else {
        return;
      }
    }
  }

  /** `/* … *\/`, nestable. */
  private skipBlockComment(): void {
    const start = this.here();
    this.i += 2;
    this.col += 2;
    let depth = 1;
    const src = this.src;
    while (this.i < this.end) {
      const c = src.charCodeAt(this.i);
      if (c === 47 && src.charCodeAt(this.i + 1) === 42) {
        depth++;
        this.i += 2;
        this.col += 2;
      } else if (c === 42 && src.charCodeAt(this.i + 1) === 47) {
        this.i += 2;
        this.col += 2;
        if (--depth === 0) return;
      } else {
        this.step();
      }
    }
    this.reportAtEof(start, 'unterminated block comment', 'close the comment with */', 2);
  }

  private reportAtEof(pos: Pos, message: string, hint: string, length?: number): void {
    this.pendingBad = true;
    if (this.eofErrorReported) return;
    this.eofErrorReported = true;
    this.report(pos, message, hint, length);
  }

  /** The next token; EOF forever once the input is exhausted. */
  next(): Token {
    for (;;) {
      this.skipTrivia();
      this.tokenStart = this.i;
      if (this.i >= this.end) return this.make('EOF', '', this.here());
      const c = this.src.charCodeAt(this.i);
      if (isIdentStart(c)) return this.lexWord();
      if (isDigit(c)) return this.lexNumber();
      if (c === 34) return this.lexString();
      if (c === 39) return this.lexChar();
      if (c === 96) return this.lexTemplate();
      const t = this.lexPunct();
      if (t === 'skipped') continue;
      if (t) return t;
      // Nothing matched: report, skip one character, and go on.
      const pos = this.here();
      const ch = this.charAt(this.i);
      this.report(pos, `unexpected character ${showChar(ch)}`);
      this.step();
      this.pendingBad = true;
    }
  }

  /** The offset where the most recent token started. */
  lastTokenStart(): number {
    return this.tokenStart;
  }

  private lexWord(): Token {
    const pos = this.here();
    const start = this.i;
    const src = this.src;
    while (this.i < this.end && isIdentPart(src.charCodeAt(this.i))) this.i++;
    this.col += this.i - start;
    const word = src.slice(start, this.i);
    if (word === '_') return this.make('Wildcard', word, pos);
    if (word === 'is' || word === 'not') {
      const t = this.make('Punct', word === 'is' ? '==' : '!=', pos);
      t.remappedFrom = word;
      return t;
    }
    return this.make(KEYWORDS.has(word) ? 'Keyword' : 'Ident', word, pos);
  }

  private scanWhile(pred: (c: number) => boolean): void {
    const start = this.i;
    while (this.i < this.end && pred(this.src.charCodeAt(this.i))) this.i++;
    this.col += this.i - start;
  }

  private lexNumber(): Token {
    const pos = this.here();
    const start = this.i;
    const src = this.src;
    const p = src.charCodeAt(this.i + 1) | 0x20; // lower-cased prefix letter
    if (src.charCodeAt(this.i) === 48 && (p === 120 || p === 111 || p === 98)) {
      return this.lexRadixNumber(pos, p === 120 ? 16 : p === 111 ? 8 : 2);
    }
    const digitOrUnderscore = (c: number): boolean => isDigit(c) || c === 95;
    this.scanWhile(digitOrUnderscore);
    let isFloat = false;
    if (src.charCodeAt(this.i) === 46 && isDigit(src.charCodeAt(this.i + 1))) {
      isFloat = true;
      this.i++;
      this.col++;
      this.scanWhile(digitOrUnderscore);
    }
    const e = src.charCodeAt(this.i);
    if (e === 101 || e === 69) {
      const s = src.charCodeAt(this.i + 1);
      const signed = s === 43 || s === 45;
      if (isDigit(signed ? src.charCodeAt(this.i + 2) : s)) {
        isFloat = true;
        this.i += signed ? 2 : 1;
        this.col += signed ? 2 : 1;
        this.scanWhile(digitOrUnderscore);
      }
    }
    if (this.i < this.end && isIdentPart(src.charCodeAt(this.i))) {
      this.scanWhile(isIdentPart);
      const text = src.slice(start, this.i);
      this.report(pos, `invalid number literal '${text}'`, undefined, text.length);
      const t = this.make('Int', text, pos);
      t.intValue = 0n;
      t.bad = true;
      return t;
    }
    const text = src.slice(start, this.i);
    const clean = text.replace(/_/g, '');
    if (isFloat) {
      const t = this.make('Float', text, pos);
      t.floatValue = Number(clean);
      if (!Number.isFinite(t.floatValue)) {
        this.report(pos, 'float literal out of range', undefined, text.length);
        t.bad = true;
      }
      return t;
    }
    return this.intToken(text, BigInt(clean), pos);
  }

  private lexRadixNumber(pos: Pos, radix: 2 | 8 | 16): Token {
    const start = this.i;
    this.i += 2;
    this.col += 2;
    const digitsStart = this.i;
    this.scanWhile(isIdentPart);
    const text = this.src.slice(start, this.i);
    const digits = this.src.slice(digitsStart, this.i).replace(/_/g, '');
    const name = radix === 16 ? 'hexadecimal' : radix === 8 ? 'octal' : 'binary';
    const fail = (message: string): Token => {
      this.report(pos, message, undefined, text.length);
      const t = this.make('Int', text, pos);
      t.intValue = 0n;
      t.bad = true;
      return t;
    };
    if (digits === '') return fail(`expected ${name} digits after '${text.slice(0, 2)}'`);
    for (const ch of digits) {
      const ok = radix === 16 ? isHex(ch.charCodeAt(0)) : ch >= '0' && ch < String(radix);
      if (!ok) return fail(`invalid digit '${ch}' in ${name} literal`);
    }
    const prefix = radix === 16 ? '0x' : radix === 8 ? '0o' : '0b';
    return this.intToken(text, BigInt(prefix + digits), pos);
  }

  private intToken(text: string, value: bigint, pos: Pos): Token {
    const t = this.make('Int', text, pos);
    t.intValue = value;
    // 2^63 itself is left to the parser: it is i64::MIN after a unary minus.
    if (value > I64_MIN_MAGNITUDE) {
      this.report(pos, 'integer literal out of range',
        `integers are 64-bit: the largest is ${I64_MAX}`, text.length);
      t.bad = true;
    }
    return t;
  }

  /**
   * Reads one escape sequence (the backslash is at this.i) and returns its
   * value, '' for a line continuation, or undefined after reporting an error.
   */
  private lexEscape(): string | undefined {
    const src = this.src;
    const pos = this.here();
    const c = src.charCodeAt(this.i + 1);
    const simple: Record<number, string> = {
      92: '\\', 34: '"', 39: "'", 110: '\n', 114: '\r', 116: '\t', 48: '\0',
    };
    if (c === 10 || (c === 13 && src.charCodeAt(this.i + 2) === 10)) {
      // Continuation: skip the line break and the next line's leading blanks.
      this.i += c === 13 ? 3 : 2;
      this.line++;
      this.col = 1;
      this.scanWhile((b) => b === 32 || b === 9);
      return '';
    }
    const plain = simple[c];
    if (plain !== undefined) {
      this.i += 2;
      this.col += 2;
      return plain;
    }
    const hexLen = c === 120 ? 2 : c === 117 ? 4 : c === 85 ? 8 : 0;
    if (hexLen > 0) {
      const letter = String.fromCharCode(c);
      let n = 0;
      while (n < hexLen && isHex(src.charCodeAt(this.i + 2 + n))) n++;
      const seq = src.slice(this.i, this.i + 2 + n);
      this.i += 2 + n;
      this.col += 2 + n;
      if (n < hexLen) {
        this.report(pos, `invalid escape '${seq}': expected ${hexLen} hex digits after \\${letter}`,
          ESCAPE_HINT, seq.length);
        return undefined;
      }
      const cp = parseInt(seq.slice(2), 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        this.report(pos, `invalid unicode escape '${seq}': not a character`, undefined, seq.length);
        return undefined;
      }
      return String.fromCodePoint(cp);
    }
    if (this.i + 1 >= this.end) {
      // A backslash ending the file: the literal is unterminated, which is
      // reported by the caller; one message is enough.
      this.i++;
      this.col++;
      return '';
    }
    if (c === 13) {
      this.i++;
      this.col++;
      this.report(pos, 'unknown escape sequence \'\\\'', ESCAPE_HINT);
      return undefined;
    }
    const ch = this.charAt(this.i + 1);
    this.i++;
    this.col++;
    this.step();
    this.report(pos, `unknown escape sequence '\\${ch}'`, ESCAPE_HINT, 2);
    return undefined;
  }

  /**
   * The body of a quoted literal up to `quote`, decoding escapes. Stops
   * before a line break (an unterminated literal). Returns the decoded text,
   * whether the closing quote was found, and whether an escape was bad.
   */
  private lexQuoted(quote: number): { value: string; closed: boolean; bad: boolean } {
    const src = this.src;
    let value = '';
    let bad = false;
    this.i++;
    this.col++;
    for (;;) {
      if (this.i >= this.end) return { value, closed: false, bad };
      const c = src.charCodeAt(this.i);
      if (c === quote) {
        this.i++;
        this.col++;
        return { value, closed: true, bad };
      }
      if (c === 10 || (c === 13 && src.charCodeAt(this.i + 1) === 10)) {
        return { value, closed: false, bad };
      }
      if (c === 92) {
        const v = this.lexEscape();
        if (v === undefined) bad = true;
        else value += v;
        continue;
      }
      // A run of ordinary characters.
      const start = this.i;
      let cols = 0;
      while (this.i < this.end) {
        const d = src.charCodeAt(this.i);
        if (d === quote || d === 92 || d === 10 || d === 13) break;
        if (!(d >= 0xdc00 && d <= 0xdfff)) cols++;
        this.i++;
      }
      if (this.i === start) {
        // A lone CR inside the literal: keep it.
        this.i++;
        cols++;
      }
      this.col += cols;
      value += src.slice(start, this.i);
    }
  }

  private lexString(): Token {
    const pos = this.here();
    const start = this.i;
    const r = this.lexQuoted(34);
    const t = this.make('Str', this.src.slice(start, this.i), pos);
    t.strValue = r.value;
    if (!r.closed) {
      this.report(pos, 'unterminated string', 'close the string with "');
      t.bad = true;
    } else if (r.bad) {
      t.bad = true;
    }
    return t;
  }

  private lexChar(): Token {
    const pos = this.here();
    const start = this.i;
    const r = this.lexQuoted(39);
    const text = this.src.slice(start, this.i);
    const t = this.make('Char', text, pos);
    t.strValue = r.value;
    if (!r.closed) {
      this.report(pos, 'unterminated char literal', "close the character with '");
      t.bad = true;
    } else if (!r.bad) {
      const n = [...r.value].length;
      if (n === 0) {
        this.report(pos, 'empty char literal', "a char holds exactly one character: 'a'", 2);
        t.bad = true;
      } else if (n > 1) {
        this.report(pos, 'char literal must contain exactly one character',
          `use double quotes for a string: "${r.value}"`, [...text].length);
        t.bad = true;
      }
    } else {
      t.bad = true;
    }
    return t;
  }

  /** `` `text ${expr} text` ``: no escapes, two backticks for one, multi-line. */
  private lexTemplate(): Token {
    const pos = this.here();
    const start = this.i;
    const src = this.src;
    if (++this.templateDepth > MAX_NESTING) {
      this.report(pos, `nesting too deep (more than ${MAX_NESTING} levels)`);
      this.templateDepth--;
      // Give up on the rest of the file rather than risk the stack.
      while (this.i < this.end) this.step();
      this.eofErrorReported = true;
      const t = this.make('Template', src.slice(start, this.i), pos);
      t.parts = [];
      t.bad = true;
      return t;
    }
    const parts: TemplatePart[] = [];
    let text = '';
    let bad = false;
    this.i++;
    this.col++;
    for (;;) {
      if (this.i >= this.end) {
        this.reportAtEof(pos, 'unterminated template', 'close the template with `');
        bad = true;
        break;
      }
      const c = src.charCodeAt(this.i);
      if (c === 96) {
        this.i++;
        this.col++;
        if (src.charCodeAt(this.i) === 96) {
          text += '`';
          this.i++;
          this.col++;
          continue;
        }
        break;
      }
      if (c === 36 && src.charCodeAt(this.i + 1) === 123) {
        if (text !== '') parts.push(text);
        text = '';
        const r = this.lexInterpolation();
        if (!r) {
          bad = true;
          break;
        }
        parts.push(r);
        continue;
      }
      if (c === 13 && src.charCodeAt(this.i + 1) === 10) {
        this.i++; // CRLF in the file is a plain line break in the value
        continue;
      }
      text += this.charAt(this.i);
      this.step();
    }
    if (text !== '') parts.push(text);
    this.templateDepth--;
    const t = this.make('Template', src.slice(start, this.i), pos);
    t.parts = parts;
    if (bad) t.bad = true;
    return t;
  }

  /** `${ … }` (this.i on the `$`): lexes tokens up to the matching `}`. */
  private lexInterpolation(): TemplateInterpolation | undefined {
    const openPos = this.here();
    this.i += 2;
    this.col += 2;
    const pos = this.here();
    const exprStart = this.i;
    const tokens: Token[] = [];
    let depth = 0;
    for (;;) {
      const t = this.next();
      if (t.kind === 'EOF') {
        this.reportAtEof(openPos, "unterminated '${' in template", 'close the interpolation with }', 2);
        return undefined;
      }
      if (t.kind === 'Punct') {
        if (t.text === '{' || t.text === '#{') {
          depth++;
        } else if (t.text === '}') {
          if (depth === 0) {
            const source = this.src.slice(exprStart, this.lastTokenStart());
            // The interpolation's own end of input sits on the closing brace.
            tokens.push({ kind: 'EOF', text: '}', pos: t.pos, endLine: t.pos.line, endCol: t.pos.col });
            return { source, pos, tokens };
          }
          depth--;
        }
      }
      tokens.push(t);
    }
  }

  /** An operator token; 'skipped' when a stray `#` was reported and passed. */
  private lexPunct(): Token | 'skipped' | undefined {
    const src = this.src;
    const pos = this.here();
    const three = src.slice(this.i, this.i + 3);
    if (PUNCT3.has(three)) return this.punct(three, pos);
    const two = three.slice(0, 2);
    if (PUNCT2.has(two)) return this.punct(two, pos);
    const one = two.slice(0, 1);
    if (PUNCT1.has(one)) return this.punct(one, pos);
    if (one === '#') {
      // `# {` is almost surely a map; recover as one after reporting.
      let j = this.i + 1;
      while (src.charCodeAt(j) === 32 || src.charCodeAt(j) === 9) j++;
      this.report(pos, "expected '{' after '#'", 'maps are written #{ key: value }');
      if (src.charCodeAt(j) === 123) {
        this.col += j + 1 - this.i;
        this.i = j + 1;
        const t = this.make('Punct', '#{', pos);
        t.bad = true;
        return t;
      }
      this.step();
      this.pendingBad = true;
      return 'skipped';
    }
    return undefined;
  }

  private punct(op: string, pos: Pos): Token {
    this.i += op.length;
    this.col += op.length;
    return this.make('Punct', op, pos);
  }
}

/** Lexes a whole source text (mostly for tests and tools); ends with EOF. */
export function tokenize(source: string, file: string): { tokens: Token[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const lexer = new Lexer(source, file, diagnostics);
  const tokens: Token[] = [];
  for (;;) {
    const t = lexer.next();
    tokens.push(t);
    if (t.kind === 'EOF') break;
  }
  return { tokens, diagnostics };
}
