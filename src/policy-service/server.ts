// The policy server's connections: Postfix keeps one open per smtpd process
// and sends requests on it one after the other. Requests of a connection are
// answered in order; an oversized request or a connection that ends in the
// middle of one is closed without an answer (Postfix then applies its own
// default, a temporary failure); other connections are unaffected.

import type net from 'node:net';
import type { Logger } from 'pino';
import { serveInOrder, startFrontServer, type FrontServer } from '../reload/front-process.js';
import { decisionContext, type DraftFactory, type PolicyRuntimeOptions } from '../reload/runtime.js';
import { answer, RequestReader } from './request.js';
import { MALFORMED, PolicyService } from './service.js';

/** Postfix closes idle policy connections after max_idle (100 s); a silent client is dropped later. */
const IDLE_MS = 10 * 60_000;

export function servePolicyConnection(socket: net.Socket, service: PolicyService, log: Logger): void {
  const reader = new RequestReader();
  const reply = (action: string): void => {
    if (!socket.destroyed) socket.write(answer(action));
  };
  socket.on('end', () => {
    if (reader.incomplete) log.info('policy client left in the middle of a request');
  });
  serveInOrder(socket, log, {
    read: (chunk) => reader.push(chunk),
    handle: async (r) => {
      if (r.ok) return reply(await service.decide(r.attrs));
      log.warn({ problem: r.problem }, 'malformed policy request');
      reply(MALFORMED);
    },
    onError: () => reply('DEFER_IF_PERMIT 4.3.0 Temporary local problem, try again later'),
    idleMs: IDLE_MS,
  });
}

export async function startPolicyServer(opts: PolicyRuntimeOptions & { listen: string; watch?: boolean; newDraft: DraftFactory }): Promise<FrontServer> {
  return startFrontServer({
    ...opts,
    component: 'policy-server',
    handler: (runtime, log) => {
      const service = new PolicyService(decisionContext(runtime, log, opts.newDraft));
      return (socket) => servePolicyConnection(socket, service, log);
    },
  });
}
