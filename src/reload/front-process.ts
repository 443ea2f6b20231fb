// The process around a front that another MTA calls (`mta milter`, `mta
// policy-server`): the policy runtime with hot reload, one listening socket
// (`HOST:PORT` or `unix:PATH`), SIGHUP to reload, SIGTERM/SIGINT to stop.
// Neither keeps a spool: the calling MTA queues.

import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { startPolicyRuntime, type PolicyRuntime, type PolicyRuntimeOptions } from './runtime.js';

export type ListenSpec = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** `HOST:PORT`, `[v6]:PORT` or `unix:PATH`. */
export function parseListenSpec(spec: string): ListenSpec {
  if (spec.startsWith('unix:')) {
    const p = spec.slice(5);
    if (p === '') throw new Error(`invalid listen address '${spec}': unix: needs a path`);
    return { kind: 'unix', path: p };
  }
  const colon = spec.lastIndexOf(':');
  const host = spec.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(spec.slice(colon + 1));
  if (colon <= 0 || host === '' || !/^\d+$/.test(spec.slice(colon + 1)) || port > 65535) {
    throw new Error(`invalid listen address '${spec}': expected HOST:PORT, [IPv6]:PORT or unix:PATH`);
  }
  return { kind: 'tcp', host, port };
}

export interface FrontServer {
  /** The bound address: `host:port` (a real port when 0 was asked) or the socket path. */
  address: string;
  port: number | null;
  runtime: PolicyRuntime;
  /** Stops accepting, ends open connections after `graceMs`, closes the policy. */
  stop(graceMs?: number): Promise<void>;
}

export interface FrontServerOptions extends PolicyRuntimeOptions {
  listen: string;
  /** Called once the policy is loaded: returns what serves each accepted connection. */
  handler(runtime: PolicyRuntime, log: Logger): (socket: net.Socket) => void;
  /** Component name for the log lines. */
  component: string;
  watch?: boolean;
}

export async function startFrontServer(opts: FrontServerOptions): Promise<FrontServer> {
  const spec = parseListenSpec(opts.listen);
  const runtime = await startPolicyRuntime(opts);
  const log = opts.log.child({ component: opts.component });
  const serve = opts.handler(runtime, log);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    // Every answer is awaited by the MTA: send it now, not when Nagle's algorithm allows.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => log.debug({ err: err.message }, 'connection error'));
    serve(socket);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (spec.kind === 'unix') {
        // A socket file left by a previous run would make listen fail.
        if (fs.existsSync(spec.path) && fs.statSync(spec.path).isSocket()) fs.unlinkSync(spec.path);
        server.listen(spec.path, () => resolve());
      } else server.listen({ host: spec.host, port: spec.port, backlog: 4096 }, () => resolve());
    });
  } catch (err) {
    await runtime.close();
    throw new Error(`cannot listen on ${opts.listen}: ${(err as Error).message}`);
  }
  const bound = server.address();
  const port = typeof bound === 'object' && bound !== null ? bound.port : null;
  const address = typeof bound === 'object' && bound !== null ? `${bound.address}:${bound.port}` : String(bound);
  if (opts.watch !== false) runtime.policy.watch();
  log.info({ address, version: runtime.policy.current().id, policy: opts.mainPath }, `listening on ${address}`);
  let stopping: Promise<void> | null = null;
  return {
    address,
    port,
    runtime,
    stop(graceMs = 5_000) {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const timer = setTimeout(() => sockets.forEach((s) => s.destroy()), graceMs);
        for (const s of sockets) s.end();
        await closed;
        clearTimeout(timer);
        await runtime.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}

/** SIGHUP reloads; SIGTERM/SIGINT stop and resolve with the exit code. */
export function runUntilSignalled(front: FrontServer, log: Logger): Promise<number> {
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading the policy');
    void front.runtime.policy.reload('SIGHUP');
  });
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      log.info({ signal }, 'stopping');
      void front.stop().then(() => {
        log.flush?.();
        resolve(0);
        setTimeout(() => process.exit(0), 200).unref();
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * Serves a connection whose bytes `read` turns into requests: each request
 * is handled once the one before it is done, so answers keep their order.
 * `read` throwing (a request that cannot be framed) ends this connection
 * only; `handle` failing is answered by `onError`, if given, else closes.
 */
export function serveInOrder<T>(
  socket: net.Socket,
  log: Logger,
  o: { read(chunk: Buffer): T[]; handle(request: T): Promise<void>; onError?(err: Error): void; idleMs: number },
): void {
  let chain = Promise.resolve();
  socket.setTimeout(o.idleMs, () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    let requests: T[];
    try {
      requests = o.read(chunk);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'unreadable request, closing the connection');
      socket.destroy();
      return;
    }
    for (const r of requests) {
      chain = chain.then(() => o.handle(r)).catch((err: Error) => {
        log.error({ err: err.message }, 'request failed');
        if (o.onError) o.onError(err);
        else socket.destroy();
      });
    }
  });
}
