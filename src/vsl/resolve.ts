// Compiler pass 1: name resolution (SPEC §2.3, §2.10). Closures capture
// nothing, so what a name means is known before any code runs. This pass
// builds one Unit per file — its functions by name and arity, its top-level
// constants, lets, exports and import aliases — and answers the question
// every later pass asks: "in this file, what does `a::b::f` with N
// arguments call?" (a script function, a guest or host built-in, or a
// runtime global). Local variables live in Scopes, which the emitter opens
// and closes as it walks blocks; the lookup rules for them are here.

import type * as A from './ast.js';
import { forEachChild } from './ast.js';
import type { DiagnosticList } from './diagnostics.js';
import type { LoadedSources, SourceFile } from './loader.js';
import { ENGINE_CONSTANTS, ENGINE_PATHS, GUEST_BUILTINS, HOST_ALIASES, V1_GLOBAL_NAMESPACES, V1_HANDLE_VALUES, V2_CODE_NAMES, arityOk, arityText, type BuiltinRef, type HostBuiltinRef } from './catalog.js';
import { hasGlobalFunction } from './guest/methods.js';

export interface CompileInput {
  sources: LoadedSources;
  /** Stdlib files (already loaded), each with its namespace ('' = global names). */
  stdlib: Array<{ file: SourceFile; namespace: string }>;
  /** Host built-ins by full name. */
  host: Map<string, HostBuiltinRef>;
}

