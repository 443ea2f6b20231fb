// IP address text helpers shared by the resolver, DNSBL and FCrDNS: IPv4-mapped
// normalisation (SPEC §4.4), canonical IPv6 text (RFC 5952) and reverse
// names (in-addr.arpa, ip6.arpa, DNSBL query prefixes).

import net from 'node:net';

/** The 16 bytes of an IPv6 address given in any RFC 4291 text form, or null. */
export function ipv6Bytes(text: string): number[] | null {
  let s = text.trim();
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct); // zone id: not part of the address
  if (!net.isIPv6(s)) return null;
  let tail: number[] = [];
  // Embedded IPv4 in the last 32 bits (::ffff:192.0.2.1, 64:ff9b::192.0.2.1).
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    tail = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + '0:0';
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...new Array<number>(fill).fill(0), ...right];
  if (all.length !== 8) return null;
  const bytes: number[] = [];
  for (const g of all) bytes.push((g >> 8) & 255, g & 255);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** RFC 5952 text of 16 bytes: lower-case, leading zeros dropped, longest zero run (≥ 2 groups) as `::`. */
export function ipv6Text(bytes: number[]): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Canonical text of an IP: IPv4 dotted quad, an IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`) as its IPv4, other IPv6 per RFC 5952. Null when `ip` is
 * not an IP address.
 */
export function normaliseIp(ip: string): string | null {
  const s = ip.trim();
  if (net.isIPv4(s)) return s.split('.').map((o) => String(Number(o))).join('.');
  const b = ipv6Bytes(s);
  if (!b) return null;
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 255 && b[11] === 255;
  if (mapped) return b.slice(12).join('.');
  return ipv6Text(b);
}

/**
 * The reversed form of a normalised IP used under a zone: `d.c.b.a` for IPv4,
 * 32 dot-separated nibbles (least significant first) for IPv6.
 */
export function reversedIp(ip: string): string {
  if (net.isIPv4(ip)) return ip.split('.').reverse().join('.');
  const b = ipv6Bytes(ip);
  if (!b) throw new Error(`not an IP address: ${ip}`);
  const nibbles: string[] = [];
  for (const byte of b) nibbles.push((byte >> 4).toString(16), (byte & 15).toString(16));
  return nibbles.reverse().join('.');
}

/** The PTR query name of an IP: `…in-addr.arpa` or `…ip6.arpa` (mapped IPv6 as IPv4). */
export function reverseName(ip: string): string {
  const n = normaliseIp(ip);
  if (!n) throw new Error(`not an IP address: ${ip}`);
  return `${reversedIp(n)}.${net.isIPv4(n) ? 'in-addr.arpa' : 'ip6.arpa'}`;
}

/** The IP a PTR query name stands for (`1.2.0.192.in-addr.arpa` → `192.0.2.1`), or null. */
export function ipFromReverseName(name: string): string | null {
  const n = name.toLowerCase().replace(/\.$/, '');
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(n);
  if (v4) return normaliseIp([v4[4], v4[3], v4[2], v4[1]].join('.'));
  const v6 = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(n);
  if (v6) {
    const hex = v6[1]!.split('.').filter(Boolean).reverse().join('');
    const groups = hex.match(/.{4}/g)!;
    return normaliseIp(groups.join(':'));
  }
  return null;
}
