// Connection slots (SPEC §9.2 client_count_max, client_count_max_per_ip and
// the extensions client_ipv6_prefix_length, client_count_reserved_for_new):
// who may open one more session. One table per server: in the process
// itself, or in the primary process when worker processes share the
// listeners (src/smtp/shared-limits.ts), so the limits hold server-wide.
//
//   - A client is its IPv4 address, or its IPv6 network of
//     `client_ipv6_prefix_length` bits (/64 by default: one host usually
//     owns a whole /64 and can use any address of it).
//   - The last `client_count_reserved_for_new` slots of client_count_max
//     (at most an eighth of it, so small limits keep their meaning) go only
//     to clients holding no connection yet: a few addresses filling the
//     server (13 addresses × 20 = all 256 slots) still leave room for
//     everyone else to connect.

import { formatIPv6, mask6, parseIp, unmapIp } from '../vsl/values/net.js';

export interface SlotLimits {
  /** client_count_max */
  total: number;
  /** client_count_max_per_ip (per IPv4 address or IPv6 prefix) */
  perClient: number;
  /** client_count_reserved_for_new (capped at an eighth of total here) */
  reservedForNew: number;
}

export type SlotAnswer =
  | { ok: true }
  | { ok: false; reason: 'total' | 'per-client' | 'reserved-for-new'; total: number; sameClient: number };

/** What a connection is counted as: the IPv4 address, or the IPv6 prefix (`2001:db8:1:2::/64`). */
export function clientGroup(ip: string, ipv6PrefixLength: number): string {
  const parsed = parseIp(ip);
  if (parsed === null) return ip;
  const plain = unmapIp(parsed);
  if (plain.v === 4) return ip;
  return `${formatIPv6(plain.n & mask6(ipv6PrefixLength))}/${ipv6PrefixLength}`;
}

/** The table of slots in use, by client group. */
export class ClientSlots {
  private used = 0;
  private readonly perClient = new Map<string, number>();

  /** Takes a slot for `client` if the limits allow it. */
  acquire(client: string, limits: SlotLimits): SlotAnswer {
    const same = this.perClient.get(client) ?? 0;
    const refuse = (reason: 'total' | 'per-client' | 'reserved-for-new'): SlotAnswer => ({ ok: false, reason, total: this.used, sameClient: same });
    if (this.used >= limits.total) return refuse('total');
    if (same >= limits.perClient) return refuse('per-client');
    const reserved = Math.min(limits.reservedForNew, Math.floor(limits.total / 8));
    if (same > 0 && this.used >= limits.total - reserved) return refuse('reserved-for-new');
    this.used++;
    this.perClient.set(client, same + 1);
    return { ok: true };
  }

  release(client: string): void {
    const same = this.perClient.get(client);
    if (same === undefined) return;
    this.used--;
    if (same <= 1) this.perClient.delete(client);
    else this.perClient.set(client, same - 1);
  }

  get size(): number {
    return this.used;
  }
}
