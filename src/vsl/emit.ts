// Compiler pass 3: emission. Turns the resolved and checked program into one
// JavaScript program for the whole policy, which the sandbox evaluates
// inside QuickJS.
//
// Shape of the output:
//
//   (function ($) {            // $ = guest runtime namespace (src/vsl/guest)
//     const $M = [];
//     $M[0] = (function () {   // one closure per module, dependency order
//       const $G = {}, $E = {}, $F = {};
//       function F_name$2(x, $this, a, b) { … }   // top-level fns, by arity
//       return { G: $G, E: $E, F: $F, init(x) { …top-level code… } };
//     })();
//     …
//     return $M;
//   })
//
// Every compiled function takes the evaluation context `x` first (session
// data, depth counter, effects) and a `$this` box for method-style calls.
// vSL is expression-oriented (if/switch/blocks/loops yield values); JS is
// not, so expressions that need statements are lowered into statements that
// assign a temporary, and earlier siblings are spilled to temporaries first
// to keep left-to-right evaluation order.
//
// Asynchrony (decided by check.ts): an async function is compiled to a
// generator function, not an `async` one: an I/O wait is `yield <promise>`,
// a call to another async function is `yield* f(…)`, and the stage loop
// (guest/guest-entry.ts) drives the generator. So an async function that
// meets no actual I/O — check_rcpt_relay when the allowed list holds no
// names — runs straight through, with no promise and no job queue. A "dyn"
// function (its only possible I/O is a function-pointer call or a service
// method) is compiled twice: a plain variant for load-time code and
// callbacks (where such a call fails cleanly if it meets I/O) and an async
// variant (`…$a`) for rules and actions. So `fn get_or(m, k) { m.get(k) }`
// works everywhere.
//
// Local variables get their JavaScript names here, as blocks are walked and
// scopes opened; what a name means where it is used, and the error when it
// means nothing, is resolve.ts's (Program.resolveValue, resolvePath,
// resolveCall).
//
// Positions: each emitted call gets a marker that becomes a (line, col) →
// vSL position entry, so a QuickJS stack trace maps back to file:line:col.

import type * as A from './ast.js';
import type { DiagnosticList } from './diagnostics.js';
import { CompileError, RESERVED, Scope, lookupVar, scriptRef, type FnInfo, type Program, type ScriptRef, type Unit } from './resolve.js';
import { SERVICE_METHODS, closureIo, isPointerCall } from './check.js';
import { ELEMENT_TYPES, OBJECT_TYPES, declarationType } from './values/objects.js';

export interface Emitted {
  js: string;
  positions: A.Pos[];
  /** Per generated line (0-based): sorted [col (1-based), posId] marks. */
  lineMarks: Array<Array<[number, number]>>;
  /** Names of host built-ins the policy calls (for `mta check` and the coverage test). */
  hostCalls: Set<string>;
}

export function emitProgram(prog: Program, diagnostics: DiagnosticList): Emitted {
  return new Emitter(prog, diagnostics).run();
}

// ------------------------------------------------------------------ helpers

const IN_PLACE_METHODS = new Set([
  'push', 'append', 'insert', 'pop', 'shift', 'remove', 'truncate', 'clear', 'reverse', 'sort',
  'trim', 'make_upper', 'make_lower', 'replace', 'pad', 'crop', 'set', 'mixin',
]);

const BINOP_FN: Record<string, string> = {
  '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '%': 'mod', '**': 'pow', '<<': 'shl', '>>': 'shr',
  '&': 'band', '|': 'bor', '^': 'bxor', '==': 'eq', '!=': 'ne', '<': 'lt', '<=': 'le', '>': 'gt', '>=': 'ge',
};

const MARK_OPEN = '\u0001';
const MARK_CLOSE = '\u0002';

type Target = { kind: 'discard' } | { kind: 'assign'; v: string } | { kind: 'return' };

interface FnCtx {
  async: boolean;
  temps: number;
  tempNames: string[];
  hasThis: boolean;
  usesThis: boolean;
  loops: Array<{ doLabel?: string }>;
  isTopLevel: boolean;
  isOnConfig: boolean;
}

// ------------------------------------------------------------------ the emitter

class Emitter {
  private positions: A.Pos[] = [];
  private posIds = new Map<string, number>();
  private out: string[] = [];
  private indent = 0;
  private unit!: Unit;
  private fc!: FnCtx;
  private scope!: Scope;
  private tempCounter = 0;
  private varCounter = 0;
  private hostCalls = new Set<string>();
  /** `evaluate` closures of directives written in the map form, with the directive's name. */
  private directiveBodies = new Map<A.Expr, string>();

  constructor(
    private readonly prog: Program,
    private readonly diagnostics: DiagnosticList,
  ) {}

  run(): Emitted {
    this.line('(function ($) {');
    this.line('"use strict";');
    this.line('const $M = [];');
    for (const u of this.prog.units) this.reportErrors(() => this.emitModule(u));
    this.line('return $M;');
    this.line('})');
    const { js, lineMarks } = this.finish();
    return { js, lineMarks, positions: this.positions, hostCalls: this.hostCalls };
  }

  /** Reports a CompileError thrown by `f` and carries on with the next piece. */
  private reportErrors(f: () => void): void {
    try {
      f();
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      this.diagnostics.error(err.pos, err.message, err.hint);
    }
  }

  // -------------------------------------------------------------- positions and output


  private posId(pos: A.Pos): number {
    const key = `${pos.file}\u0000${pos.line}\u0000${pos.col}`;
    let id = this.posIds.get(key);
    if (id === undefined) {
      id = this.positions.length;
      this.positions.push(pos);
      this.posIds.set(key, id);
    }
    return id;
  }

  private mark(pos: A.Pos): string {
    return `${MARK_OPEN}${this.posId(pos)}${MARK_CLOSE}`;
  }

  // -------------------------------------------------------------- output

  private line(text: string): void {
    this.out.push('  '.repeat(this.indent) + text);
  }

  private finish(): { js: string; lineMarks: Array<Array<[number, number]>> } {
    const lineMarks: Array<Array<[number, number]>> = [];
    const lines: string[] = [];
    for (const raw of this.out) {
      // A line may contain embedded newlines only inside our own constructs; split to keep line numbers exact.
      for (const l of raw.split('\n')) {
        const marks: Array<[number, number]> = [];
        let clean = '';
        let i = 0;
        while (i < l.length) {
          const ch = l[i]!;
          if (ch === MARK_OPEN) {
            const end = l.indexOf(MARK_CLOSE, i);
            marks.push([clean.length + 1, Number(l.slice(i + 1, end))]);
            i = end + 1;
          } else {
            clean += ch;
            i++;
          }
        }
        lines.push(clean);
        lineMarks.push(marks);
      }
    }
    return { js: lines.join('\n'), lineMarks };
  }

