// `mta milter` and `mta policy-server` on the command line: --help, and
// usage errors for missing options (exit 2), as every mta command does.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/mta.js';
import { MAIN_HELP } from '../../src/cli/help.js';

async function mta(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { stdin: process.stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('mta milter and mta policy-server commands', () => {
  for (const cmd of ['milter', 'policy-server']) {
    it(`${cmd} --help prints its usage and exits 0`, async () => {
      const r = await mta([cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`^usage: mta ${cmd} --config main\\.vsl --listen HOST:PORT\\|unix:PATH`));
    });

    it(`${cmd} without --listen is a usage error (exit 2)`, async () => {
      const r = await mta([cmd, '--config', 'main.vsl']);
      assert.equal(r.code, 2);
      assert.match(r.err, /--listen is required/);
    });
  }

  it('mta --help lists both commands', () => {
    assert.match(MAIN_HELP, /mta milter --config/);
    assert.match(MAIN_HELP, /mta policy-server --config/);
  });
});
