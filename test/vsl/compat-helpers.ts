// Plays transcripts against a policy with `mta test`, in-process: the
// compatibility tests (compat-*.test.ts) state a vSMTP script's behaviour
// as the SMTP dialog it produces.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { testCommand } from '../../src/cli/test.js';
import { checkFile } from '../../src/cli/check.js';
import type { Diagnostic } from '../../src/vsl/diagnostics.js';

/** Writes the files (main.vsl and data files) and the transcripts into a fresh directory. */
function project(files: Record<string, string>, transcripts: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-compat-'));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  fs.mkdirSync(path.join(dir, 'tests'));
  for (const [name, text] of Object.entries(transcripts)) fs.writeFileSync(path.join(dir, 'tests', name), text);
  return dir;
}

/** Runs `mta test` on the transcripts; asserts that every check passes. */
export async function assertTranscriptsPass(files: Record<string, string>, transcripts: Record<string, string>): Promise<void> {
  const dir = project(files, transcripts);
  let out = '';
  try {
    const io = { stdin: new PassThrough(), stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (out += s) } };
    const code = await testCommand(['--config', path.join(dir, 'main.vsl'), path.join(dir, 'tests')], io);
    const points = out.split('\n').filter((l) => /^(not )?ok \d+ - /.test(l));
    assert.ok(points.length > 0, out);
    assert.deepEqual(points.filter((l) => l.startsWith('not ok')), [], out);
    assert.equal(code, 0, out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What `mta check` says about main.vsl among `files`: every diagnostic. */
export async function checkDiagnostics(files: Record<string, string>): Promise<Diagnostic[]> {
  const dir = project(files, {});
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const r = await checkFile(path.join(dir, 'main.vsl'));
    return r.diagnostics;
  } finally {
    process.chdir(cwd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