  private declareVar(name: string, isConst: boolean, pos: A.Pos): string {
    if (RESERVED.has(name)) throw new CompileError(pos, `'${name}' is a reserved word and cannot be used as a name`);
    const js = `v_${name}$${++this.varCounter}`;
    this.scope.vars.set(name, { js, isConst });
    return js;
  }

  private temp(): string {
    const t = `$t${++this.tempCounter}`;
    this.fc.tempNames.push(t);
    return t;
  }

  // -------------------------------------------------------------- modules

  private emitModule(u: Unit): void {
    this.unit = u;
    this.line(`// ---- module ${u.index}: ${u.file.display.replace(/[\r\n]/g, ' ')}`);
    this.line(`$M[${u.index}] = (function () {`);
    this.indent++;
    this.scope = new Scope(null, true);
    this.line('const $G = Object.create(null), $E = Object.create(null), $F = Object.create(null);');
    for (const byArity of u.fns.values()) {
      for (const f of byArity.values()) {
        this.reportErrors(() => {
          this.emitFunction(f, f.async, f.jsName);
          if (f.dyn) this.emitFunction(f, true, f.jsNameAsync);
        });
        if (!f.isPrivate) {
          this.line(`$F[${JSON.stringify(`${f.name}/${f.arity}`)}] = ${f.jsName};`);
          if (f.dyn) this.line(`$F[${JSON.stringify(`${f.name}/${f.arity}$a`)}] = ${f.jsNameAsync};`);
        }
      }
    }
    this.emitInit(u);
    this.line('return { G: $G, E: $E, F: $F, init: $init };');
    this.indent--;
    this.line('})();');
  }

  private newFnCtx(isAsync: boolean, isTopLevel: boolean, hasThis: boolean): FnCtx {
    return { async: isAsync, temps: 0, tempNames: [], hasThis, usesThis: false, loops: [], isTopLevel, isOnConfig: false };
  }

  /** Emits a function body; returns the JS text of the function (expression form). */
  private withFunction(
    isAsync: boolean, isTopLevel: boolean, params: A.Param[], body: A.Expr, header: (params: string[]) => string,
    opts: { trackDepth: boolean; onConfig?: boolean },
  ): void {
    const savedFc = this.fc;
    const savedScope = this.scope;
    const savedOut = this.out;
    const savedIndent = this.indent;
    this.fc = this.newFnCtx(isAsync, isTopLevel, true);
    this.fc.isOnConfig = !!opts.onConfig;
    this.scope = new Scope(isTopLevel ? null : savedScope ?? null, true);
    // Imports visible inside functions: the file's top-level aliases (looked up via unit.topImports).
    const jsParams: string[] = [];
    const seen = new Set<string>();
    for (const p of params) {
      if (seen.has(p.name)) throw new CompileError(p.pos, `parameter '${p.name}' is declared twice`);
      seen.add(p.name);
      jsParams.push(this.declareVar(p.name, false, p.pos));
    }
    this.out = [];
    this.indent = 2;
    if (body.kind === 'Block') this.emitBlockBody(body.body, { kind: 'return' });
    else this.emitExprTo(body, { kind: 'return' });
    const bodyLines = this.out;
    this.out = savedOut;
    this.indent = savedIndent;
    this.line(header(jsParams));
    this.indent++;
    if (this.fc.tempNames.length) this.line(`let ${this.fc.tempNames.join(', ')};`);
    if (opts.trackDepth) {
      // Marked "no position": a depth error is reported at the call that went too deep, one frame out.
      this.line(`${MARK_OPEN}-1${MARK_CLOSE}if (++x.depth > 64) $.tooDeep(x);`);
      this.line('try {');
      this.out.push(...bodyLines);
      this.line('} finally { x.depth--; }');
    } else {
      this.out.push(...bodyLines.map((l) => l.slice(2)));
    }
    this.indent--;
    this.line('}');
    this.fc = savedFc;
    this.scope = savedScope;
  }

  private emitFunction(f: FnInfo, isAsync: boolean, jsName: string): void {
    const isOnConfig = f.name === 'on_config' && f.arity === 1;
    this.withFunction(isAsync, false, f.node.params, f.node.body,
      (ps) => `function${isAsync ? '*' : ''} ${jsName}(x, $this${ps.map((p) => `, ${p}`).join('')}) {`,
      { trackDepth: true, onConfig: isOnConfig });
  }

  /** The JS expression calling script function `r` from the current context (awaited when async). */
  private scriptCall(r: ScriptRef, thisJs: string, args: string[], pos: A.Pos): string {
    const useAsync = r.dyn && this.fc.async;
    const key = `${r.name}/${r.arity}${useAsync ? '$a' : ''}`;
    const ref = r.module === this.unit.index ? (useAsync ? r.jsNameAsync : r.jsName) : `$M[${r.module}].F[${JSON.stringify(key)}]`;
    return this.awaitIf(r.async || useAsync, `${ref}${this.mark(pos)}(x, ${thisJs}${args.map((s) => `, ${s}`).join('')})`, pos, 'generator');
  }

  /** Calls a function value: awaited in async code, else a plain call that refuses I/O functions. */
  private pointerCall(fJs: string, args: string[], pos: A.Pos): string {
    if (this.fc.async) return `(yield* $.settle($.callPtr${this.mark(pos)}(x, ${fJs}, [${args.join(', ')}])))`;
    return `$.callPtrSync${this.mark(pos)}(x, ${fJs}, [${args.join(', ')}])`;
  }

