// Postfix access(5) tables for postfix::check_*_access (SPEC §8.2): the
// table formats, the lookup keys tried for a client, HELO or address, and
// the actions a hit can carry.
//
// Formats, chosen by a `type:` prefix on the path:
// - untyped, `hash:`, `texthash:`: `key <whitespace> action` lines, read from
//   the text source (the file `postmap` would compile; we read it directly,
//   so no .db is needed). Keys are lower-cased; the first duplicate wins and
//   later ones are warnings.
// - `cidr:`: `network action` lines, scanned in order.
// - `regexp:` / `pcre:`: `/re/flags action` lines (`!/re/` negates), scanned
//   in order, case-insensitive unless the `i` flag toggles it, `$1`…`$9`
//   substituted. Patterns are ECMAScript regular expressions.
// For all: `#` comment lines (also indented), blank lines ignored, a line
// starting with whitespace continues the previous one.
//
// As in Postfix, only hash tables are searched with partial keys (parent
// domains, `user@`, shorter networks); cidr and regexp tables see the whole
// client name and address, the whole address, or the whole HELO name.

import { cidrContainsIp, parseCidr, parseIp, type Cidr } from '../../vsl/values/net.js';
import type { MailAddress } from '../../mail/types.js';
import { DiagnosticSink, columnOf, splitLines, type Parsed } from './diagnostics.js';
import { networkOf } from './probe.js';
import { compileLinearRegex, type LinearRegex } from './linear-regex.js';

export type AccessMapType = 'hash' | 'cidr' | 'regexp';

export interface AccessHit {
  /** The action text, `$n` already substituted. */
  action: string;
  line: number;
  /** The lookup key that hit. */
  key: string;
}

export interface HashMap {
  type: 'hash';
  file: string;
  entries: Map<string, { action: string; line: number }>;
}

export interface CidrMap {
  type: 'cidr';
  file: string;
  entries: Array<{ cidr: Cidr; action: string; line: number }>;
}

export interface RegexpMap {
  type: 'regexp';
  file: string;
  entries: Array<{ re: LinearRegex; negate: boolean; action: string; line: number }>;
}

export type AccessMap = HashMap | CidrMap | RegexpMap;

/** `hash:/etc/postfix/sender_access` → type and path; no prefix means hash. */
export function splitMapSpec(spec: string): { type: AccessMapType; path: string } {
  const m = /^([a-z]+):(.*)$/.exec(spec);
  if (!m) return { type: 'hash', path: spec };
  switch (m[1]) {
    case 'hash':
    case 'texthash':
      return { type: 'hash', path: m[2]! };
    case 'cidr':
      return { type: 'cidr', path: m[2]! };
    case 'regexp':
    case 'pcre':
      return { type: 'regexp', path: m[2]! };
    default:
      throw new Error(`unsupported access map type '${m[1]}:' (supported: hash, texthash, cidr, regexp, pcre)`);
  }
}

// ------------------------------------------------------------------ parsing

interface LogicalLine {
  line: number;
  text: string;
}

/** Joins continuation lines (leading whitespace) to the line they continue; drops comments and blanks. */
function logicalLines(text: string, sink: DiagnosticSink): LogicalLine[] {
  const out: LogicalLine[] = [];
  splitLines(text).forEach((raw, idx) => {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    if (/^[ \t]/.test(raw)) {
      const last = out[out.length - 1];
      if (!last) {
        sink.error(idx + 1, 1, 'continuation line (starting with whitespace) without a line to continue');
        return;
      }
      last.text += ` ${trimmed}`;
      return;
    }
    out.push({ line: idx + 1, text: raw.trimEnd() });
  });
  return out;
}

/** Splits `key action` at the first whitespace. */
function keyAndAction(l: LogicalLine, sink: DiagnosticSink): { key: string; action: string } | null {
  const m = /^(\S+)\s+(.+)$/.exec(l.text);
  if (!m) {
    sink.error(l.line, 1, `'${l.text}' has no action (expected 'key action')`);
    return null;
  }
  return { key: m[1]!, action: m[2]!.trim() };
}

/**
 * Validates an action by parsing it (`check` is access action syntax, see
 * postfix.ts); regexp actions are checked with their `$n` replaced.
 */
export type ActionChecker = (action: string) => string | null;

