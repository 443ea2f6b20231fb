// Compiler pass 2: check. Runs after resolution, before emission:
//
//   1. Async analysis. A function that calls an I/O built-in, directly or
//      through other script functions, is "async" (compiled to a generator,
//      see emit.ts); one whose only possible I/O is dynamic — a function
//      pointer call or a service method (`get set rm run`) — is "dyn"
//      (compiled twice). Both are fixpoints over the call graph.
//   2. The lint (SPEC §11.2): load errors and warnings that need only the
//      syntax tree and the resolved names — on_config doing I/O, actions
//      ending in a status, rules that cannot return one, CIDR literals with
//      host bits, unused imports, unsupported vSMTP calls — and the facts the loader checks once the
//      stage map is known (data files named by literals, the stage map's
//      positions, the names the policy calls); stageWarnings() turns those
//      into the stage-map warnings.
//
// Every walk uses the one tree walker of ast.ts.

import path from 'node:path';
import * as A from './ast.js';
import type { Diagnostic, DiagnosticList } from './diagnostics.js';
import { V1_GLOBAL_NAMESPACES } from './catalog.js';
import type { FnInfo, Program, Resolved, Scope, Unit } from './resolve.js';
import { formatCidr, parseCidr } from './values/net.js';

/** Methods that may be I/O when the receiver is a service (SPEC §7.12). */
export const SERVICE_METHODS = new Set(['run', 'get', 'set', 'rm']);

/** `call(f, …)`: a function-pointer call spelled as a global. */
export function isPointerCall(r: { kind: string; js?: string }): boolean {
  return r.kind === 'guest' && r.js === 'call';
}

// ---------------------------------------------------------------- 1. async analysis

/** Fills in `usesThis`, `async` and `dyn` of every top-level function. */
export function analyseAsync(prog: Program): void {
  for (const u of prog.units) {
    for (const byArity of u.fns.values()) for (const f of byArity.values()) analyseCalls(prog, u, f);
  }
  // First what surely does I/O, then what may (through a callee that may).
  for (const prop of ['async', 'dyn'] as const) {
    let changed = true;
    while (changed) {
      changed = false;
      for (const f of allFns(prog)) {
        if (f[prop]) continue;
        if (f.calls.some((c) => prog.fn(c.module, c.key)?.[prop])) {
          f[prop] = true;
          changed = true;
        }
      }
    }
  }
  for (const f of allFns(prog)) if (f.async) f.dyn = false;
}

function* allFns(prog: Program): Iterable<FnInfo> {
  for (const u of prog.units) for (const byArity of u.fns.values()) yield* byArity.values();
}

function analyseCalls(prog: Program, u: Unit, f: FnInfo): void {
  f.usesThis = usesThis(f.node.body);
  walkBody(f.node.body, (e) => {
    if (e.kind === 'Call') {
      const r = prog.resolveStatic(u, e.callee, e.args.length, null);
      // Unresolved: a function pointer held in a variable (or an error reported later).
      if (!r) f.directDyn = true;
      else if (r.kind === 'script') f.calls.push({ module: r.module, key: `${r.name}/${r.arity}` });
      else if (isPointerCall(r)) f.directDyn = true;
      else if (r.async) f.directAsync = true;
    } else if (e.kind === 'MethodCall') {
      if (SERVICE_METHODS.has(e.name) || e.name === 'call') f.directDyn = true;
      // `x.f()` may call a script `fn f` of this file with `this = x`.
      const fa = u.fns.get(e.name);
      if (fa) f.calls.push(...[...fa.values()].map((fi) => ({ module: u.index, key: `${fi.name}/${fi.arity}` })));
    }
  });
  f.async = f.directAsync;
  f.dyn = f.directDyn;
}

/**
 * What a `|…|` closure's own body (not its nested closures) may do: I/O for
 * sure, or I/O through pointers and services. Names resolve in `scope`,
 * where the closure is written.
 */
export function closureIo(prog: Program, u: Unit, scope: Scope, e: A.Closure): { io: boolean; dyn: boolean } {
  const out = { io: false, dyn: false };
  const classify = (r: Resolved | null): 'io' | 'dyn' | 'none' => {
    if (!r) return 'dyn'; // a pointer in a variable (or an error reported when the call is compiled)
    if (r.kind === 'script') return r.async ? 'io' : r.dyn ? 'dyn' : 'none';
    if (isPointerCall(r)) return 'dyn';
    return r.async ? 'io' : 'none';
  };
  walkExpr(e.body, (n) => {
    if (n.kind === 'Call') {
      const c = classify(prog.resolveStatic(u, n.callee, n.args.length, scope));
      if (c === 'io') out.io = true;
      else if (c === 'dyn') out.dyn = true;
    }
    if (n.kind === 'MethodCall' && (SERVICE_METHODS.has(n.name) || n.name === 'call')) out.dyn = true;
  });
  return out;
}

/** Whether a function body reads or writes `this` (a closure's `this` is its own). */
function usesThis(body: A.Block): boolean {
  let found = false;
  walkBody(body, (e) => { if (e.kind === 'This') found = true; });
  return found;
}

