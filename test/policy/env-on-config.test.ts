// env() is unrestricted in on_config and limited to vsl.env_allow in the
// rest of the policy (SPEC §7.2): configuration may come from the
// environment without opening the environment to the rules.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { describe as diagnostics, loadFiles } from '../helpers/vsl.js';

test('env() in on_config reads any variable; top-level policy code still needs vsl.env_allow', async () => {
  process.env.MTA_ENV_ON_CONFIG_NAME = 'mx.from-env.test';
  try {
    const ok = await loadFiles({
      'main.vsl': 'fn on_config(config) {\n  config.server.name = env("MTA_ENV_ON_CONFIG_NAME");\n  config\n}\n#{}\n',
    });
    try {
      assert.ok(ok.ok, ok.ok ? '' : diagnostics(ok));
      assert.equal(ok.ok && ok.version.config.server.name, 'mx.from-env.test');
    } finally {
      if (ok.ok) ok.version.dispose();
      fs.rmSync(ok.dir, { recursive: true, force: true });
    }
    const outside = await loadFiles({ 'main.vsl': 'const name = env("MTA_ENV_ON_CONFIG_NAME");\n#{}\n' });
    try {
      assert.equal(outside.ok, false);
      assert.match(diagnostics(outside), /env: 'MTA_ENV_ON_CONFIG_NAME' is not in vsl\.env_allow/);
    } finally {
      if (outside.ok) outside.version.dispose();
      fs.rmSync(outside.dir, { recursive: true, force: true });
    }
  } finally {
    delete process.env.MTA_ENV_ON_CONFIG_NAME;
  }
});