  private emitInit(u: Unit): void {
    const savedFc = this.fc;
    const savedScope = this.scope;
    this.fc = this.newFnCtx(false, true, false);
    this.scope = new Scope(null, true);
    const savedOut = this.out;
    const savedIndent = this.indent;
    this.out = [];
    this.indent = 2;
    // Top-level consts (also nested v1 object declarations) are declared up front.
    for (const name of u.topConsts.keys()) {
      const js = `v_${name}$${++this.varCounter}`;
      u.topConsts.set(name, js);
    }
    for (const [name, js] of u.topConsts) this.scope.vars.set(name, { js, isConst: true });
    this.reportErrors(() => this.emitBlockBody(u.file.program.body, { kind: 'return' }, true));
    const bodyLines = this.out;
    this.out = savedOut;
    this.indent = savedIndent;
    this.line('function $init(x) {');
    this.indent++;
    const decls = [...u.topConsts.values(), ...this.fc.tempNames];
    if (decls.length) this.line(`let ${decls.join(', ')};`);
    this.out.push(...bodyLines.map((l) => l.slice(2)));
    this.indent--;
    this.line('}');
    this.fc = savedFc;
    this.scope = savedScope;
  }

  // -------------------------------------------------------------- statements

  /** Emits statements of a block; the last expression statement's value goes to `target`. */
  private emitBlockBody(body: A.Stmt[], target: Target, topLevel = false): void {
    if (!topLevel) this.scope = new Scope(this.scope, false);
    try {
      let lastIsValue = false;
      for (let i = 0; i < body.length; i++) {
        const s = body[i]!;
        const isLast = i === body.length - 1;
        if (isLast && s.kind === 'ExprStmt') {
          this.emitExprTo(s.expr, target);
          lastIsValue = true;
        } else {
          try {
            this.emitStmt(s, topLevel);
          } catch (err) {
            if (!(err instanceof CompileError) || !topLevel) throw err;
            this.diagnostics.error(err.pos, err.message, err.hint);
          }
        }
      }
      if (!lastIsValue) this.assignTarget(target, 'undefined');
    } finally {
      if (!topLevel) this.scope = this.scope.parent!;
    }
  }

  private assignTarget(target: Target, js: string): void {
    if (target.kind === 'discard') {
      if (js !== 'undefined' && !/^[\w$]+$/.test(js)) this.line(`${js};`);
    } else if (target.kind === 'assign') this.line(`${target.v} = ${js};`);
    else this.line(`return ${js};`);
  }

  private emitStmt(s: A.Stmt, topLevel: boolean): void {
    switch (s.kind) {
      case 'ExprStmt':
        this.emitExprTo(s.expr, { kind: 'discard' });
        return;
      case 'Let': {
        if (topLevel && s.isConst) {
          const js = this.unit.topConsts.get(s.name)!;
          const v = s.init ? this.valueCopy(s.init) : 'undefined';
          this.line(`${js} = $G[${JSON.stringify(s.name)}] = $.freeze(${v});`);
          if (s.exported || this.unit.exportsValues.has(s.name)) this.emitExportUpdate(s.name, js);
          return;
        }
        const v = s.init ? this.valueCopy(s.init) : 'undefined';
        const js = this.declareVar(s.name, s.isConst, s.namePos);
        this.line(`let ${js} = ${v};`);
        if (topLevel && this.unit.exportsValues.has(s.name)) this.emitExportUpdate(s.name, js);
        return;
      }
      case 'Assign':
        this.emitAssign(s, topLevel);
        return;
      case 'Break':
      case 'Continue': {
        const loop = this.fc.loops[this.fc.loops.length - 1];
        if (!loop) throw new CompileError(s.pos, `'${s.kind === 'Break' ? 'break' : 'continue'}' outside a loop`);
        if (s.kind === 'Continue' && loop.doLabel) this.line(`break ${loop.doLabel};`);
        else this.line(s.kind === 'Break' ? 'break;' : 'continue;');
        return;
      }
      case 'Return': {
        const v = s.value ? this.expr(s.value) : 'undefined';
        this.line(`return ${v};`);
        return;
      }
      case 'Throw': {
        const v = s.value ? this.expr(s.value) : 'undefined';
        this.line(`$.throwValue${this.mark(s.pos)}(${v});`);
        return;
      }
      case 'Fn':
        if (!topLevel) throw new CompileError(s.pos, 'functions can only be defined at the top level');
        return; // emitted with the module
      case 'Import':
        if (!topLevel) {
          const target = this.unit.file.imports.find((i) => i.node === s)?.target;
          const tu = target ? this.prog.byPath.get(target) : undefined;
          if (tu && s.alias) this.scope.imports.set(s.alias, tu.index);
        }
        return; // modules are initialised in dependency order by the sandbox
      case 'ExportName': {
        const v = this.scope.vars.get(s.name);
        const f = this.unit.fns.get(s.name);
        if (!v && !f) throw new CompileError(s.pos, `cannot export '${s.name}': no such top-level name`);
        if (v) this.emitExportUpdate(s.as ?? s.name, v.js);
        return;
      }
    }
  }

  private emitExportUpdate(exportName: string, js: string): void {
    for (const [ename, local] of this.unit.exportsValues) {
      if (local === exportName || ename === exportName) this.line(`$E[${JSON.stringify(ename)}] = $.freeze(${js});`);
    }
  }

  // -------------------------------------------------------------- assignment

