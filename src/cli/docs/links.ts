// Relative links of a Markdown page and whether they resolve inside the
// repository: the file exists, and a `#fragment` names a heading of it.
// Absolute URLs (http:, mailto:) are not checked.

import fs from 'node:fs';
import path from 'node:path';

/** Links `[text](target)` outside fenced code blocks and inline code. */
export function markdownLinks(text: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push(m[1]!);
  }
  return out;
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes. */
export function headingAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const base = headingAnchor(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Why `target`, linked from `fromFile`, does not resolve inside `root`; null when it does. */
export function brokenLink(root: string, fromFile: string, target: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null;
  const [rawPath, fragment] = target.split('#', 2) as [string, string | undefined];
  const resolved = rawPath === '' ? fromFile : path.resolve(path.dirname(fromFile), decodeURIComponent(rawPath));
  const rel = path.relative(root, resolved);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return `${target} points outside the repository`;
  if (!fs.existsSync(resolved)) return `${target}: no such file ${rel}`;
  if (fragment && resolved.endsWith('.md') && !anchorsOf(resolved).has(fragment)) return `${target}: ${rel} has no heading #${fragment}`;
  return null;
}
