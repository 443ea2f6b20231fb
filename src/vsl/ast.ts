// The vSL syntax tree (SPEC §2–§3). Produced by parser.ts, consumed by the
// compiler passes (resolve.ts, check.ts, emit.ts). Every node carries the
// position of its first token (for operators: the operator token), so load
// errors and runtime errors can name file:line:col. Lines and columns are
// 1-based; columns count code points.

export interface Pos {
  file: string;
  line: number;
  col: number;
}

interface Node {
  pos: Pos;
}

// ---------------------------------------------------------------- expressions

export interface IntLit extends Node { kind: 'Int'; value: bigint }
export interface FloatLit extends Node { kind: 'Float'; value: number }
export interface BoolLit extends Node { kind: 'Bool'; value: boolean }
export interface UnitLit extends Node { kind: 'Unit' }
export interface CharLit extends Node { kind: 'Char'; value: string } // one code point
export interface StrLit extends Node { kind: 'Str'; value: string }
/** `…${expr}…`: literal text parts interleaved with expressions. */
export interface Template extends Node { kind: 'Template'; parts: Array<string | Expr> }
export interface ArrayLit extends Node { kind: 'Array'; items: Expr[] }
export interface MapEntry { key: string; keyPos: Pos; value: Expr }
export interface MapLit extends Node { kind: 'Map'; entries: MapEntry[] }

/** `|a, b| expr` or `|| { … }`. Closures capture nothing (SPEC §2.3). */
export interface Closure extends Node { kind: 'Closure'; params: Param[]; body: Expr }
export interface Param { name: string; pos: Pos }

/** A bare name: a local variable, a parameter, or an engine constant. */
export interface Ident extends Node { kind: 'Ident'; name: string }
/** `a::b::c`: a module member, `global::X`, a namespaced built-in value. */
export interface PathExpr extends Node { kind: 'Path'; segments: string[] }
export interface This extends Node { kind: 'This' }

/** `f(a)` or `ns::f(a)`; `callee` is the name as written. */
export interface Call extends Node { kind: 'Call'; callee: string[]; args: Expr[] }
/** `x.f(a)` (or `x?.f(a)` when optional). pos is the method name. */
export interface MethodCall extends Node {
  kind: 'MethodCall'; receiver: Expr; name: string; args: Expr[]; optional: boolean;
}
/** `x.name` / `x?.name`. pos is the property name. */
export interface Prop extends Node { kind: 'Prop'; object: Expr; name: string; optional: boolean }
/** `x[i]` / `x?[i]`. pos is the `[`. */
export interface Index extends Node { kind: 'Index'; object: Expr; index: Expr; optional: boolean }

export type UnaryOp = '-' | '+' | '!';
export interface Unary extends Node { kind: 'Unary'; op: UnaryOp; operand: Expr }

/** `is` and `not` are lexed as `==` and `!=` (SPEC §2.1), so they never appear here. */
export type BinaryOp =
  | '+' | '-' | '*' | '/' | '%' | '**' | '<<' | '>>' | '&' | '|' | '^'
  | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | '!in' | '..' | '..=' | '??';
export interface Binary extends Node { kind: 'Binary'; op: BinaryOp; left: Expr; right: Expr }
export interface Logical extends Node { kind: 'Logical'; op: '&&' | '||'; left: Expr; right: Expr }

/** `{ stmts }`. Its value is the value of its last statement (unit if empty,
 *  or if the last statement is not an expression statement). */
export interface Block extends Node { kind: 'Block'; body: Stmt[] }
export interface If extends Node { kind: 'If'; cond: Expr; then: Block; else?: Block | If }

/** A switch arm pattern: a constant (literal, negative number, array/map of
 *  constants), an int range, or `_`. `2 | 3 =>` gives two patterns. */
export type Pattern =
  | { kind: 'Const'; value: Expr; pos: Pos }
  | { kind: 'Range'; from: bigint; to: bigint; inclusive: boolean; pos: Pos }
  | { kind: 'Wild'; pos: Pos };
export interface SwitchArm { patterns: Pattern[]; guard?: Expr; body: Expr; pos: Pos }
export interface Switch extends Node { kind: 'Switch'; subject: Expr; arms: SwitchArm[] }

export interface While extends Node { kind: 'While'; cond: Expr; body: Block }
/** `do {} while c;` (until=false) or `do {} until c;` (until=true). */
export interface DoLoop extends Node { kind: 'DoLoop'; body: Block; cond: Expr; until: boolean }
export interface Loop extends Node { kind: 'Loop'; body: Block }
/** `for x in it {}` / `for (x, i) in it {}`. */
export interface For extends Node {
  kind: 'For'; varName: string; varPos: Pos; indexName?: string; indexPos?: Pos; iterable: Expr; body: Block;
}
/** `try {} catch (e) {}` / `try {} catch {}`. */
export interface Try extends Node { kind: 'Try'; body: Block; catchVar?: string; catchPos?: Pos; handler: Block }

/** `rule "name" <expr>` / `action "name" <expr>`. The body is normally a
 *  Closure (`|| expr`) or a MapLit with an `evaluate` key (SPEC §3.2). */
export interface Directive extends Node {
  kind: 'Directive'; directive: 'rule' | 'action'; name: string; namePos: Pos; body: Expr;
}

export type Expr =
  | IntLit | FloatLit | BoolLit | UnitLit | CharLit | StrLit | Template | ArrayLit | MapLit
  | Closure | Ident | PathExpr | This | Call | MethodCall | Prop | Index | Unary | Binary | Logical
  | Block | If | Switch | While | DoLoop | Loop | For | Try | Directive | ObjectDecl | ServiceDecl;

