// The DNS questions the legacy formats ask (SPEC §8.1–§8.3), answered through
// the Resolver of host.ts and memoised for one host call.
//
// "Not found" (NXDOMAIN, NODATA) is an answer; a temporary failure is not:
// it is thrown (a DnsError), so the calling built-in fails with a runtime
// error and the stage answers with a temporary failure (SPEC §5.7) instead of
// deciding on missing data. DNSBL queries are the exception SPEC §8.1 makes:
// a failure there counts as "not listed" and is logged (src/builtins/dnsbl.ts).

import type { Logger } from 'pino';
import { DnsError, type Resolver } from '../../host/ports.js';
import { dnsblLookup } from '../dnsbl.js';
import { parseIp, reversedName, unmapIp } from '../../vsl/values/net.js';

export type MailDomainStatus = 'found' | 'not-found' | 'null-mx' | 'temp-error';
export type HostStatus = 'found' | 'not-found' | 'temp-error';

export interface LegacyLookups {
  /** The client's forward-confirmed reverse name, or null. Throws on temporary DNS failure. */
  clientName(): Promise<string | null>;
  /**
   * The NS hosts of the zone enclosing `domain` and the MX hosts of
   * `domain` (Obtuse `NS=`), lower-case, without duplicates.
   */
  nsMxHosts(domain: string): Promise<string[]>;
  /** A and AAAA addresses of a host name. */
  hostAddresses(host: string): Promise<string[]>;
  /** `zone` or `zone=127.0.0.N` (SPEC §8.1) lists `ip`. Never throws for DNS reasons. */
  dnsblListed(zone: string, ip: string): Promise<boolean>;
  /** Whether a mail domain exists: MX, else A/AAAA (reject_unknown_*_domain). */
  mailDomainStatus(domain: string): Promise<MailDomainStatus>;
  /** Whether a host name has A, AAAA or MX records (reject_unknown_helo_hostname). */
  hostStatus(name: string): Promise<HostStatus>;
}

export interface LookupOptions {
  clientIp: string;
  /** session.reverseName: a string or null when already known, undefined to look it up. */
  knownName?: string | null;
  log: Logger;
  timeoutMs: number;
  dnsblTimeoutMs: number;
  /** Clock for the DNSBL cache. */
  now?: () => number;
}

/** Most PTR names checked for FCrDNS, and NS/MX hosts considered (bounds the work a hostile zone can cause). */
const MAX_NAMES = 10;
const MAX_HOSTS = 20;

function notFound(err: unknown): boolean {
  return err instanceof DnsError && (err.code === 'NXDOMAIN' || err.code === 'NODATA');
}

/** The result of a query, `[]` when the name or the type does not exist; other failures are thrown. */
async function orEmpty<T>(q: Promise<T[]>): Promise<T[]> {
  try {
    return await q;
  } catch (err) {
    if (notFound(err)) return [];
    throw err;
  }
}

/** Looks like an IP address: a PTR name like this is a misconfiguration or a trick. */
function looksLikeIp(name: string): boolean {
  return parseIp(name) !== null || /^\d+(\.\d+){3}$/.test(name);
}

/** The reverse-zone name of an IP (`4.3.2.1.in-addr.arpa`, nibbles`.ip6.arpa`). */
export function reverseZoneName(ip: string): string | null {
  const addr = parseIp(ip);
  const rev = reversedName(ip);
  if (addr === null || rev === null) return null;
  return `${rev}.${unmapIp(addr).v === 4 ? 'in-addr.arpa' : 'ip6.arpa'}`;
}