/** A load error found while compiling; passes throw it and the driver reports it. */
export class CompileError extends Error {
  constructor(
    readonly pos: A.Pos,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * A catalog entry by name. The catalogs are plain objects: a script name like
 * `constructor` or `toString` must not find Object.prototype's members.
 */
export function entry<T>(table: Record<string, T>, name: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(table, name) ? table[name] : undefined;
}

/** A top-level `fn`. The flags below `isPrivate` are filled in by check.ts. */
export interface FnInfo {
  name: string;
  arity: number;
  jsName: string;
  node: A.FnDecl;
  isPrivate: boolean;
  usesThis: boolean;
  /** Does I/O: compiled async only. */
  async: boolean;
  /** May do I/O through a pointer or service call: compiled twice (see emit.ts). */
  dyn: boolean;
  /** Name of the async variant of a `dyn` function. */
  jsNameAsync: string;
  /** Callees for the async fixpoint. */
  calls: Array<{ module: number; key: string }>;
  directAsync: boolean;
  directDyn: boolean;
}

/** One source file (a policy module or a stdlib file). */
export interface Unit {
  index: number;
  file: SourceFile;
  stdlib: boolean;
  namespace: string | null;
  fns: Map<string, Map<number, FnInfo>>;
  topConsts: Map<string, string>; // name -> js var (assigned by the emitter)
  /** v1 `object`/`service` declarations: also visible by bare name inside functions (vSMTP 1.x). */
  v1Decls: Set<string>;
  topLets: Set<string>;
  exportsValues: Map<string, string>; // export name -> local name
  topImports: Map<string, number>; // alias -> module index
}

export interface VarInfo {
  js: string;
  isConst: boolean;
}

/** A block's locals. A boundary scope is a function's outermost: names beyond it are invisible (SPEC §2.3). */
export class Scope {
  vars = new Map<string, VarInfo>();
  imports = new Map<string, number>();
  constructor(
    readonly parent: Scope | null,
    readonly boundary: boolean,
  ) {}
}

export interface ScriptRef {
  kind: 'script';
  module: number;
  name: string;
  arity: number;
  jsName: string;
  jsNameAsync: string;
  async: boolean;
  dyn: boolean;
  usesThis: boolean;
}

export function scriptRef(module: number, f: FnInfo): ScriptRef {
  return {
    kind: 'script', module, name: f.name, arity: f.arity, jsName: f.jsName, jsNameAsync: f.jsNameAsync,
    async: f.async, dyn: f.dyn, usesThis: f.usesThis,
  };
}

/** What a named call resolves to. */
export type Resolved =
  | ScriptRef
  | (BuiltinRef & { async: boolean })
  | { kind: 'runtime'; name: string; async: false };

/** What a bare name read as a value means. */
export type ValueBinding =
  | { kind: 'local'; v: VarInfo }
  /** A v1 `object`/`service` declaration of this file, read by name inside a function (vSMTP 1.x). */
  | { kind: 'v1-declaration'; name: string }
  | { kind: 'engine-constant'; name: string }
  /** vSMTP 1.0–1.1 `ctx`, `msg`, `srv` as variables: the handle function of the guest. */
  | { kind: 'handle'; fn: string };

/** What a path `a::b` read as a value means. */
export type PathBinding =
  | { kind: 'global'; name: string }
  | { kind: 'engine-path'; fn: string }
  | { kind: 'export'; module: number; member: string };

/** What a call by name means: a resolved function, or a local holding a function pointer. */
export type CallBinding = Resolved | { kind: 'pointer'; v: VarInfo };

/** Names that are a load error as identifiers (SPEC §2.1). */
export const RESERVED = new Set([
  'var', 'static', 'shared', 'goto', 'exit', 'match', 'case', 'public', 'protected', 'new', 'use', 'with', 'module',
  'package', 'super', 'thread', 'spawn', 'go', 'await', 'async', 'sync', 'yield', 'default', 'void', 'null', 'nil', 'eval',
]);

/** vSMTP v3 hook names (`fn on_connect(ctx)`), refused (SPEC §1.1). */
const V3_HOOKS = new Set([
  'on_connect', 'on_helo', 'on_ehlo', 'on_auth', 'on_authenticate', 'on_mail', 'on_mail_from', 'on_rcpt', 'on_rcpt_to',
  'on_data', 'on_message', 'on_preq', 'on_pre_queue', 'on_postq', 'on_post_queue', 'on_delivery', 'on_deliver',
]);

/** The whole policy's names: every unit, declared, and the lookups over them. */
export class Program {
  readonly units: Unit[] = [];
  readonly byPath = new Map<string, Unit>();
  private readonly stdlibNs = new Map<string, Unit>();
  private readonly globalStdlib: Unit[] = [];

  constructor(readonly input: CompileInput, private readonly diagnostics: DiagnosticList) {
    const all: Array<{ file: SourceFile; stdlib: boolean; namespace: string | null }> = [
      ...input.stdlib.map((s) => ({ file: s.file, stdlib: true, namespace: s.namespace })),
      ...input.sources.files.map((f) => ({ file: f, stdlib: false, namespace: null })),
    ];
    for (const f of all) {
      const unit: Unit = {
        index: this.units.length, file: f.file, stdlib: f.stdlib, namespace: f.namespace,
        fns: new Map(), topConsts: new Map(), v1Decls: new Set(), topLets: new Set(), exportsValues: new Map(), topImports: new Map(),
      };
      this.units.push(unit);
      if (!f.stdlib) this.byPath.set(f.file.path, unit);
      if (f.stdlib) {
        if (f.namespace) this.stdlibNs.set(f.namespace, unit);
        else this.globalStdlib.push(unit);
      }
    }
    for (const u of this.units) this.declare(u);
  }

  /** main.vsl's unit. */
  get root(): Unit | undefined {
    return this.byPath.get(this.input.sources.root.path);
  }

  /** A function by module and `name/arity` key. */
  fn(module: number, key: string): FnInfo | undefined {
    const [name, arity] = key.split('/');
    return this.units[module]!.fns.get(name!)?.get(Number(arity));
  }

  /** The module an `import` statement of unit `u` names, if it loaded. */
  importTarget(u: Unit, s: A.Import): Unit | undefined {
    const target = u.file.imports.find((i) => i.node === s)?.target;
    return target ? this.byPath.get(target) : undefined;
  }

  // ---------------------------------------------------------------- declarations

  private declare(u: Unit): void {
    const seenFn = new Map<string, A.FnDecl>();
    for (const s of u.file.program.body) {
      switch (s.kind) {
        case 'Fn': {
          if (!u.stdlib && s.params.length === 1 && V3_HOOKS.has(s.name)) {
            // SPEC §1.1: the v3 hook style is out of scope and a load error.
            this.diagnostics.error(s.namePos, `the vSMTP v3 hook style (fn ${s.name}(ctx)) is not supported`,
              'write the rules in the stage map: #{ connect: [ rule "…" || … ], … }');
          }
          const key = `${s.name}/${s.params.length}`;
          const prev = seenFn.get(key);
          if (prev) {
            this.diagnostics.error(s.namePos, `function '${s.name}' with ${s.params.length} parameter(s) is defined twice (first at line ${prev.namePos.line})`,
              'functions may be overloaded by number of parameters only');
            continue;
          }
          seenFn.set(key, s);
          let byArity = u.fns.get(s.name);
          if (!byArity) u.fns.set(s.name, (byArity = new Map()));
          byArity.set(s.params.length, {
            name: s.name, arity: s.params.length, jsName: `F_${s.name}$${s.params.length}`, node: s,
            isPrivate: s.isPrivate, usesThis: false, async: false, calls: [], directAsync: false,
            dyn: false, directDyn: false, jsNameAsync: `F_${s.name}$${s.params.length}$a`,
          });
          break;
        }
        case 'Let':
          if (s.isConst) u.topConsts.set(s.name, '');
          else u.topLets.add(s.name);
          if (s.exported) u.exportsValues.set(s.name, s.name);
          break;
        case 'ExportName':
          u.exportsValues.set(s.as ?? s.name, s.name);
          break;
        case 'Import':
          if (s.alias) {
            const tu = this.importTarget(u, s);
            if (tu) u.topImports.set(s.alias, tu.index);
          }
          break;
        case 'ExprStmt':
          // v1 `object`/`service` declarations, nested ones included, are top-level constants (SPEC §6.2).
          forEachDecl(s.expr, (d) => {
            u.topConsts.set(d.name, '');
            u.v1Decls.add(d.name);
            u.exportsValues.set(d.name, d.name);
          });
          break;
        default:
          break;
      }
    }
  }

  // ---------------------------------------------------------------- calls by name

  /**
   * Resolves a call by name, independent of local variables. Returns null
   * when nothing matches (the caller reports the error or tries a dynamic call).
   * `scope` adds the import aliases of enclosing blocks.
   */
  resolveStatic(u: Unit, segments: string[], argc: number, scope: Scope | null): Resolved | null {
    if (segments.length === 1) {
      const name = segments[0]!;
      const own = u.fns.get(name)?.get(argc);
      if (own) return scriptRef(u.index, own);
      return this.resolveGlobal(name, argc);
    }
    // Namespaced: an import alias chain first.
    const head = segments[0]!;
    const modIndex = this.aliasModule(u, head, scope);
    if (modIndex !== undefined) {
      const target = this.followAliases(modIndex, segments.slice(1, -1));
      if (target === null) return null;
      const name = segments[segments.length - 1]!;
      const f = this.units[target]!.fns.get(name)?.get(argc);
      if (f && !f.isPrivate) return scriptRef(target, f);
      return null;
    }
    if (segments.length === 2) {
      const ns = this.stdlibNs.get(head);
      const name = segments[1]!;
      if (ns) {
        const f = ns.fns.get(name)?.get(argc);
        if (f && !f.isPrivate) return scriptRef(ns.index, f);
      }
      // vSMTP 1.x `vsl::f()` and `sys::f()` are the global f; in stdlib/, sys:: names internal primitives.
      if (V1_GLOBAL_NAMESPACES.includes(head) && !(head === 'sys' && u.stdlib)) return this.resolveGlobal(name, argc);
      return this.resolveBuiltin(`${head}::${name}`, argc);
    }
    return null;
  }

  /** A global name: a stdlib function written in vSL, else a built-in. */
  private resolveGlobal(name: string, argc: number): Resolved | null {
    for (const su of this.globalStdlib) {
      const f = su.fns.get(name)?.get(argc);
      if (f && !f.isPrivate) return scriptRef(su.index, f);
    }
    return this.resolveBuiltin(name, argc);
  }

  private resolveBuiltin(name: string, argc: number): Resolved | null {
    const guest = entry(GUEST_BUILTINS, name);
    if (guest && arityOk(guest.arity, argc)) return { ...guest, async: !!guest.async };
    const hostName = entry(HOST_ALIASES, name) ?? name;
    const host = this.input.host.get(hostName);
    if (host && arityOk(host.arity, argc)) return { ...host, async: host.io };
    if (!name.includes('::') && hasGlobalFunction(name, argc)) return { kind: 'runtime', name, async: false };
    return null;
  }

  // ---------------------------------------------------------------- names where they are used

  /**
   * A bare name read as a value, where `scope` is (SPEC §2.3): a visible
   * local, else a v1 declaration, an engine constant or a v1 handle;
   * anything else is a CompileError saying why the name is not there.
   */
  resolveValue(u: Unit, scope: Scope, e: A.Ident): ValueBinding {
    const v = lookupVar(scope, e.name);
    if (v) return { kind: 'local', v };
    // vSMTP 1.x scripts read their object and service declarations by bare
    // name inside functions and rules; they are immutable, as global::NAME.
    if (u.v1Decls.has(e.name)) return { kind: 'v1-declaration', name: e.name };
    if (ENGINE_CONSTANTS.includes(e.name)) return { kind: 'engine-constant', name: e.name };
    const handle = entry(V1_HANDLE_VALUES, e.name);
    if (handle !== undefined) return { kind: 'handle', fn: handle };
    throw this.unknownVariable(u, scope, e);
  }

  /** Why `e` names no variable here. */
  unknownVariable(u: Unit, scope: Scope, e: A.Ident): CompileError {
    if (u.topLets.has(e.name) || u.topConsts.has(e.name)) {
      return new CompileError(e.pos,
        `${e.name} is not visible here: functions do not capture; pass it as a parameter or use global::${e.name}`,
        u.topLets.has(e.name) ? `only top-level 'const' and 'object' values are reachable as global::${e.name}; make it a const` : undefined);
    }
    if (visibleBeyondBoundary(scope, e.name)) {
      return new CompileError(e.pos, `${e.name} is not visible here: functions do not capture; pass it as a parameter or use global::${e.name}`);
    }
    if (RESERVED.has(e.name)) return new CompileError(e.pos, `'${e.name}' is a reserved word`);
    if (u.fns.has(e.name) || entry(GUEST_BUILTINS, e.name) || this.input.host.has(e.name)) {
      return new CompileError(e.pos, `'${e.name}' is a function, not a value`, `call it: ${e.name}(…), or make a pointer: Fn("${e.name}")`);
    }
    return new CompileError(e.pos, `unknown variable '${e.name}'`);
  }

  /** `global::NAME`, an engine path (`cfg::server`) or an imported module's export (`doe::internal_net`). */
  resolvePath(u: Unit, scope: Scope, e: A.PathExpr): PathBinding {
    const segs = e.segments;
    const full = segs.join('::');
    if (segs[0] === 'global' && segs.length === 2) {
      const name = segs[1]!;
      if (!u.topConsts.has(name)) {
        throw new CompileError(e.pos, `global::${name} is not a top-level constant of this file`,
          u.topLets.has(name) ? `'${name}' is a let; declare it with const to reach it from functions` : undefined);
      }
      return { kind: 'global', name };
    }
    const enginePath = entry(ENGINE_PATHS, full);
    if (enginePath) return { kind: 'engine-path', fn: enginePath };
    const head = segs[0]!;
    const alias = this.aliasModule(u, head, scope);
    if (alias !== undefined) {
      const target = this.followAliases(alias, segs.slice(1, -1));
      const member = segs[segs.length - 1]!;
      if (target === null) throw new CompileError(e.pos, `unknown module path '${full}'`);
      const tu = this.units[target]!;
      if (tu.topImports.has(member) && !tu.exportsValues.has(member)) {
        throw new CompileError(e.pos, `'${full}' is a module, not a value`, `use ${full}::name`);
      }
      if (!tu.exportsValues.has(member)) {
        const hint = tu.fns.has(member) ? `'${member}' is a function: call it as ${full}(…)` : undefined;
        throw new CompileError(e.pos, `module '${tu.file.display}' has no exported value '${member}'`, hint);
      }
      return { kind: 'export', module: target, member };
    }
    if (V2_CODE_NAMES.includes(segs[1] ?? '') && head === 'code') {
      throw new CompileError(e.pos, `'${full}' is a function`, `call it: ${full}()`);
    }
    throw new CompileError(e.pos, `unknown name '${full}'`, u.topLets.has(head) || lookupVar(scope, head) ? undefined : `is '${head}' an import alias? import "…" as ${head};`);
  }

  /** A call by name where `scope` is; a CompileError with the reason (arity, unknown name) when it names nothing. */
  resolveCall(u: Unit, scope: Scope, e: A.Call): CallBinding {
    const segs = e.callee;
    const r = this.resolveStatic(u, segs, e.args.length, scope);
    if (r) return r;
    if (segs.length === 1) {
      const v = lookupVar(scope, segs[0]!);
      if (v) return { kind: 'pointer', v };
    }
    const hint = this.arityHint(u, segs, e.args.length, scope);
    if (hint) throw new CompileError(e.pos, hint);
    if (segs[0] === 'delegate') throw new CompileError(e.pos, 'delegate is not supported');
    const full = segs.join('::');
    throw new CompileError(e.pos, `unknown function '${full}'`, suggestFunction(full, this.callableNames(u)));
  }

  /** Names a call may resolve to besides the guest table: host built-ins, stdlib and the file's functions (for "did you mean"). */
  private callableNames(u: Unit): string[] {
    const names = [...this.input.host.keys(), ...u.fns.keys()];
    for (const su of this.globalStdlib) names.push(...su.fns.keys());
    for (const [ns, su] of this.stdlibNs) names.push(...[...su.fns.keys()].map((n) => `${ns}::${n}`));
    return names;
  }

  /** The module an alias names in unit `u`: a block-level import first, then the file's. */
  aliasModule(u: Unit, alias: string, scope: Scope | null): number | undefined {
    return lookupImport(scope, alias) ?? u.topImports.get(alias);
  }

  /** Arity mismatch hint for a name that exists with other arities. */
  arityHint(u: Unit, segments: string[], argc: number, scope: Scope | null): string | null {
    const name = segments[segments.length - 1]!;
    // `vsl::f` and `sys::f` are the global f (see resolveStatic); sys:: primitives are for stdlib/ only.
    if (segments.length === 2 && V1_GLOBAL_NAMESPACES.includes(segments[0]!) && !(segments[0] === 'sys' && u.stdlib)
      && this.aliasModule(u, segments[0]!, scope) === undefined) {
      return this.arityHint(u, [name], argc, scope);
    }
    if (segments.length === 1) {
      const own = u.fns.get(name);
      if (own && own.size) return `'${name}' takes ${[...own.keys()].join(' or ')} argument(s), not ${argc}`;
      const guest = entry(GUEST_BUILTINS, name);
      if (guest) return `'${name}' takes ${arityText(guest.arity)} argument(s), not ${argc}`;
      for (const su of this.globalStdlib) {
        const fa = su.fns.get(name);
        if (fa && fa.size) return `'${name}' takes ${[...fa.keys()].join(' or ')} argument(s), not ${argc}`;
      }
    } else {
      // A script function of a stdlib namespace or of an imported module.
      const head = segments[0]!;
      const alias = this.aliasModule(u, head, scope);
      const target = alias !== undefined ? this.followAliases(alias, segments.slice(1, -1)) : segments.length === 2 ? this.stdlibNs.get(head)?.index ?? null : null;
      const fa = target !== null ? this.units[target]!.fns.get(name) : undefined;
      const visible = fa ? [...fa.values()].filter((f) => !f.isPrivate).map((f) => f.arity) : [];
      if (visible.length) return `'${segments.join('::')}' takes ${visible.join(' or ')} argument(s), not ${argc}`;
    }
    const full = segments.join('::');
    const host = this.input.host.get(entry(HOST_ALIASES, full) ?? full);
    if (host) return `'${full}' takes ${arityText(host.arity)} argument(s), not ${argc}`;
    const guest = entry(GUEST_BUILTINS, full);
    if (guest) return `'${full}' takes ${arityText(guest.arity)} argument(s), not ${argc}`;
    return null;
  }

  /** `a::b::c`: from module `start`, follows the sub-module aliases `rest`. */
  followAliases(start: number, rest: string[]): number | null {
    let m = start;
    for (const seg of rest) {
      const next = this.units[m]!.topImports.get(seg);
      if (next === undefined) return null;
      m = next;
    }
    return m;
  }
}

// ---------------------------------------------------------------- locals

export function lookupImport(scope: Scope | null, alias: string): number | undefined {
  let s = scope;
  while (s) {
    const m = s.imports.get(alias);
    if (m !== undefined) return m;
    s = s.parent;
  }
  return undefined;
}

/** A local visible from `scope`: up to and including the function's boundary scope. */
export function lookupVar(scope: Scope, name: string): VarInfo | null {
  let s: Scope | null = scope;
  while (s) {
    const v = s.vars.get(name);
    if (v) return v;
    if (s.boundary) break;
    s = s.parent;
  }
  return null;
}

/** Whether `name` is a local of an enclosing function or block that a closure cannot see (SPEC §2.3). */
export function visibleBeyondBoundary(scope: Scope, name: string): boolean {
  let s: Scope | null = scope;
  let crossed = false;
  while (s) {
    if (crossed && s.vars.has(name)) return true;
    if (s.boundary) crossed = true;
    s = s.parent;
  }
  return false;
}

function forEachDecl(e: A.Expr, cb: (d: A.ObjectDecl | A.ServiceDecl) => void): void {
  const visitE = (n: A.Expr | undefined): void => {
    if (!n) return;
    if (n.kind === 'Closure') return;
    if (n.kind === 'Object' || n.kind === 'Service') cb(n);
    forEachChild(n, visitE, () => undefined);
  };
  visitE(e);
}

/** A "did you mean" for an unknown function name. */
export function suggestFunction(full: string, more: string[] = []): string | undefined {
  const known = [...Object.keys(GUEST_BUILTINS), ...Object.keys(HOST_ALIASES), ...more].filter((k) => !k.startsWith('sys::'));
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = levenshtein(k, full);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best ? `did you mean ${best}?` : undefined;
}

/** The edit distance of two (short) names; exact, as callers compare it with their own thresholds. */
export function levenshtein(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i]![j] = Math.min(dp[i - 1]![j]! + 1, dp[i]![j - 1]! + 1, dp[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return dp[a.length]![b.length]!;
}
