// `mta milter`: a milter server. Each connection reads packets
// (src/milter/wire.ts) and hands them, one at a time and in order, to its
// MilterSession. A packet that cannot be framed (length 0, over the limit)
// ends that connection only; the server keeps serving the others.

import type net from 'node:net';
import type { Logger } from 'pino';
import { serveInOrder, startFrontServer, type FrontServer } from '../reload/front-process.js';
import { decisionContext, type DraftFactory, type PolicyRuntimeOptions } from '../reload/runtime.js';
import { MilterSession, type MilterContext } from './session.js';
import { PacketReader } from './wire.js';

/** A milter connection silent this long is closed (Postfix's own milter timeouts are shorter). */
const IDLE_MS = 10 * 60_000;

export function serveMilterConnection(socket: net.Socket, ctx: MilterContext, log: Logger): void {
  const reader = new PacketReader();
  const session = new MilterSession(ctx, {
    write: (buf) => {
      if (!socket.destroyed) socket.write(buf);
    },
    close: () => socket.end(),
  }, log);
  serveInOrder(socket, log, { read: (chunk) => reader.push(chunk), handle: (p) => session.handle(p), idleMs: IDLE_MS });
}

export async function startMilter(opts: PolicyRuntimeOptions & { listen: string; watch?: boolean; newDraft: DraftFactory }): Promise<FrontServer> {
  return startFrontServer({
    ...opts,
    component: 'milter',
    handler: (runtime, log) => {
      const ctx = decisionContext(runtime, log, opts.newDraft);
      return (socket) => serveMilterConnection(socket, ctx, log);
    },
  });
}