/** Every expression of a function body, not entering closures. */
function walkBody(body: A.Block, onExpr: (e: A.Expr) => void): void {
  const visitE = (e: A.Expr | undefined): void => {
    if (!e || e.kind === 'Closure') return;
    onExpr(e);
    A.forEachChild(e, visitE, visitS);
  };
  const visitS = (s: A.Stmt): void => A.forEachStmtChild(s, visitE, visitS);
  body.body.forEach(visitS);
}

/** Every expression under `root`, not entering closures nested in it. */
function walkExpr(root: A.Expr, onExpr: (e: A.Expr) => void): void {
  const visitE = (e: A.Expr | undefined): void => {
    if (!e || (e.kind === 'Closure' && e !== root)) return;
    onExpr(e);
    A.forEachChild(e, visitE, visitS);
  };
  const visitS = (s: A.Stmt): void => A.forEachStmtChild(s, visitE, visitS);
  visitE(root);
}

// ---------------------------------------------------------------- 2. the lint

export interface LiteralDataFile {
  fn: string;
  path: string;
  spec: string;
  dir: string;
  pos: A.Pos;
}

/** What the lint found that the loader needs. */
export interface LintFacts {
  /** File paths named by string literals in file()/data-file built-ins (watched, validated at load). */
  literalDataFiles: LiteralDataFile[];
  /** Positions of the stage-map keys when main.vsl ends in a map literal. */
  stageMapPos: A.Pos | null;
  stageKeyPos: Record<string, A.Pos>;
  /** Names the policy's own files call, both in full (`mapping::check`) and by their last segment. */
  calledNames: Set<string>;
}

export function lint(prog: Program, diagnostics: DiagnosticList): LintFacts {
  const facts: LintFacts = { literalDataFiles: [], stageMapPos: null, stageKeyPos: {}, calledNames: new Set() };
  for (const u of prog.units) {
    const onConfig = u.fns.get('on_config')?.get(1);
    if (onConfig?.async) {
      diagnostics.error(onConfig.node.namePos, 'on_config cannot call I/O built-ins', 'on_config runs at load, before the server is up');
    }
    const usedAliases = new Set<string>();
    A.walkAll(u.file.program.body, (e) => {
      if (e.kind === 'Call') {
        if (e.callee.length > 1) usedAliases.add(e.callee[0]!);
        if (!u.stdlib) {
          facts.calledNames.add(e.callee.join('::'));
          facts.calledNames.add(e.callee[e.callee.length - 1]!);
        }
        noteCallDataFile(u, e, facts);
        if (!u.stdlib) unsupportedCallWarning(e, diagnostics);
      }
      if (e.kind === 'Path' && e.segments.length > 1) usedAliases.add(e.segments[0]!);
      if (e.kind === 'Directive') directiveWarnings(e, diagnostics);
      if (e.kind === 'Object' && e.type === 'file' && e.element && e.value.kind === 'Str') {
        noteDataFile(u, facts, 'file', e.value, e.value.value);
      }
      if (!u.stdlib) cidrWarning(e, diagnostics);
    });
    if (!u.stdlib) {
      for (const s of u.file.program.body) {
        if (s.kind === 'Import' && s.alias && !usedAliases.has(s.alias) && !u.exportsValues.has(s.alias)) {
          diagnostics.warn(s.aliasPos ?? s.pos, `unused import '${s.alias}'`, `remove the import, or use ${s.alias}::name`);
        }
      }
    }
  }
  const body = prog.root?.file.program.body ?? [];
  const last = body[body.length - 1];
  if (last?.kind === 'ExprStmt' && last.expr.kind === 'Map') {
    facts.stageMapPos = last.expr.pos;
    for (const e of last.expr.entries) facts.stageKeyPos[e.key] = e.keyPos;
  }
  return facts;
}

/** Built-ins whose first argument names a data file (SPEC §7.1). */
function noteCallDataFile(u: Unit, e: A.Call, facts: LintFacts): void {
  const full = e.callee.join('::');
  const fn = full === 'file' ? 'file'
    : full === 'smtpd_check_rules' ? 'smtpd_check_rules'
      : full === 'mapping::check' ? 'mapping'
        : full.startsWith('postfix::check_') && full.endsWith('_access') ? 'access' : null;
  const first = e.args[0];
  // An access map may carry a type prefix (`hash:`, `cidr:`): the file is after it.
  if (fn && first && first.kind === 'Str') noteDataFile(u, facts, fn, first, first.value.replace(/^[a-z]+:(?!\/\/)/, ''));
}

function noteDataFile(u: Unit, facts: LintFacts, fn: string, lit: A.StrLit, file: string): void {
  if (facts.literalDataFiles.some((d) => samePos(d.pos, lit.pos))) return;
  const dir = path.dirname(u.file.path);
  facts.literalDataFiles.push({ fn, path: path.resolve(dir, file), spec: lit.value, dir, pos: lit.pos });
}

