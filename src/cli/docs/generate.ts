// `npm run docs`: regenerates docs/builtins.md and docs/configuration.md from
// the built-in catalog and the configuration schema, keeping the prose
// written under each entry. Prints the entries that still need prose.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtinEntries, configEntries } from './catalog.js';
import { renderBuiltins, renderConfiguration, undocumented } from './pages.js';

/** The repository root (this file runs from dist/src/cli/docs/). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

export interface GeneratedPage {
  file: string;
  text: string;
}

/** The two generated pages as they should be now. */
export function generatedPages(root = repoRoot()): GeneratedPage[] {
  const read = (f: string): string => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
  const builtins = path.join(root, 'docs/builtins.md');
  const config = path.join(root, 'docs/configuration.md');
  return [
    { file: builtins, text: renderBuiltins(builtinEntries(path.join(root, 'stdlib')), read(builtins)) },
    { file: config, text: renderConfiguration(configEntries(), read(config)) },
  ];
}

function main(): void {
  const root = repoRoot();
  for (const page of generatedPages(root)) {
    fs.writeFileSync(page.file, page.text);
    const missing = undocumented(page.text);
    const rel = path.relative(root, page.file);
    console.log(`wrote ${rel}${missing.length ? `; ${missing.length} entries need prose: ${missing.join(', ')}` : ''}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main();
