// Turns the map returned by on_config (SPEC §9.1) into a Config: every key
// must exist in the defaults and have the right type; durations, sizes,
// addresses and enumerations are checked here so a typo is a load error with
// the key's path, never a surprise at runtime.

import { levenshtein } from '../vsl/compiler.js';
import { textOf } from '../vsl/values/objects.js';
import { VObject, type Value } from '../vsl/values/value.js';
import { defaultConfig, type Config } from './schema.js';
import { parseDuration, parseSize } from './units.js';

export class ConfigError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

const DURATION_KEYS = new Set([
  'server.tls.handshake_timeout', 'server.smtp.error.delay', 'server.smtp.greeting_delay', 'server.smtp.timeout',
  'server.smtp.data_timeout', 'server.smtp.session_timeout', 'server.auth.failure_window', 'server.dns.timeout',
  'server.dns.dnsbl_timeout', 'delivery.max_age', 'delivery.timeout', 'vsl.rule_timeout', 'vsl.io_budget',
  'queue.dead_max_age',
]);
const ENUMS: Record<string, string[]> = {
  'vsl.error_status': ['tempfail', 'deny'],
  'logs.level': ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
  'logs.format': ['json', 'pretty'],
  'server.tls.min_version': ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'],
  'server.smtp.helo_syntax': ['lenient', 'strict'],
};

/** Converts a runtime value to plain JSON-ish data (ints to numbers, objects to their text). */
function plain(v: Value, path: string): unknown {
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw new ConfigError(path, 'number out of range');
    return Number(v);
  }
  if (v instanceof Map) {
    const o: Record<string, unknown> = {};
    // defineProperty, not `o[k] =`: a key named __proto__ must stay an own
    // key (and so be reported as unknown), not replace the prototype.
    for (const [k, e] of v) ownSet(o, k, plain(e, `${path}.${k}`));
    return o;
  }
  if (Array.isArray(v)) return v.map((e, i) => plain(e, `${path}[${i}]`));
  if (v instanceof VObject) return textOf(v);
  if (v === undefined) return null;
  return v;
}

function ownSet(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * Whether `k` is a key of the defaults map `defs` itself. `k in defs` would
 * also accept what every object inherits (constructor, hasOwnProperty,
 * __proto__, toString…), letting them pass as known keys (SPEC §9.1).
 */
function knownKey(defs: object, k: string): boolean {
  return Object.hasOwn(defs, k);
}

function typeName(v: unknown): string {
  if (v === null) return '()';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'object') return 'map';
  return typeof v;
}

function suggest(key: string, known: string[]): string {
  let best: string | null = null;
  let bestD = 4;
  for (const k of known) {
    const d = levenshtein(key, k);
    if (d < bestD || (k.startsWith(key.split('_')[0]!) && d < bestD + 4 && best === null)) {
      best = k;
      bestD = d;
    }
  }
  return best ? `, did you mean ${best}?` : '';
}

/** Checks `value` against `def` (the default at `path`) and returns the converted value. */
function check(value: unknown, def: unknown, path: string): unknown {
  if (path === 'dkim.keys') return checkDkimKeys(value, path);
  if (def === null) {
    // Nullable strings (TLS paths, auth backend).
    if (value === null || typeof value === 'string') return value;
    throw new ConfigError(path, `expected a string or (), got ${typeName(value)}`);
  }
  if (Array.isArray(def)) {
    if (!Array.isArray(value)) throw new ConfigError(path, `expected an array, got ${typeName(value)}`);
    return value.map((e, i) => {
      if (typeof e !== 'string') throw new ConfigError(`${path}[${i}]`, `expected a string, got ${typeName(e)}`);
      if (DURATION_KEYS.has(path) || path === 'delivery.retry') checkDuration(e, `${path}[${i}]`);
      return e;
    });
  }
  if (typeof def === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(path, `expected a map, got ${typeName(value)}`);
    }
    const out: Record<string, unknown> = {};
    const defs = def as Record<string, unknown>;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const sub = path ? `${path}.${k}` : k;
      if (!knownKey(defs, k)) throw new ConfigError(sub, `unknown key${suggest(k, Object.keys(defs))}`);
      out[k] = check(v, defs[k], sub);
    }
    for (const k of Object.keys(defs)) if (!Object.hasOwn(out, k)) out[k] = defs[k];
    return out;
  }
  if (typeof def === 'number') {
    if (path === 'server.smtp.message_size_limit' && typeof value === 'string') return parseSizeAt(value, path);
    if (typeof value !== 'number' || !Number.isInteger(value)) throw new ConfigError(path, `expected an int, got ${typeName(value)}`);
    if (value < 0) throw new ConfigError(path, 'must not be negative');
    if (path === 'delivery.mx_port' && (value < 1 || value > 65535)) throw new ConfigError(path, 'must be a TCP port, 1 to 65535');
    if (path === 'server.smtp.client_ipv6_prefix_length' && (value < 1 || value > 128)) throw new ConfigError(path, 'must be a prefix length, 1 to 128');
    return value;
  }
  if (typeof def === 'boolean') {
    if (typeof value !== 'boolean') throw new ConfigError(path, `expected a bool, got ${typeName(value)}`);
    return value;
  }
  if (typeof def === 'string') {
    if (typeof value !== 'string') throw new ConfigError(path, `expected a string, got ${typeName(value)}`);
    if (DURATION_KEYS.has(path)) checkDuration(value, path);
    if (path === 'vsl.memory_limit') parseSizeAt(value, path);
    const allowed = ENUMS[path];
    if (allowed && !allowed.includes(value)) throw new ConfigError(path, `expected one of ${allowed.map((a) => `"${a}"`).join(', ')}, got "${value}"`);
    return value;
  }
  return value;
}

