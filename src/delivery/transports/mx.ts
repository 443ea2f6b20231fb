// transport::deliver: to the MX hosts of the recipient's domain (SPEC §10),
// opportunistic STARTTLS, one connection pool per domain.

import { mxEndpoints } from '../mx.js';
import { submitTo } from './smtp-destination.js';
import type { TransportDef } from './transport.js';

export const mxTransport: TransportDef = {
  kind: 'mx',
  builtin: 'deliver',
  target: null,
  destination: (_t, rcpt) => `mx:${rcpt.domain.toLowerCase()}`,
  deliver(_t, job, ctx) {
    const domain = job.rcpts[0]!.domain.toLowerCase();
    const dest = {
      key: `mx:${domain}`,
      endpoints: () => mxEndpoints(domain, ctx.resolver, ctx.mxPort, ctx.random),
      tls: 'opportunistic' as const,
      auth: null,
    };
    return submitTo(dest, job, ctx);
  },
};
