// Issue 16 item 9: keys every JavaScript object inherits (constructor,
// hasOwnProperty, __proto__, toString) are unknown configuration keys like
// any other (SPEC §9.1): `mta check` fails naming the key's path, and
// `--set` refuses them too.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { checkFile } from '../../src/cli/check.js';
import { applySet, ConfigError } from '../../src/config/validate.js';
import { defaultConfig } from '../../src/config/schema.js';
import { writePolicy } from '../helpers/vsl.js';

async function checkOnConfig(body: string): Promise<{ ok: boolean; text: string }> {
  const dir = writePolicy({ 'main.vsl': `fn on_config(config) {\n  ${body}\n  config\n}\n#{}\n` });
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const r = await checkFile('main.vsl');
    return { ok: r.ok, text: r.diagnostics.map((d) => `${d.severity}: ${d.message}`).join('\n') };
  } finally {
    process.chdir(cwd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('inherited property names are unknown configuration keys', () => {
  for (const [body, keyPath] of [
    ['config.server["constructor"] = 5;', 'server.constructor'],
    ['config.server.smtp["hasOwnProperty"] = "x";', 'server.smtp.hasOwnProperty'],
    ['config.server["__proto__"] = #{ name: "evil" };', 'server.__proto__'],
    ['config["toString"] = "x";', 'toString'],
  ] as const) {
    test(`${body} is a load error naming ${keyPath}`, async () => {
      const r = await checkOnConfig(body);
      assert.equal(r.ok, false, r.text);
      assert.ok(r.text.includes(`${keyPath}: unknown key`), r.text);
    });
  }

  test('--set refuses them with the key path', () => {
    const cfg = defaultConfig('mx.test');
    for (const key of ['server.constructor', 'server.__proto__.name', 'server.smtp.hasOwnProperty']) {
      assert.throws(() => applySet(cfg, `${key}=1`), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${key}: unknown key`), key);
    }
  });

  test('ordinary keys still pass', async () => {
    const r = await checkOnConfig('config.server.smtp.rcpt_count_max = 5;');
    assert.equal(r.ok, true, r.text);
  });
});