function parseHash(text: string, file: string, sink: DiagnosticSink, check: ActionChecker): HashMap {
  const entries = new Map<string, { action: string; line: number }>();
  for (const l of logicalLines(text, sink)) {
    const kv = keyAndAction(l, sink);
    if (!kv) continue;
    const key = kv.key.toLowerCase();
    const problem = check(kv.action);
    if (problem) {
      sink.error(l.line, columnOf(l.text, l.text.indexOf(kv.action, kv.key.length)), problem);
      continue;
    }
    const first = entries.get(key);
    if (first) {
      sink.warning(l.line, 1, `duplicate key '${key}' (first defined at line ${first.line}, which wins)`);
      continue;
    }
    entries.set(key, { action: kv.action, line: l.line });
  }
  return { type: 'hash', file, entries };
}

function parseCidrMap(text: string, file: string, sink: DiagnosticSink, check: ActionChecker): CidrMap {
  const entries: CidrMap['entries'] = [];
  for (const l of logicalLines(text, sink)) {
    const kv = keyAndAction(l, sink);
    if (!kv) continue;
    const net = kv.key.replace(/^\[([^\]]+)\]/, '$1');
    const cidr = net.includes('/') ? parseCidr(net) : networkOf(net);
    if (!cidr) {
      sink.error(l.line, 1, `invalid network '${kv.key}' (expected a.b.c.d/n, an IPv6 network or an address)`);
      continue;
    }
    if (cidr.hostBitsSet) sink.warning(l.line, 1, `network '${kv.key}' has host bits set; they are ignored`);
    const problem = check(kv.action);
    if (problem) {
      sink.error(l.line, columnOf(l.text, l.text.indexOf(kv.action, kv.key.length)), problem);
      continue;
    }
    entries.push({ cidr, action: kv.action, line: l.line });
  }
  return { type: 'cidr', file, entries };
}

function parseRegexpMap(text: string, file: string, sink: DiagnosticSink, check: ActionChecker): RegexpMap {
  const entries: RegexpMap['entries'] = [];
  for (const l of logicalLines(text, sink)) {
    let s = l.text;
    if (/^(if|endif)\b/i.test(s)) {
      sink.error(l.line, 1, 'if/endif blocks are not supported');
      continue;
    }
    let negate = false;
    if (s.startsWith('!')) {
      negate = true;
      s = s.slice(1);
    }
    const delim = s[0];
    if (delim === undefined || /[A-Za-z0-9\s\\]/.test(delim)) {
      sink.error(l.line, 1, `expected /pattern/ at the start of '${l.text}'`);
      continue;
    }
    // The closing delimiter: the next unescaped one.
    let end = -1;
    for (let i = 1; i < s.length; i++) {
      if (s[i] === '\\') i++;
      else if (s[i] === delim) {
        end = i;
        break;
      }
    }
    if (end < 0) {
      sink.error(l.line, 1, `unterminated pattern '${l.text}'`);
      continue;
    }
    const source = s.slice(1, end);
    const fm = /^([A-Za-z]*)\s+(.+)$/.exec(s.slice(end + 1));
    if (!fm) {
      sink.error(l.line, 1, `'${l.text}' has no action (expected '/pattern/ action')`);
      continue;
    }
    let insensitive = true;
    let multiline = false;
    let bad: string | null = null;
    for (const f of fm[1]!) {
      if (f === 'i') insensitive = !insensitive;
      else if (f === 'm') multiline = true;
      else bad = f;
    }
    if (bad) {
      sink.error(l.line, 1 + end + (negate ? 1 : 0), `unsupported pattern flag '${bad}' (supported: i, m)`);
      continue;
    }
    // Matched in linear time (linear-regex.ts); backtracking-only syntax is refused here.
    const re = compileLinearRegex(source, (insensitive ? 'i' : '') + (multiline ? 'm' : ''));
    if (typeof re === 'string') {
      sink.error(l.line, 1, re);
      continue;
    }
    const action = fm[2]!.trim();
    const problem = check(substitute(action, ['x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x']));
    if (problem) {
      sink.error(l.line, columnOf(l.text, l.text.lastIndexOf(action)), problem);
      continue;
    }
    entries.push({ re, negate, action, line: l.line });
  }
  return { type: 'regexp', file, entries };
}

export function parseAccessMap(text: string, file: string, type: AccessMapType, check: ActionChecker): Parsed<AccessMap> {
  const sink = new DiagnosticSink(file);
  let value: AccessMap;
  switch (type) {
    case 'hash':
      value = parseHash(text, file, sink, check);
      break;
    case 'cidr':
      value = parseCidrMap(text, file, sink, check);
      break;
    case 'regexp':
      value = parseRegexpMap(text, file, sink, check);
      break;
  }
  return { value, diagnostics: sink.list };
}

// ------------------------------------------------------------------ lookups

