// The one DNS resolver of the server (SPEC §9.2 server.dns.*), on Node's
// c-ares binding. Every lookup runs on its own c-ares channel so that the
// overall deadline can cancel it without touching other lookups: c-ares'
// per-try timeout and retries alone do not bound the total time (backoff
// doubles each try, and each server is tried in turn).

import { promises as dnsPromises } from 'node:dns';
import net from 'node:net';
import { domainToASCII } from 'node:url';
import type { Config } from '../../config/schema.js';
import { parseDuration } from '../../config/units.js';
import { DnsError, type DnsErrorCode, type MxRecord, type Resolver } from '../../host/ports.js';
import { normaliseIp, reverseName } from './names.js';

/** More records than this in one answer is treated as a broken or hostile zone. */
export const MAX_RECORDS = 100;
/** Longest TXT record accepted (all character-strings joined). */
export const MAX_TXT_LENGTH = 16384;

export interface ResolverOptions {
  /** "ip", "ip:port", "[v6]:port" or a bare IPv6; empty = the system resolvers (/etc/resolv.conf). */
  servers: string[];
  /** Overall deadline of one lookup, unless the call gives its own. */
  timeoutMs: number;
}

type NodeResolver = InstanceType<typeof dnsPromises.Resolver>;

/** c-ares error codes → our classes. */
function classify(code: string | undefined): DnsErrorCode {
  switch (code) {
    case 'ENOTFOUND':
      return 'NXDOMAIN';
    case 'ENODATA':
      return 'NODATA';
    case 'ESERVFAIL':
      return 'SERVFAIL';
    case 'ETIMEOUT':
    case 'ECANCELLED':
      return 'TIMEOUT';
    case 'EREFUSED':
      return 'REFUSED';
    case 'EFORMERR':
    case 'EBADRESP':
    case 'EBADNAME':
    case 'EBADQUERY':
      return 'FORMERR';
    default:
      return 'ERROR';
  }
}

/** Validates "ip", "ip:port", "[v6]:port" and bare IPv6 server specs; throws a clear Error. */
export function parseServerSpec(spec: string): string {
  const s = spec.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracketed) {
    if (net.isIPv6(bracketed[1]!) && portOk(bracketed[2])) return s;
  } else if (net.isIP(s)) {
    return s;
  } else {
    const hostPort = /^([^:]+):(\d{1,5})$/.exec(s);
    if (hostPort && net.isIPv4(hostPort[1]!) && portOk(hostPort[2])) return s;
  }
  throw new Error(`invalid DNS server '${spec}': expected an IP address, "ip:port" or "[ipv6]:port"`);
}

