// Routing: the one function that turns a recipient's transport (SPEC §7.6)
// into the transport that delivers it and the destination it is grouped
// by, for every message the queue holds, bounces included. `default` means
// `delivery.local` for a recipient of a local domain (SPEC §4.4) when it is
// set (Postfix's local_transport), else `delivery.default`. Both are "mx",
// another transport that needs no target ("maildir", "lmtp", …), or a
// forward target.

import type { Config } from '../config/schema.js';
import type { MailAddress, Transport } from '../mail/types.js';
import { RouteError } from './outcome.js';
import { type TransportContext, type TransportDef, transportDef } from './transports/index.js';

export type Route = { def: TransportDef; transport: Transport; key: string } | { error: RouteError };

/** The transport a `delivery.default` / `delivery.local` setting names. */
function namedTransport(setting: string): Transport {
  const d = setting.trim();
  if (d === '') return { kind: 'mx' };
  const named = transportDef(d.toLowerCase());
  if (named && !(named.target && !named.target.optional)) return { kind: named.kind };
  return { kind: 'forward', target: d };
}

/** Whether a domain is local: server.domain or one of server.virtual (SPEC §4.4). */
export function isLocalDomain(domain: string, cfg: Config): boolean {
  const d = domain.toLowerCase();
  return d === cfg.server.domain.toLowerCase() || cfg.server.virtual.some((v) => v.toLowerCase() === d);
}

/** The transport `default` stands for, for this recipient. */
export function defaultTransport(cfg: Config, rcpt: MailAddress): Transport {
  if (cfg.delivery.local.trim() !== '' && isLocalDomain(rcpt.domain, cfg)) return namedTransport(cfg.delivery.local);
  return namedTransport(cfg.delivery.default);
}

export function routeFor(transport: Transport, rcpt: MailAddress, ctx: TransportContext): Route {
  const t = transport.kind === 'default' ? defaultTransport(ctx.cfg, rcpt) : transport;
  const def = transportDef(t.kind);
  if (!def) return { error: new RouteError(`451 4.3.5 unknown transport ${JSON.stringify(t.kind)}`, false, '4.3.5') };
  try {
    return { def, transport: t, key: def.destination(t, rcpt, ctx) };
  } catch (err) {
    if (err instanceof RouteError) return { error: err };
    return { error: new RouteError(`451 4.3.5 ${(err as Error).message}`, false, '4.3.5') };
  }
}
