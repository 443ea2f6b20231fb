// DNSBL and RHSBL checks (SPEC §8.1): dnsbl::lookup, dnsbl::listed,
// dnsbl::rhsbl, check_rbl, check_rhsbl.
//
// A list answers A records under its zone for listed keys: the reversed IPv4
// octets (or 32 reversed IPv6 nibbles) of a client, or a domain for RHSBLs.
// Only answers in 127.0.0.0/8 mean "listed". 127.255.255.0/24 answers are the
// lists' way of saying "your query was refused" (e.g. Spamhaus through an open
// resolver): they, SERVFAIL, other DNS errors and the deadline
// `server.dns.dnsbl_timeout` count as "not listed", with a warning, so a broken
// list never blocks mail by itself and the administrator hears about it.
//
// The pure functions (dnsblLookup, rhsblLookup) take a Resolver so the legacy
// policy engines (smtpd_check_rules `RBL.<zone>`, postfix::reject_rbl_client)
// reuse them; clientListing/senderListing do the same from a HostCall.

import net from 'node:net';
import type { Logger } from 'pino';
import { DnsError, type Resolver } from '../host/ports.js';
import { type HostBuiltin, type HostCall } from './host.js';
import { argText, checkArity, dnsblTimeoutMs, dnsFailure, optArgText, statusFor } from './dns/call-args.js';
import { normaliseIp, reversedIp } from './dns/names.js';
import { queryName } from './dns/resolver.js';
import { fnError } from '../vsl/values/value.js';

/** Longest time any answer is kept (SPEC §8.1). */
export const DNSBL_MAX_CACHE_MS = 15 * 60_000;
/** "Not listed" has no TTL we can read (c-ares hides the SOA): keep it briefly. */
export const DNSBL_NEGATIVE_CACHE_MS = 60_000;
const CACHE_MAX_ENTRIES = 10_000;

/** A zone as written: `zen.example.org` or `zen.example.org=127.0.0.2` (only that answer counts). */
export interface DnsblZone {
  zone: string;
  only: string | null;
}

export function parseZone(spec: string): DnsblZone {
  const eq = spec.indexOf('=');
  const zoneText = (eq < 0 ? spec : spec.slice(0, eq)).trim();
  let only: string | null = null;
  if (eq >= 0) {
    only = spec.slice(eq + 1).trim();
    if (!net.isIPv4(only) || !inLoopback8(only)) {
      throw new Error(`invalid DNSBL answer filter '${only}' in '${spec}': expected an address in 127.0.0.0/8`);
    }
    only = normaliseIp(only);
  }
  let zone: string;
  try {
    zone = queryName(zoneText);
  } catch {
    throw new Error(`invalid DNSBL zone '${zoneText}'`);
  }
  if (!zone.includes('.')) throw new Error(`invalid DNSBL zone '${zoneText}'`);
  return { zone, only };
}

function inLoopback8(ip: string): boolean {
  return ip.startsWith('127.');
}

function inRefusalRange(ip: string): boolean {
  return ip.startsWith('127.255.255.');
}

/** What one list said about one key. */
export interface DnsblResult {
  /** The answers that count (in 127.0.0.0/8, outside 127.255.255.0/24, matching the filter). */
  answers: string[];
  listed: boolean;
  /** Set when the list could not be used; the result then counts as "not listed". */
  warning?: string;
  /** The name queried. */
  query: string;
  cached: boolean;
}

interface CacheEntry {
  answers: string[];
  expiresAt: number;
}

/** A TTL cache of raw answers per query name; entries are bounded in count and age. */
export class DnsblCache {
  private readonly entries = new Map<string, CacheEntry>();
  constructor(private readonly maxEntries = CACHE_MAX_ENTRIES) {}

