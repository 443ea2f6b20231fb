// Aliases, applied to a queued message's recipients before delivery:
//
//   delivery.aliases          a file in the /etc/aliases format (aliases(5)):
//                             `name: target, target`, continuation lines
//                             start with white space, `#` comments. Applies
//                             to recipients of the local domains (SPEC §4.4).
//   delivery.virtual_aliases  a virtual alias map: `address  target, target`
//                             or `@domain  target` (every address of the
//                             domain), for any domain.
//
// Relative file names are relative to the policy's directory.
//
// A target is an address, or a bare name (a local user: name@server.domain);
// `\name` is that local user without further expansion. Pipes, files and
// :include: are not supported and are reported when the file is read.
// With a recipient_delimiter, jane+list@ falls back to jane@'s entry.
//
// Expansion is recursive. An alias that names itself (`jane: jane, archive`)
// delivers to its own mailbox too; a cycle that never reaches a mailbox
// (a → b → a) fails those recipients with 5.4.6, as does an expansion deeper
// than MAX_DEPTH or wider than MAX_ADDRESSES.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { MailAddress } from '../mail/types.js';
import { addressText } from '../mail/types.js';
import { isLocalDomain } from './routes.js';

export const MAX_DEPTH = 20;
export const MAX_ADDRESSES = 1000;

export interface AliasTables {
  /** /etc/aliases entries: lower-case local part → targets. */
  local: Map<string, string[]>;
  /** Virtual map entries: lower-case `local@domain` or `@domain` → targets. */
  virtual: Map<string, string[]>;
}

export const NO_ALIASES: AliasTables = { local: new Map(), virtual: new Map() };

/** A problem in an alias file, reported with its line. */
export interface AliasWarning {
  line: number;
  message: string;
}

/** Logical lines: comments dropped, continuation lines joined; with the number of the first physical line. */
function logicalLines(text: string): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (/^\s*#/.test(raw) || raw.trim() === '') return;
    if (/^\s/.test(raw) && out.length > 0) out[out.length - 1]!.text += ` ${raw.trim()}`;
    else out.push({ line: i + 1, text: raw.trim() });
  });
  return out;
}

/** Splits targets at commas and white space; drops (and reports) the kinds not supported. */
function targets(list: string, line: number, warnings: AliasWarning[]): string[] {
  const out: string[] = [];
  for (const t of list.split(/[,\s]+/).filter((x) => x !== '')) {
    const unquoted = t.replace(/^"(.*)"$/, '$1');
    if (/^[|/]|^:include:/i.test(unquoted)) warnings.push({ line, message: `target ${JSON.stringify(unquoted)} is not supported (only addresses and local names)` });
    else out.push(unquoted);
  }
  return out;
}

/** Parses an /etc/aliases file. */
export function parseAliasesFile(text: string): { table: Map<string, string[]>; warnings: AliasWarning[] } {
  const table = new Map<string, string[]>();
  const warnings: AliasWarning[] = [];
  for (const { line, text: l } of logicalLines(text)) {
    const m = /^("?)([^:"\s]+)\1\s*:\s*(.*)$/.exec(l);
    if (!m) {
      warnings.push({ line, message: 'expected "name: target, target"' });
      continue;
    }
    table.set(m[2]!.toLowerCase(), targets(m[3]!, line, warnings));
  }
  return { table, warnings };
}

/** Parses a virtual alias map. */
export function parseVirtualMap(text: string): { table: Map<string, string[]>; warnings: AliasWarning[] } {
  const table = new Map<string, string[]>();
  const warnings: AliasWarning[] = [];
  for (const { line, text: l } of logicalLines(text)) {
    const m = /^(\S+)\s+(.+)$/.exec(l);
    if (!m || !m[1]!.includes('@')) {
      warnings.push({ line, message: 'expected "address target, target" (or "@domain target")' });
      continue;
    }
    table.set(m[1]!.toLowerCase(), targets(m[2]!, line, warnings));
  }
  return { table, warnings };
}

