// Where mail for a domain goes (SPEC §10, RFC 5321 §5.1, RFC 7505): the MX
// hosts by preference with ties in random order, the domain itself when it
// has no MX (implicit MX), and nowhere when it publishes a null MX. Names
// are resolved through the one Resolver (src/builtins/host.ts), so tests
// answer DNS without touching the network.

import net from 'node:net';
import { DnsError, type Resolver } from '../host/ports.js';
import { RouteError } from './outcome.js';

export interface Endpoint {
  /** The host name the address belongs to (TLS name, DSN Remote-MTA). */
  hostname: string;
  ip: string;
  port: number;
}

/** At most this many MX hosts are considered (a hostile zone cannot make us try hundreds). */
export const MX_HOST_LIMIT = 10;
/** At most this many addresses per host. */
export const ADDRESS_LIMIT = 4;

function shuffle<T>(xs: T[], random: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** The MX host names of a domain in the order to try them; throws RouteError. */
export async function mxHosts(domain: string, resolver: Resolver, random: () => number = Math.random): Promise<string[]> {
  let records;
  try {
    records = await resolver.mx(domain);
  } catch (err) {
    if (err instanceof DnsError && err.code === 'NODATA') return [domain];
    if (err instanceof DnsError && err.code === 'NXDOMAIN') {
      throw new RouteError(`550 5.1.2 domain ${domain} does not exist (DNS NXDOMAIN)`, true, '5.1.2');
    }
    throw new RouteError(`451 4.4.3 MX lookup for ${domain} failed: ${(err as Error).message}`, false, '4.4.3');
  }
  if (records.length === 0) return [domain];
  const isNull = (e: string) => e === '' || e === '.';
  const real = records.filter((r) => !isNull(r.exchange));
  if (real.length === 0) {
    // RFC 7505: the domain accepts no mail at all.
    throw new RouteError(`556 5.1.10 recipient domain ${domain} has a null MX (accepts no mail)`, true, '5.1.10');
  }
  const byPref = new Map<number, string[]>();
  for (const r of real) {
    const list = byPref.get(r.priority) ?? [];
    list.push(r.exchange.toLowerCase().replace(/\.$/, ''));
    byPref.set(r.priority, list);
  }
  const ordered: string[] = [];
  for (const pref of [...byPref.keys()].sort((a, b) => a - b)) ordered.push(...shuffle(byPref.get(pref)!, random));
  return [...new Set(ordered)].slice(0, MX_HOST_LIMIT);
}

/** IPv4 then IPv6 addresses of a host (or the host itself when it is an IP). */
export async function hostAddresses(host: string, resolver: Resolver): Promise<string[]> {
  if (net.isIP(host)) return [host];
  const [a, aaaa] = await Promise.allSettled([resolver.a(host), resolver.aaaa(host)]);
  const out: string[] = [];
  if (a.status === 'fulfilled') out.push(...a.value.map((x) => x.address));
  if (aaaa.status === 'fulfilled') out.push(...aaaa.value.map((x) => x.address));
  if (out.length > 0) return out.slice(0, ADDRESS_LIMIT * 2);
  const errs = [a, aaaa].map((r) => (r.status === 'rejected' ? r.reason : null));
  const notFound = errs.every((e) => e instanceof DnsError && (e.code === 'NXDOMAIN' || e.code === 'NODATA'));
  const why = errs.find((e) => e instanceof Error) as Error | undefined;
  throw Object.assign(new Error(`no address for ${host}${why ? `: ${why.message}` : ''}`), { notFound });
}

/** Endpoints for an address literal domain (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), or null. */
export function literalEndpoint(domain: string, port: number): Endpoint | null {
  const m = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(domain);
  if (!m) return null;
  const ip = m[1]!;
  if (!net.isIP(ip)) throw new RouteError(`550 5.1.2 invalid address literal ${domain}`, true, '5.1.2');
  return { hostname: ip, ip, port };
}

/**
 * All endpoints for mail to `domain`, in the order to try them. Throws a
 * permanent RouteError for a null MX (5.1.10) or a domain that does not
 * exist or has no address (5.1.2), a temporary one when DNS fails.
 */
export async function mxEndpoints(domain: string, resolver: Resolver, port: number, random: () => number = Math.random): Promise<Endpoint[]> {
  const literal = literalEndpoint(domain, port);
  if (literal) return [literal];
  const hosts = await mxHosts(domain, resolver, random);
  const implicit = hosts.length === 1 && hosts[0] === domain;
  const resolved = await Promise.allSettled(hosts.map((h) => hostAddresses(h, resolver)));
  const endpoints: Endpoint[] = [];
  const problems: string[] = [];
  resolved.forEach((r, i) => {
    if (r.status === 'fulfilled') for (const ip of r.value) endpoints.push({ hostname: hosts[i]!, ip, port });
    else problems.push((r.reason as Error).message);
  });
  if (endpoints.length > 0) return endpoints;
  const first = resolved[0];
  if (implicit && first?.status === 'rejected' && (first.reason as { notFound?: boolean }).notFound) {
    throw new RouteError(`550 5.1.2 domain ${domain} has no MX and no address record`, true, '5.1.2');
  }
  throw new RouteError(`451 4.4.3 no reachable address for ${domain}: ${problems.join('; ')}`, false, '4.4.3');
}

/** Endpoints for a relay host given by name or IP. */
export async function relayEndpoints(host: string, port: number, resolver: Resolver): Promise<Endpoint[]> {
  try {
    return (await hostAddresses(host, resolver)).map((ip) => ({ hostname: host, ip, port }));
  } catch (err) {
    throw new RouteError(`451 4.4.3 relay host ${host}: ${(err as Error).message}`, false, '4.4.3');
  }
}
