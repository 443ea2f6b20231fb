// Routing: the one function that turns a recipient's transport (SPEC §7.6)
// into the transport that delivers it and the destination it is grouped
// by, for every message the queue holds, bounces included. `default` means
// `delivery.default`: "mx", another transport that needs no target
// ("maildir", "lmtp", …), or a forward target.

import type { Config } from '../config/schema.js';
import type { MailAddress, Transport } from '../policy/types.js';
import { RouteError } from './outcome.js';
import { type TransportContext, type TransportDef, transportDef } from './transports/index.js';

export type Route = { def: TransportDef; transport: Transport; key: string } | { error: RouteError };

/** The transport `default` stands for. */
export function defaultTransport(cfg: Config): Transport {
  const d = cfg.delivery.default.trim();
  if (d === '') return { kind: 'mx' };
  const named = transportDef(d.toLowerCase());
  if (named && !(named.target && !named.target.optional)) return { kind: named.kind };
  return { kind: 'forward', target: d };
}

export function routeFor(transport: Transport, rcpt: MailAddress, ctx: TransportContext): Route {
  const t = transport.kind === 'default' ? defaultTransport(ctx.cfg) : transport;
  const def = transportDef(t.kind);
  if (!def) return { error: new RouteError(`451 4.3.5 unknown transport ${JSON.stringify(t.kind)}`, false, '4.3.5') };
  try {
    return { def, transport: t, key: `${def.kind}:${def.destination(t, rcpt, ctx)}` };
  } catch (err) {
    if (err instanceof RouteError) return { error: err };
    return { error: new RouteError(`451 4.3.5 ${(err as Error).message}`, false, '4.3.5') };
  }
}