/** The entry for an address: virtual map first, then (local domains) the aliases file; with the delimiter fallback. */
function lookup(a: MailAddress, tables: AliasTables, cfg: Config): string[] | undefined {
  const local = a.local.toLowerCase();
  const domain = a.domain.toLowerCase();
  const delim = cfg.server.recipient_delimiter;
  const bases = [local];
  if (delim !== '' && local.includes(delim)) bases.push(local.slice(0, local.indexOf(delim)));
  for (const base of bases) {
    const v = tables.virtual.get(`${base}@${domain}`);
    if (v) return v;
  }
  const catchAll = tables.virtual.get(`@${domain}`);
  if (catchAll) return catchAll;
  if (!isLocalDomain(domain, cfg)) return undefined;
  for (const base of bases) {
    const l = tables.local.get(base);
    if (l) return l;
  }
  return undefined;
}

function toAddress(target: string, cfg: Config): MailAddress {
  const at = target.lastIndexOf('@');
  const local = at < 0 ? target : target.slice(0, at);
  const domain = (at < 0 ? cfg.server.domain : target.slice(at + 1)).toLowerCase();
  return { local, domain, raw: `<${local}@${domain}>`, isNull: false };
}

const key = (a: MailAddress) => addressText(a).toLowerCase();

export type Expansion =
  /** No entry: the address is delivered as it is. */
  | { kind: 'none' }
  | { kind: 'expanded'; addresses: MailAddress[] }
  /** A cycle without a mailbox, or too deep or too wide: the chain that shows it. */
  | { kind: 'loop'; chain: string[] };

/** Expands one recipient through the tables. */
export function expandAlias(rcpt: MailAddress, tables: AliasTables, cfg: Config): Expansion {
  if (lookup(rcpt, tables, cfg) === undefined) return { kind: 'none' };
  const out = new Map<string, MailAddress>();
  let loop: string[] | null = null;
  const visit = (a: MailAddress, chain: string[]): void => {
    if (loop) return;
    const entry = lookup(a, tables, cfg);
    if (entry === undefined) {
      out.set(key(a), a);
      return;
    }
    if (chain.length >= MAX_DEPTH || out.size > MAX_ADDRESSES) {
      loop = [...chain, key(a)];
      return;
    }
    for (const t of entry) {
      const noExpand = t.startsWith('\\');
      const target = toAddress(noExpand ? t.slice(1) : t, cfg);
      const k = key(target);
      if (noExpand || k === key(a)) out.set(k, target); // its own mailbox
      else if (chain.includes(k)) loop = [...chain, key(a), k];
      else visit(target, [...chain, key(a)]);
    }
  };
  visit(rcpt, []);
  if (loop) return { kind: 'loop', chain: loop };
  return { kind: 'expanded', addresses: [...out.values()] };
}

interface Cached {
  path: string;
  mtimeMs: number;
  size: number;
  table: Map<string, string[]>;
}

/**
 * Reads the alias files of the configuration, again only when one changed
 * (path, size or mtime). A file that cannot be read throws: the message
 * waits rather than being delivered without its aliases.
 */
export class AliasFiles {
  private local: Cached | null = null;
  private virtual: Cached | null = null;

  /** `baseDir`: where relative file names point (the policy's directory). */
  constructor(
    private readonly warn: (file: string, w: AliasWarning) => void,
    private readonly baseDir = '.',
  ) {}

  async tables(cfg: Config): Promise<AliasTables> {
    const [local, virtual] = await Promise.all([
      this.read(cfg.delivery.aliases, this.local, parseAliasesFile).then((c) => (this.local = c)),
      this.read(cfg.delivery.virtual_aliases, this.virtual, parseVirtualMap).then((c) => (this.virtual = c)),
    ]);
    return { local: local?.table ?? new Map(), virtual: virtual?.table ?? new Map() };
  }

  private async read(name: string, cached: Cached | null, parse: typeof parseAliasesFile): Promise<Cached | null> {
    if (name.trim() === '') return null;
    const file = path.resolve(this.baseDir, name);
    const st = await fs.stat(file);
    if (cached && cached.path === file && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached;
    const { table, warnings } = parse(await fs.readFile(file, 'utf8'));
    for (const w of warnings) this.warn(file, w);
    return { path: file, mtimeMs: st.mtimeMs, size: st.size, table };
  }
}