  get(name: string, now: number): string[] | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.entries.delete(name);
      return undefined;
    }
    return e.answers;
  }

  set(name: string, answers: string[], ttlMs: number, now: number): void {
    if (ttlMs <= 0) return;
    this.entries.delete(name);
    this.entries.set(name, { answers, expiresAt: now + Math.min(ttlMs, DNSBL_MAX_CACHE_MS) });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

// One cache per resolver: the resolver lives as long as the DNS configuration,
// so a reload that changes server.dns.* also starts with an empty cache.
const caches = new WeakMap<Resolver, DnsblCache>();

export function dnsblCacheFor(resolver: Resolver): DnsblCache {
  let c = caches.get(resolver);
  if (!c) {
    c = new DnsblCache();
    caches.set(resolver, c);
  }
  return c;
}

export interface DnsblLookupOptions {
  timeoutMs: number;
  /** Defaults to the cache of `resolver`. Pass null to bypass caching. */
  cache?: DnsblCache | null;
  now?: () => number;
  /** Receives the warnings (zone, key and reason) and the listings (info). */
  log?: Logger;
}

/** The query name for an IP: reversed octets or nibbles, then the zone (mapped IPv6 as IPv4). */
export function dnsblQueryName(ip: string, zone: string): string {
  const n = normaliseIp(ip);
  if (!n) throw new Error(`invalid IP address '${ip}'`);
  return `${reversedIp(n)}.${zone}`;
}

async function query(
  resolver: Resolver,
  zone: DnsblZone,
  name: string,
  key: string,
  opts: DnsblLookupOptions,
): Promise<DnsblResult> {
  const now = opts.now ?? Date.now;
  const cache = opts.cache === undefined ? dnsblCacheFor(resolver) : opts.cache;
  const warn = (reason: string): DnsblResult => {
    opts.log?.warn({ zone: zone.zone, key, query: name, reason }, `DNSBL ${zone.zone} unusable for ${key}: ${reason}`);
    return { answers: [], listed: false, warning: reason, query: name, cached: false };
  };

  let raw = cache?.get(name, now());
  const cached = raw !== undefined;
  if (raw === undefined) {
    try {
      const recs = await resolver.a(name, { timeoutMs: opts.timeoutMs });
      raw = recs.map((r) => r.address);
      const ttl = Math.min(...recs.map((r) => r.ttl)) * 1000;
      cache?.set(name, raw, Number.isFinite(ttl) ? ttl : DNSBL_NEGATIVE_CACHE_MS, now());
    } catch (err) {
      if (err instanceof DnsError && (err.code === 'NXDOMAIN' || err.code === 'NODATA')) {
        raw = [];
        cache?.set(name, raw, DNSBL_NEGATIVE_CACHE_MS, now());
      } else {
        return warn(dnsFailure(err));
      }
    }
  }

  const answers: string[] = [];
  for (const a of raw) {
    if (!inLoopback8(a)) {
      warn(`answer ${a} outside 127.0.0.0/8 ignored`);
    } else if (inRefusalRange(a)) {
      return warn(`answer ${a}: the list refused the query`);
    } else if (zone.only === null || zone.only === a) {
      answers.push(a);
    }
  }
  const listed = answers.length > 0;
  if (listed) opts.log?.info({ zone: zone.zone, key, answers }, `${key} listed in ${zone.zone} (${answers.join(', ')})`);
  return { answers, listed, query: name, cached };
}

/** Looks up a client IP in a DNSBL (zone as written, with an optional `=127.0.0.x` filter). */
export async function dnsblLookup(resolver: Resolver, zoneSpec: string, ip: string, opts: DnsblLookupOptions): Promise<DnsblResult> {
  const zone = parseZone(zoneSpec);
  const key = normaliseIp(ip);
  if (!key) throw new Error(`invalid IP address '${ip}'`);
  return query(resolver, zone, dnsblQueryName(key, zone.zone), key, opts);
}

/** Looks up a domain in an RHSBL. Address literals and names too long for DNS are never listed. */
export async function rhsblLookup(resolver: Resolver, zoneSpec: string, domain: string, opts: DnsblLookupOptions): Promise<DnsblResult> {
  const zone = parseZone(zoneSpec);
  // An address (text or object) stands for its domain.
  const d = domain.slice(domain.lastIndexOf('@') + 1).trim().toLowerCase().replace(/\.$/, '');
  if (d === '' || d.startsWith('[')) return { answers: [], listed: false, query: '', cached: false };
  let name: string;
  try {
    name = queryName(`${d}.${zone.zone}`);
  } catch {
    opts.log?.warn({ zone: zone.zone, key: d }, `RHSBL ${zone.zone}: '${d}' cannot be queried`);
    return { answers: [], listed: false, warning: 'invalid name', query: '', cached: false };
  }
  return query(resolver, zone, name, d, opts);
}

function callOptions(call: HostCall, fn: string): DnsblLookupOptions {
  return {
    timeoutMs: dnsblTimeoutMs(call, fn),
    now: () => call.env.clock.now(),
    log: call.log,
  };
}

/** DNSBL result for `ip` (default: the client) with the call's resolver, cache, deadline and logger. */
export async function clientListing(call: HostCall, fn: string, zoneSpec: string, ip?: string): Promise<DnsblResult & { ip: string }> {
  const target = ip ?? call.session.clientIp;
  const n = normaliseIp(target);
  if (!n) throw fnError(fn, `invalid IP address '${target}'`);
  try {
    return { ...(await dnsblLookup(call.env.resolver, zoneSpec, n, callOptions(call, fn))), ip: n };
  } catch (err) {
    throw fnError(fn, err instanceof Error ? err.message : String(err));
  }
}

/** RHSBL result for `domain` (default: the sender's; the null sender is never listed). */
export async function senderListing(
  call: HostCall,
  fn: string,
  zoneSpec: string,
  domain?: string,
): Promise<DnsblResult & { domain: string }> {
  let d = domain;
  if (d === undefined) {
    const from = call.txn?.mailFrom;
    if (!from) throw fnError(fn, 'no sender: call it from the mail stage on');
    d = from.isNull ? '' : from.domain;
  }
  try {
    return { ...(await rhsblLookup(call.env.resolver, zoneSpec, d, callOptions(call, fn))), domain: d };
  } catch (err) {
    throw fnError(fn, err instanceof Error ? err.message : String(err));
  }
}

export const dnsblBuiltins: HostBuiltin[] = [
  {
    name: 'dnsbl::lookup',
    from: 'connect',
    io: true,
    arity: [1, 2],
    async fn(call, args) {
      const fn = 'dnsbl::lookup';
      checkArity(fn, args, 1, 2);
      const r = await clientListing(call, fn, argText(fn, 'zone', args[0]), optArgText(fn, 'ip', args[1]));
      return r.answers;
    },
  },
  {
    name: 'dnsbl::listed',
    from: 'connect',
    io: true,
    arity: [1, 2],
    async fn(call, args) {
      const fn = 'dnsbl::listed';
      checkArity(fn, args, 1, 2);
      const r = await clientListing(call, fn, argText(fn, 'zone', args[0]), optArgText(fn, 'ip', args[1]));
      return r.listed;
    },
  },
  {
    name: 'dnsbl::rhsbl',
    from: 'mail',
    io: true,
    arity: [1, 2],
    async fn(call, args) {
      const fn = 'dnsbl::rhsbl';
      checkArity(fn, args, 1, 2);
      const r = await senderListing(call, fn, argText(fn, 'zone', args[0]), optArgText(fn, 'domain', args[1]));
      return r.listed;
    },
  },
  {
    name: 'check_rbl',
    from: 'connect',
    io: true,
    arity: [1, 2],
    async fn(call, args) {
      const fn = 'check_rbl';
      checkArity(fn, args, 1, 2);
      const zoneSpec = argText(fn, 'zone', args[0]);
      const r = await clientListing(call, fn, zoneSpec);
      if (!r.listed) return statusFor(fn, 'next');
      const reply = args[1] ?? `554 5.7.1 Service unavailable; client [${r.ip}] blocked using ${parseZone(zoneSpec).zone}`;
      return statusFor(fn, 'deny', reply);
    },
  },
  {
    name: 'check_rhsbl',
    from: 'mail',
    io: true,
    arity: [1, 2],
    async fn(call, args) {
      const fn = 'check_rhsbl';
      checkArity(fn, args, 1, 2);
      const zoneSpec = argText(fn, 'zone', args[0]);
      const r = await senderListing(call, fn, zoneSpec);
      if (!r.listed) return statusFor(fn, 'next');
      const reply = args[1] ?? `554 5.7.1 Service unavailable; sender domain ${r.domain} blocked using ${parseZone(zoneSpec).zone}`;
      return statusFor(fn, 'deny', reply);
    },
  },
];