/** `$1`…`$9`, `${n}`, `$(n)` replaced by the match groups; `$$` is `$`. */
export function substitute(action: string, groups: ReadonlyArray<string | undefined>): string {
  return action.replace(/\$(\$|\d|\{(\d)\}|\((\d)\))/g, (_m, all: string, b?: string, p?: string) => {
    if (all === '$') return '$';
    const n = Number(b ?? p ?? all);
    return groups[n] ?? '';
  });
}

/** Looks one key up. Hash keys are compared lower-cased; cidr tables only answer IP keys. */
export function lookupKey(map: AccessMap, key: string): AccessHit | null {
  switch (map.type) {
    case 'hash': {
      const e = map.entries.get(key.toLowerCase());
      return e ? { action: e.action, line: e.line, key } : null;
    }
    case 'cidr': {
      const ip = parseIp(key);
      if (!ip) return null;
      const e = map.entries.find((x) => cidrContainsIp(x.cidr, ip));
      return e ? { action: e.action, line: e.line, key } : null;
    }
    case 'regexp': {
      for (const e of map.entries) {
        const m = e.re.exec(key);
        if (e.negate ? m === null : m !== null) {
          return { action: e.negate ? e.action : substitute(e.action, Array.from(m!)), line: e.line, key };
        }
      }
      return null;
    }
  }
}

/** The keys a lookup tries, in order: partial keys for hash tables, whole keys for the others. */
export interface LookupKeys {
  partial: string[];
  whole: string[];
}

/** First hit among the keys the map type searches. */
export function lookupFirst(map: AccessMap, keys: LookupKeys): AccessHit | null {
  for (const k of map.type === 'hash' ? keys.partial : keys.whole) {
    const hit = lookupKey(map, k);
    if (hit) return hit;
  }
  return null;
}

/** `a.b.c` → `a.b.c`, `.b.c`, `b.c`, `.c`, `c` (SPEC §8.2). */
export function domainChain(domain: string): string[] {
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (d === '') return [];
  if (d.startsWith('[')) return [d];
  const labels = d.split('.');
  const out = [d];
  for (let i = 1; i < labels.length; i++) {
    const parent = labels.slice(i).join('.');
    out.push(`.${parent}`, parent);
  }
  return out;
}

/**
 * Keys for an address `u+ext@d`: `u+ext@d`, `u@d`, the domain chain of `d`,
 * `u+ext@`, `u@`; each character of `delimiter` starts an extension. The null
 * sender is `<>`.
 */
export function addressKeys(a: MailAddress, delimiter: string): LookupKeys {
  if (a.isNull) return { partial: ['<>'], whole: ['<>'] };
  const local = a.local.toLowerCase();
  const domain = a.domain.toLowerCase();
  let base = local;
  if (delimiter !== '') {
    let cut = -1;
    for (const c of delimiter) {
      const i = local.indexOf(c);
      // A local part that starts with the delimiter has no extension.
      if (i > 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut > 0) base = local.slice(0, cut);
  }
  const keys = [`${local}@${domain}`];
  if (base !== local) keys.push(`${base}@${domain}`);
  keys.push(...domainChain(domain));
  keys.push(`${local}@`);
  if (base !== local) keys.push(`${base}@`);
  return { partial: keys, whole: [`${local}@${domain}`] };
}

/** The eight groups of an IPv6 address, without leading zeros. */
function ipv6Groups(n: bigint): string[] {
  const out: string[] = [];
  for (let i = 7; i >= 0; i--) out.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return out;
}

/**
 * Keys for the client: the domain chain of its forward-confirmed name, then
 * `a.b.c.d`, `a.b.c`, `a.b`, `a` (IPv6: the address, then its groups with
 * trailing ones dropped, from the full eight-group form).
 */
export function clientKeys(name: string | null, ip: string): LookupKeys {
  const partial = name ? domainChain(name) : [];
  const addr = parseIp(ip);
  if (addr && addr.v === 4) {
    const o = ip.split('.');
    for (let n = 4; n >= 1; n--) partial.push(o.slice(0, n).join('.'));
  } else if (addr && addr.v === 6) {
    partial.push(ip.toLowerCase());
    const g = ipv6Groups(addr.n);
    for (let n = 7; n >= 1; n--) partial.push(g.slice(0, n).join(':'));
  } else partial.push(ip);
  return { partial, whole: name ? [name.toLowerCase(), ip] : [ip] };
}

export function heloKeys(helo: string): LookupKeys {
  const h = helo.toLowerCase();
  return { partial: domainChain(h), whole: [h] };
}