  private emitAssign(s: A.Assign, topLevel: boolean): void {
    const rhs = () => (s.op === '=' ? this.valueCopy(s.value) : this.expr(s.value));
    const combine = (cur: string, v: string) =>
      s.op === '=' ? v : s.op === '+=' ? `$.addAssign${this.mark(s.pos)}(${cur}, ${v})` : `$.${BINOP_FN[s.op.slice(0, -1)]}${this.mark(s.pos)}(${cur}, ${v})`;
    const t = s.target;
    if (t.kind === 'Ident') {
      const v = lookupVar(this.scope, t.name);
      if (!v) throw this.prog.unknownVariable(this.unit, this.scope, t);
      if (v.isConst) throw new CompileError(t.pos, `cannot assign to constant '${t.name}'`);
      const value = rhs();
      this.line(`${v.js} = ${combine(v.js, value)};`);
      if (topLevel && this.unit.exportsValues.has(t.name)) this.emitExportUpdate(t.name, v.js);
      return;
    }
    if (t.kind === 'This') {
      if (this.fc.isTopLevel) throw new CompileError(t.pos, "'this' is only available in functions called as methods");
      this.fc.usesThis = true;
      const value = rhs();
      this.line(`$this.v = ${combine('$this.v', value)};`);
      return;
    }
    if (t.kind === 'Prop' || t.kind === 'Index') {
      // Evaluate the key first, then the value, then write through the chain.
      const chain: Array<{ kind: 'Prop'; name: string; pos: A.Pos } | { kind: 'Index'; key: string; pos: A.Pos }> = [];
      let base: A.Expr = t;
      while (base.kind === 'Prop' || base.kind === 'Index') {
        if (base.kind === 'Prop') chain.unshift({ kind: 'Prop', name: base.name, pos: base.pos });
        else chain.unshift({ kind: 'Index', key: '', pos: base.pos });
        base = base.kind === 'Prop' ? base.object : base.object;
      }
      // Compile index keys in source order.
      let node: A.Expr = t;
      const keys: string[] = [];
      while (node.kind === 'Prop' || node.kind === 'Index') {
        if (node.kind === 'Index') {
          const tk = this.temp();
          keys.unshift(tk);
          this.line(`${tk} = ${this.expr(node.index)};`);
        } else keys.unshift('');
        node = node.object;
      }
      chain.forEach((c, i) => { if (c.kind === 'Index') c.key = keys[i]!; });
      let rootRef: string;
      if (base.kind === 'Ident') {
        const v = lookupVar(this.scope, base.name);
        if (!v) throw this.prog.unknownVariable(this.unit, this.scope, base);
        if (v.isConst) throw new CompileError(base.pos, `cannot modify constant '${base.name}'`);
        rootRef = v.js;
      } else if (base.kind === 'This') {
        if (this.fc.isTopLevel) throw new CompileError(base.pos, "'this' is only available in functions called as methods");
        this.fc.usesThis = true;
        rootRef = '$this.v';
      } else {
        throw new CompileError(base.pos, 'cannot assign to this expression', 'assign to a variable, a map key, an index, or this');
      }
      const value = rhs();
      // containers[i] = thawed container at depth i
      const conts: string[] = [];
      this.line(`${rootRef} = $.thaw(${rootRef});`);
      conts.push(rootRef);
      for (let i = 0; i < chain.length - 1; i++) {
        const c = chain[i]!;
        const tc = this.temp();
        const read = c.kind === 'Prop' ? `$.getProp${this.mark(c.pos)}(${conts[i]}, ${JSON.stringify(c.name)}, false)` : `$.getIndex${this.mark(c.pos)}(${conts[i]}, ${c.key})`;
        this.line(`${tc} = $.thaw(${read});`);
        conts.push(tc);
      }
      const last = chain[chain.length - 1]!;
      const lastCont = conts[conts.length - 1]!;
      const cur = last.kind === 'Prop' ? `$.getProp${this.mark(last.pos)}(${lastCont}, ${JSON.stringify(last.name)}, false)` : `$.getIndex${this.mark(last.pos)}(${lastCont}, ${last.key})`;
      const newVal = s.op === '=' ? value : combine(cur, value);
      let acc = last.kind === 'Prop'
        ? `$.setProp${this.mark(last.pos)}(${lastCont}, ${JSON.stringify(last.name)}, ${newVal})`
        : `$.setIndex${this.mark(last.pos)}(${lastCont}, ${last.key}, ${newVal})`;
      for (let i = chain.length - 2; i >= 0; i--) {
        const c = chain[i]!;
        acc = c.kind === 'Prop'
          ? `$.setProp${this.mark(c.pos)}(${conts[i]}, ${JSON.stringify(c.name)}, ${acc})`
          : `$.setIndex${this.mark(c.pos)}(${conts[i]}, ${c.key}, ${acc})`;
      }
      this.line(`${rootRef} = ${acc};`);
      if (base.kind === 'Ident' && topLevel && this.unit.exportsValues.has(base.name)) this.emitExportUpdate(base.name, rootRef);
      return;
    }
    throw new CompileError(t.pos, 'cannot assign to this expression', 'assign to a variable, a map key, an index, or this');
  }

  // -------------------------------------------------------------- expressions as statements

  private emitExprTo(e: A.Expr, target: Target): void {
    switch (e.kind) {
      case 'If': {
        const c = this.cond(e.cond, 'if condition');
        this.line(`if (${c}) {`);
        this.indent++;
        this.emitBlockBody(e.then.body, target);
        this.indent--;
        if (e.else) {
          this.line('} else {');
          this.indent++;
          if (e.else.kind === 'Block') this.emitBlockBody(e.else.body, target);
          else this.emitExprTo(e.else, target);
          this.indent--;
          this.line('}');
        } else {
          this.line('} else {');
          this.indent++;
          this.assignTarget(target, 'undefined');
          this.indent--;
          this.line('}');
        }
        return;
      }
      case 'Block':
        this.line('{');
        this.indent++;
        this.emitBlockBody(e.body, target);
        this.indent--;
        this.line('}');
        return;
      case 'Switch':
        this.emitSwitch(e, target);
        return;
      case 'While': {
        this.line('for (;;) {');
        this.indent++;
        const c = this.cond(e.cond, 'while condition');
        this.line(`if (!${c}) break;`);
        this.emitLoopBody(e.body);
        this.indent--;
        this.line('}');
        this.assignTarget(target, 'undefined');
        return;
      }
      case 'Loop':
        this.line('for (;;) {');
        this.indent++;
        this.emitLoopBody(e.body);
        this.indent--;
        this.line('}');
        this.assignTarget(target, 'undefined');
        return;
      case 'DoLoop': {
        const label = `$do${++this.tempCounter}`;
        this.line('for (;;) {');
        this.indent++;
        this.line(`${label}: {`);
        this.indent++;
        this.emitLoopBody(e.body, label);
        this.indent--;
        this.line('}');
        const c = this.cond(e.cond, e.until ? 'until condition' : 'while condition');
        this.line(e.until ? `if (${c}) break;` : `if (!${c}) break;`);
        this.indent--;
        this.line('}');
        this.assignTarget(target, 'undefined');
        return;
      }
      case 'For': {
        const it = this.expr(e.iterable);
        const idx = e.indexName ? this.temp() : null;
        if (idx) this.line(`${idx} = -1n;`);
        const item = `$it${++this.tempCounter}`;
        this.line(`for (const ${item} of $.iterate${this.mark(e.iterable.pos)}(${it})) {`);
        this.indent++;
        this.scope = new Scope(this.scope, false);
        const v = this.declareVar(e.varName, false, e.varPos);
        this.line(`let ${v} = ${item};`);
        if (idx && e.indexName) {
          this.line(`${idx} += 1n;`);
          const iv = this.declareVar(e.indexName, false, e.indexPos ?? e.pos);
          this.line(`let ${iv} = ${idx};`);
        }
        this.emitLoopBody(e.body);
        this.scope = this.scope.parent!;
        this.indent--;
        this.line('}');
        this.assignTarget(target, 'undefined');
        return;
      }
      case 'Try': {
        this.line('try {');
        this.indent++;
        this.emitBlockBody(e.body.body, target);
        this.indent--;
        const ev = `$e${++this.tempCounter}`;
        this.line(`} catch (${ev}) {`);
        this.indent++;
        this.line(`if (!$.catchable(${ev})) throw ${ev};`);
        this.scope = new Scope(this.scope, false);
        if (e.catchVar) {
          const cv = this.declareVar(e.catchVar, false, e.catchPos ?? e.pos);
          this.line(`let ${cv} = $.caught(${ev});`);
        }
        this.emitBlockBody(e.handler.body, target);
        this.scope = this.scope.parent!;
        this.indent--;
        this.line('}');
        return;
      }
      default: {
        const js = target.kind === 'discard' ? this.expr(e) : this.valueCopy(e);
        this.assignTarget(target, js);
      }
    }
  }

