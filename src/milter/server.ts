// `mta milter`: a milter server. Each connection reads packets
// (src/milter/wire.ts) and hands them, one at a time and in order, to its
// MilterSession. A packet that cannot be framed (length 0, over the limit)
// ends that connection only; the server keeps serving the others.

import type net from 'node:net';
import type { Logger } from 'pino';
import { newQueueId } from '../queue/id.js';
import { startFrontServer, type FrontServer } from '../reload/front-process.js';
import { stageMachineEnv, type PolicyRuntimeOptions } from '../reload/runtime.js';
import { MilterSession, type MilterContext } from './session.js';
import { MilterWireError, PacketReader } from './wire.js';

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
  let chain = Promise.resolve();
  socket.setTimeout(IDLE_MS, () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    let packets;
    try {
      packets = reader.push(chunk);
    } catch (err) {
      if (!(err instanceof MilterWireError)) throw err;
      log.warn({ err: err.message }, 'milter framing error, closing the connection');
      socket.destroy();
      return;
    }
    for (const p of packets) {
      chain = chain.then(() => session.handle(p)).catch((err: unknown) => {
        log.error({ err: (err as Error).message }, 'milter session failed, closing the connection');
        socket.destroy();
      });
    }
  });
}

export async function startMilter(opts: PolicyRuntimeOptions & { listen: string; watch?: boolean }): Promise<FrontServer> {
  return startFrontServer({
    ...opts,
    component: 'milter',
    handler: (runtime, log) => {
      const ctx: MilterContext = {
        env: stageMachineEnv(runtime),
        server: () => runtime.config().server,
        log,
        newId: () => newQueueId(),
        now: () => Date.now(),
      };
      return (socket) => serveMilterConnection(socket, ctx, log);
    },
  });
}
