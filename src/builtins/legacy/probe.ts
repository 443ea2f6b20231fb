// The plain facts the legacy formats decide on (SPEC §8.2–§8.4), taken from
// a host call once so the matchers never see the sandbox. Everything DNS
// related is asked lazily through LegacyLookups (lookups.ts) instead.

import type { HostCall } from '../host.js';
import { addressText, type MailAddress } from '../../mail/types.js';
import { localDomainMatcher } from '../../vsl/values/address.js';
import { cidrContainsIp, parseCidr, parseIp, type Cidr } from '../../vsl/values/net.js';

export interface LegacyProbe {
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
  /** HELO/EHLO argument, null before HELO. */
  helo: string | null;
  /** MAIL FROM (null outside a transaction). */
  sender: MailAddress | null;
  /** The recipient under evaluation (rcpt stage), else null. */
  recipient: MailAddress | null;
  authenticated: boolean;
  /** server.relay_networks as written (IPs and CIDRs). */
  relayNetworks: readonly string[];
  /** server.domain and server.virtual. */
  localDomains: { domain: string; virtual: string[] };
  /** server.recipient_delimiter (each character is a delimiter). */
  recipientDelimiter: string;
  /** The client pipelined where it had to wait (reject_unauth_pipelining). */
  pipeliningViolation: boolean;
}

/** A relay_networks entry as text: SPEC §9.2 allows rg4/rg6 objects besides strings. */
function networkText(n: unknown): string {
  if (typeof n === 'string') return n;
  const text = (n as { text?: () => string } | null)?.text;
  return typeof text === 'function' ? text.call(n) : String(n);
}

export function probeFromCall(call: HostCall): LegacyProbe {
  const s = call.session;
  const cfg = call.env.config.server;
  return {
    clientIp: s.clientIp,
    clientPort: s.clientPort,
    serverIp: s.serverIp,
    serverPort: s.serverPort,
    helo: s.helo,
    sender: call.txn?.mailFrom ?? null,
    recipient: call.stage === 'rcpt' ? call.txn?.currentRcpt ?? null : null,
    authenticated: s.auth !== null,
    relayNetworks: cfg.relay_networks.map(networkText),
    localDomains: { domain: cfg.domain, virtual: cfg.virtual },
    recipientDelimiter: cfg.recipient_delimiter,
    pipeliningViolation: s.pipeliningViolation,
  };
}

/** A network list entry as a CIDR: `a.b.c.d/n`, `v6/n`, or a single address. Null if invalid. */
export function networkOf(text: string): Cidr | null {
  const t = text.trim();
  if (t.includes('/')) return parseCidr(t);
  const ip = parseIp(t);
  if (ip === null) return null;
  return parseCidr(`${t}/${ip.v === 4 ? 32 : 128}`);
}

/**
 * Whether `ip` lies in one of `networks`. An entry that is not an IP or a
 * network is an error, never silently skipped (a typo must not open or close
 * a door without notice).
 */
export function ipInNetworks(ip: string, networks: readonly string[]): boolean {
  const addr = parseIp(ip);
  if (addr === null) return false;
  for (const n of networks) {
    const cidr = networkOf(n);
    if (cidr === null) throw new Error(`invalid network '${n}'`);
    if (cidrContainsIp(cidr, addr)) return true;
  }
  return false;
}

/** The client is in server.relay_networks (Obtuse TRUSTED, iMS tcp_intranet). */
export function isTrustedClient(probe: LegacyProbe): boolean {
  return ipInNetworks(probe.clientIp, probe.relayNetworks);
}

export function isLocalDomain(probe: LegacyProbe, domain: string): boolean {
  return localDomainMatcher(probe.localDomains)(domain);
}

/**
 * The address as the client wrote it (the path without its angle brackets),
 * source route, quotes and all; the canonical text when no raw form is known.
 * The null sender is `""`.
 */
export function addressAsReceived(a: MailAddress): string {
  if (a.isNull) return '';
  let raw = (a.raw ?? '').trim();
  if (raw.startsWith('<') && raw.endsWith('>')) raw = raw.slice(1, -1);
  return raw === '' ? addressText(a) : raw;
}

/**
 * Whether the address asks for explicit routing through us: a source route
 * (`@a,@b:u@d`) or a local part carrying `%`, `!` or `@` (`u%x@d`,
 * `x.y!u@d`, `"u@x"@d`).
 */
export function isExplicitlyRouted(a: MailAddress): boolean {
  if (a.isNull) return false;
  return addressAsReceived(a).startsWith('@') || /[%!@]/.test(a.local);
}