  private emitLoopBody(body: A.Block, doLabel?: string): void {
    this.fc.loops.push({ doLabel });
    this.emitBlockBody(body.body, { kind: 'discard' });
    this.fc.loops.pop();
  }

  private emitSwitch(e: A.Switch, target: Target): void {
    const subj = this.temp();
    this.line(`${subj} = ${this.expr(e.subject)};`);
    const label = `$sw${++this.tempCounter}`;
    this.line(`${label}: {`);
    this.indent++;
    e.arms.forEach((arm, i) => {
      const wild = arm.patterns.some((p) => p.kind === 'Wild');
      if (wild && i !== e.arms.length - 1) throw new CompileError(arm.pos, "'_' must be the last switch arm");
      const tests = arm.patterns.map((p) => {
        if (p.kind === 'Wild') return 'true';
        if (p.kind === 'Range') return `$.matchRange(${subj}, ${p.from}n, ${p.to}n, ${p.inclusive})`;
        return `$.matchCase(${subj}, ${this.constPattern(p.value)})`;
      });
      this.line(`if (${tests.join(' || ')}) {`);
      this.indent++;
      if (arm.guard) {
        const g = this.cond(arm.guard, 'switch guard');
        this.line(`if (${g}) {`);
        this.indent++;
        this.emitExprTo(arm.body, target);
        this.line(`break ${label};`);
        this.indent--;
        this.line('}');
      } else {
        this.emitExprTo(arm.body, target);
        this.line(`break ${label};`);
      }
      this.indent--;
      this.line('}');
    });
    this.assignTarget(target, 'undefined');
    this.indent--;
    this.line('}');
  }

  private constPattern(e: A.Expr): string {
    switch (e.kind) {
      case 'Int': return `${e.value}n`;
      case 'Float': return floatLit(e.value);
      case 'Bool': return String(e.value);
      case 'Unit': return 'undefined';
      case 'Str': return JSON.stringify(e.value);
      case 'Char': return `$.char(${JSON.stringify(e.value)})`;
      case 'Unary':
        if (e.op === '-' && (e.operand.kind === 'Int' || e.operand.kind === 'Float')) return this.expr(e);
        break;
      case 'Array': return `[${e.items.map((i) => this.constPattern(i)).join(', ')}]`;
      case 'Map': return `$.map([${e.entries.map((en) => `[${JSON.stringify(en.key)}, ${this.constPattern(en.value)}]`).join(', ')}])`;
      default: break;
    }
    throw new CompileError(e.pos, 'switch cases must be literal values', 'use a guard: `x if cond => …`');
  }

  // -------------------------------------------------------------- expressions

  /** A bool-checked condition (SPEC §2.2: no truthiness). */
  private cond(e: A.Expr, what: string): string {
    if (e.kind === 'Bool') return String(e.value);
    // Operators that always give a bool need no check.
    if (isBoolValued(e)) return this.expr(e);
    return `$.asBool${this.mark(e.pos)}(${this.expr(e)}, ${JSON.stringify(what)})`;
  }

  /** An expression whose value is stored (assignment, argument, element): arrays and maps are copied. */
  private valueCopy(e: A.Expr): string {
    const js = this.expr(e);
    return aliasable(e) ? `$.copy(${js})` : js;
  }

  /** Compiles sub-expressions left to right, spilling earlier ones when a later one needs statements. */
  private exprList(es: A.Expr[], copy: boolean): string[] {
    let lastComplex = -1;
    es.forEach((e, i) => { if (needsStatements(e)) lastComplex = i; });
    return es.map((e, i) => {
      const js = copy ? this.valueCopy(e) : this.expr(e);
      if (i < lastComplex && !isTrivialJs(js)) {
        const t = this.temp();
        this.line(`${t} = ${js};`);
        return t;
      }
      return js;
    });
  }

