// Modules (SPEC §2.10): import paths, aliases and sub-modules, exports,
// evaluation once in dependency order, cycles, and what a module's
// functions can see. Every policy goes through the production loader.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadFiles, describe as describeLoad, loadError } from '../helpers/vsl.js';
import { HostBridge } from '../../src/policy/host-bridge.js';
import type { Value } from '../../src/vsl/values/value.js';

/** Loads `files`, returns the named exports of main.vsl, and cleans up. */
async function exportsOf(files: Record<string, string>, names: string[]): Promise<Record<string, Value>> {
  const r = await loadFiles(files);
  try {
    if (!r.ok) throw new Error(describeLoad(r));
    return Object.fromEntries(names.map((n) => [n, r.version.exported(n)]));
  } finally {
    if (r.ok) r.version.dispose();
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
}

/** Records every `print` made while `f` runs (sys::print crosses the bridge; the load logger is silent). */
async function capturePrints<T>(f: () => Promise<T>): Promise<{ result: T; prints: string[] }> {
  const prints: string[] = [];
  const original = HostBridge.prototype.callSync;
  HostBridge.prototype.callSync = function (this: HostBridge, state, ruleIndex, name, args, posId) {
    if (name === 'sys::print') prints.push(String(args[1]));
    return original.call(this, state, ruleIndex, name, args, posId);
  };
  try {
    return { result: await f(), prints };
  } finally {
    HostBridge.prototype.callSync = original;
  }
}

test('an alias reaches the exports of a module that imports another, and its sub-modules as a::b::x', async () => {
  const v = await exportsOf({
    'main.vsl': `
import "lib/outer" as outer;
export const direct = outer::greeting;
export const sub_value = outer::inner::base;
export const sub_call = outer::inner::double(21);
export const via_outer = outer::quadruple(5);
export const renamed = outer::answer;
export const mutable = outer::counter;
#{}`,
    'lib/outer.vsl': `
import "inner" as inner;           // relative to lib/, not to main.vsl
export const greeting = \`hello \${inner::base}\`;
fn quadruple(n) { inner::double(inner::double(n)) }
const secret_answer = 42;
export secret_answer as answer;
export let counter = 1;
counter += 1;`,
    'lib/inner.vsl': 'export const base = "inner";\nfn double(n) { n * 2 }',
  }, ['direct', 'sub_value', 'sub_call', 'via_outer', 'renamed', 'mutable']);
  assert.deepEqual(v, { direct: 'hello inner', sub_value: 'inner', sub_call: 42n, via_outer: 20n, renamed: 42n, mutable: 2n });
});

test('import paths: .vsl appended or given, sub-directories, absolute paths, imports without an alias', async () => {
  const abs = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), 'vsl-abs-'));
  try {
    fs.writeFileSync(path.join(abs, 'far.vsl'), 'export const where = "absolute";');
    const v = await exportsOf({
      'main.vsl': `
import "a.vsl" as a;
import "dir/b" as b;
import "${path.join(abs, 'far')}" as far;
import "side";
export const all = [a::x, b::y, far::where];
#{}`,
      'a.vsl': 'export const x = "a";',
      'dir/b.vsl': 'export const y = "b";',
      'side.vsl': 'const unused = 1;',
    }, ['all']);
    assert.deepEqual(v.all, ['a', 'b', 'absolute']);
  } finally {
    fs.rmSync(abs, { recursive: true, force: true });
  }
});

test('a module imported from several places is evaluated once, before its importers, and they share its values', async () => {
  const { result, prints } = await capturePrints(() => exportsOf({
    'main.vsl': `
import "a" as a;
import "b" as b;
import "common" as c;
print("main");
export const same = a::seen == b::seen && b::seen == c::list;
#{}`,
    'a.vsl': 'import "common" as c;\nprint("a");\nexport const seen = c::list;',
    'b.vsl': 'import "common" as c;\nprint("b");\nexport const seen = c::list;',
    'common.vsl': 'print("common");\nexport const list = [1, 2, 3];',
  }, ['same']));
  assert.deepEqual(prints, ['common', 'a', 'b', 'main']);
  assert.equal(result.same, true);
});

test('a module\'s functions see its own constants and private functions, never the importer\'s', async () => {
  const v = await exportsOf({
    'main.vsl': `
import "lib" as lib;
const LIMIT = 1000;
export const r = lib::limited(50);
export const obj = lib::internal_has("10.1.1.1");
#{}`,
    'lib.vsl': `
const LIMIT = 10;
object internal rg4 = "10.0.0.0/8";
private fn clamp(n, max) { if n > max { max } else { n } }
fn limited(n) { clamp(n, global::LIMIT) }
fn internal_has(ip) { ip in global::internal }`,
  }, ['r', 'obj']);
  assert.deepEqual(v, { r: 10n, obj: true });
});