export function resolverLookups(resolver: Resolver, opts: LookupOptions): LegacyLookups {
  const memo = new Map<string, Promise<unknown>>();
  const once = <T>(key: string, f: () => Promise<T>): Promise<T> => {
    let p = memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = f();
      memo.set(key, p);
      // A failure is not an answer: the next question asks DNS again.
      p.catch(() => memo.delete(key));
    }
    return p;
  };
  const t = { timeoutMs: opts.timeoutMs };

  async function confirmName(): Promise<string | null> {
    if (opts.knownName !== undefined) return opts.knownName;
    const ip = parseIp(opts.clientIp);
    if (ip === null) return null;
    const names = await orEmpty(resolver.ptr(opts.clientIp, t));
    let temporary: unknown = null;
    for (const raw of names.slice(0, MAX_NAMES)) {
      const name = raw.toLowerCase().replace(/\.$/, '');
      if (looksLikeIp(name)) {
        opts.log.info({ client_ip: opts.clientIp, ptr: name }, 'PTR name looks like an IP address; ignored');
        continue;
      }
      try {
        const recs = ip.v === 4 ? await resolver.a(name, t) : await resolver.aaaa(name, t);
        for (const r of recs) {
          const back = parseIp(r.address);
          if (back && back.v === ip.v && back.n === ip.n) return name;
        }
      } catch (err) {
        if (!notFound(err)) temporary = err;
      }
    }
    // A name we could not confirm because DNS failed may still be right: retry later.
    if (temporary) throw temporary;
    return null;
  }

  async function nsMx(domain: string): Promise<string[]> {
    const d = domain.toLowerCase().replace(/\.$/, '');
    let zone = d;
    let ns: string[] = [];
    // Walk up to the enclosing zone; TLDs are not asked (their NS say nothing about a sender).
    for (let i = 0; i < 12 && zone.split('.').length >= 2; i++) {
      ns = await orEmpty(resolver.ns(zone, t));
      if (ns.length > 0) break;
      zone = zone.slice(zone.indexOf('.') + 1);
      if (zone.endsWith('arpa') && zone.split('.').length <= 2) break;
    }
    const mx = (await orEmpty(resolver.mx(d, t))).map((m) => m.exchange);
    const hosts = new Set<string>();
    for (const h of [...ns, ...mx]) {
      const n = h.toLowerCase().replace(/\.$/, '');
      if (n !== '') hosts.add(n);
    }
    return [...hosts].slice(0, MAX_HOSTS);
  }

  async function addresses(host: string): Promise<string[]> {
    const a = await orEmpty(resolver.a(host, t));
    const aaaa = await orEmpty(resolver.aaaa(host, t));
    return [...a, ...aaaa].map((r) => r.address);
  }

  async function listed(zoneSpec: string, ip: string): Promise<boolean> {
    // The shared DNSBL code (SPEC §8.1): 127/8 answers only, failures and
    // 127.255.255.0/24 counted as not listed with a warning, answers cached.
    const r = await dnsblLookup(resolver, zoneSpec, ip, {
      timeoutMs: opts.dnsblTimeoutMs,
      log: opts.log,
      ...(opts.now ? { now: opts.now } : {}),
    });
    return r.listed;
  }

  async function mailDomain(domain: string): Promise<MailDomainStatus> {
    try {
      const mx = await orEmpty(resolver.mx(domain, t));
      if (mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.')) return 'null-mx';
      if (mx.length > 0) return 'found';
      if ((await orEmpty(resolver.a(domain, t))).length > 0) return 'found';
      if ((await orEmpty(resolver.aaaa(domain, t))).length > 0) return 'found';
      return 'not-found';
    } catch (err) {
      opts.log.warn({ domain, err: err instanceof Error ? err.message : String(err) }, 'domain lookup failed');
      return 'temp-error';
    }
  }

  async function host(name: string): Promise<HostStatus> {
    let temporary = false;
    for (const q of [() => resolver.a(name, t), () => resolver.aaaa(name, t), () => resolver.mx(name, t)] as Array<() => Promise<unknown[]>>) {
      try {
        if ((await q()).length > 0) return 'found';
      } catch (err) {
        if (!notFound(err)) temporary = true;
      }
    }
    return temporary ? 'temp-error' : 'not-found';
  }

  return {
    clientName: () => once('name', confirmName),
    nsMxHosts: (d) => once(`nsmx:${d.toLowerCase()}`, () => nsMx(d)),
    hostAddresses: (h) => once(`addr:${h.toLowerCase()}`, () => addresses(h)),
    dnsblListed: (z, ip) => once(`bl:${z.toLowerCase()}:${ip}`, () => listed(z, ip)),
    mailDomainStatus: (d) => once(`dom:${d.toLowerCase()}`, () => mailDomain(d)),
    hostStatus: (n) => once(`host:${n.toLowerCase()}`, () => host(n)),
  };
}