// ---------------------------------------------------------------- statements

export interface ExprStmt extends Node { kind: 'ExprStmt'; expr: Expr; semi: boolean }
/** `let x = e;`, `const X = e;`, `export const X = e;`, `export let X = e;`. */
export interface Let extends Node {
  kind: 'Let'; name: string; namePos: Pos; init?: Expr; isConst: boolean; exported: boolean;
}
export type AssignOp = '=' | '+=' | '-=' | '*=' | '/=' | '%=' | '**=' | '<<=' | '>>=' | '&=' | '|=' | '^=';
/** target is an Ident, Prop, Index (chained), or This. */
export interface Assign extends Node { kind: 'Assign'; op: AssignOp; target: Expr; value: Expr }
export interface Break extends Node { kind: 'Break' }
export interface Continue extends Node { kind: 'Continue' }
export interface Return extends Node { kind: 'Return'; value?: Expr }
export interface Throw extends Node { kind: 'Throw'; value?: Expr }
export interface FnDecl extends Node {
  kind: 'Fn'; name: string; namePos: Pos; params: Param[]; body: Block; isPrivate: boolean;
}
/** `import "path" as alias;` / `import "path";` */
export interface Import extends Node { kind: 'Import'; path: string; pathPos: Pos; alias?: string; aliasPos?: Pos }
/** `export N;` / `export N as M;` */
export interface ExportName extends Node { kind: 'ExportName'; name: string; as?: string }
/** v1 `object NAME TYPE[:ELEMENT] = EXPR` (SPEC §6.2). An expression (it
 *  evaluates to the object, so declarations nest inside `group` arrays); at the
 *  top level it appears as an ExprStmt. The parser recognises it wherever an
 *  expression starts with the word `object` followed by an identifier. */
export interface ObjectDecl extends Node {
  kind: 'Object'; name: string; namePos: Pos; type: string; typePos: Pos; element?: string; value: Expr;
}
/** v1 `service NAME KIND = EXPR` (SPEC §7.12), an expression like ObjectDecl;
 *  kind is e.g. `db:csv`, `csv`, `cmd`. */
export interface ServiceDecl extends Node {
  kind: 'Service'; name: string; namePos: Pos; serviceKind: string; kindPos: Pos; value: Expr;
}

export type Stmt =
  | ExprStmt | Let | Assign | Break | Continue | Return | Throw | FnDecl | Import | ExportName;

/** One parsed file. */
export interface Program {
  file: string;
  body: Stmt[];
}

// ---------------------------------------------------------------- walking the tree

/**
 * Visits the direct children of an expression: sub-expressions with `visitE`,
 * statements of blocks with `visitS`. The one tree walker of the compiler's
 * passes (resolve, check, emit): each pass decides where to stop descending.
 */
export function forEachChild(e: Expr, visitE: (e: Expr | undefined) => void, visitS: (s: Stmt) => void): void {
  switch (e.kind) {
    case 'Template': e.parts.forEach((p) => { if (typeof p !== 'string') visitE(p); }); break;
    case 'Array': e.items.forEach(visitE); break;
    case 'Map': e.entries.forEach((en) => visitE(en.value)); break;
    case 'Closure': visitE(e.body); break;
    case 'Call': e.args.forEach(visitE); break;
    case 'MethodCall': visitE(e.receiver); e.args.forEach(visitE); break;
    case 'Prop': visitE(e.object); break;
    case 'Index': visitE(e.object); visitE(e.index); break;
    case 'Unary': visitE(e.operand); break;
    case 'Binary': case 'Logical': visitE(e.left); visitE(e.right); break;
    case 'Block': e.body.forEach(visitS); break;
    case 'If': visitE(e.cond); visitE(e.then); visitE(e.else); break;
    case 'Switch': visitE(e.subject); e.arms.forEach((a) => { visitE(a.guard); visitE(a.body); }); break;
    case 'While': visitE(e.cond); visitE(e.body); break;
    case 'DoLoop': visitE(e.body); visitE(e.cond); break;
    case 'Loop': visitE(e.body); break;
    case 'For': visitE(e.iterable); visitE(e.body); break;
    case 'Try': visitE(e.body); visitE(e.handler); break;
    case 'Directive': visitE(e.body); break;
    case 'Object': case 'Service': visitE(e.value); break;
    default: break;
  }
}

/** Visits the direct children of a statement (a function declaration's body included). */
export function forEachStmtChild(s: Stmt, visitE: (e: Expr | undefined) => void, visitS: (s: Stmt) => void): void {
  switch (s.kind) {
    case 'ExprStmt': visitE(s.expr); break;
    case 'Let': visitE(s.init); break;
    case 'Assign': visitE(s.target); visitE(s.value); break;
    case 'Return': case 'Throw': visitE(s.value); break;
    case 'Fn': s.body.body.forEach(visitS); break;
    default: break;
  }
}

/** Calls `onExpr` for every expression under `stmts`, functions and closures included. */
export function walkAll(stmts: Stmt[], onExpr: (e: Expr) => void): void {
  const visitE = (e: Expr | undefined): void => {
    if (!e) return;
    onExpr(e);
    forEachChild(e, visitE, visitS);
  };
  const visitS = (s: Stmt): void => forEachStmtChild(s, visitE, visitS);
  stmts.forEach(visitS);
}
