// What the generated reference pages list: every name a policy can call
// (the built-in catalog: guest intrinsics, host built-ins, stdlib functions
// and v1 aliases) and every configuration key (the defaults of
// src/config/schema.ts). docs/builtins.md and docs/configuration.md are
// rendered from these lists; test/docs checks each entry is documented.

import fs from 'node:fs';
import path from 'node:path';
import { allBuiltins } from '../../builtins/registry.js';
import { GUEST_BUILTINS, HOST_ALIASES, STDLIB_NAMESPACES, arityText, type Arity } from '../../vsl/catalog.js';
import { defaultConfig, RESTART_KEYS } from '../../config/schema.js';
import { parseDuration } from '../../config/units.js';
import { STAGES, type Stage } from '../../mail/types.js';

export interface BuiltinEntry {
  name: string;
  /** How many arguments, e.g. "1" or "0..2"; several for stdlib overloads. */
  arity: string;
  /** First stage it may be called in (later stages too); null for everywhere. */
  from: Stage | null;
  io: boolean;
  /** Where it is implemented: inside the sandbox, on the host, or in stdlib/*.vsl. */
  kind: 'guest' | 'host' | 'stdlib';
  /** Set for v1 spellings: the name it is rewritten to or shares its implementation with. */
  aliasOf: string | null;
}

function stdlibFunctions(stdlibDir: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const file of fs.readdirSync(stdlibDir).filter((f) => f.endsWith('.vsl')).sort()) {
    const ns = path.basename(file, '.vsl');
    const prefix = STDLIB_NAMESPACES.includes(ns) ? `${ns}::` : '';
    const text = fs.readFileSync(path.join(stdlibDir, file), 'utf8');
    for (const m of text.matchAll(/^fn\s+([a-z_][a-z0-9_]*)\s*\(([^)]*)\)/gim)) {
      const name = prefix + m[1]!;
      const n = m[2]!.trim() === '' ? 0 : m[2]!.split(',').length;
      out.set(name, [...(out.get(name) ?? []), n]);
    }
  }
  return out;
}

function arityOfCounts(counts: number[]): string {
  const sorted = [...new Set(counts)].sort((a, b) => a - b);
  return sorted.join(' or ');
}

/** Every callable name, sorted; `sys::` primitives are left out (the compiler refuses them outside stdlib/). */
export function builtinEntries(stdlibDir: string): BuiltinEntry[] {
  const byName = new Map<string, BuiltinEntry>();
  // Names sharing one guest implementation are aliases of the first (`new_address` of `address`).
  const seenGuest = new Map<string, string>();
  for (const [name, g] of Object.entries(GUEST_BUILTINS)) {
    if (name.startsWith('sys::')) continue; // stdlib-only primitives
    const first = seenGuest.get(g.js);
    if (first === undefined) seenGuest.set(g.js, name);
    byName.set(name, { name, arity: arityText(g.arity), from: null, io: false, kind: 'guest', aliasOf: first ?? null });
  }
  for (const b of allBuiltins()) {
    if (b.name.startsWith('sys::')) continue; // reached through `service` declarations and stdlib only
    byName.set(b.name, { name: b.name, arity: arityText(b.arity as Arity), from: b.from, io: b.io, kind: 'host', aliasOf: null });
  }
  for (const [name, counts] of stdlibFunctions(stdlibDir)) {
    byName.set(name, { name, arity: arityOfCounts(counts), from: null, io: false, kind: 'stdlib', aliasOf: null });
  }
  for (const [alias, target] of Object.entries(HOST_ALIASES)) {
    if (byName.has(alias)) continue; // registered under both names: documented as itself
    const t = byName.get(target);
    byName.set(alias, { name: alias, arity: t?.arity ?? '?', from: t?.from ?? null, io: t?.io ?? false, kind: t?.kind ?? 'host', aliasOf: target });
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function stagesText(from: Stage | null): string {
  if (from === null) return 'all';
  const i = STAGES.indexOf(from);
  return i === 0 ? 'all' : `${from} and later`;
}

export interface ConfigEntry {
  key: string;
  /** The default as vSL would write it. */
  default: string;
  unit: string;
  restart: boolean;
}

const SIZE_KEYS = new Set(['server.smtp.message_size_limit', 'server.smtp.header_size_max', 'vsl.memory_limit']);

function unitOf(key: string, value: unknown): string {
  if (SIZE_KEYS.has(key)) return 'bytes (int or "10MB", "32MiB")';
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((v) => typeof v === 'string' && isDuration(v))) return 'list of durations';
    return 'list of strings';
  }
  if (typeof value === 'string' && isDuration(value)) return 'duration ("500ms", "30s", "5m", "1h30m", "5d")';
  if (typeof value === 'number') return key.endsWith('port') ? 'TCP port' : 'count';
  if (typeof value === 'boolean') return 'bool';
  if (value === null) return 'string or ()';
  if (typeof value === 'object') return 'map';
  return 'string';
}

function isDuration(s: string): boolean {
  try {
    parseDuration(s);
    return true;
  } catch {
    return false;
  }
}

/** The configuration's keys and values in schema order (leaves; `dkim.keys` is one map-valued key). */
export function flattenConfig(cfg: object): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && key !== 'dkim.keys') walk(v as Record<string, unknown>, key);
      else out.push([key, v]);
    }
  };
  walk(cfg as Record<string, unknown>, '');
  return out;
}

/** A value as vSL would write it (`"5m"`, `["a", "b"]`, `()`, `#{}`). */
export function vslLiteral(v: unknown): string {
  if (v === null) return '()';
  if (Array.isArray(v)) return `[${v.map(vslLiteral).join(', ')}]`;
  if (typeof v === 'object') return Object.keys(v as object).length === 0 ? '#{}' : JSON.stringify(v);
  return JSON.stringify(v);
}

/** The host name the reference shows where defaults use the machine's name. */
export const DOC_HOSTNAME = 'the host name';

/** Every configuration key (leaves of the defaults; `dkim.keys` is one map-valued key), in schema order. */
export function configEntries(): ConfigEntry[] {
  return flattenConfig(defaultConfig(DOC_HOSTNAME)).map(([key, v]) => {
    const shown = v === DOC_HOSTNAME ? `${DOC_HOSTNAME} (os.hostname())` : key === 'logs.format' ? '"pretty" on a terminal, else "json"' : vslLiteral(v);
    return { key, default: shown, unit: unitOf(key, v), restart: RESTART_KEYS.includes(key) };
  });
}
