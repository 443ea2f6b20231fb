// The vSL parser (SPEC §2–§3, §6.2, §7.12): recursive descent over the
// lexer's tokens, producing the tree of ast.ts. It never throws on bad input:
// errors become diagnostics. After an error the parser skips to the end of
// the statement (a `;` or the `}` closing the enclosing block), and reports
// at most one error per statement, so one mistake gives one message. Nesting
// is bounded by an explicit counter, never by the JavaScript stack.

import type { AssignOp, BinaryOp, Block, Closure, Directive, Expr, For, If, MapEntry, ObjectDecl, Param, Pattern, Pos, Program, ServiceDecl, Stmt, Switch, SwitchArm, Template, Try } from './ast.js';
import { errorAt, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { I64_MAX, I64_MIN_MAGNITUDE, Lexer, MAX_NESTING, RESERVED_WORDS, type TemplateInterpolation, type Token } from './lexer.js';

interface TokenSource {
  next(): Token;
}

/** Replays a fixed token list (a template interpolation); the last token is EOF. */
class ArraySource implements TokenSource {
  private i = 0;
  constructor(private readonly tokens: Token[]) {}
  next(): Token {
    const t = this.tokens[Math.min(this.i, this.tokens.length - 1)]!;
    this.i++;
    return t;
  }
}

/** Unwinds the parse of the current statement after a reported error. */
class ParseAbort {}
const ABORT = new ParseAbort();

/** Per-statement error state (see reportSoft/fail). */
interface StatementState {
  /** Some error was reported, or suppressed, in this statement. */
  errored: boolean;
  /** A lexical error or an error that stopped the statement occurred. */
  hard: boolean;
}

const BINARY_PRECEDENCE: Readonly<Record<string, number>> = {
  '??': 1,
  '||': 2, '|': 2, '^': 2,
  '&&': 3, '&': 3,
  '==': 4, '!=': 4,
  '<': 5, '<=': 5, '>': 5, '>=': 5,
  'in': 6, '!in': 6,
  '..': 7, '..=': 7,
  '+': 8, '-': 8,
  '*': 9, '/': 9, '%': 9,
  '**': 10,
  '<<': 11, '>>': 11,
};

const ASSIGN_OPS: ReadonlySet<string> = new Set([
  '=', '+=', '-=', '*=', '/=', '%=', '**=', '<<=', '>>=', '&=', '|=', '^=',
]);

const OPENERS: ReadonlySet<string> = new Set(['(', '[', '?[', '{', '#{']);
const CLOSER_OF: Readonly<Record<string, string>> = { '(': ')', '[': ']', '?[': ']', '{': '}', '#{': '}' };

/** Statement kinds that end in a block and need no `;` (SPEC §2.1). */
const BLOCK_ENDED = new Set(['If', 'Switch', 'While', 'DoLoop', 'Loop', 'For', 'Try', 'Block']);

function isPunct(t: Token, op: string): boolean {
  return t.kind === 'Punct' && t.text === op;
}
function isKeyword(t: Token, word: string): boolean {
  return t.kind === 'Keyword' && t.text === word;
}
function isCloser(t: Token): boolean {
  return t.kind === 'Punct' && (t.text === ')' || t.text === ']' || t.text === '}');
}
function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** How a token is named in messages. */
function describe(t: Token): string {
  switch (t.kind) {
    case 'EOF': return t.text === '}' ? "'}'" : 'end of file';
    case 'Punct': return `'${t.remappedFrom ?? t.text}'`;
    case 'Ident': case 'Keyword': case 'Wildcard': case 'Int': case 'Float': return `'${t.text}'`;
    default: {
      let s = t.text.split(/\r?\n/)[0] ?? '';
      if (codePoints(s) > 24) s = [...s].slice(0, 24).join('') + '…';
      return s;
    }
  }
}

class Parser {
  private src: TokenSource;
  private la: Token[] = [];
  private prev: Token;
  /** Opening brackets consumed and not yet closed: the recovery map. */
  private brackets: Token[] = [];
  private depth = 0;
  private stmt: StatementState = { errored: false, hard: false };
  /** An error was already reported at (or skipping reached) the end of file. */
  private eofErrored = false;

  constructor(source: TokenSource, private readonly file: string, private readonly diagnostics: Diagnostic[]) {
    this.src = source;
    this.prev = { kind: 'EOF', text: '', pos: { file, line: 1, col: 1 }, endLine: 1, endCol: 1 };
  }

  // ------------------------------------------------------------ token stream

  private peek(k = 0): Token {
    while (this.la.length <= k) this.la.push(this.src.next());
    return this.la[k]!;
  }

  private advance(): Token {
    const t = this.la.length > 0 ? this.la.shift()! : this.src.next();
    if (t.bad) this.stmt.errored = this.stmt.hard = true;
    if (t.kind === 'Punct') {
      if (OPENERS.has(t.text)) {
        this.brackets.push(t);
      } else if (t.text === ')' || t.text === ']' || t.text === '}') {
        const top = this.brackets[this.brackets.length - 1];
        if (top && CLOSER_OF[top.text] === t.text) this.brackets.pop();
      }
    }
    this.prev = t;
    return t;
  }

  private atPunct(op: string): boolean {
    return isPunct(this.peek(), op);
  }

  private atKeyword(word: string): boolean {
    return isKeyword(this.peek(), word);
  }

  private endOfPrev(): Pos {
    return { file: this.file, line: this.prev.endLine, col: this.prev.endCol };
  }

  // ------------------------------------------------------------ diagnostics

  /** An error that does not disturb parsing (the tree stays well formed). */
  private reportSoft(pos: Pos, message: string, hint?: string, length?: number): void {
    if (this.stmt.hard) return;
    this.stmt.errored = true;
    this.diagnostics.push(errorAt(pos, message, hint, length));
  }

  /** Reports an error about token `found` and abandons the statement. */
  private failAt(found: Token, pos: Pos, message: string, hint?: string, length?: number): never {
    const atEof = found.kind === 'EOF' && found.text === '';
    const quiet = this.stmt.errored || found.bad === true || (atEof && this.eofErrored);
    if (atEof) this.eofErrored = true;
    this.stmt.errored = this.stmt.hard = true;
    if (!quiet) this.diagnostics.push(errorAt(pos, message, hint, length));
    throw ABORT;
  }

  /** `expected X, found Y` at the current token. */
  private failExpected(what: string, hint?: string): never {
    const t = this.peek();
    if (t.kind === 'Punct' && isCloser(t) && !this.closes(t)) {
      this.failAt(t, t.pos, `unmatched '${t.text}'`);
    }
    this.failAt(t, t.pos, `expected ${what}, found ${describe(t)}`, hint, this.tokenWidth(t));
  }

  private tokenWidth(t: Token): number {
    if (t.kind === 'EOF') return 1;
    if (t.endLine !== t.pos.line) return 1;
    return Math.max(1, t.endCol - t.pos.col);
  }

  /** Whether closer `t` matches some bracket that is still open. */
  private closes(t: Token): boolean {
    for (let i = this.brackets.length - 1; i >= 0; i--) {
      if (CLOSER_OF[this.brackets[i]!.text] === t.text) return true;
    }
    return false;
  }

  private expectPunct(op: string, hint?: string): Token {
    if (this.atPunct(op)) return this.advance();
    this.failExpected(`'${op}'`, hint);
  }

  /** Expects the closer of `open`; at end of file, blames the opener. */
  private expectClose(open: Token, closer: string): Token {
    const t = this.peek();
    if (isPunct(t, closer)) return this.advance();
    if (t.kind === 'EOF') {
      this.failAt(t, open.pos, `unclosed '${open.text}'`, `add the missing '${closer}'`, open.text.length);
    }
    this.failExpected(`'${closer}'`);
  }

  private enter(): void {
    if (++this.depth > MAX_NESTING) {
      const t = this.peek();
      this.failAt(t, t.pos, `nesting too deep (more than ${MAX_NESTING} levels)`,
        'split the expression with let bindings or functions');
    }
  }

  private leave(): void {
    this.depth--;
  }

  /**
   * After an error: skips to the end of the statement that opened with
   * `height` brackets open. Stops after a `;` at that level, or before a `}`
   * that closes an enclosing block.
   */
  private sync(height: number): void {
    for (;;) {
      const t = this.peek();
      if (t.kind === 'EOF') {
        this.eofErrored = true;
        this.brackets.length = Math.min(this.brackets.length, height);
        return;
      }
      if (t.kind === 'Punct') {
        if (t.text === ';') {
          // A `;` can only sit directly in a block: drop unclosed ( [ #{ above it.
          while (this.brackets.length > height && this.brackets[this.brackets.length - 1]!.text !== '{') {
            this.brackets.pop();
          }
          if (this.brackets.length === height) {
            this.la.shift();
            return;
          }
        } else if (isCloser(t)) {
          let j = this.brackets.length - 1;
          while (j >= height && CLOSER_OF[this.brackets[j]!.text] !== t.text) j--;
          if (j >= height) {
            this.brackets.length = j;
          } else if (t.text === '}' && height > 0) {
            this.brackets.length = height;
            return; // it closes the enclosing block
          }
          this.la.shift();
          continue;
        }
      }
      this.advance();
    }
  }

  // ------------------------------------------------------------ statements

  parseProgram(): Program {
    const body: Stmt[] = [];
    while (this.peek().kind !== 'EOF') this.statement(true, body);
    return { file: this.file, body };
  }

  /** A single expression filling the whole input. */
  parseLoneExpression(): Expr | undefined {
    let e: Expr | undefined;
    try {
      e = this.parseExpr();
      if (this.peek().kind !== 'EOF') this.failExpected('the end of the expression');
    } catch (err) {
      if (!(err instanceof ParseAbort)) throw err;
    }
    return e;
  }

  /** Parses one statement into `out`, recovering from errors. */
  private statement(topLevel: boolean, out: Stmt[]): void {
    const saved = this.stmt;
    const height = this.brackets.length;
    const depth = this.depth;
    this.stmt = { errored: false, hard: false };
    try {
      const s = this.parseStatement(topLevel);
      if (s) out.push(s);
    } catch (e) {
      if (!(e instanceof ParseAbort)) throw e;
      this.depth = depth;
      this.sync(height);
    } finally {
      this.stmt = saved;
    }
  }

  private parseStatement(topLevel: boolean): Stmt | null {
    this.enter();
    const s = this.parseStatementInner(topLevel);
    this.leave();
    return s;
  }

  private parseStatementInner(topLevel: boolean): Stmt | null {
    const t = this.peek();
    if (t.kind === 'Punct') {
      if (t.text === ';') {
        this.advance();
        return null;
      }
      if (isCloser(t)) {
        this.reportSoft(t.pos, `unmatched '${t.text}'`);
        this.la.shift(); // not through advance: it closes nothing
        return null;
      }
      if (t.text === '{') return this.blockLikeStatement(this.parseBlock());
    }
    if (t.kind === 'Keyword') {
      switch (t.text) {
        case 'let': case 'const': {
          const s = this.parseLet(false);
          this.endStatement(false);
          return s;
        }
        case 'export': return this.parseExport(topLevel);
        case 'fn': case 'private': return this.parseFn(topLevel);
        case 'import': {
          const s = this.parseImport();
          this.endStatement(false);
          return s;
        }
        case 'break': case 'continue': {
          this.advance();
          this.endStatement(false);
          return { kind: t.text === 'break' ? 'Break' : 'Continue', pos: t.pos };
        }
        case 'return': case 'throw': {
          this.advance();
          const n = this.peek();
          const value = isPunct(n, ';') || isPunct(n, '}') || n.kind === 'EOF' ? undefined : this.parseExpr();
          this.endStatement(false);
          const s: Stmt = t.text === 'return' ? { kind: 'Return', pos: t.pos } : { kind: 'Throw', pos: t.pos };
          if (value) s.value = value;
          return s;
        }
        case 'if': return this.blockLikeStatement(this.parseIf());
        case 'switch': return this.blockLikeStatement(this.parseSwitch());
        case 'while': return this.blockLikeStatement(this.parseWhile());
        case 'do': return this.blockLikeStatement(this.parseDo());
        case 'loop': return this.blockLikeStatement(this.parseLoop());
        case 'for': return this.blockLikeStatement(this.parseFor());
        case 'try': return this.blockLikeStatement(this.parseTry());
        default: break;
      }
    }
    const start = t;
    const expr = this.parseExpr();
    const op = this.peek();
    if (op.kind === 'Punct' && ASSIGN_OPS.has(op.text)) {
      this.advance();
      if (!this.isAssignable(expr)) {
        this.reportSoft(start.pos, 'cannot assign to this expression',
          'assignment targets are variables, this, a[i], m.k and chains of them');
      }
      const value = this.parseExpr();
      this.endStatement(false);
      return { kind: 'Assign', pos: start.pos, op: op.text as AssignOp, target: expr, value };
    }
    const semi = this.endStatement(BLOCK_ENDED.has(expr.kind) && this.prev.text === '}');
    return { kind: 'ExprStmt', pos: start.pos, expr, semi };
  }

  /** A statement that is an if/switch/loop/try/block: `;` is optional. */
  private blockLikeStatement(expr: Expr): Stmt {
    const semi = this.endStatement(true);
    return { kind: 'ExprStmt', pos: expr.pos, expr, semi };
  }

  /**
   * Consumes the statement's `;`, which may be omitted before `}`, at the
   * end of the file, and after a statement that ends in a block. Returns
   * whether a `;` was there.
   */
  private endStatement(blockEnded: boolean): boolean {
    const t = this.peek();
    if (isPunct(t, ';')) {
      this.advance();
      return true;
    }
    if (t.kind === 'EOF' || blockEnded) return false;
    if (isPunct(t, '}') && this.closes(t)) return false;
    if (isCloser(t)) this.failAt(t, t.pos, `unmatched '${t.text}'`);
    const pos = this.endOfPrev();
    const message = `expected ';', found ${describe(t)}`;
    // `{ mail: [] }` is a block holding `mail`: the writer meant a map.
    const hint = isPunct(t, ':') ? 'maps are written #{ key: value }' : 'statements end with ;';
    if (t.pos.line > this.prev.endLine) {
      // The next statement starts on a new line: a forgotten `;`. Report it
      // and go on as if it were there.
      if (!this.stmt.errored && !t.bad) this.diagnostics.push(errorAt(pos, message, hint));
      this.stmt.errored = true;
      return false;
    }
    this.failAt(t, pos, message, hint);
  }

  private isAssignable(e: Expr): boolean {
    for (;;) {
      switch (e.kind) {
        case 'Ident': case 'This': return true;
        case 'Prop': if (e.optional) return false; e = e.object; break;
        case 'Index': if (e.optional) return false; e = e.object; break;
        default: return false;
      }
    }
  }

  /** A name being declared (variable, parameter, function, alias). */
  private expectName(what: string, after: string): { name: string; pos: Pos } {
    const t = this.peek();
    if (t.kind === 'Ident') {
      this.advance();
      this.checkReserved(t);
      return { name: t.text, pos: t.pos };
    }
    if (t.kind === 'Keyword' || t.remappedFrom) {
      const word = t.remappedFrom ?? t.text;
      this.failAt(t, t.pos, `'${word}' is a keyword and cannot be used as a name`, undefined, word.length);
    }
    this.failExpected(`${what} ${after}`);
  }

  private checkReserved(t: Token): void {
    if (!RESERVED_WORDS.has(t.text)) return;
    const hint = t.text === 'null' || t.text === 'nil' || t.text === 'void'
      ? 'the unit value is written ()'
      : undefined;
    this.reportSoft(t.pos, `'${t.text}' is a reserved word and cannot be used as a name`, hint, t.text.length);
  }

  private parseLet(exported: boolean): Stmt {
    const kw = this.advance();
    const isConst = kw.text === 'const';
    const { name, pos: namePos } = this.expectName('a variable name', `after '${kw.text}'`);
    let init: Expr | undefined;
    if (this.atPunct('=')) {
      this.advance();
      init = this.parseExpr();
    } else if (isConst) {
      this.failExpected(`'=' and a value for const ${name}`, `write const ${name} = value;`);
    }
    const s: Stmt = { kind: 'Let', pos: kw.pos, name, namePos, isConst, exported };
    if (init) s.init = init;
    return s;
  }

  private parseExport(topLevel: boolean): Stmt {
    const kw = this.advance();
    if (!topLevel) this.reportSoft(kw.pos, 'export is only allowed at the top level of a file', undefined, 6);
    if (this.atKeyword('let') || this.atKeyword('const')) {
      const s = this.parseLet(true);
      s.pos = kw.pos;
      this.endStatement(false);
      return s;
    }
    if (this.peek().kind !== 'Ident') {
      const hint = this.atKeyword('fn') ? 'functions are exported unless declared private' : undefined;
      this.failExpected("'const', 'let' or a name after 'export'", hint);
    }
    const { name } = this.expectName('a name', "after 'export'");
    const s: Stmt = { kind: 'ExportName', pos: kw.pos, name };
    if (this.atKeyword('as')) {
      this.advance();
      s.as = this.expectName('a name', "after 'as'").name;
    }
    this.endStatement(false);
    return s;
  }

  private parseFn(topLevel: boolean): Stmt | null {
    const first = this.advance();
    const isPrivate = first.text === 'private';
    const fnTok = isPrivate ? this.expectKeyword('fn', "'fn' after 'private'") : first;
    if (!topLevel) {
      this.reportSoft(fnTok.pos, 'functions can only be defined at the top level',
        'move it to the top level of the file, or use a closure: let f = |x| …', 2);
    }
    const { name, pos: namePos } = this.expectName('a function name', "after 'fn'");
    const open = this.expectPunct('(');
    const params = this.parseParams(open, ')');
    const body = this.parseBlock();
    this.endStatement(true);
    if (!topLevel) return null;
    return { kind: 'Fn', pos: first.pos, name, namePos, params, body, isPrivate };
  }

  /** Parameter names up to `closer` (consumed); duplicates are reported. */
  private parseParams(open: Token, closer: string): Param[] {
    const params: Param[] = [];
    while (!this.atPunct(closer)) {
      if (this.peek().kind === 'EOF') this.expectClose(open, closer);
      const { name, pos } = this.expectName('a parameter name', 'in the parameter list');
      if (params.some((p) => p.name === name)) {
        this.reportSoft(pos, `duplicate parameter '${name}'`, undefined, name.length);
      }
      params.push({ name, pos });
      if (this.atPunct(',')) this.advance();
      else if (!this.atPunct(closer)) this.failExpected(`',' or '${closer}'`);
    }
    if (closer === '|') this.advance();
    else this.expectClose(open, closer);
    return params;
  }

  private expectKeyword(word: string, what: string): Token {
    if (this.atKeyword(word)) return this.advance();
    this.failExpected(what);
  }

  private parseImport(): Stmt {
    const kw = this.advance();
    const t = this.peek();
    if (t.kind !== 'Str') {
      this.failExpected("the module path as a string after 'import'", 'write import "path" as alias;');
    }
    this.advance();
    const s: Stmt = { kind: 'Import', pos: kw.pos, path: t.strValue ?? '', pathPos: t.pos };
    if (this.atKeyword('as')) {
      this.advance();
      const alias = this.expectName('a module alias', "after 'as'");
      s.alias = alias.name;
      s.aliasPos = alias.pos;
    }
    return s;
  }

  // ------------------------------------------------------------ blocks and control flow

  private parseBlock(context?: string): Block {
    const t = this.peek();
    if (!isPunct(t, '{')) {
      const hint = isPunct(t, '=') ? 'to compare values, use ==' : undefined;
      this.failExpected(context ? `'{' ${context}` : "'{'", hint);
    }
    const open = this.advance();
    const body: Stmt[] = [];
    for (;;) {
      const n = this.peek();
      if (isPunct(n, '}')) {
        this.advance();
        break;
      }
      if (n.kind === 'EOF') this.expectClose(open, '}');
      this.statement(false, body);
    }
    return { kind: 'Block', pos: open.pos, body };
  }

  /** `if c {} else if c {} else {}`, chains built without recursion. */
  private parseIf(): If {
    const links: Array<{ pos: Pos; cond: Expr; then: Block }> = [];
    let last: Block | undefined;
    for (;;) {
      const kw = this.advance();
      const cond = this.parseExpr();
      const then = this.parseBlock('after the if condition');
      links.push({ pos: kw.pos, cond, then });
      if (!this.atKeyword('else')) break;
      this.advance();
      if (this.atKeyword('if')) continue;
      last = this.parseBlock("after 'else'");
      break;
    }
    let tail: If | Block | undefined = last;
    for (let i = links.length - 1; i >= 0; i--) {
      const l = links[i]!;
      const node: If = { kind: 'If', pos: l.pos, cond: l.cond, then: l.then };
      if (tail) node.else = tail;
      tail = node;
    }
    return tail as If;
  }

  private parseWhile(): Expr {
    const kw = this.advance();
    const cond = this.parseExpr();
    const body = this.parseBlock('after the while condition');
    return { kind: 'While', pos: kw.pos, cond, body };
  }

  private parseDo(): Expr {
    const kw = this.advance();
    const body = this.parseBlock("after 'do'");
    const t = this.peek();
    if (!isKeyword(t, 'while') && !isKeyword(t, 'until')) {
      this.failExpected("'while' or 'until' after the do block");
    }
    this.advance();
    const cond = this.parseExpr();
    return { kind: 'DoLoop', pos: kw.pos, body, cond, until: t.text === 'until' };
  }

  private parseLoop(): Expr {
    const kw = this.advance();
    return { kind: 'Loop', pos: kw.pos, body: this.parseBlock("after 'loop'") };
  }

  private parseFor(): For {
    const kw = this.advance();
    let v: { name: string; pos: Pos };
    let index: { name: string; pos: Pos } | undefined;
    if (this.atPunct('(')) {
      const open = this.advance();
      v = this.expectName('a loop variable', "after '('");
      this.expectPunct(',');
      index = this.expectName('an index variable', "after ','");
      this.expectClose(open, ')');
    } else {
      v = this.expectName('a loop variable', "after 'for'");
    }
    this.expectKeyword('in', "'in' after the loop variable");
    const iterable = this.parseExpr();
    const body = this.parseBlock('after the for iterable');
    const node: For = { kind: 'For', pos: kw.pos, varName: v.name, varPos: v.pos, iterable, body };
    if (index) {
      node.indexName = index.name;
      node.indexPos = index.pos;
    }
    return node;
  }

  private parseTry(): Try {
    const kw = this.advance();
    const body = this.parseBlock("after 'try'");
    this.expectKeyword('catch', "'catch' after the try block");
    const node: Try = { kind: 'Try', pos: kw.pos, body, handler: body };
    if (this.atPunct('(')) {
      const open = this.advance();
      const v = this.expectName('a variable name', "in 'catch ('");
      this.expectClose(open, ')');
      node.catchVar = v.name;
      node.catchPos = v.pos;
    }
    node.handler = this.parseBlock("after 'catch'");
    return node;
  }

  private parseSwitch(): Switch {
    const kw = this.advance();
    const subject = this.parseExpr();
    if (!this.atPunct('{')) this.failExpected("'{' after the switch value");
    const open = this.advance();
    const arms: SwitchArm[] = [];
    let wild: Pos | undefined;
    let wildReported = false;
    for (;;) {
      const t = this.peek();
      if (isPunct(t, '}')) {
        this.advance();
        break;
      }
      if (t.kind === 'EOF') this.expectClose(open, '}');
      if (wild && !wildReported) {
        wildReported = true;
        this.reportSoft(wild, "'_' must be the last switch arm", 'arms after it can never match');
      }
      const patterns = [this.parsePattern()];
      while (this.atPunct('|')) {
        this.advance();
        patterns.push(this.parsePattern());
      }
      const arm: SwitchArm = { patterns, body: { kind: 'Unit', pos: t.pos }, pos: t.pos };
      if (this.atKeyword('if')) {
        this.advance();
        arm.guard = this.parseExpr();
      }
      this.expectPunct('=>', isPunct(this.peek(), ':') ? 'switch arms are written value => result' : undefined);
      // A block body ends the arm (the comma after it is optional), so
      // `{ a } -1 => b` is two arms, not a subtraction.
      arm.body = this.atPunct('{') ? this.parseBlock() : this.parseExpr();
      arms.push(arm);
      const w = patterns.find((p) => p.kind === 'Wild');
      if (w && !wild) wild = w.pos;
      if (this.atPunct(',')) this.advance();
      else if (!this.atPunct('}') && !(this.prev.kind === 'Punct' && this.prev.text === '}')) {
        this.failExpected("',' or '}' after the switch arm");
      }
    }
    return { kind: 'Switch', pos: kw.pos, subject, arms };
  }

  /** One switch pattern: `_`, a constant, or an int range. */
  private parsePattern(): Pattern {
    const t = this.peek();
    if (t.kind === 'Wildcard') {
      this.advance();
      return { kind: 'Wild', pos: t.pos };
    }
    if (t.kind === 'Int' || (isPunct(t, '-') && this.peek(1).kind === 'Int')) {
      const from = this.parseSignedInt();
      if (this.atPunct('..') || this.atPunct('..=')) {
        const op = this.advance();
        const n = this.peek();
        if (!(n.kind === 'Int' || (isPunct(n, '-') && this.peek(1).kind === 'Int'))) {
          this.failExpected('an integer to end the range', 'ranges in switch arms have integer bounds: 1..10');
        }
        const to = this.parseSignedInt();
        return { kind: 'Range', from: from.value, to: to.value, inclusive: op.text === '..=', pos: t.pos };
      }
      return { kind: 'Const', value: { kind: 'Int', pos: t.pos, value: from.value }, pos: t.pos };
    }
    const value = this.parseConstExpr();
    if (this.atPunct('..') || this.atPunct('..=')) {
      this.failExpected("'=>'", 'ranges in switch arms have integer bounds: 1..10');
    }
    return { kind: 'Const', value, pos: t.pos };
  }

  /** An int literal with an optional minus (2^63 allowed only negated). */
  private parseSignedInt(): { value: bigint } {
    const neg = this.atPunct('-') ? this.advance() : undefined;
    const t = this.advance();
    const mag = t.intValue ?? 0n;
    if (mag > I64_MAX && !(neg && mag === I64_MIN_MAGNITUDE)) this.outOfRange(t);
    return { value: neg ? -mag : mag };
  }

  private outOfRange(t: Token): void {
    this.reportSoft(t.pos, 'integer literal out of range',
      `integers are 64-bit: the largest is ${I64_MAX}`, codePoints(t.text));
  }

  /** A constant usable as a switch pattern: literals, arrays and maps of them. */
  private parseConstExpr(): Expr {
    this.enter();
    const t = this.peek();
    let e: Expr | undefined;
    if (isPunct(t, '-') && this.peek(1).kind === 'Float') {
      this.advance();
      const f = this.advance();
      e = { kind: 'Float', pos: t.pos, value: -(f.floatValue ?? 0) };
    } else if (t.kind === 'Int' || (isPunct(t, '-') && this.peek(1).kind === 'Int')) {
      e = { kind: 'Int', pos: t.pos, value: this.parseSignedInt().value };
    } else if (t.kind === 'Float' || t.kind === 'Str' || t.kind === 'Char'
      || isKeyword(t, 'true') || isKeyword(t, 'false')) {
      e = this.parsePrimary();
    } else if (isPunct(t, '(') && isPunct(this.peek(1), ')')) {
      this.advance();
      this.advance();
      e = { kind: 'Unit', pos: t.pos };
    } else if (isPunct(t, '[')) {
      const open = this.advance();
      const items = this.parseList(open, ']', () => this.parseConstExpr());
      e = { kind: 'Array', pos: open.pos, items };
    } else if (isPunct(t, '#{')) {
      e = this.parseMap(() => this.parseConstExpr());
    }
    if (!e) {
      this.failAt(t, t.pos, "switch patterns must be literals, integer ranges or '_'",
        'to compare with a variable, use a guard: _ if x == y => … (or an if/else chain)',
        this.tokenWidth(t));
    }
    this.leave();
    return e;
  }

  // ------------------------------------------------------------ expressions

  /** An expression, with binary operators of precedence >= minPrec. */
  private parseExpr(minPrec = 1): Expr {
    let left = this.parseUnary();
    for (;;) {
      const t = this.peek();
      let op: string | undefined;
      if (t.kind === 'Punct') {
        if (t.text === '!' && isKeyword(this.peek(1), 'in')) op = '!in';
        else if (BINARY_PRECEDENCE[t.text] !== undefined) op = t.text;
      } else if (isKeyword(t, 'in')) {
        op = 'in';
      }
      if (op === undefined) return left;
      const prec = BINARY_PRECEDENCE[op]!;
      if (prec < minPrec) return left;
      this.advance();
      if (op === '!in') this.advance();
      let right: Expr;
      if (op === '**') {
        // Right-associative: the recursion grows with the chain, so count it.
        this.enter();
        right = this.parseExpr(prec);
        this.leave();
      } else {
        right = this.parseExpr(prec + 1);
      }
      left = op === '&&' || op === '||'
        ? { kind: 'Logical', pos: t.pos, op, left, right }
        : { kind: 'Binary', pos: t.pos, op: op as BinaryOp, left, right };
    }
  }

  /** Prefix operators (collected without recursion), then a postfix chain. */
  private parseUnary(): Expr {
    this.enter();
    const ops: Token[] = [];
    while (this.atPunct('-') || this.atPunct('+') || this.atPunct('!')) ops.push(this.advance());
    let e: Expr;
    const n = this.peek();
    const lastOp = ops[ops.length - 1];
    if (lastOp && lastOp.text === '-' && n.kind === 'Int' && n.intValue === I64_MIN_MAGNITUDE
      && !this.isPostfixStart(this.peek(1))) {
      // `-9223372036854775808` is i64::MIN, not the negation of an out-of-range literal.
      this.advance();
      ops.pop();
      e = { kind: 'Int', pos: lastOp.pos, value: -I64_MIN_MAGNITUDE };
    } else {
      e = this.parsePostfix(this.parsePrimary());
    }
    for (let i = ops.length - 1; i >= 0; i--) {
      const o = ops[i]!;
      e = { kind: 'Unary', pos: o.pos, op: o.text as '-' | '+' | '!', operand: e };
    }
    this.leave();
    return e;
  }

  private isPostfixStart(t: Token): boolean {
    return t.kind === 'Punct' && (t.text === '.' || t.text === '?.' || t.text === '['
      || t.text === '?[' || t.text === '(' || t.text === '::');
  }

  private parsePostfix(e: Expr): Expr {
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'Punct') return e;
      if (t.text === '.' || t.text === '?.') {
        this.advance();
        const optional = t.text === '?.';
        const n = this.peek();
        if (n.kind !== 'Ident' && n.kind !== 'Keyword') {
          this.failExpected(`a property or method name after '${t.text}'`);
        }
        this.advance();
        if (this.atPunct('(')) {
          const args = this.parseArgs();
          e = { kind: 'MethodCall', pos: n.pos, receiver: e, name: n.text, args, optional };
        } else {
          e = { kind: 'Prop', pos: n.pos, object: e, name: n.text, optional };
        }
      } else if (t.text === '[' || t.text === '?[') {
        const open = this.advance();
        const index = this.parseExpr();
        this.expectClose(open, ']');
        e = { kind: 'Index', pos: t.pos, object: e, index, optional: t.text === '?[' };
      } else {
        return e;
      }
    }
  }

  private parseArgs(): Expr[] {
    const open = this.advance();
    return this.parseList(open, ')', () => this.parseExpr());
  }

  /** Comma-separated items up to `closer` (consumed); a trailing comma is fine. */
  private parseList(open: Token, closer: string, item: () => Expr): Expr[] {
    const items: Expr[] = [];
    for (;;) {
      if (this.atPunct(closer)) break;
      if (this.peek().kind === 'EOF') this.expectClose(open, closer);
      items.push(item());
      if (this.atPunct(',')) {
        this.advance();
      } else if (!this.atPunct(closer)) {
        if (this.peek().kind === 'EOF') this.expectClose(open, closer);
        this.failExpected(`',' or '${closer}'`);
      }
    }
    this.advance();
    return items;
  }

  private parsePrimary(): Expr {
    const t = this.peek();
    switch (t.kind) {
      case 'Int':
        this.advance();
        if ((t.intValue ?? 0n) > I64_MAX) this.outOfRange(t);
        return { kind: 'Int', pos: t.pos, value: t.intValue ?? 0n };
      case 'Float':
        this.advance();
        return { kind: 'Float', pos: t.pos, value: t.floatValue ?? 0 };
      case 'Str':
        this.advance();
        return { kind: 'Str', pos: t.pos, value: t.strValue ?? '' };
      case 'Char':
        this.advance();
        return { kind: 'Char', pos: t.pos, value: t.strValue ?? '' };
      case 'Template':
        this.advance();
        return this.parseTemplate(t);
      case 'Ident':
        return this.parseName();
      case 'Keyword':
        return this.parseKeywordExpr(t);
      case 'Punct':
        switch (t.text) {
          case '(': return this.parseParen();
          case '[': {
            const open = this.advance();
            return { kind: 'Array', pos: open.pos, items: this.parseList(open, ']', () => this.parseExpr()) };
          }
          case '#{': return this.parseMap(() => this.parseExpr());
          case '{': return this.parseBlock();
          case '|': case '||': return this.parseClosure();
          default: break;
        }
        break;
      case 'Wildcard':
        this.failAt(t, t.pos, "'_' is only a switch wildcard, not a value or a name");
      default:
        break;
    }
    this.failExpected('an expression');
  }

  private parseKeywordExpr(t: Token): Expr {
    switch (t.text) {
      case 'true': case 'false':
        this.advance();
        return { kind: 'Bool', pos: t.pos, value: t.text === 'true' };
      case 'this':
        this.advance();
        return { kind: 'This', pos: t.pos };
      case 'global': {
        this.advance();
        if (!this.atPunct('::')) this.failExpected("'::' after 'global'", 'write global::NAME');
        return this.parsePathRest(t, ['global']);
      }
      case 'if': return this.parseIf();
      case 'switch': return this.parseSwitch();
      case 'while': return this.parseWhile();
      case 'do': return this.parseDo();
      case 'loop': return this.parseLoop();
      case 'for': return this.parseFor();
      case 'try': return this.parseTry();
      case 'rule': case 'action': return this.parseDirective();
      case 'delegate': return this.parseDelegate();
      case 'fn':
        this.failAt(t, t.pos, 'functions can only be defined at the top level',
          'anonymous functions are written |x| …', 2);
      default:
        this.failExpected('an expression');
    }
  }

  /** An identifier: a variable, a call, a path, or a v1 object/service declaration. */
  private parseName(): Expr {
    const t = this.peek();
    if ((t.text === 'object' || t.text === 'service') && this.peek(1).kind === 'Ident') {
      return t.text === 'object' ? this.parseObjectDecl() : this.parseServiceDecl();
    }
    this.advance();
    this.checkReserved(t);
    return this.parsePathRest(t, [t.text]);
  }

  /** After the first segment: `::seg`*, then a call or a plain name/path. */
  private parsePathRest(first: Token, segments: string[]): Expr {
    while (this.atPunct('::')) {
      this.advance();
      const n = this.peek();
      if (n.kind !== 'Ident' && n.kind !== 'Keyword') this.failExpected("a name after '::'");
      this.advance();
      segments.push(n.text);
    }
    if (this.atPunct('(')) return { kind: 'Call', pos: first.pos, callee: segments, args: this.parseArgs() };
    if (segments.length === 1) return { kind: 'Ident', pos: first.pos, name: segments[0]! };
    return { kind: 'Path', pos: first.pos, segments };
  }

  private parseParen(): Expr {
    const open = this.advance();
    if (this.atPunct(')')) {
      this.advance();
      return { kind: 'Unit', pos: open.pos };
    }
    const e = this.parseExpr();
    if (this.atPunct(',')) {
      const c = this.peek();
      this.failAt(c, c.pos, 'tuples are not supported', 'use an array: [a, b]');
    }
    this.expectClose(open, ')');
    return e;
  }

  /** `#{ key: value, "any key": value }`; a repeated key is an error. */
  private parseMap(value: () => Expr): Expr {
    const open = this.advance();
    const entries: MapEntry[] = [];
    const seen = new Map<string, Pos>();
    for (;;) {
      const t = this.peek();
      if (isPunct(t, '}')) break;
      if (t.kind === 'EOF') this.expectClose(open, '}');
      let key: string;
      if (t.kind === 'Ident' || t.kind === 'Keyword') key = t.text;
      else if (t.kind === 'Str') key = t.strValue ?? '';
      else if (t.remappedFrom) key = t.remappedFrom;
      else this.failExpected('a map key (a name or a string)', 'maps are written #{ key: value }');
      this.advance();
      const first = seen.get(key);
      if (first) {
        this.reportSoft(t.pos, `duplicate key '${key}' in map`,
          `first at line ${first.line}, column ${first.col}`, this.tokenWidth(t));
      } else {
        seen.set(key, t.pos);
      }
      this.expectPunct(':', 'maps are written #{ key: value }');
      entries.push({ key, keyPos: t.pos, value: value() });
      if (this.atPunct(',')) this.advance();
      else if (!this.atPunct('}')) {
        if (this.peek().kind === 'EOF') this.expectClose(open, '}');
        this.failExpected("',' or '}'");
      }
    }
    this.advance();
    return { kind: 'Map', pos: open.pos, entries };
  }

  private parseClosure(): Closure {
    const open = this.advance();
    const params = open.text === '|' ? this.parseParams(open, '|') : [];
    const body = this.parseExpr();
    return { kind: 'Closure', pos: open.pos, params, body };
  }

  /** `rule "name" <expr>` / `action "name" <expr>` (SPEC §3.2). */
  private parseDirective(): Directive {
    const kw = this.advance();
    const directive = kw.text as 'rule' | 'action';
    const t = this.peek();
    let name = '';
    let namePos = t.pos;
    if (t.kind === 'Str') {
      this.advance();
      name = t.strValue ?? '';
      if (name === '') {
        this.reportSoft(t.pos, `${directive} name cannot be empty`,
          `give it a unique name: ${directive} "check spf" || …`, 2);
      }
    } else {
      namePos = t.pos;
      this.reportSoft(t.pos, `${directive} needs a name: ${directive} "name" || …`);
    }
    const n = this.peek();
    if (n.kind === 'EOF' || (n.kind === 'Punct' && [',', ';', ')', ']', '}'].includes(n.text))) {
      this.failExpected(`the body of ${directive} "${name}"`, `write ${directive} "${name}" || expression`);
    }
    const body = this.parseExpr();
    return { kind: 'Directive', pos: kw.pos, directive, name, namePos, body };
  }

  /** `delegate` is reserved and refused (SPEC §1.1, §3.2). */
  private parseDelegate(): Expr {
    const kw = this.advance();
    this.reportSoft(kw.pos, 'delegate is not supported', 'delegation to another server is not available; use a rule', 8);
    // Skip the rest of the directive's head, and its body if it has one.
    for (;;) {
      const t = this.peek();
      if (t.kind === 'EOF' || (t.kind === 'Punct' && [',', ';', ')', ']', '}'].includes(t.text))) break;
      if (isPunct(t, '|') || isPunct(t, '||') || isPunct(t, '#{')) {
        this.parseExpr();
        break;
      }
      this.advance();
    }
    return { kind: 'Unit', pos: kw.pos };
  }

  /** v1 `object NAME TYPE[:ELEMENT] = EXPR` (SPEC §6.2). */
  private parseObjectDecl(): ObjectDecl {
    const { kw, nameTok, t, sub } = this.parseDeclHead('object', {
      what: 'type', placeholder: 'TYPE', value: 'value', example: 'rg4 = "192.168.0.0/16"', afterColon: 'the element type',
    });
    const node: ObjectDecl = {
      kind: 'Object', pos: kw.pos, name: nameTok.text, namePos: nameTok.pos, type: t.text, typePos: t.pos,
      value: this.parseExpr(),
    };
    if (sub !== undefined) node.element = sub;
    return node;
  }

  /** v1 `service NAME KIND = EXPR` (SPEC §7.12); KIND is `ident(:ident)?`. */
  private parseServiceDecl(): ServiceDecl {
    const { kw, nameTok, t, sub } = this.parseDeclHead('service', {
      what: 'kind', placeholder: 'KIND', value: '#{ … }', example: 'db:csv = #{ connector: "file.csv" }', afterColon: 'a name',
    });
    const serviceKind = sub === undefined ? t.text : `${t.text}:${sub}`;
    return {
      kind: 'Service', pos: kw.pos, name: nameTok.text, namePos: nameTok.pos, serviceKind, kindPos: t.pos, value: this.parseExpr(),
    };
  }

  /**
   * The head both v1 declarations share, `KEYWORD NAME IDENT[:IDENT] =`, with
   * the diagnostics worded for each (`head` says what the IDENT is called).
   */
  private parseDeclHead(
    word: 'object' | 'service',
    head: { what: string; placeholder: string; value: string; example: string; afterColon: string },
  ): { kw: Token; nameTok: Token; t: Token; sub: string | undefined } {
    const kw = this.advance();
    const nameTok = this.advance();
    this.checkReserved(nameTok);
    const name = nameTok.text;
    const t = this.peek();
    if (t.kind !== 'Ident') {
      if (isPunct(t, '=')) {
        this.failAt(t, t.pos, `missing ${head.what} in ${word} declaration`,
          `write ${word} ${name} ${head.placeholder} = ${head.value}, e.g. ${word} ${name} ${head.example}`);
      }
      this.failExpected(`the ${head.what} of ${word} ${name}`);
    }
    this.advance();
    let sub: string | undefined;
    if (this.atPunct(':')) {
      this.advance();
      const el = this.peek();
      if (el.kind !== 'Ident') this.failExpected(`${head.afterColon} after '${t.text}:'`);
      this.advance();
      sub = el.text;
    }
    this.expectPunct('=', `write ${word} ${name} ${t.text}${sub !== undefined ? ':' + sub : ''} = ${head.value}`);
    return { kw, nameTok, t, sub };
  }

  /** A template's interpolations are parsed from their own token lists. */
  private parseTemplate(t: Token): Template {
    const parts: Array<string | Expr> = [];
    for (const p of t.parts ?? []) {
      if (typeof p === 'string') parts.push(p);
      else {
        const e = this.parseInterpolation(p);
        if (e) parts.push(e);
      }
    }
    return { kind: 'Template', pos: t.pos, parts };
  }

  private parseInterpolation(p: TemplateInterpolation): Expr | undefined {
    if (p.tokens.length <= 1) {
      this.reportSoft(p.pos, 'empty ${} in template', 'put an expression inside: ${name}');
      return undefined;
    }
    const saved = { src: this.src, la: this.la, prev: this.prev, height: this.brackets.length };
    this.src = new ArraySource(p.tokens);
    this.la = [];
    try {
      const e = this.parseExpr();
      const end = this.peek();
      if (end.kind !== 'EOF') {
        this.failAt(end, end.pos, `expected '}' to end the interpolation, found ${describe(end)}`);
      }
      return e;
    } finally {
      this.src = saved.src;
      this.la = saved.la;
      this.prev = saved.prev;
      this.brackets.length = Math.min(this.brackets.length, saved.height);
    }
  }
}

