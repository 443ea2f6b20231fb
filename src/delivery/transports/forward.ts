// transport::forward: to a relay host (a smarthost, a content filter), with
// the TLS mode and credentials of the target (src/delivery/targets.ts).

import { relayEndpoints } from '../mx.js';
import { RouteError } from '../outcome.js';
import { parseForwardTarget, relayKey, type RelayTarget } from '../targets.js';
import { submitTo } from './smtp-destination.js';
import type { TransportDef } from './transport.js';
import type { Transport } from '../../mail/types.js';

function relayOf(t: Transport): RelayTarget {
  try {
    return parseForwardTarget(t.target ?? '');
  } catch (err) {
    // A configuration problem: keep the mail until it is fixed.
    throw new RouteError(`451 4.3.5 ${(err as Error).message}`, false, '4.3.5');
  }
}

export const forwardTransport: TransportDef = {
  kind: 'forward',
  builtin: 'forward',
  target: { optional: false, check: (target) => void parseForwardTarget(target) },
  destination: (t) => relayKey(relayOf(t)),
  deliver(t, job, ctx) {
    const target = relayOf(t);
    const dest = {
      key: relayKey(target),
      endpoints: () => relayEndpoints(target.host, target.port, ctx.resolver),
      tls: target.tls,
      auth: target.auth,
    };
    return submitTo(dest, job, ctx);
  },
};