test('private functions, non-exported constants and missing members are load errors for importers', async () => {
  const lib = 'private fn secret() { 1 }\nconst hidden = 2;\nlet local = 3;\nfn shown() { secret() }';
  assert.equal(await loadError({ 'main.vsl': 'import "lib" as lib;\nconst x = lib::secret();\n#{}', 'lib.vsl': lib }),
    "main.vsl:2:11: unknown function 'lib::secret'");
  assert.equal(await loadError({ 'main.vsl': 'import "lib" as lib;\nconst x = lib::hidden;\n#{}', 'lib.vsl': lib }),
    "main.vsl:2:11: module 'lib.vsl' has no exported value 'hidden'");
  assert.equal(await loadError({ 'main.vsl': 'import "lib" as lib;\nconst x = lib::nothing;\n#{}', 'lib.vsl': lib }),
    "main.vsl:2:11: module 'lib.vsl' has no exported value 'nothing'");
  assert.equal(await loadError({ 'main.vsl': 'import "lib" as lib;\nconst x = lib::shown();\nlib::local = 5;\n#{}', 'lib.vsl': lib }),
    'main.vsl:3:1: cannot assign to this expression');
});

test('v1 object declarations are exported and usable by importers (the doe-family objects file)', async () => {
  const v = await exportsOf({
    'main.vsl': 'import "objects" as doe;\nexport const inside = "192.168.1.77" in doe::internal_net;\nexport const t = type_of(doe::internal_net);\n#{}',
    'objects.vsl': 'object internal_net rg4 = "192.168.1.0/24";',
  }, ['inside', 't']);
  assert.deepEqual(v, { inside: true, t: 'rg4' });
});

test('an import inside a block is scoped to that block', async () => {
  const v = await exportsOf({
    'main.vsl': 'export const inner = { import "lib" as scoped; scoped::v };\n#{}',
    'lib.vsl': 'export const v = "scoped value";',
  }, ['inner']);
  assert.equal(v.inner, 'scoped value');
  assert.equal(await loadError({
    'main.vsl': '{ import "lib" as scoped; }\nconst outside = scoped::v;\n#{}',
    'lib.vsl': 'export const v = 1;',
  }), "main.vsl:2:17: unknown name 'scoped::v'");
});

test('a missing module names the resolved path; a cycle names the chain', async () => {
  const missing = await loadError({ 'main.vsl': 'import "lib/nowhere" as n;\n#{}' });
  assert.equal(missing, "main.vsl:1:8: cannot import 'lib/nowhere.vsl': no such file");
  assert.equal(await loadError({
    'main.vsl': 'import "a" as a;\n#{}',
    'a.vsl': 'import "b" as b;',
    'b.vsl': 'import "main" as m;',
  }), 'b.vsl:1:8: cyclic import: main.vsl → a.vsl → b.vsl → main.vsl');
  assert.equal(await loadError({ 'main.vsl': 'import "self" as s;\n#{}', 'self.vsl': 'import "self" as me;' }),
    'self.vsl:1:8: cyclic import: self.vsl → self.vsl');
});

test('on_config may live in one imported module; two definitions are a load error', async () => {
  const r = await loadFiles({
    'main.vsl': 'import "conf" as conf;\n#{}',
    'conf.vsl': 'fn on_config(config) { config.server.domain = "from-module.test"; config }',
  });
  try {
    assert.ok(r.ok, r.ok ? '' : describeLoad(r));
    assert.equal(r.version.config.server.domain, 'from-module.test');
  } finally {
    if (r.ok) r.version.dispose();
    fs.rmSync(r.dir, { recursive: true, force: true });
  }
  const two = await loadError({
    'main.vsl': 'import "a" as a;\nimport "b" as b;\n#{}',
    'a.vsl': 'fn on_config(config) { config }',
    'b.vsl': 'fn on_config(config) { config }',
  });
  assert.match(two, /^b\.vsl:1:4: on_config is defined twice \(first in a\.vsl\)$/);
});

test('data files are read relative to the file that names them, not to the working directory', async () => {
  const v = await exportsOf({
    'main.vsl': 'import "lists/blocks" as blocks;\nexport const both = [blocks::v1.len(), blocks::v2.len(), blocks::from_fn()];\n#{}',
    'lists/blocks.vsl': 'object v1 file:fqdn = "hosts.txt";\nexport const v2 = file("hosts.txt", "fqdn");\nfn from_fn() { file("hosts.txt", "fqdn").len() }',
    'lists/hosts.txt': 'a.example\nb.example\nc.example\n',
  }, ['both']);
  assert.deepEqual(v.both, [3n, 3n, 3n]);
});
