// The module loader (SPEC §2.10): reads main.vsl and every file it imports,
// parses each once (identity = canonical real path), rejects missing files and
// cycles with positions, and returns the files in dependency order (every
// module before its importers). The only I/O of src/vsl/.

import fs from 'node:fs';
import path from 'node:path';
import type { Import, Program, Stmt, Expr, Pos } from './ast.js';
import { parseProgram } from './parser.js';
import type { Diagnostic } from './diagnostics.js';

export interface SourceFile {
  /** Canonical real path. */
  path: string;
  /** Path as shown in diagnostics (relative to the working directory when shorter). */
  display: string;
  text: string;
  program: Program;
  /** Import statements found anywhere in the file, with the resolved target path. */
  imports: Array<{ node: Import; target: string }>;
}

export interface LoadedSources {
  /** Dependency order: imported files first, the root last. */
  files: SourceFile[];
  byPath: Map<string, SourceFile>;
  root: SourceFile;
  diagnostics: Diagnostic[];
}

/** Largest policy file accepted; bigger is a load error, not a hang. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && rel.length < p.length ? rel : p;
}

/** Resolves an import path as SPEC §2.10 says: relative to the importing file, `.vsl` appended. */
export function resolveImportPath(fromFile: string, spec: string): string {
  const withExt = spec.endsWith('.vsl') ? spec : `${spec}.vsl`;
  return path.resolve(path.dirname(fromFile), withExt);
}

function collectImports(stmts: Stmt[], out: Import[]): void {
  for (const s of stmts) {
    if (s.kind === 'Import') out.push(s);
    else if (s.kind === 'ExprStmt') collectImportsExpr(s.expr, out);
    else if (s.kind === 'Fn') collectImports(s.body.body, out);
    else if (s.kind === 'Let' && s.init) collectImportsExpr(s.init, out);
  }
}

function collectImportsExpr(e: Expr, out: Import[]): void {
  switch (e.kind) {
    case 'Block': collectImports(e.body, out); break;
    case 'If': collectImports(e.then.body, out); if (e.else) collectImportsExpr(e.else, out); break;
    case 'While': case 'Loop': collectImports(e.body.body, out); break;
    case 'DoLoop': collectImports(e.body.body, out); break;
    case 'For': collectImports(e.body.body, out); break;
    case 'Try': collectImports(e.body.body, out); collectImports(e.handler.body, out); break;
    case 'Closure': collectImportsExpr(e.body, out); break;
    default: break;
  }
}

/**
 * Loads `rootPath` and its imports. Never throws for bad input: problems are
 * returned as diagnostics (a file that cannot be read, a parse error, a cycle).
 * `extraRoots` are loaded too (the stdlib), without being imported by anyone.
 */
export function loadSources(rootPath: string, readFile: (p: string) => string = defaultRead): LoadedSources {
  const diagnostics: Diagnostic[] = [];
  const byPath = new Map<string, SourceFile>();
  const order: SourceFile[] = [];
  const state = new Map<string, 'visiting' | 'done'>();

  const canonical = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };

  const visit = (file: string, chain: string[], from: { pos: Pos } | null): SourceFile | null => {
    const real = canonical(file);
    const st = state.get(real);
    if (st === 'done') return byPath.get(real) ?? null;
    if (st === 'visiting') {
      const cycleStart = chain.indexOf(real);
      const cycle = [...chain.slice(cycleStart), real].map((p) => path.basename(p)).join(' → ');
      diagnostics.push({
        severity: 'error',
        pos: from!.pos,
        message: `cyclic import: ${cycle}`,
        hint: 'modules may not import each other in a circle; move the shared part into a third module',
      });
      return null;
    }
    let text: string;
    try {
      const stat = fs.statSync(real);
      if (stat.size > MAX_FILE_BYTES) throw new Error(`file is larger than ${MAX_FILE_BYTES} bytes`);
      text = readFile(real);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
      diagnostics.push({
        severity: 'error',
        pos: from ? from.pos : { file: displayPath(real), line: 1, col: 1 },
        message: from ? `cannot import '${displayPath(real)}': ${reason}` : `cannot read '${displayPath(real)}': ${reason}`,
        hint: from ? 'import paths are relative to the importing file; ".vsl" is appended' : undefined,
      });
      return null;
    }
    state.set(real, 'visiting');
    const display = displayPath(real);
    const { program, diagnostics: parseDiags } = parseProgram(text, display);
    diagnostics.push(...parseDiags);
    const imports: SourceFile['imports'] = [];
    const found: Import[] = [];
    collectImports(program.body, found);
    const sf: SourceFile = { path: real, display, text, program, imports };
    byPath.set(real, sf);
    for (const node of found) {
      const target = canonical(resolveImportPath(real, node.path));
      imports.push({ node, target });
      visit(target, [...chain, real], { pos: node.pathPos });
    }
    state.set(real, 'done');
    order.push(sf);
    return sf;
  };

  const root = visit(rootPath, [], null);
  return {
    files: order,
    byPath,
    root: root ?? { path: canonical(rootPath), display: displayPath(rootPath), text: '', program: { file: rootPath, body: [] }, imports: [] },
    diagnostics,
  };
}

function defaultRead(p: string): string {
  let text = fs.readFileSync(p, 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text;
}
