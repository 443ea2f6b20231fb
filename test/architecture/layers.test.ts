// The layering of docs/architecture.md, checked with dependency-cruiser
// (.dependency-cruiser.cjs): no import cycles, no folder importing a folder
// at its level or above it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers/paths.js';

const DEPCRUISE = path.join(ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');

function cruise(cwd: string): { code: number | null; out: string } {
  const r = spawnSync(DEPCRUISE, ['src', '--config', CONFIG, '--output-type', 'err'], { cwd, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('src/ keeps the layering of docs/architecture.md: no cycles, dependencies point down', () => {
  const r = cruise(ROOT);
  assert.equal(r.code, 0, r.out);
});

test('the layering rules catch an upward import and a cycle', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-layers-'));
  try {
    fs.copyFileSync(path.join(ROOT, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
    fs.mkdirSync(path.join(dir, 'src', 'mail'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'src', 'smtp'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src', 'mail', 'types.ts'), "import { front } from '../smtp/front.js';\nexport const t = front;\n");
    fs.writeFileSync(path.join(dir, 'src', 'smtp', 'front.ts'), "import { t } from '../mail/types.js';\nexport const front = 1;\nexport const again = t;\n");
    const r = cruise(dir);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /layer-mail: src\/mail\/types\.ts → src\/smtp\/front\.ts/);
    assert.match(r.out, /no-cycles/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
