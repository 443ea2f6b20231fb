// `mta check` (SPEC §11.2): every load error a policy author can make is
// reported at its exact file:line:col with a message naming the problem;
// warnings do not fail the check unless --strict. The diagnostics come from
// checkFile (what the command runs); a few tests drive the command itself,
// in memory and as a real process.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { checkCommand, checkFile, type CheckResult } from '../../src/cli/check.js';
import { writePolicy } from '../helpers/vsl.js';
import { fromRoot } from '../helpers/paths.js';
import type { CliIo } from '../../src/cli/io.js';

/** Runs `fn` inside a fresh policy directory (diagnostics then read `main.vsl:…`). */
async function inPolicyDir<T>(files: Record<string, string>, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = writePolicy(files);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    return await fn(dir);
  } finally {
    process.chdir(cwd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Checks main.vsl among `files`; returns every diagnostic as `file:line:col: severity: message`. */
async function check(files: Record<string, string>): Promise<{ lines: string[]; result: CheckResult }> {
  return inPolicyDir(files, async () => {
    const result = await checkFile('main.vsl');
    const lines = result.diagnostics.map((d) => `${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.severity}: ${d.message}`);
    return { lines, result };
  });
}

/** The diagnostics of a policy that must fail: the first error line. */
async function firstError(files: Record<string, string>): Promise<string> {
  const { lines, result } = await check(files);
  assert.equal(result.ok, false, `expected a load error, got: ${lines.join('\n') || 'nothing'}`);
  return lines.find((l) => l.includes(': error: '))!;
}

describe('load errors pinned to file:line:col (SPEC §1.2, §11.2)', () => {
  test('unterminated string', async () => {
    assert.equal(await firstError({ 'main.vsl': 'let ok = 1;\nlet x = "abc;\n#{}' }), 'main.vsl:2:9: error: unterminated string');
  });

  test('a character that is no token', async () => {
    assert.equal(await firstError({ 'main.vsl': 'let x = 1 @ 2;\n#{}' }), "main.vsl:1:11: error: unexpected character '@'");
  });

  test('a map without its # (both spellings)', async () => {
    assert.equal(await firstError({ 'main.vsl': '# {\n  mail: [],\n}' }), "main.vsl:1:1: error: expected '{' after '#'");
    const { result } = await check({ 'main.vsl': '{\n  mail: [],\n}' });
    assert.equal(result.diagnostics[0]!.message, "expected ';', found ':'");
    assert.deepEqual([result.diagnostics[0]!.pos.line, result.diagnostics[0]!.pos.col], [2, 7]);
    assert.equal(result.diagnostics[0]!.hint, 'maps are written #{ key: value }');
  });

  test('unknown stage key, with the list of stages as hint', async () => {
    const { result } = await check({ 'main.vsl': '#{\n  mail: [],\n  queue: [],\n}' });
    assert.equal(result.diagnostics[0]!.message, "unknown stage 'queue'");
    assert.deepEqual(result.diagnostics[0]!.pos, { file: 'main.vsl', line: 3, col: 3 });
    assert.match(result.diagnostics[0]!.hint!, /connect, helo, authenticate, mail, rcpt, preq, postq, delivery/);
  });

  test('a stage value that is not an array, an element that is not a rule, a policy value that is not a map', async () => {
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: rule "a" || next(),\n}' }),
      "main.vsl:2:3: error: stage 'mail' must be an array of rules, got rule");
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ 42 ],\n}' }),
      "main.vsl:2:3: error: stage 'mail' contains a i64, expected rules or actions");
    assert.equal(await firstError({ 'main.vsl': 'let x = 1;\n[1, 2]' }),
      'main.vsl:1:1: error: main.vsl must end in a map of stages, got array');
  });

  test('duplicate rule names across stages and modules name the first position', async () => {
    assert.equal(await firstError({ 'main.vsl': '#{\n  helo: [ rule "x" || next() ],\n  mail: [\n    rule "x" || next() ],\n}' }),
      "main.vsl:4:5: error: duplicate rule name 'x' (first at main.vsl:2:11)");
    assert.equal(await firstError({
      'main.vsl': 'import "objects" as o;\n#{\n  helo: o::rules,\n  mail: [ rule "x" || next() ],\n}',
      'objects.vsl': '// shared rules\n\n\nexport const rules = [\n  rule "x" || next()\n];',
    }), "main.vsl:4:11: error: duplicate rule name 'x' (first at objects.vsl:5:3)");
  });

  test('a rule without a name, with an empty name, with parameters, or a map without evaluate', async () => {
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ rule || next() ],\n}' }),
      'main.vsl:2:16: error: rule needs a name: rule "name" || …');
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ rule "" || next() ],\n}' }),
      'main.vsl:2:16: error: rule name cannot be empty');
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ rule "p" |a| next() ],\n}' }),
      'main.vsl:2:20: error: a rule body takes no parameters');
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ rule "p" #{ description: "x" } ],\n}' }),
      'main.vsl:2:20: error: rule "p" needs an \'evaluate\' key');
  });

  test('import of a missing file names the path; a cyclic import names the cycle', async () => {
    assert.equal(await firstError({ 'main.vsl': 'import "lib/nope" as n;\n#{}' }),
      "main.vsl:1:8: error: cannot import 'lib/nope.vsl': no such file");
    assert.equal(await firstError({ 'main.vsl': 'import "a" as a;\n#{}', 'a.vsl': '\nimport "main" as m;' }),
      'a.vsl:2:8: error: cyclic import: main.vsl → a.vsl → main.vsl');
  });

  test('invalid CIDR, IP, regex and address values in objects are reported at the value', async () => {
    assert.equal(await firstError({ 'main.vsl': 'object n rg4 = "10.0.0.0/33";\n#{}' }),
      "main.vsl:1:16: error: rg4: invalid network '10.0.0.0/33'");
    assert.equal(await firstError({ 'main.vsl': '\nobject n ip4 = "10.0.0.256";\n#{}' }),
      "main.vsl:2:16: error: ip4: invalid IPv4 address '10.0.0.256'");
    assert.equal(await firstError({ 'main.vsl': 'object n regex = "a(b";\n#{}' }),
      "main.vsl:1:18: error: regex: invalid pattern 'a(b': expecting ')'");
    assert.equal(await firstError({ 'main.vsl': 'object n address = "not an address";\n#{}' }),
      "main.vsl:1:20: error: object: invalid address 'not an address'");
  });

  test('an object of unknown type, or a file: object without an element type', async () => {
    assert.equal(await firstError({ 'main.vsl': 'object n ipv4 = "10.0.0.1";\n#{}' }), "main.vsl:1:10: error: unknown object type 'ipv4'");
    assert.equal(await firstError({ 'main.vsl': 'object n file:ip = "x";\n#{}' }), "main.vsl:1:10: error: unknown element type 'ip'");
  });

  test('a file: object naming a missing or invalid data file', async () => {
    assert.equal(await firstError({ 'main.vsl': 'object n file:fqdn = "lists/none.txt";\n#{}' }),
      "main.vsl:1:22: error: file: cannot read 'lists/none.txt': no such file");
    assert.equal(await firstError({ 'main.vsl': 'object n file:ip4 = "ips.txt";\n#{}', 'ips.txt': '1.2.3.4\nnope\n' }),
      "main.vsl:1:21: error: file: ips.txt: line 2: ip4: invalid IPv4 address 'nope'");
  });

  test('reserved words as names', async () => {
    assert.equal(await firstError({ 'main.vsl': 'let var = 1;\n#{}' }), "main.vsl:1:5: error: 'var' is a reserved word and cannot be used as a name");
    assert.equal(await firstError({ 'main.vsl': 'fn match(a) { a }\n#{}' }), "main.vsl:1:4: error: 'match' is a reserved word and cannot be used as a name");
  });

  test('delegate and the v3 hook style are not supported', async () => {
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ delegate svc "d" || next() ],\n}' }), 'main.vsl:2:11: error: delegate is not supported');
    assert.equal(await firstError({ 'main.vsl': 'fn on_connect(ctx) { next() }\n#{}' }),
      'main.vsl:1:4: error: the vSMTP v3 hook style (fn on_connect(ctx)) is not supported');
  });

  test('unknown functions (with a suggestion), also names of JavaScript\'s object prototype', async () => {
    const { result } = await check({ 'main.vsl': '#{\n  mail: [ rule "a" || chek_mail_relay([]) ],\n}' });
    assert.equal(result.diagnostics[0]!.message, "unknown function 'chek_mail_relay'");
    assert.deepEqual(result.diagnostics[0]!.pos, { file: 'main.vsl', line: 2, col: 23 });
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      assert.equal(await firstError({ 'main.vsl': `const a = ${name}(1);\n#{}` }), `main.vsl:1:11: error: unknown function '${name}'`);
    }
    assert.equal(await firstError({ 'main.vsl': 'const a = `${valueOf}`;\n#{}' }), "main.vsl:1:14: error: unknown variable 'valueOf'");
  });

  test('wrong arity of a script function, a stdlib function and a module function', async () => {
    assert.equal(await firstError({ 'main.vsl': 'fn f(a) { a }\nconst x = f(1, 2);\n#{}' }), "main.vsl:2:11: error: 'f' takes 1 argument(s), not 2");
    assert.equal(await firstError({ 'main.vsl': '#{\n  mail: [ rule "a" || check_mail_relay() ],\n}' }),
      "main.vsl:2:23: error: 'check_mail_relay' takes 1 argument(s), not 0");
    assert.equal(await firstError({ 'main.vsl': 'import "lib" as lib;\nconst x = lib::f();\n#{}', 'lib.vsl': 'fn f(a) { a }' }),
      "main.vsl:2:11: error: 'lib::f' takes 1 argument(s), not 0");
    assert.equal(await firstError({ 'main.vsl': '#{ mail: [ rule "a" || state::deny(1, 2) ] }' }),
      "main.vsl:1:24: error: 'state::deny' takes 0 or 1 argument(s), not 2");
  });

  test('a variable a closure cannot see', async () => {
    assert.equal(await firstError({ 'main.vsl': 'let allowed = "10.0.0.0/8";\n#{\n  mail: [ rule "a" || check_mail_relay(allowed) ],\n}' }),
      'main.vsl:3:40: error: allowed is not visible here: functions do not capture; pass it as a parameter or use global::allowed');
  });

  test('assignment to a constant', async () => {
    assert.equal(await firstError({ 'main.vsl': 'const K = 1;\nK = 2;\n#{}' }), "main.vsl:2:1: error: cannot assign to constant 'K'");
    assert.equal(await firstError({ 'main.vsl': 'fn f() { const k = [1]; k.push(2); k }\n#{}' }), "main.vsl:1:25: error: cannot modify constant 'k'");
  });

  test('break outside a loop', async () => {
    assert.equal(await firstError({ 'main.vsl': 'fn f() {\n  if true { break; }\n}\n#{}' }), "main.vsl:2:13: error: 'break' outside a loop");
  });

  test('configuration: an unknown key with a suggestion, a wrong type, no map returned', async () => {
    const cfg = (body: string) => ({ 'main.vsl': `fn on_config(config) {\n  ${body}\n  config\n}\n#{}` });
    assert.equal(await firstError(cfg('config.server.smtp.rcpt_max = 10;')),
      'main.vsl:2:10: error: server.smtp.rcpt_max: unknown key, did you mean rcpt_count_max?');
    assert.equal(await firstError(cfg('config.server.smtp.rcpt_count_max = "many";')),
      'main.vsl:2:10: error: server.smtp.rcpt_count_max: expected an int, got string');
    assert.equal(await firstError({ 'main.vsl': 'fn on_config(config) {\n  config.server.domain = "x.test";\n  ()\n}\n#{}' }),
      'main.vsl:1:4: error: on_config: must return the configuration map, got ()');
  });

  test('I/O at load and in on_config', async () => {
    assert.equal(await firstError({ 'main.vsl': 'const ips = dns::lookup("example.org");\n#{}' }), 'main.vsl:1:13: error: I/O built-ins cannot run at load');
    assert.equal(await firstError({ 'main.vsl': 'fn on_config(config) { dns::lookup("x"); config }\n#{}' }), 'main.vsl:1:4: error: on_config cannot call I/O built-ins');
  });

  test('runtime errors in top-level code are load errors at their position', async () => {
    assert.equal(await firstError({ 'main.vsl': 'const x = [1, 2];\nconst y = x[5];\n#{}' }), 'main.vsl:2:12: error: index out of range');
    assert.equal(await firstError({ 'main.vsl': 'const s = ctx::mail_from();\n#{}' }),
      'main.vsl:1:11: error: E_TOO_EARLY: ctx::mail_from() is available from stage mail (called at load)');
    assert.equal(await firstError({ 'main.vsl': 'const x = 1;\nthrow "bad policy";\n#{}' }), 'main.vsl:2:1: error: bad policy');
  });

  test('a 10 MB policy file ends in its diagnostics', async () => {
    const filler = `let a = 1; // ${'x'.repeat(85)}\n`.repeat(105_000);
    assert.ok(filler.length > 10_000_000);
    assert.equal(await firstError({ 'main.vsl': `${filler}let z = "unterminated;\n#{}` }), 'main.vsl:105001:9: error: unterminated string');
  });

  test('10,000 nested brackets end in a nesting diagnostic', async () => {
    for (const [open, close] of [['[', ']'], ['(', ')'], ['{', '}'], ['#{a:', '}']]) {
      const src = `let a = ${open!.repeat(10_000)}${open === '(' || open === '#{a:' ? '1' : ''}${close!.repeat(10_000)};\n#{}`;
      assert.match(await firstError({ 'main.vsl': src }), /^main\.vsl:1:\d+: error: nesting too deep \(more than 256 levels\)$/);
    }
  });
});

