// The built-in relay guard (SPEC §5.6): what decides a recipient when the
// policy has no rcpt directives. A recipient passes when its domain is local,
// the client authenticated, or the client is in `server.relay_networks`;
// otherwise `554 5.7.1 Relay access denied`, the recipient is not added and
// the session continues. Remembered statuses never bypass it.

import { localDomainMatcher } from '../vsl/values/address.js';
import { cidrContainsIp, parseCidr, parseIp, type Cidr } from '../vsl/values/net.js';
import { makeReply } from '../mail/reply.js';
import type { MailAddress, Reply, Session, Verdict } from '../mail/types.js';

export const REPLY_RELAY_DENIED: Reply = makeReply(554, '5.7.1', 'Relay access denied');

/** `server.relay_networks` entries (`a.b.c.d/len`, `ipv6/len` or a bare IP) compiled for matching. */
export class NetworkList {
  private readonly nets: Cidr[];

  constructor(entries: readonly string[]) {
    this.nets = entries.map((e) => {
      const text = e.trim();
      const net = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`);
      if (net === null) throw new Error(`invalid network '${e}': expected an IP address or a CIDR like "192.168.1.0/24"`);
      return net;
    });
  }

  /** Whether `ip` lies in one of the networks (IPv4-mapped IPv6 matches IPv4 networks). */
  contains(ip: string): boolean {
    const parsed = parseIp(ip);
    if (parsed === null) return false;
    return this.nets.some((n) => cidrContainsIp(n, parsed));
  }
}

export interface RelayGuardConfig {
  /** Whether a domain is local: `server.domain` or `server.virtual` (SPEC §4.4). */
  isLocalDomain(domain: string): boolean;
  /** `server.relay_networks`, compiled. */
  relayNetworks: NetworkList;
}

/** The guard's configuration from `server.domain`, `server.virtual` and `server.relay_networks`. */
export function relayGuardConfig(server: { domain: string; virtual: readonly string[]; relay_networks: readonly string[] }): RelayGuardConfig {
  return {
    isLocalDomain: localDomainMatcher({ domain: server.domain, virtual: [...server.virtual] }),
    relayNetworks: new NetworkList(server.relay_networks),
  };
}

/** Why a recipient passes the guard, or null when it does not. */
export function relayPermit(session: Pick<Session, 'auth' | 'clientIp'>, rcpt: MailAddress, cfg: RelayGuardConfig): 'local domain' | 'authenticated' | 'relay network' | null {
  if (cfg.isLocalDomain(rcpt.domain)) return 'local domain';
  if (session.auth !== null) return 'authenticated';
  if (cfg.relayNetworks.contains(session.clientIp)) return 'relay network';
  return null;
}

/**
 * The guard's verdict for one recipient: `next` (the normal `250 2.1.5 Ok`
 * and the recipient is added) or a `reject` carrying `554 5.7.1`.
 */
export function relayGuardVerdict(session: Pick<Session, 'auth' | 'clientIp'>, rcpt: MailAddress, cfg: RelayGuardConfig): Verdict {
  const permit = relayPermit(session, rcpt, cfg);
  return {
    status: permit === null ? 'reject' : 'next',
    reply: permit === null ? REPLY_RELAY_DENIED : null,
    rule: permit === null ? 'relay guard' : `relay guard (${permit})`,
    at: null,
    source: 'relay guard',
    trace: [],
  };
}
