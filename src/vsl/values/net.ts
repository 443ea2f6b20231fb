// IP addresses and networks (SPEC §6.1, §6.4, §4.4, §8.1), as numbers:
// IPv4 as an unsigned 32-bit number, IPv6 as a 128-bit bigint. Parsing is
// strict (fail closed): dotted quads without leading zeros, RFC 4291 IPv6
// text without zone ids or brackets. Output is canonical (RFC 5952).
// Networks precompute their mask so membership is one AND and one compare.

export type Ip = { v: 4; n: number } | { v: 6; n: bigint };

export interface Cidr4 {
  v: 4;
  /** Network address, host bits cleared. */
  base: number;
  mask: number;
  len: number;
  /** The text had host bits set (`10.0.0.1/8`); `mta check` warns. */
  hostBitsSet: boolean;
}

export interface Cidr6 {
  v: 6;
  base: bigint;
  mask: bigint;
  len: number;
  hostBitsSet: boolean;
}

export type Cidr = Cidr4 | Cidr6;

const ALL128 = (1n << 128n) - 1n;
/** ::ffff:0:0/96, the IPv4-mapped block. */
const MAPPED_PREFIX = 0xffffn << 32n;

// ---------------------------------------------------------------- IPv4

/** `a.b.c.d`, each 0–255 in decimal without leading zeros; otherwise null. */
export function parseIPv4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (p.length === 0 || p.length > 3) return null;
    // A leading zero is octal to some parsers and decimal to others: refuse it.
    if (p.length > 1 && p.charCodeAt(0) === 48) return null;
    let octet = 0;
    for (let i = 0; i < p.length; i++) {
      const c = p.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return null;
      octet = octet * 10 + c;
    }
    if (octet > 255) return null;
    n = n * 256 + octet;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

// ---------------------------------------------------------------- IPv6

function parseHexGroup(g: string): number | null {
  if (g.length === 0 || g.length > 4) return null;
  let v = 0;
  for (let i = 0; i < g.length; i++) {
    const c = g.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return null;
    v = v * 16 + d;
  }
  return v;
}

/** Parses one side of `::` into 16-bit groups; the last may be a dotted quad. */
function parseGroups(s: string, allowV4Tail: boolean): number[] | null {
  if (s === '') return [];
  const parts = s.split(':');
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (allowV4Tail && i === parts.length - 1 && p.indexOf('.') >= 0) {
      const v4 = parseIPv4(p);
      if (v4 === null) return null;
      out.push(v4 >>> 16, v4 & 0xffff);
    } else {
      const g = parseHexGroup(p);
      if (g === null) return null;
      out.push(g);
    }
  }
  return out;
}

