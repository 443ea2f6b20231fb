// The project root, found by walking up to package.json: tests run both from
// test/ (tsx) and from dist/test/ (npm test), so paths relative to the test
// file would point into dist/ in one of the two.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'stdlib'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('project root not found');
}

export const ROOT = findRoot();

/** An absolute path inside the project, from a root-relative one. */
export function fromRoot(...parts: string[]): string {
  return path.join(ROOT, ...parts);
}
