// Issue 16 item 8: file() reads only under the policy's directory and
// vsl.data_dir (SPEC §13), symbolic links resolved. A literal path outside
// is a load error `mta check` reports at the call; a path built at run time
// is a runtime error of the rule (4xx, file:line and the allowed roots in
// the log), and the file's content never reaches the client.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkFile } from '../../src/cli/check.js';
import { writePolicy } from '../helpers/vsl.js';
import { policyText, startFullServer } from './full-server.js';

const SECRET = 'root:$6$secret-hash-that-must-not-leak:19000:0:99999:7:::';
let outside: string;

before(() => {
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-outside-'));
  fs.writeFileSync(path.join(outside, 'shadow'), `${SECRET}\n`);
});
after(() => fs.rmSync(outside, { recursive: true, force: true }));

/** `mta check`'s diagnostics for a policy directory, as `file:line:col: severity: message`. */
async function checkLines(dir: string): Promise<{ ok: boolean; lines: string[] }> {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const r = await checkFile('main.vsl');
    return { ok: r.ok, lines: r.diagnostics.map((d) => `${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.severity}: ${d.message}`) };
  } finally {
    process.chdir(cwd);
  }
}

describe('mta check reports a literal file() path outside the readable roots', () => {
  test('a relative path climbing out of the policy directory is an error at the call', async () => {
    const rel = path.relative(os.tmpdir(), path.join(outside, 'shadow'));
    const dir = writePolicy({ 'main.vsl': policyText(`rcpt: [ rule "leak" || reject(file("../${rel}", "string")[0]) ],`) });
    try {
      const { ok, lines } = await checkLines(dir);
      assert.equal(ok, false);
      const err = lines.find((l) => l.includes(': error: '));
      assert.match(err ?? '', /^main\.vsl:8:\d+: error: file: '\.\.\/.*shadow': .*shadow is outside the directories a policy may read \(/, lines.join('\n'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a symbolic link inside the policy directory pointing outside is refused too', async () => {
    const dir = writePolicy({ 'main.vsl': policyText('rcpt: [ rule "leak" || reject(file("lists/innocent.txt", "string")[0]) ],') });
    try {
      fs.mkdirSync(path.join(dir, 'lists'));
      fs.symlinkSync(path.join(outside, 'shadow'), path.join(dir, 'lists', 'innocent.txt'));
      const { ok, lines } = await checkLines(dir);
      assert.equal(ok, false);
      assert.ok(lines.some((l) => /error: file: 'lists\/innocent\.txt': .*innocent\.txt \(-> .*shadow\) is outside/.test(l)), lines.join('\n'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file in the policy directory still loads', async () => {
    const dir = writePolicy({
      'main.vsl': policyText('rcpt: [ rule "listed" || if ctx::rcpt().local_part in file("lists/users.txt", "string") { accept() } else { next() } ],'),
      'lists/users.txt': 'jdoe\n',
    });
    try {
      const { ok, lines } = await checkLines(dir);
      assert.equal(ok, true, lines.join('\n'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a path built at run time, over a real socket', () => {
  test('the rule fails with 451, the file content is not sent, the log names the rule, file:line and the roots', async () => {
    const target = path.join(outside, 'shadow');
    const half = Math.floor(target.length / 2);
    // Built from two pieces: not a literal, so only the run-time guard can stop it.
    const policy = policyText(`rcpt: [ rule "leak" || { let p = "${target.slice(0, half)}" + "${target.slice(half)}"; reject(file(p, "string")[0]) } ],`);
    const s = await startFullServer({ policy });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      await c.command('MAIL FROM:<a@example.net>');
      const r = await c.command('RCPT TO:<jdoe@doe-family.com>');
      assert.equal(r.code, 451, r.last);
      assert.ok(!r.lines.join('\n').includes('secret-hash'), r.last);
      const line = s.logs.find((l) => typeof l.msg === 'string' && /outside the directories a policy may read/.test(JSON.stringify(l)));
      assert.ok(line, 'no log line about the refused path');
      const text = JSON.stringify(line);
      assert.match(text, /leak/);
      assert.match(text, /main\.vsl:8:/);
      assert.ok(text.includes(fs.realpathSync(s.policyDir)), text);
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});
