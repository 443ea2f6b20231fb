// From a recipient's transport (SPEC §7.6) to how it is delivered: an SMTP
// destination (MX for its domain, or a relay target), a local mailbox, or
// nothing. `default` means `delivery.default`: "mx" or a forward target.

import type { Resolver } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import type { MailAddress, Transport } from '../mail/types.js';
import { mxEndpoints, relayEndpoints } from './mx.js';
import { RouteError } from './outcome.js';
import type { Destination } from './pool.js';
import { parseForwardTarget, relayKey } from './targets.js';

export type Route =
  | { kind: 'smtp'; dest: Destination }
  | { kind: 'maildir' }
  | { kind: 'mbox' }
  | { kind: 'none' }
  | { kind: 'error'; error: RouteError };

export interface RouteDeps {
  resolver: Resolver;
  /** Port of MX hosts: 25 (tests point it elsewhere). */
  mxPort: number;
  random: () => number;
}

/** The transport `default` stands for. */
export function defaultTransport(cfg: Config): Transport {
  const d = cfg.delivery.default.trim();
  return d === '' || d.toLowerCase() === 'mx' ? { kind: 'mx' } : { kind: 'forward', target: d };
}

export function routeFor(transport: Transport, rcpt: MailAddress, cfg: Config, deps: RouteDeps): Route {
  const t = transport.kind === 'default' ? defaultTransport(cfg) : transport;
  switch (t.kind) {
    case 'none':
    case 'maildir':
    case 'mbox':
      return { kind: t.kind };
    case 'mx': {
      const domain = rcpt.domain.toLowerCase();
      return {
        kind: 'smtp',
        dest: {
          key: `mx:${domain}`,
          endpoints: () => mxEndpoints(domain, deps.resolver, deps.mxPort, deps.random),
          tls: 'opportunistic',
          auth: null,
        },
      };
    }
    case 'forward': {
      let target;
      try {
        target = parseForwardTarget(t.target);
      } catch (err) {
        // A configuration problem: keep the mail until it is fixed.
        return { kind: 'error', error: new RouteError(`451 4.3.5 ${(err as Error).message}`, false, '4.3.5') };
      }
      return {
        kind: 'smtp',
        dest: {
          key: relayKey(target),
          endpoints: () => relayEndpoints(target.host, target.port, deps.resolver),
          tls: target.tls,
          auth: target.auth,
        },
      };
    }
    default:
      return { kind: 'error', error: new RouteError('451 4.3.5 unknown transport', false, '4.3.5') };
  }
}