describe('warnings (exit 0 unless --strict)', () => {
  const warnings = async (files: Record<string, string>) => {
    const { lines, result } = await check(files);
    assert.equal(result.ok, true, lines.join('\n'));
    return lines;
  };

  test('no rcpt rules: the built-in relay guard applies', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': '#{\n  mail: [ rule "a" || next() ],\n}' }),
      ['main.vsl:1:1: warning: no rcpt rules: the built-in relay guard applies']);
  });

  test('rcpt rules calling no relay control', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': '#{ rcpt: [ rule "r" || next() ] }' }), ['main.vsl:1:4: warning: rcpt rules call no relay control']);
  });

  test('an unused import', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': 'import "lib" as lib;\n#{ rcpt: [ rule "r" || check_rcpt_relay([]) ] }', 'lib.vsl': 'export const a = 1;' }),
      ["main.vsl:1:17: warning: unused import 'lib'"]);
  });

  test('a rule that can never return a status', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': '#{ rcpt: [ rule "r" || { check_rcpt_relay([]); let x = 1; } ] }' }),
      ['main.vsl:1:17: warning: rule "r" can never return a status (its block ends in a statement)']);
  });

  test('an action ending in a status', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': '#{ rcpt: [ action "a" || deny(), rule "r" || check_rcpt_relay([]) ] }' }),
      ['main.vsl:1:26: warning: action "a" ends in a status, which an action ignores']);
  });

  test('CIDR host bits, in v1 objects and in rg4()', async () => {
    assert.deepEqual(await warnings({ 'main.vsl': 'object n rg4 = "192.168.1.7/24";\nconst m = rg4("10.1.2.3/8");\n#{ rcpt: [ rule "r" || check_rcpt_relay(global::n) ] }' }), [
      'main.vsl:1:16: warning: network 192.168.1.7/24 has host bits set; it means 192.168.1.0/24',
      'main.vsl:2:15: warning: network 10.1.2.3/8 has host bits set; it means 10.0.0.0/8',
    ]);
  });
});

