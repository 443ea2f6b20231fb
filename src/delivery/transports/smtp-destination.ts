// What the MX and forward transports share: handing a job to the pool's
// connection to a Destination.

import { addressText } from '../../mail/types.js';
import type { RcptResult } from '../outcome.js';
import type { Destination } from '../pool.js';
import type { DeliveryJob, TransportContext } from './transport.js';

export function submitTo(dest: Destination, job: DeliveryJob, ctx: TransportContext): Promise<RcptResult[]> {
  return ctx.pool.submit(dest, { mailFrom: addressText(job.mailFrom), rcpts: job.rcpts.map(addressText), data: job.message });
}
