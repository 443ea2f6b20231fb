// transport::disable_delivery: the recipient is done without a delivery.

import { addressText } from '../../mail/types.js';
import { delivered } from '../outcome.js';
import type { TransportDef } from './transport.js';

export const noneTransport: TransportDef = {
  kind: 'none',
  builtin: 'disable_delivery',
  target: null,
  delivers: false,
  destination: () => 'none',
  async deliver(_t, job, ctx) {
    return job.rcpts.map((rcpt) => {
      const addr = addressText(rcpt);
      ctx.log.info({ queue_id: job.queueId, rcpt: addr }, `queue: ${job.queueId}: delivery disabled for ${addr}`);
      return delivered(addr, 'delivery disabled by policy (no delivery made)');
    });
  },
};