  private expr(e: A.Expr): string {
    switch (e.kind) {
      case 'Int':
        if (e.value > 9223372036854775807n) throw new CompileError(e.pos, 'integer literal out of range');
        return `${e.value}n`;
      case 'Float': return floatLit(e.value);
      case 'Bool': return String(e.value);
      case 'Unit': return 'undefined';
      case 'Char': return `$.char(${JSON.stringify(e.value)})`;
      case 'Str': return JSON.stringify(e.value);
      case 'Template': {
        const exprs = e.parts.filter((p): p is A.Expr => typeof p !== 'string');
        const compiled = this.exprList(exprs, false);
        let k = 0;
        const parts = e.parts.map((p) => (typeof p === 'string' ? JSON.stringify(p) : `$.toStr(${compiled[k++]})`));
        return parts.length ? `(${parts.join(' + ')})` : '""';
      }
      case 'Array':
        return `[${this.exprList(e.items, true).join(', ')}]`;
      case 'Map': {
        const seen = new Set<string>();
        for (const en of e.entries) {
          if (seen.has(en.key)) throw new CompileError(en.keyPos, `duplicate map key '${en.key}'`);
          seen.add(en.key);
        }
        const vals = this.exprList(e.entries.map((en) => en.value), true);
        return `$.map([${e.entries.map((en, i) => `[${JSON.stringify(en.key)}, ${vals[i]}]`).join(', ')}])`;
      }
      case 'Closure': {
        // The `evaluate` closure of a directive's map form: named after the directive.
        const directive = this.directiveBodies.get(e);
        return directive !== undefined ? this.closure(e, directive, true) : this.closure(e, '<closure>');
      }
      case 'Ident':
        return this.ident(e);
      case 'Path':
        return this.path(e);
      case 'This':
        if (this.fc.isTopLevel) throw new CompileError(e.pos, "'this' is only available in functions called as methods");
        this.fc.usesThis = true;
        return '$this.v';
      case 'Call':
        return this.call(e);
      case 'MethodCall':
        return this.methodCall(e);
      case 'Prop': {
        const o = this.expr(e.object);
        return `$.getProp${this.mark(e.pos)}(${o}, ${JSON.stringify(e.name)}, ${e.optional})`;
      }
      case 'Index': {
        const [o, i] = this.exprList([e.object, e.index], false);
        if (e.optional) {
          const t = this.temp();
          return `((${t} = ${o}) === undefined ? undefined : $.getIndex${this.mark(e.pos)}(${t}, ${i}))`;
        }
        return `$.getIndex${this.mark(e.pos)}(${o}, ${i})`;
      }
      case 'Unary': {
        if (e.op === '-' && e.operand.kind === 'Int') {
          if (e.operand.value > 9223372036854775808n) throw new CompileError(e.operand.pos, 'integer literal out of range');
          return `(-${e.operand.value}n)`;
        }
        if (e.op === '-' && e.operand.kind === 'Float') return floatLit(-e.operand.value);
        const o = this.expr(e.operand);
        const fn = e.op === '-' ? 'neg' : e.op === '+' ? 'plus' : 'not';
        return `$.${fn}${this.mark(e.pos)}(${o})`;
      }
      case 'Binary':
        return this.binary(e);
      case 'Logical': {
        if (needsStatements(e.right)) {
          const t = this.temp();
          this.line(`${t} = ${this.cond(e.left, `left side of ${e.op}`)};`);
          this.line(e.op === '&&' ? `if (${t}) {` : `if (!${t}) {`);
          this.indent++;
          this.line(`${t} = ${this.cond(e.right, `right side of ${e.op}`)};`);
          this.indent--;
          this.line('}');
          return t;
        }
        const l = this.cond(e.left, `left side of ${e.op}`);
        const r = this.cond(e.right, `right side of ${e.op}`);
        return `(${l} ${e.op} ${r})`;
      }
      case 'Directive':
        return this.directive(e);
      case 'Object':
        return this.objectDecl(e);
      case 'Service':
        return this.serviceDecl(e);
      default: {
        // Statement-shaped expressions used as values: lower into a temp.
        const t = this.temp();
        this.emitExprTo(e, { kind: 'assign', v: t });
        return t;
      }
    }
  }

  private binary(e: A.Binary): string {
    if (e.op === '??') {
      const l = this.expr(e.left);
      const t = this.temp();
      if (needsStatements(e.right)) {
        this.line(`${t} = ${l};`);
        this.line(`if (${t} === undefined) {`);
        this.indent++;
        this.line(`${t} = ${this.expr(e.right)};`);
        this.indent--;
        this.line('}');
        return t;
      }
      return `((${t} = ${l}) !== undefined ? ${t} : ${this.expr(e.right)})`;
    }
    const [l, r] = this.exprList([e.left, e.right], false);
    const m = this.mark(e.pos);
    switch (e.op) {
      case 'in': return `$.contains${m}(${r}, ${l})`;
      case '!in': return `!$.contains${m}(${r}, ${l})`;
      case '..': return `$.range${m}(${l}, ${r}, false)`;
      case '..=': return `$.range${m}(${l}, ${r}, true)`;
      default: return `$.${BINOP_FN[e.op]}${m}(${l}, ${r})`;
    }
  }

  private ident(e: A.Ident): string {
    const b = this.prog.resolveValue(this.unit, this.scope, e);
    switch (b.kind) {
      case 'local': return b.v.js;
      case 'v1-declaration': return `$G[${JSON.stringify(b.name)}]`;
      case 'engine-constant': return `$.bi.constant(x, ${JSON.stringify(b.name)})`;
      case 'handle': return `$.bi.${b.fn}(x)`;
    }
  }

  private path(e: A.PathExpr): string {
    const b = this.prog.resolvePath(this.unit, this.scope, e);
    switch (b.kind) {
      case 'global': return this.fc.isTopLevel ? this.unit.topConsts.get(b.name)! : `$G[${JSON.stringify(b.name)}]`;
      case 'engine-path': return `$.bi.${b.fn}(x)`;
      case 'export': return `$M[${b.module}].E[${JSON.stringify(b.member)}]`;
    }
  }

  private args(args: A.Expr[]): string[] {
    return this.exprList(args, true);
  }

  /**
   * `js` waited for in async code (a generator, see the header): a call of an
   * async script function is delegated to, a promise is yielded to the stage
   * loop, and a value that is only sometimes a promise is yielded only then.
   */
  private awaitIf(isAsync: boolean, js: string, pos: A.Pos, what: 'generator' | 'promise' | 'maybe'): string {
    if (!isAsync) return js;
    if (!this.fc.async) {
      throw new CompileError(pos, this.fc.isTopLevel ? 'I/O built-ins cannot run at load' : 'I/O built-ins cannot run here',
        this.fc.isTopLevel ? 'call them inside a rule or action' : 'call I/O built-ins from rules, actions or functions, not from on_config or a map/filter callback');
    }
    if (what === 'generator') return `(yield* ${js})`;
    if (what === 'promise') return `(yield ${js})`;
    const t = this.temp();
    return `((${t} = ${js}) instanceof Promise ? (yield ${t}) : ${t})`;
  }

