// Helpers for engine tests: write a policy into a temp directory, load it
// through the production loader, and read values or run stages.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadPolicy, type LoadResult, type PolicyVersion } from '../../src/policy/load.js';
import { allBuiltins } from '../../src/builtins/registry.js';
import { PolicyRunner } from '../../src/policy/runner.js';
import { formatDiagnostic } from '../../src/vsl/diagnostics.js';
import type { Value } from '../../src/vsl/values/value.js';
import type { MailAddress, Session, Stage, StageOutcome, Transaction } from '../../src/mail/types.js';

/** Writes files into a fresh temp dir; returns the dir. Keys are relative paths. */
export function writePolicy(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-test-'));
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
  return dir;
}

export async function loadFiles(files: Record<string, string>, main = 'main.vsl'): Promise<LoadResult & { dir: string }> {
  const dir = writePolicy(files);
  const cwd = process.cwd();
  // Diagnostics show paths relative to the working directory: run from the temp dir so they read `main.vsl:…`.
  process.chdir(dir);
  try {
    const r = await loadPolicy(path.join(dir, main), { builtins: allBuiltins(), hostname: 'mx.test' });
    return Object.assign(r, { dir });
  } finally {
    process.chdir(cwd);
  }
}

/** Formats all diagnostics of a failed load, for assertion messages. */
export function describe(r: LoadResult): string {
  return r.diagnostics.map((d) => formatDiagnostic(d, r.sources.get(d.pos.file))).join('\n');
}

/**
 * Evaluates `expr` after the top-level statements `src` at load time and
 * returns its value. Runtime errors come back as thrown Errors carrying the
 * load diagnostics.
 */
export async function evalVsl(src: string, expr: string): Promise<Value> {
  const r = await loadFiles({ 'main.vsl': `${src}\nexport const __result = ${expr};\n#{}\n` });
  if (!r.ok) throw Object.assign(new Error(describe(r)), { diagnostics: r.diagnostics });
  try {
    return r.version.exported('__result');
  } finally {
    r.version.dispose();
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
}

/** The first error diagnostic of loading these files, as `file:line:col: message`. */
export async function loadError(files: Record<string, string>): Promise<string> {
  const r = await loadFiles(files);
  fs.rmSync(r.dir, { recursive: true, force: true });
  if (r.ok) {
    r.version.dispose();
    return 'loaded without error';
  }
  const d = r.diagnostics.find((x) => x.severity === 'error')!;
  return `${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.message}`;
}

export function addr(text: string): MailAddress {
  if (text === '') return { local: '', domain: '', raw: '<>', isNull: true };
  const at = text.lastIndexOf('@');
  return { local: text.slice(0, at), domain: text.slice(at + 1).toLowerCase(), raw: `<${text}>`, isNull: false };
}

export function session(over: Partial<Session> = {}): Session {
  return {
    id: 'test-1', listener: 'smtp', clientIp: '203.0.113.9', clientPort: 40000, serverIp: '127.0.0.1', serverPort: 25,
    serverName: 'mx.test', connectedAt: new Date('2026-01-01T00:00:00Z'), tls: null, helo: 'client.test', esmtp: true,
    auth: null, pipeliningViolation: false, remembered: null, pendingHeaders: [], ...over,
  };
}

export function txn(mailFrom: string, rcpt: string | null, over: Partial<Transaction> = {}): Transaction {
  return {
    id: 'TXN1', mailFrom: addr(mailFrom), mailAt: new Date('2026-01-01T00:00:01Z'), rcpts: [],
    currentRcpt: rcpt === null ? null : addr(rcpt), remembered: null, pendingHeaders: [], ...over,
  };
}

/** A loaded policy with a runner, for stage-level tests. */
export class TestPolicy {
  readonly runner: PolicyRunner;
  constructor(readonly version: PolicyVersion, readonly dir: string) {
    this.runner = new PolicyRunner({ current: () => version, log: pino({ level: 'silent' }) });
  }
  static async load(files: Record<string, string>): Promise<TestPolicy> {
    const r = await loadFiles(files);
    if (!r.ok) throw new Error(describe(r));
    return new TestPolicy(r.version, r.dir);
  }
  run(stage: Stage, s: Session, t: Transaction | null = null): Promise<StageOutcome> {
    return this.runner.run(stage, s, t);
  }
  close(): void {
    this.version.dispose();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