// ---------------------------------------------------------------- the command

class Buffers {
  stdout = '';
  stderr = '';
  io(): CliIo {
    return { stdin: process.stdin, stdout: { write: (s: string) => (this.stdout += s) }, stderr: { write: (s: string) => (this.stderr += s) } };
  }
}

describe('mta check, the command', () => {
  const policies = {
    'clean.vsl': '#{ rcpt: [ rule "r" || check_rcpt_relay([]) ] }\n',
    'warns.vsl': '#{\n  mail: [ rule "a" || next() ],\n}\n',
    'broken.vsl': 'let ok = 1;\nlet x = "abc;\n#{}\n',
  };

  test('exit codes: 0 clean, 0 with warnings, 1 with --strict warnings, 1 on errors, 2 on usage errors', async () => {
    await inPolicyDir(policies, async () => {
      const run = async (...argv: string[]) => {
        const b = new Buffers();
        return { code: await checkCommand(argv, b.io()), out: b.stdout, err: b.stderr };
      };
      const clean = await run('clean.vsl');
      assert.deepEqual([clean.code, clean.out, clean.err], [0, 'clean.vsl: ok\n', '']);
      assert.equal((await run('warns.vsl')).code, 0);
      assert.equal((await run('warns.vsl', '--strict')).code, 1);
      assert.equal((await run('clean.vsl', '--strict')).code, 0);
      assert.equal((await run('clean.vsl', 'broken.vsl')).code, 1);
      const usage = await run();
      assert.equal(usage.code, 2);
      assert.match(usage.err, /no policy file given/);
      assert.equal((await run('clean.vsl', '--frobnicate')).code, 2);
    });
  });

  test('diagnostics print with the source line, a caret and the hint, then a summary', async () => {
    await inPolicyDir(policies, async () => {
      const b = new Buffers();
      assert.equal(await checkCommand(['broken.vsl', 'warns.vsl'], b.io()), 1);
      assert.equal(b.stderr, [
        'broken.vsl:2:9: error: unterminated string',
        '   2 | let x = "abc;',
        '     |         ^',
        '  = hint: close the string with "',
        'warns.vsl:1:1: warning: no rcpt rules: the built-in relay guard applies',
        '   1 | #{',
        '     | ^',
        '  = hint: the guard accepts local domains, authenticated clients and server.relay_networks',
        '1 error(s), 1 warning(s)',
        '',
      ].join('\n'));
    });
  });

  test('--json prints an array of diagnostics and nothing else', async () => {
    await inPolicyDir(policies, async () => {
      const b = new Buffers();
      assert.equal(await checkCommand(['--json', 'broken.vsl', 'clean.vsl'], b.io()), 1);
      assert.equal(b.stderr, '');
      assert.deepEqual(JSON.parse(b.stdout), [
        { severity: 'error', file: 'broken.vsl', line: 2, column: 9, message: 'unterminated string', hint: 'close the string with "' },
      ]);
    });
  });

  test('the real CLI process: exit status and output', { timeout: 60_000 }, async () => {
    await inPolicyDir(policies, async (dir) => {
      const tsx = import.meta.resolve('tsx');
      const cli = fromRoot('src', 'cli', 'main.ts');
      const run = (...args: string[]) => spawnSync(process.execPath, ['--import', tsx, cli, 'check', ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      const bad = run('broken.vsl');
      assert.equal(bad.status, 1, bad.stderr);
      assert.match(bad.stderr, /^broken\.vsl:2:9: error: unterminated string\n {3}2 \| let x = "abc;\n {5}\| {9}\^\n/);
      const json = run('--json', '--strict', 'warns.vsl');
      assert.equal(json.status, 1, json.stderr);
      assert.equal(JSON.parse(json.stdout)[0].message, 'no rcpt rules: the built-in relay guard applies');
    });
  });
});