function directiveWarnings(e: A.Directive, diagnostics: DiagnosticList): void {
  const lastValue = directiveLastValue(e.body);
  if (e.directive === 'action' && lastValue && isStatusConstructor(lastValue)) {
    diagnostics.warn(lastValue.pos, `action "${e.name}" ends in a status, which an action ignores`, 'use a rule to decide, or drop the status');
  }
  if (e.directive === 'rule' && e.body.kind === 'Closure' && e.body.body.kind === 'Block' && !blockEndsInValue(e.body.body)) {
    diagnostics.warn(e.namePos, `rule "${e.name}" can never return a status (its block ends in a statement)`,
      'end the block with a status, e.g. `next()`, or make it an action');
  }
}

/** vSMTP names that load here but always fail when run (stdlib/prelude.vsl says why). */
function unsupportedCallWarning(e: A.Call, diagnostics: DiagnosticList): void {
  const name = e.callee[e.callee.length - 1]!;
  if (name !== 'send_mail' || (e.callee.length > 1 && !V1_GLOBAL_NAMESPACES.includes(e.callee[0]!))) return;
  diagnostics.warn(e.pos, 'send_mail is not supported: the call raises a runtime error', 'deliver notifications with transport:: or a separate mailer');
}

/** `rg4("10.0.0.1/8")` means 10.0.0.0/8: say so (SPEC §6.1). */
function cidrWarning(e: A.Expr, diagnostics: DiagnosticList): void {
  let lit: A.StrLit | null = null;
  if (e.kind === 'Call' && e.callee.length === 1 && (e.callee[0] === 'rg4' || e.callee[0] === 'rg6') && e.args[0]?.kind === 'Str') lit = e.args[0];
  if (e.kind === 'Object' && (e.type === 'rg4' || e.type === 'rg6') && e.value.kind === 'Str') lit = e.value;
  if (!lit) return;
  const c = parseCidr(lit.value);
  if (c && c.hostBitsSet) diagnostics.warn(lit.pos, `network ${lit.value} has host bits set; it means ${formatCidr(c)}`, 'write the network address');
}

function blockEndsInValue(b: A.Block): boolean {
  const last = b.body[b.body.length - 1];
  if (!last) return false;
  if (last.kind === 'Return' || last.kind === 'Throw') return true;
  if (last.kind !== 'ExprStmt') return false;
  const e = last.expr;
  if (e.kind === 'While' || e.kind === 'Loop' || e.kind === 'DoLoop' || e.kind === 'For') return e.kind === 'Loop';
  return true;
}

function directiveLastValue(body: A.Expr): A.Expr | null {
  let e: A.Expr = body;
  if (e.kind === 'Closure') e = e.body;
  if (e.kind === 'Block') {
    const last = e.body[e.body.length - 1];
    return last && last.kind === 'ExprStmt' ? last.expr : null;
  }
  return e;
}

const STATUS_NAMES = new Set(['next', 'accept', 'faccept', 'deny', 'reject', 'info', 'quarantine']);
function isStatusConstructor(e: A.Expr): boolean {
  if (e.kind !== 'Call') return false;
  const name = e.callee[e.callee.length - 1]!;
  return STATUS_NAMES.has(name) && (e.callee.length === 1 || e.callee[0] === 'state');
}

function samePos(a: A.Pos, b: A.Pos): boolean {
  return a.file === b.file && a.line === b.line && a.col === b.col;
}

// ---------------------------------------------------------------- stage-map warnings

const RELAY_CONTROLS = ['check_rcpt_relay', 'reject_unauth_destination', 'smtpd_check_rules', 'mapping::check'];

/** What the loader knows once the stage map is built and the configuration read. */
export interface StageFacts {
  rcptDirectives: number;
  authenticateDirectives: number;
  /** An auth backend or a submission listener is configured, with at least one mechanism. */
  authOffered: boolean;
}

/** The relay-guard and AUTH warnings of SPEC §5.6 and §11.2. */
export function stageWarnings(facts: LintFacts, stages: StageFacts, rootPos: A.Pos): Diagnostic[] {
  const out: Diagnostic[] = [];
  const warn = (pos: A.Pos, message: string, hint: string) => out.push({ severity: 'warning', pos, message, hint });
  const mapPos = facts.stageMapPos ?? rootPos;
  if (stages.rcptDirectives === 0) {
    warn(mapPos, 'no rcpt rules: the built-in relay guard applies', 'the guard accepts local domains, authenticated clients and server.relay_networks');
  } else if (!RELAY_CONTROLS.some((n) => facts.calledNames.has(n))) {
    warn(facts.stageKeyPos['rcpt'] ?? mapPos, 'rcpt rules call no relay control',
      'add check_rcpt_relay(…), postfix::reject_unauth_destination(), smtpd_check_rules(…) or mapping::check(…)');
  }
  if (stages.authOffered && stages.authenticateDirectives === 0) {
    warn(mapPos, 'AUTH mechanisms are configured but the authenticate stage has no rules, so AUTH is not offered',
      'add authenticate: [ rule "auth" || auth::unix_users() ]');
  }
  return out;
}
