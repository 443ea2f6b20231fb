// The reference documentation stays complete and reachable: every built-in
// and every configuration key has a written entry, the generated pages match
// the catalog and the schema, and every relative link in README.md and
// docs/*.md resolves to a file (and heading) inside the repository.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { builtinEntries, configEntries } from '../../src/cli/docs/catalog.js';
import { generatedPages } from '../../src/cli/docs/generate.js';
import { proseByName, PLACEHOLDER } from '../../src/cli/docs/pages.js';
import { brokenLink, markdownLinks } from '../../src/cli/docs/links.js';
import { ROOT } from '../helpers/paths.js';

const REGENERATE = 'run `npm run docs`, then write the missing prose under each heading';

function documented(file: string): Map<string, string> {
  return proseByName(fs.readFileSync(path.join(ROOT, file), 'utf8'));
}

function missing(names: string[], prose: Map<string, string>): string[] {
  return names.filter((n) => {
    const p = prose.get(n);
    return p === undefined || p === '' || p === PLACEHOLDER;
  });
}

describe('reference documentation', () => {
  test('every built-in of the catalog has a written entry in docs/builtins.md', () => {
    const names = builtinEntries(path.join(ROOT, 'stdlib')).map((e) => e.name);
    assert.ok(names.includes('check_rcpt_relay') && names.includes('spf::check'), 'the catalog lists host and stdlib built-ins');
    const gaps = missing(names, documented('docs/builtins.md'));
    assert.deepEqual(gaps, [], `docs/builtins.md lacks ${gaps.join(', ')}: ${REGENERATE}`);
  });

  test('every configuration key of the schema has a written entry in docs/configuration.md', () => {
    const keys = configEntries().map((e) => e.key);
    assert.ok(keys.includes('server.auth.allow_plaintext') && keys.includes('delivery.timeout'));
    const gaps = missing(keys, documented('docs/configuration.md'));
    assert.deepEqual(gaps, [], `docs/configuration.md lacks ${gaps.join(', ')}: ${REGENERATE}`);
  });

  test('the generated tables match the current catalog and schema', () => {
    for (const page of generatedPages(ROOT)) {
      const rel = path.relative(ROOT, page.file);
      assert.ok(fs.readFileSync(page.file, 'utf8') === page.text, `${rel} is out of date: ${REGENERATE}`);
    }
  });

  test('every relative link in README.md and docs/*.md resolves inside the repository', () => {
    const pages = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const broken: string[] = [];
    for (const page of pages) {
      const file = path.join(ROOT, page);
      for (const link of markdownLinks(fs.readFileSync(file, 'utf8'))) {
        const why = brokenLink(ROOT, file, link);
        if (why) broken.push(`${page}: ${why}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('the link check refuses links that leave the repository or name a missing heading', () => {
    const readme = path.join(ROOT, 'README.md');
    assert.match(brokenLink(ROOT, readme, '../shared/vsl/SPEC.md') ?? '', /outside the repository/);
    assert.match(brokenLink(ROOT, readme, 'docs/no-such-page.md') ?? '', /no such file/);
    assert.match(brokenLink(ROOT, readme, 'docs/configuration.md#no-such-heading') ?? '', /no heading/);
    assert.equal(brokenLink(ROOT, readme, 'docs/configuration.md#serversmtptimeout'), null);
    assert.deepEqual(markdownLinks('```\n[a](x.md)\n```\n`[b](y.md)` [c](z.md)'), ['z.md']);
  });
});