/** RFC 4291 §2.2 text forms (with `::` and an embedded IPv4 tail); otherwise null. */
export function parseIPv6(s: string): bigint | null {
  if (s.length < 2 || s.length > 45) return null;
  const dbl = s.indexOf('::');
  let groups: number[];
  if (dbl < 0) {
    const g = parseGroups(s, true);
    if (g === null || g.length !== 8) return null;
    groups = g;
  } else {
    if (s.indexOf('::', dbl + 1) >= 0) return null;
    const head = parseGroups(s.slice(0, dbl), false);
    const tail = parseGroups(s.slice(dbl + 2), true);
    if (head === null || tail === null) return null;
    // `::` stands for at least one zero group.
    if (head.length + tail.length > 7) return null;
    groups = head.concat(new Array<number>(8 - head.length - tail.length).fill(0), tail);
  }
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** The IPv4 inside an IPv4-mapped IPv6 (`::ffff:a.b.c.d`), else null. */
export function mappedIPv4(n: bigint): number | null {
  return n >> 32n === 0xffffn ? Number(n & 0xffffffffn) : null;
}

export function mapIPv4(n: number): bigint {
  return MAPPED_PREFIX | BigInt(n);
}

/** RFC 5952: lower-case, no leading zeros, the longest (first) run of ≥ 2 zero groups as `::`; mapped addresses in mixed notation. */
export function formatIPv6(n: bigint): string {
  const v4 = mappedIPv4(n);
  if (v4 !== null) return `::ffff:${formatIPv4(v4)}`;
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

// ---------------------------------------------------------------- either family

/** An IPv4 dotted quad or an IPv6 text form; otherwise null. */
/** Recently parsed addresses: the client's IP is tested against every network a policy names. */
const parsedIps = new Map<string, Ip | null>();

/** An IPv4 or IPv6 address; null if invalid. The result is shared: never modify it. */
export function parseIp(s: string): Ip | null {
  let ip = parsedIps.get(s);
  if (ip !== undefined) return ip;
  if (s.indexOf(':') >= 0) {
    const n = parseIPv6(s);
    ip = n === null ? null : { v: 6, n };
  } else {
    const n = parseIPv4(s);
    ip = n === null ? null : { v: 4, n };
  }
  if (parsedIps.size >= 1024) parsedIps.clear();
  parsedIps.set(s, ip);
  return ip;
}

export function formatIp(ip: Ip): string {
  return ip.v === 4 ? formatIPv4(ip.n) : formatIPv6(ip.n);
}

/** An IPv4-mapped IPv6 becomes its IPv4 (SPEC §4.4); anything else is unchanged. */
export function unmapIp(ip: Ip): Ip {
  if (ip.v === 6) {
    const v4 = mappedIPv4(ip.n);
    if (v4 !== null) return { v: 4, n: v4 };
  }
  return ip;
}

export function sameIp(a: Ip, b: Ip): boolean {
  const x = unmapIp(a);
  const y = unmapIp(b);
  return x.v === y.v && x.n === y.n;
}

/**
 * Canonical text of a client address: `::ffff:a.b.c.d` becomes `a.b.c.d`,
 * IPv6 is RFC 5952. Text that is not an IP (a zone id, say) is returned as is.
 */
export function normalizeIp(s: string): string {
  const ip = parseIp(s);
  return ip === null ? s : formatIp(unmapIp(ip));
}

export function isLoopback(ip: Ip): boolean {
  const u = unmapIp(ip);
  return u.v === 4 ? u.n >>> 24 === 127 : u.n === 1n;
}

// ---------------------------------------------------------------- reverse names

/** `4.3.2.1` for 1.2.3.4 (DNSBL and in-addr.arpa order). */
export function reversedV4(n: number): string {
  return `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${(n >>> 24) & 255}`;
}

/** The 32 nibbles of an IPv6 address, least significant first, dot-separated. */
export function reversedV6(n: bigint): string {
  const hex = n.toString(16);
  const full = '0'.repeat(32 - hex.length) + hex;
  const out: string[] = [];
  for (let i = 31; i >= 0; i--) out.push(full[i]!);
  return out.join('.');
}

/** DNSBL label sequence for an IP text (SPEC §8.1: mapped IPv6 as IPv4); null if not an IP. */
export function reversedName(s: string): string | null {
  const ip = parseIp(s);
  if (ip === null) return null;
  const u = unmapIp(ip);
  return u.v === 4 ? reversedV4(u.n) : reversedV6(u.n);
}

// ---------------------------------------------------------------- networks

function parsePrefixLen(s: string, max: number): number | null {
  if (s.length === 0 || s.length > 3) return null;
  if (s.length > 1 && s.charCodeAt(0) === 48) return null;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return null;
    n = n * 10 + c;
  }
  return n <= max ? n : null;
}

export function mask4(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export function mask6(len: number): bigint {
  return len === 0 ? 0n : (ALL128 << BigInt(128 - len)) & ALL128;
}

export function makeCidr4(addr: number, len: number): Cidr4 {
  const mask = mask4(len);
  const base = (addr & mask) >>> 0;
  return { v: 4, base, mask, len, hostBitsSet: base !== addr };
}

export function makeCidr6(addr: bigint, len: number): Cidr6 {
  const mask = mask6(len);
  const base = addr & mask;
  return { v: 6, base, mask, len, hostBitsSet: base !== addr };
}

/** `a.b.c.d/len` (0–32); host bits are cleared and flagged. Otherwise null. */
export function parseCidr4(s: string): Cidr4 | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const addr = parseIPv4(s.slice(0, slash));
  const len = parsePrefixLen(s.slice(slash + 1), 32);
  return addr === null || len === null ? null : makeCidr4(addr, len);
}

/** `ipv6/len` (0–128); host bits are cleared and flagged. Otherwise null. */
export function parseCidr6(s: string): Cidr6 | null {
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const addr = parseIPv6(s.slice(0, slash));
  const len = parsePrefixLen(s.slice(slash + 1), 128);
  return addr === null || len === null ? null : makeCidr6(addr, len);
}

export function parseCidr(s: string): Cidr | null {
  return s.indexOf(':') >= 0 ? parseCidr6(s) : parseCidr4(s);
}

export function formatCidr(c: Cidr): string {
  return c.v === 4 ? `${formatIPv4(c.base)}/${c.len}` : `${formatIPv6(c.base)}/${c.len}`;
}

/**
 * An IPv6 network lying inside ::ffff:0:0/96, as the IPv4 network it maps
 * (::ffff:10.0.0.0/104 is 10.0.0.0/8); otherwise unchanged.
 */
export function unmapCidr(c: Cidr): Cidr {
  if (c.v === 6 && c.len >= 96 && c.base >> 32n === 0xffffn) {
    return makeCidr4(Number(c.base & 0xffffffffn), c.len - 96);
  }
  return c;
}

/** Whether `ip` is in `c`; mapped IPv6 addresses match IPv4 networks and the reverse. */
export function cidrContainsIp(c: Cidr, ip: Ip): boolean {
  if (c.v === 4) {
    let n: number;
    if (ip.v === 4) n = ip.n;
    else {
      const v4 = mappedIPv4(ip.n);
      if (v4 === null) return false;
      n = v4;
    }
    return ((n & c.mask) >>> 0) === c.base;
  }
  const n = ip.v === 6 ? ip.n : mapIPv4(ip.n);
  return (n & c.mask) === c.base;
}

/** Whether network `inner` lies entirely inside `outer` (equal networks do). */
export function cidrInside(inner: Cidr, outer: Cidr): boolean {
  const a = unmapCidr(inner);
  const b = unmapCidr(outer);
  if (a.v === 4 && b.v === 4) return a.len >= b.len && ((a.base & b.mask) >>> 0) === b.base;
  // One side is IPv4: compare in the mapped IPv6 space.
  const a6 = a.v === 6 ? a : makeCidr6(mapIPv4(a.base), a.len + 96);
  const b6 = b.v === 6 ? b : makeCidr6(mapIPv4(b.base), b.len + 96);
  return a6.len >= b6.len && (a6.base & b6.mask) === b6.base;
}

export function sameCidr(a: Cidr, b: Cidr): boolean {
  const x = unmapCidr(a);
  const y = unmapCidr(b);
  return x.v === y.v && x.len === y.len && x.base === y.base;
}
