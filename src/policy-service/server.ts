// The policy server's connections: Postfix keeps one open per smtpd process
// and sends requests on it one after the other. Requests of a connection are
// answered in order; an oversized request or a connection that ends in the
// middle of one is closed without an answer (Postfix then applies its own
// default, a temporary failure); other connections are unaffected.

import type net from 'node:net';
import type { Logger } from 'pino';
import { newQueueId } from '../queue/id.js';
import { startFrontServer, type FrontServer } from '../reload/front-process.js';
import { stageMachineEnv, type PolicyRuntimeOptions } from '../reload/runtime.js';
import { answer, RequestReader, RequestTooLarge } from './request.js';
import { MALFORMED, PolicyService } from './service.js';

/** Postfix closes idle policy connections after max_idle (100 s); a silent client is dropped later. */
const IDLE_MS = 10 * 60_000;

export function servePolicyConnection(socket: net.Socket, service: PolicyService, log: Logger): void {
  const reader = new RequestReader();
  let chain = Promise.resolve();
  socket.setTimeout(IDLE_MS, () => socket.destroy());
  socket.on('end', () => {
    if (reader.incomplete) log.info('policy client left in the middle of a request');
  });
  socket.on('data', (chunk: Buffer) => {
    let requests;
    try {
      requests = reader.push(chunk);
    } catch (err) {
      if (!(err instanceof RequestTooLarge)) throw err;
      log.warn({ err: err.message }, 'policy request too large, closing the connection');
      socket.destroy();
      return;
    }
    for (const r of requests) {
      chain = chain.then(async () => {
        let action: string;
        if (!r.ok) {
          log.warn({ problem: r.problem }, 'malformed policy request');
          action = MALFORMED;
        } else action = await service.decide(r.attrs);
        if (!socket.destroyed) socket.write(answer(action));
      }).catch((err: unknown) => {
        log.error({ err: (err as Error).message }, 'policy request failed');
        if (!socket.destroyed) socket.write(answer('DEFER_IF_PERMIT 4.3.0 Temporary local problem, try again later'));
      });
    }
  });
}

export async function startPolicyServer(opts: PolicyRuntimeOptions & { listen: string; watch?: boolean }): Promise<FrontServer> {
  return startFrontServer({
    ...opts,
    component: 'policy-server',
    handler: (runtime, log) => {
      const service = new PolicyService({
        env: stageMachineEnv(runtime),
        server: () => runtime.config().server,
        log,
        newId: () => newQueueId(),
        now: () => Date.now(),
      });
      return (socket) => servePolicyConnection(socket, service, log);
    },
  });
}