function checkDuration(s: string, path: string): void {
  try {
    parseDuration(s);
  } catch (e) {
    throw new ConfigError(path, (e as Error).message);
  }
}

function parseSizeAt(s: string, path: string): number {
  try {
    return parseSize(s);
  } catch (e) {
    throw new ConfigError(path, (e as Error).message);
  }
}

function checkDkimKeys(value: unknown, path: string): Config['dkim']['keys'] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(path, 'expected a map of domain → [#{ selector, private_key }]');
  const out: Config['dkim']['keys'] = {};
  for (const [domain, list] of Object.entries(value as Record<string, unknown>)) {
    if (domain === '__proto__') throw new ConfigError(`${path}.${domain}`, 'not a domain name');
    if (!Array.isArray(list)) throw new ConfigError(`${path}.${domain}`, 'expected an array of #{ selector, private_key }');
    out[domain] = list.map((k, i) => {
      const o = k as Record<string, unknown>;
      if (!o || typeof o.selector !== 'string' || typeof o.private_key !== 'string') {
        throw new ConfigError(`${path}.${domain}[${i}]`, 'expected #{ selector: "…", private_key: "/path/key.pem" }');
      }
      return { selector: o.selector, private_key: o.private_key };
    });
  }
  return out;
}

/** Validates what on_config returned (a vSL map) against the defaults. */
export function configFromValue(v: Value, hostname: string): Config {
  if (!(v instanceof Map)) throw new ConfigError('on_config', `must return the configuration map, got ${v === undefined ? '()' : typeof v}`);
  const data = plain(v, '');
  const cfg = check(data, defaultConfig(hostname), '') as Config;
  return finishConfig(cfg);
}

/**
 * Every problem of what on_config returned, not only the first: each key is
 * checked on its own (configFromValue stops at the first).
 */
export function configErrors(v: Value, hostname: string): ConfigError[] {
  if (!(v instanceof Map)) return [new ConfigError('on_config', `must return the configuration map, got ${v === undefined ? '()' : typeof v}`)];
  const errors: ConfigError[] = [];
  const walk = (value: unknown, def: unknown, path: string): void => {
    const isMap = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
    if (path === 'dkim.keys' || !isMap(def) || !isMap(value)) {
      try {
        check(value, def, path);
      } catch (e) {
        if (e instanceof ConfigError) errors.push(e);
        else throw e;
      }
      return;
    }
    for (const [k, sub] of Object.entries(value)) {
      const p = path ? `${path}.${k}` : k;
      if (!knownKey(def, k)) errors.push(new ConfigError(p, `unknown key${suggest(k, Object.keys(def))}`));
      else walk(sub, def[k], p);
    }
  };
  try {
    walk(plain(v, ''), defaultConfig(hostname), '');
  } catch (e) {
    if (e instanceof ConfigError) errors.push(e);
    else throw e;
  }
  return errors;
}

/** Derived defaults: server.domain defaults to server.name (SPEC §9.2). */
export function finishConfig(cfg: Config): Config {
  cfg.server.virtual = cfg.server.virtual.map((d) => d.toLowerCase());
  cfg.server.domain = cfg.server.domain.toLowerCase();
  return cfg;
}

/**
 * Applies `--set key=value` (SPEC §9.1): the value is a vSL literal, bare
 * words are strings. Parsed here without the full language: ints, bools,
 * quoted strings, and [a, b] arrays of those.
 */
export function applySet(cfg: Config, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq < 1) throw new ConfigError(assignment, 'expected key=value');
  const key = assignment.slice(0, eq).trim();
  const raw = assignment.slice(eq + 1).trim();
  const parts = key.split('.');
  let node: Record<string, unknown> = cfg as unknown as Record<string, unknown>;
  const defs = defaultConfig('x') as unknown as Record<string, unknown>;
  let def: unknown = defs;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    if (!knownKey(node, p) || typeof node[p] !== 'object' || node[p] === null) throw new ConfigError(key, `unknown key${suggest(p, Object.keys(node))}`);
    node = node[p] as Record<string, unknown>;
    def = (def as Record<string, unknown>)[p];
  }
  const last = parts[parts.length - 1]!;
  if (!knownKey(node, last)) throw new ConfigError(key, `unknown key${suggest(last, Object.keys(node))}`);
  const value = parseLiteral(raw);
  node[last] = check(value, (def as Record<string, unknown>)[last], key);
}

function parseLiteral(raw: string): unknown {
  if (/^-?\d+$/.test(raw)) return Number(raw);
  if (raw === 'true' || raw === 'false') return raw === 'true';
  if (raw === '()') return null;
  if (/^".*"$/.test(raw)) return JSON.parse(raw);
  if (raw.startsWith('[') && raw.endsWith(']')) {
    const inner = raw.slice(1, -1).trim();
    if (!inner) return [];
    return inner.split(',').map((s) => parseLiteral(s.trim()));
  }
  return raw;
}
