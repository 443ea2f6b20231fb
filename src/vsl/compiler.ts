// The vSL compiler: runs the passes over a loaded policy, in the order of
// Crafting Interpreters' jlox, one pass per file:
//
//   resolve.ts  names: every file's functions, constants, exports and
//               imports, and what each call by name means (SPEC §2.3, §2.10)
//   check.ts    which functions do I/O (async analysis), and the lint: load
//               errors and warnings that need only the tree (SPEC §11.2)
//   emit.ts     one JavaScript program for the whole policy, run in QuickJS
//
// The lexer and parser (lexer.ts, parser.ts) and the loader (loader.ts) come
// before; the sandbox and the policy loader (src/policy/load.ts) after.

import type * as A from './ast.js';
import { DiagnosticList, type Diagnostic } from './diagnostics.js';
import { Program, type CompileInput } from './resolve.js';
import { analyseAsync, lint, type LintFacts } from './check.js';
import { emitProgram } from './emit.js';

export type { CompileInput } from './resolve.js';
export { levenshtein } from './resolve.js';

export interface ModuleInfo {
  index: number;
  path: string;
  display: string;
  stdlib: boolean;
}

export interface CompiledPolicy extends LintFacts {
  js: string;
  positions: A.Pos[];
  /** Per generated line (0-based): sorted [col (1-based), posId] marks. */
  lineMarks: Array<Array<[number, number]>>;
  modules: ModuleInfo[];
  mainIndex: number;
  /** Module exporting `on_config/1`, if any. */
  onConfig: { module: number; jsName: string; pos: A.Pos } | null;
  diagnostics: Diagnostic[];
  /** Names of host built-ins the policy calls (for `mta check` and the coverage test). */
  hostCalls: Set<string>;
}

export function compilePolicy(input: CompileInput): CompiledPolicy {
  const diagnostics = new DiagnosticList();
  const prog = new Program(input, diagnostics);
  analyseAsync(prog);
  const facts = lint(prog, diagnostics);
  const emitted = emitProgram(prog, diagnostics);
  const root = prog.root;
  return {
    ...facts,
    js: emitted.js,
    positions: emitted.positions,
    lineMarks: emitted.lineMarks,
    hostCalls: emitted.hostCalls,
    modules: prog.units.map((u) => ({ index: u.index, path: u.file.path, display: u.file.display, stdlib: u.stdlib })),
    mainIndex: root ? root.index : prog.units.length - 1,
    onConfig: findOnConfig(prog, diagnostics),
    diagnostics: diagnostics.items,
  };
}

/** `on_config` is defined in main.vsl or exported by exactly one imported module (SPEC §9.1). */
function findOnConfig(prog: Program, diagnostics: DiagnosticList): CompiledPolicy['onConfig'] {
  const root = prog.root;
  let onConfig: CompiledPolicy['onConfig'] = null;
  for (const u of prog.units) {
    if (u.stdlib) continue;
    const f = u.fns.get('on_config')?.get(1);
    if (!f || (f.isPrivate && u !== root)) continue;
    if (onConfig && u !== root) {
      diagnostics.error(f.node.namePos, `on_config is defined twice (first in ${prog.units[onConfig.module]!.file.display})`,
        'define on_config in main.vsl or in exactly one imported module');
      continue;
    }
    if (!onConfig || u === root) onConfig = { module: u.index, jsName: f.jsName, pos: f.node.namePos };
  }
  return onConfig;
}