  private call(e: A.Call): string {
    const segs = e.callee;
    if (segs.length === 1 && segs[0] === 'Fn') return this.fnPointer(e);
    if (segs.length === 1 && (segs[0] === 'print' || segs[0] === 'debug')) {
      const [a] = this.args(e.args);
      if (e.args.length !== 1) throw new CompileError(e.pos, `${segs[0]} takes 1 argument`);
      return `$.bi.print${this.mark(e.pos)}(x, ${JSON.stringify(segs[0])}, ${a}, ${this.posId(e.pos)})`;
    }
    const r = this.prog.resolveCall(this.unit, this.scope, e);
    // A local variable holding a function pointer: `f(x)`.
    if (r.kind === 'pointer') return this.pointerCall(r.v.js, this.args(e.args), e.pos);
    const a = this.args(e.args);
    const m = this.mark(e.pos);
    switch (r.kind) {
      case 'script':
        return this.scriptCall(r, 'undefined', a, e.pos);
      case 'guest':
        if (isPointerCall(r)) return this.pointerCall(a[0]!, a.slice(1), e.pos);
        // file() reads relative to the calling file's directory: it needs its position (SPEC §7.1).
        if (r.js === 'file') return `$.bi.file${m}(x, ${a.join(', ')}, ${this.posId(e.pos)})`;
        return this.awaitIf(!!r.async && this.fc.async, `$.bi.${r.js}${m}(x${a.map((s) => `, ${s}`).join('')})`, e.pos, 'maybe');
      case 'host':
        this.hostCalls.add(r.name);
        if (r.io) return this.awaitIf(true, `$.hostAsync${m}(x, ${JSON.stringify(r.name)}, [${a.join(', ')}], ${this.posId(e.pos)})`, e.pos, 'promise');
        return `$.host${m}(x, ${JSON.stringify(r.name)}, [${a.join(', ')}], ${this.posId(e.pos)})`;
      case 'runtime':
        return `$.callGlobal${m}(x, ${JSON.stringify(r.name)}, [${a.join(', ')}])`;
    }
  }

  private fnPointer(e: A.Call): string {
    const arg = e.args[0];
    if (e.args.length !== 1 || !arg || arg.kind !== 'Str') {
      throw new CompileError(e.pos, 'Fn takes the name of a function as a string literal', 'Fn("name")');
    }
    const name = arg.value;
    const own = this.unit.fns.get(name);
    if (!own || own.size === 0) throw new CompileError(arg.pos, `Fn: no function '${name}' in this file`);
    // [arity, plain variant, async variant, does I/O]
    const entries = [...own.values()].map((f) => `[${f.arity}, ${f.jsName}, ${f.dyn ? f.jsNameAsync : f.jsName}, ${f.async}]`);
    return `$.bi.fn_ptr(x, ${JSON.stringify(name)}, [${entries.join(', ')}])`;
  }

  private methodCall(e: A.MethodCall): string {
    const argc = e.args.length;
    // Script function with this = receiver (SPEC §2.4), looked up first.
    const own = this.unit.fns.get(e.name)?.get(argc);
    const lv = assignable(e.receiver);
    if (own) {
      const recv = this.expr(e.receiver);
      const a = this.args(e.args);
      const box = this.temp();
      const callJs = this.scriptCall(scriptRef(this.unit.index, own), box, a, e.pos);
      if (own.usesThis && lv) {
        const res = this.temp();
        this.line(`${box} = { v: $.thaw(${recv}) };`);
        this.line(`${res} = ${callJs};`);
        this.writeBack(e.receiver, `${box}.v`);
        return res;
      }
      return `(${box} = { v: ${recv} }, ${callJs})`;
    }
    if (e.name === 'call') {
      const [recv, ...a] = this.exprList([e.receiver, ...e.args], true);
      return this.pointerCall(recv!, a, e.pos);
    }
    const inPlace = IN_PLACE_METHODS.has(e.name);
    const [recvRaw, ...a] = this.exprList([e.receiver, ...e.args], false);
    const copiedArgs = a.map((js, i) => (aliasable(e.args[i]!) ? `$.copy(${js})` : js));
    const maybeIo = SERVICE_METHODS.has(e.name) && this.fc.async;
    const m = this.mark(e.pos);
    if (e.optional) {
      const t = this.temp();
      this.line(`${t} = ${recvRaw};`);
      const res = this.temp();
      this.line(`if (${t} === undefined) { ${res} = undefined; } else {`);
      this.indent++;
      this.emitMethodInvoke(e, t, copiedArgs, inPlace && lv, maybeIo, m, res);
      this.indent--;
      this.line('}');
      return res;
    }
    if (inPlace && lv) {
      const res = this.temp();
      this.emitMethodInvoke(e, recvRaw, copiedArgs, true, maybeIo, m, res);
      return res;
    }
    const call = `$.callMethod${m}(x, ${recvRaw}, ${JSON.stringify(e.name)}, [${copiedArgs.join(', ')}])`;
    if (maybeIo) return `${this.awaitIf(true, `$.callMethodIo${m}(x, ${recvRaw}, ${JSON.stringify(e.name)}, [${copiedArgs.join(', ')}], ${this.posId(e.pos)})`, e.pos, 'maybe')}[0]`;
    return `${call}[0]`;
  }

  private emitMethodInvoke(e: A.MethodCall, recv: string, args: string[], writeBack: boolean, io: boolean, m: string, res: string): void {
    const pair = this.temp();
    const recvJs = writeBack ? `$.thaw(${recv})` : recv;
    const call = io
      ? this.awaitIf(true, `$.callMethodIo${m}(x, ${recvJs}, ${JSON.stringify(e.name)}, [${args.join(', ')}], ${this.posId(e.pos)})`, e.pos, 'maybe')
      : `$.callMethod${m}(x, ${recvJs}, ${JSON.stringify(e.name)}, [${args.join(', ')}])`;
    this.line(`${pair} = ${call};`);
    this.line(`${res} = ${pair}[0];`);
    if (writeBack) this.writeBack(e.receiver, `${pair}[1]`);
  }

  /** Writes a new value back to an assignable receiver (variable, property, index, this). */
  private writeBack(target: A.Expr, valueJs: string): void {
    if (target.kind === 'Ident') {
      const v = lookupVar(this.scope, target.name);
      if (!v) throw this.prog.unknownVariable(this.unit, this.scope, target);
      if (v.isConst) throw new CompileError(target.pos, `cannot modify constant '${target.name}'`);
      this.line(`${v.js} = ${valueJs};`);
      return;
    }
    if (target.kind === 'This') {
      this.fc.usesThis = true;
      this.line(`$this.v = ${valueJs};`);
      return;
    }
    if (target.kind === 'Prop' || target.kind === 'Index') {
      const synthetic: A.Assign = { kind: 'Assign', op: '=', target, value: { kind: 'Ident', name: '$$writeback', pos: target.pos }, pos: target.pos };
      const t = this.temp();
      this.line(`${t} = ${valueJs};`);
      this.scope.vars.set('$$writeback', { js: t, isConst: true });
      this.emitAssign(synthetic, false);
      this.scope.vars.delete('$$writeback');
    }
  }