/**
 * Parses one vSL file. Never throws for bad input: problems come back as
 * diagnostics (sorted by position); the program is then only good for tools.
 */
export function parseProgram(source: string, file: string): { program: Program; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const parser = new Parser(new Lexer(source, file, diagnostics), file, diagnostics);
  let program: Program;
  try {
    program = parser.parseProgram();
  } catch (e) {
    // A bug in the parser must still fail closed, as a load error.
    diagnostics.push(errorAt({ file, line: 1, col: 1 }, `internal parser error: ${String(e)}`));
    program = { file, body: [] };
  }
  return { program, diagnostics: sortDiagnostics(diagnostics) };
}

/**
 * Parses a single expression (for tools and tests). `start` is where
 * `source` begins in its file, so positions come out right.
 */
export function parseExpression(
  source: string,
  file: string,
  start?: Pos,
): { expr: Expr | undefined; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const lexer = new Lexer(source, file, diagnostics, start ? { offset: 0, line: start.line, col: start.col } : undefined);
  const parser = new Parser(lexer, file, diagnostics);
  let expr: Expr | undefined;
  try {
    expr = parser.parseLoneExpression();
  } catch (e) {
    diagnostics.push(errorAt(start ?? { file, line: 1, col: 1 }, `internal parser error: ${String(e)}`));
  }
  return { expr, diagnostics: sortDiagnostics(diagnostics) };
}