function portOk(p: string | undefined): boolean {
  if (p === undefined) return true;
  const n = Number(p);
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * A query name as sent: lower-case, no trailing dot, IDN converted to
 * A-labels, at most 253 octets, labels of 1–63 octets. Underscores are
 * allowed (_dmarc, _domainkey). Anything else is FORMERR without a query.
 */
export function queryName(name: string): string {
  let n = name.trim().toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (/[^\x20-\x7e]/.test(n)) {
    const ascii = domainToASCII(n);
    if (!ascii) throw new DnsError('FORMERR', name, `invalid domain name '${name}'`);
    n = ascii;
  }
  if (n.length === 0 || n.length > 253 || /[\s\\]/.test(n)) {
    throw new DnsError('FORMERR', name, `invalid domain name '${name}'`);
  }
  for (const label of n.split('.')) {
    if (label.length === 0 || label.length > 63) throw new DnsError('FORMERR', name, `invalid domain name '${name}'`);
  }
  return n;
}

function lowerName(n: string): string {
  return n.toLowerCase().replace(/\.$/, '');
}

function bounded<T>(list: T[], query: string): T[] {
  if (list.length > MAX_RECORDS) {
    throw new DnsError('ERROR', query, `answer for ${query} has ${list.length} records (more than ${MAX_RECORDS})`);
  }
  return list;
}

export function createResolver(opts: ResolverOptions): Resolver {
  const servers = opts.servers.map(parseServerSpec);
  const defaultTimeout = opts.timeoutMs;
  if (!(defaultTimeout > 0)) throw new Error(`invalid DNS timeout ${defaultTimeout}`);

  /** Runs one c-ares query under an overall deadline, mapping every failure to DnsError. */
  async function run<T>(
    query: string,
    timeoutMs: number | undefined,
    fn: (r: NodeResolver) => Promise<T>,
  ): Promise<T> {
    const deadline = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : defaultTimeout;
    // Three tries of a third of the deadline each; the race below is what really bounds it.
    const r = new dnsPromises.Resolver({ timeout: Math.max(50, Math.ceil(deadline / 3)), tries: 3 });
    if (servers.length) r.setServers(servers);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        r.cancel();
        reject(new DnsError('TIMEOUT', query, `timeout after ${deadline} ms for ${query}`));
      }, deadline);
    });
    try {
      return await Promise.race([fn(r), expired]);
    } catch (err) {
      if (err instanceof DnsError) throw err;
      const code = (err as { code?: string }).code;
      const cls = classify(code);
      throw new DnsError(cls, query, `${cls} for ${query}${cls === 'ERROR' && code ? ` (${code})` : ''}`);
    } finally {
      clearTimeout(timer);
      // Swallow the late rejection of a cancelled query.
      expired.catch(() => {});
    }
  }

  async function address(
    family: 4 | 6,
    name: string,
    o?: { timeoutMs?: number },
  ): Promise<Array<{ address: string; ttl: number }>> {
    const q = queryName(name);
    const recs = await run(q, o?.timeoutMs, (r) => (family === 4 ? r.resolve4(q, { ttl: true }) : r.resolve6(q, { ttl: true })));
    return bounded(recs, q).map((x) => ({ address: x.address, ttl: x.ttl }));
  }

  return {
    a: (name, o) => address(4, name, o),
    aaaa: (name, o) => address(6, name, o),

    async mx(name, o): Promise<MxRecord[]> {
      const q = queryName(name);
      const recs = await run(q, o?.timeoutMs, (r) => r.resolveMx(q));
      return bounded(recs, q).map((x) => ({ exchange: lowerName(x.exchange), priority: x.priority }));
    },

    async txt(name, o): Promise<string[][]> {
      const q = queryName(name);
      const recs = bounded(await run(q, o?.timeoutMs, (r) => r.resolveTxt(q)), q);
      for (const rec of recs) {
        if (rec.reduce((n, s) => n + s.length, 0) > MAX_TXT_LENGTH) {
          throw new DnsError('ERROR', q, `TXT record of ${q} longer than ${MAX_TXT_LENGTH} octets`);
        }
      }
      return recs;
    },

    async ptr(ip, o): Promise<string[]> {
      const addr = normaliseIp(ip);
      if (!addr) throw new DnsError('FORMERR', ip, `invalid IP address '${ip}'`);
      const q = reverseName(addr);
      const recs = await run(q, o?.timeoutMs, (r) => r.resolvePtr(q));
      return bounded(recs, q).map(lowerName);
    },

    async ns(name, o): Promise<string[]> {
      const q = queryName(name);
      const recs = await run(q, o?.timeoutMs, (r) => r.resolveNs(q));
      return bounded(recs, q).map(lowerName);
    },
  };
}

/** The resolver `server.dns.*` describes (SPEC §9.2); throws a clear Error on invalid settings. */
export function resolverFromConfig(config: Config): Resolver {
  return createResolver({ servers: config.server.dns.servers, timeoutMs: parseDuration(config.server.dns.timeout) });
}

/**
 * The forward-confirmed reverse name of `ip` (FCrDNS): the first PTR name
 * whose A (IPv4) or AAAA (IPv6) records include `ip`, or null when there is
 * none. At most 10 PTR names are checked (as RFC 7208 §5.5 does), and PTR
 * names that look like IP addresses are ignored. A temporary DNS failure that
 * keeps a name from being confirmed is thrown (DnsError), so callers do not
 * take "DNS was down" for "this client has no name".
 */
export async function fcrdns(resolver: Resolver, ip: string, opts?: { timeoutMs?: number }): Promise<string | null> {
  const addr = normaliseIp(ip);
  if (!addr) return null;
  let names: string[];
  try {
    names = await resolver.ptr(addr, opts);
  } catch (err) {
    if (err instanceof DnsError && !err.temporary) return null;
    throw err;
  }
  const v6 = net.isIPv6(addr);
  let temporary: unknown = null;
  for (const name of names.slice(0, 10)) {
    if (net.isIP(name) || /^\d+(\.\d+){3}$/.test(name)) continue;
    try {
      const recs = v6 ? await resolver.aaaa(name, opts) : await resolver.a(name, opts);
      if (recs.some((r) => normaliseIp(r.address) === addr)) return name;
    } catch (err) {
      if (!(err instanceof DnsError) || err.temporary) temporary = err;
    }
  }
  if (temporary) throw temporary;
  return null;
}