  /**
   * A `|…|` function. It is async when it calls I/O built-ins; a directive
   * body (run only by the stage loop) is also async when it may do I/O
   * through pointers or services, so `rule "r" || f.call()` can await.
   */
  private closure(e: A.Closure, name: string, directiveBody = false): string {
    const uses = closureIo(this.prog, this.unit, this.scope, e);
    const isAsync = uses.io || (directiveBody && uses.dyn);
    const savedOut = this.out;
    const savedIndent = this.indent;
    this.out = [];
    this.indent = 0;
    this.withFunction(isAsync, false, e.params, e.body,
      (ps) => `function${isAsync ? '*' : ''} (x, $this${ps.map((p) => `, ${p}`).join('')}) {`, { trackDepth: true });
    const fnText = this.out.join('\n');
    this.out = savedOut;
    this.indent = savedIndent;
    return `$.bi.closure(${JSON.stringify(name)}, ${fnText}, ${e.params.length}, ${isAsync})`;
  }

  private directive(e: A.Directive): string {
    if (!e.name) throw new CompileError(e.namePos, `${e.directive} needs a non-empty name`);
    let body: string;
    if (e.body.kind === 'Closure') {
      if (e.body.params.length) throw new CompileError(e.body.pos, `a ${e.directive} body takes no parameters`, `write ${e.directive} "${e.name}" || …`);
      body = this.closure(e.body, e.name, true);
    } else if (e.body.kind === 'Map') {
      const ev = e.body.entries.find((en) => en.key === 'evaluate');
      if (!ev) throw new CompileError(e.body.pos, `${e.directive} "${e.name}" needs an 'evaluate' key`, 'rule "name" #{ evaluate: || expr }');
      if (ev.value.kind === 'Closure' && ev.value.params.length) {
        throw new CompileError(ev.value.pos, `a ${e.directive} body takes no parameters`);
      }
      this.directiveBodies.set(ev.value, e.name);
      body = this.expr(e.body);
    } else {
      body = this.expr(e.body);
    }
    return `$.bi.directive${this.mark(e.pos)}(x, ${JSON.stringify(e.directive)}, ${JSON.stringify(e.name)}, ${body}, ${this.posId(e.pos)})`;
  }

  private objectDecl(e: A.ObjectDecl): string {
    const type = declarationType(e.type);
    const element = e.element === undefined ? undefined : declarationType(e.element);
    // The type is syntax: check it here, at its position, rather than at load.
    if (!OBJECT_TYPES.has(type)) {
      throw new CompileError(e.typePos, `unknown object type '${e.type}'`, `types are ${[...OBJECT_TYPES].join(' ')}`);
    }
    if (type === 'file' && !element) {
      throw new CompileError(e.typePos, 'object type file needs an element type', `e.g. object ${e.name} file:fqdn = "list.txt";`);
    }
    if (element !== undefined && type !== 'file') {
      throw new CompileError(e.typePos, `object type ${e.type} takes no element type`);
    }
    if (element !== undefined && !ELEMENT_TYPES.has(element)) {
      throw new CompileError(e.typePos, `unknown element type '${e.element}'`, `element types are ${[...ELEMENT_TYPES].join(' ')}`);
    }
    const v = this.expr(e.value);
    // An invalid value is reported at the value (SPEC §6.1: a load error at load).
    const call = `$.bi.v1_object${this.mark(e.value.pos)}(x, ${JSON.stringify(type)}, ${JSON.stringify(element ?? null)}, ${v}, ${this.posId(e.value.pos)})`;
    return this.bindDecl(e.name, e.namePos, call);
  }

  private serviceDecl(e: A.ServiceDecl): string {
    const v = this.expr(e.value);
    const call = `$.bi.v1_service${this.mark(e.pos)}(x, ${JSON.stringify(e.serviceKind)}, ${v}, ${this.posId(e.kindPos)})`;
    return this.bindDecl(e.name, e.namePos, call);
  }

  private bindDecl(name: string, pos: A.Pos, valueJs: string): string {
    const top = this.unit.topConsts.get(name);
    if (this.fc.isTopLevel && top) {
      return `(${top} = $G[${JSON.stringify(name)}] = $E[${JSON.stringify(name)}] = ${valueJs})`;
    }
    const js = this.declareVar(name, true, pos);
    this.line(`let ${js};`);
    return `(${js} = ${valueJs})`;
  }
}


// ------------------------------------------------------------------ AST utilities

function floatLit(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
  if (Object.is(v, -0)) return '-0';
  return String(v);
}


/** Whether reading this expression could alias a stored array or map. */
function aliasable(e: A.Expr): boolean {
  return e.kind === 'Ident' || e.kind === 'Prop' || e.kind === 'Index' || e.kind === 'Path' || e.kind === 'This';
}

function assignable(e: A.Expr): boolean {
  if (e.kind === 'Ident' || e.kind === 'This') return true;
  if (e.kind === 'Prop' || e.kind === 'Index') return !e.optional && assignable(e.object);
  return false;
}

function isTrivialJs(js: string): boolean {
  return /^(?:[\w$]+|-?\d+n?|"(?:[^"\\]|\\.)*"|true|false|undefined)$/.test(js);
}

/** True if compiling `e` emits statements (if/switch/blocks/loops/try as values, or short-circuits over them). */
function needsStatements(e: A.Expr): boolean {
  switch (e.kind) {
    case 'If': case 'Switch': case 'Block': case 'While': case 'DoLoop': case 'Loop': case 'For': case 'Try':
      return true;
    case 'Template': return e.parts.some((p) => typeof p !== 'string' && needsStatements(p));
    case 'Array': return e.items.some(needsStatements);
    case 'Map': return e.entries.some((en) => needsStatements(en.value));
    case 'Call': return e.args.some(needsStatements);
    case 'MethodCall': return true; // in-place write-back and script methods emit statements
    case 'Prop': return needsStatements(e.object);
    case 'Index': return needsStatements(e.object) || needsStatements(e.index);
    case 'Unary': return needsStatements(e.operand);
    case 'Binary': return needsStatements(e.left) || needsStatements(e.right);
    case 'Logical': return needsStatements(e.left) || needsStatements(e.right);
    case 'Object': case 'Service': return needsStatements(e.value);
    default: return false;
  }
}


/** Expressions whose value is a bool whatever their operands (or an error). */
function isBoolValued(e: A.Expr): boolean {
  if (e.kind === 'Logical') return true;
  if (e.kind === 'Unary') return e.op === '!';
  if (e.kind === 'Binary') return ['==', '!=', '<', '<=', '>', '>=', 'in', '!in'].includes(e.op);
  return false;
}
