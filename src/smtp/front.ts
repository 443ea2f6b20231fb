// The SMTP front: the listeners of server.interfaces (SPEC §9.2), their TLS
// material, the shared connection registry, reloads and the graceful stop
// (SPEC §11.1).
//
//   addr               plain SMTP, STARTTLS offered when a certificate is configured
//   addr_submission    587-style: STARTTLS, AUTH required before MAIL
//   addr_submissions   465-style: implicit TLS, AUTH required before MAIL

import { readFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { SMTPServerOptions } from 'smtp-server';
import { systemClock, type Clock } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import type { ListenerKind, StageRunner } from '../mail/types.js';
import { newQueueId } from '../queue/id.js';
import { ConnectionRegistry, type AuthFailureTracker, type FrontContext } from './context.js';
import { VslSmtpServer } from './server.js';
import { localSlots, type SlotGate } from './shared-limits.js';
import { settingsFromConfig, SUPPORTED_MECHANISMS, type Settings } from './settings.js';
import type { MessageSink } from './sink.js';

export interface SmtpFrontOptions {
  config: Config;
  runner: StageRunner;
  sink: MessageSink;
  log: Logger;
  /** Cross-session AUTH failure tracker (src/builtins/auth/failures.ts createFailureTracker). */
  authBackendFailures?: AuthFailureTracker | null;
  clock?: Clock;
  /** Connection slots shared with other processes (shared-limits.ts); this front's own by default. */
  clientSlots?: SlotGate;
  /** Transaction id generator; the queue's newQueueId() by default. */
  newId?: () => string;
  /** Sees every stage decision (mta explain). */
  observe?: import('../policy/stage-machine.js').DecisionObserver;
}

export interface AcceptOptions {
  client: { address: string; port: number };
  server: { address: string; port: number };
  implicitTls?: boolean;
}

export interface ListenerAddress {
  kind: ListenerKind;
  address: string;
  port: number;
}

export interface SmtpFront {
  /** Opens every configured listener; resolves with the bound addresses (port 0 gets a real port). */
  listen(): Promise<ListenerAddress[]>;
  /**
   * Graceful stop: stop accepting, let open transactions finish for up to
   * `graceMs`, then `421 4.3.2 Service shutting down` and close. Idle
   * sessions get the 421 right away.
   */
  close(graceMs?: number): Promise<void>;
  /** Applies a new configuration: settings now, TLS files re-read; listener addresses need a restart. */
  reload(config: Config): Promise<void>;
  /**
   * Serves a socket that did not come from a listener, as a listener of
   * `kind` would (`mta test` drives sessions over in-memory sockets).
   * `implicitTls`: the session starts with a TLS handshake, as on submissions.
   */
  accept(kind: ListenerKind, socket: Duplex, opts: AcceptOptions): Promise<void>;
  /** Open connections. */
  readonly connections: number;
}

interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  minVersion: string;
}

/** Reads the PEM files of server.tls; null when none is configured. */
async function loadTls(config: Config): Promise<TlsMaterial | null> {
  const { certificate, private_key: key, min_version: minVersion } = config.server.tls;
  if (certificate === null && key === null) return null;
  if (certificate === null || key === null) throw new Error('server.tls: certificate and private_key must be set together');
  const [certPem, keyPem] = await Promise.all([readFile(certificate), readFile(key)]);
  return { cert: certPem, key: keyPem, minVersion };
}

/** `host:port` or `[v6]:port`. */
export function parseListenAddress(spec: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(spec) ?? /^([^:[\]]+):(\d+)$/.exec(spec);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid listen address '${spec}': expected host:port or [ipv6]:port`);
  return { host: m[1]!, port };
}

// smtp-server guards against lines longer than this before handing them
// over; lines between line_length_max and this get `500 5.5.6` and the
// session goes on, longer ones end it.
const PARSER_LINE_CAP = 64 * 1024;

// Connections the kernel may hold for accept(). Node's default, 511, is
// overrun by a burst of several hundred clients connecting at once; a SYN
// dropped then costs the client a 1 s retransmission. The kernel caps this
// at net.core.somaxconn.
const LISTEN_BACKLOG = 4096;

export function createSmtpFront(opts: SmtpFrontOptions): SmtpFront {
  let settings: Settings = settingsFromConfig(opts.config);
  let config = opts.config;
  let tls: TlsMaterial | null = null;
  const log = opts.log.child({ component: 'smtp' });
  const registry = new ConnectionRegistry();
  const servers: VslSmtpServer[] = [];
  let closing: Promise<void> | null = null;

  const front: FrontContext = {
    settings: () => settings,
    runner: opts.runner,
    sink: opts.sink,
    log: opts.log,
    clock: opts.clock ?? systemClock,
    authFailures: opts.authBackendFailures ?? null,
    newId: opts.newId ?? (() => newQueueId()),
    registry,
    slots: opts.clientSlots ?? localSlots(),
    tlsAvailable: () => tls !== null,
    observe: opts.observe,
  };

  function serverOptions(kind: ListenerKind): SMTPServerOptions {
    const o: SMTPServerOptions = {
      // Implicit TLS on submissions listeners; everything else starts in plaintext.
      secure: kind === 'submissions',
      logger: false,
      disableReverseLookup: true,
      socketTimeout: settings.idleTimeoutMs,
      // Sockets waiting for a PROXY header or a TLS handshake, before any session exists.
      maxClients: settings.clientCountMax,
      maxCommandLength: Math.max(PARSER_LINE_CAP, settings.lineLengthMax * 2),
      name: settings.serverName,
    };
    if (tls !== null) Object.assign(o, { key: tls.key, cert: tls.cert, minVersion: tls.minVersion });
    return o;
  }

  function warnAboutConfig(): void {
    const configured = config.server.auth.mechanisms.map((m) => m.toUpperCase());
    const unknown = configured.filter((m) => !(SUPPORTED_MECHANISMS as readonly string[]).includes(m));
    if (unknown.length > 0) log.warn({ mechanisms: unknown }, 'server.auth.mechanisms: unsupported mechanisms ignored');
    const submission = config.server.interfaces.addr_submission.length + config.server.interfaces.addr_submissions.length > 0;
    if (submission && !opts.runner.hasRules('authenticate')) {
      log.warn('submission listeners require AUTH but the policy has no authenticate rules: no client can send mail there');
    }
  }

  async function listenOne(kind: ListenerKind, spec: string): Promise<ListenerAddress> {
    const { host, port } = parseListenAddress(spec);
    const server = new VslSmtpServer({ kind, front }, serverOptions(kind));
    server.on('error', (err: Error & { code?: string }) => log.warn({ err: err.message, code: err.code, listener: kind }, 'connection error'));
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`cannot listen on ${spec}: ${err.message}`));
      server.server.once('error', onError);
      server.server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        server.server.removeListener('error', onError);
        resolve();
      });
    });
    const addr = server.server.address() as AddressInfo;
    log.info({ listener: kind, address: addr.address, port: addr.port }, 'listening');
    return { kind, address: addr.address, port: addr.port };
  }

  async function listen(): Promise<ListenerAddress[]> {
    tls = await loadTls(config);
    const ifaces = config.server.interfaces;
    if (ifaces.addr_submissions.length > 0 && tls === null) {
      throw new Error('server.interfaces.addr_submissions needs server.tls.certificate and server.tls.private_key');
    }
    warnAboutConfig();
    const out: ListenerAddress[] = [];
    try {
      for (const a of ifaces.addr) out.push(await listenOne('smtp', a));
      for (const a of ifaces.addr_submission) out.push(await listenOne('submission', a));
      for (const a of ifaces.addr_submissions) out.push(await listenOne('submissions', a));
    } catch (err) {
      await stopListening();
      throw err;
    }
    return out;
  }

  async function stopListening(): Promise<void> {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.server.listening) return resolve();
            s.server.close(() => resolve());
            // Sockets still in a PROXY header or TLS handshake have no session to finish.
            s._pendingSockets.forEach((sock) => sock.destroy());
          }),
      ),
    );
  }

  async function close(graceMs = 30_000): Promise<void> {
    if (closing !== null) return closing;
    closing = (async () => {
      const stopped = stopListening();
      registry.forEach((c) => c.requestShutdown());
      const grace = setTimeout(() => registry.forEach((c) => c.forceShutdown()), graceMs);
      try {
        await registry.whenEmpty();
      } finally {
        clearTimeout(grace);
      }
      await stopped;
      log.info('stopped');
    })();
    return closing;
  }

  async function reload(next: Config): Promise<void> {
    const nextSettings = settingsFromConfig(next);
    let nextTls: TlsMaterial | null;
    try {
      nextTls = await loadTls(next);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'TLS files could not be read, keeping the current certificate');
      nextTls = tls;
    }
    if (nextTls !== null) {
      for (const s of servers) {
        s.updateSecureContext({ key: nextTls.key, cert: nextTls.cert, minVersion: nextTls.minVersion } as SMTPServerOptions);
      }
    }
    for (const s of servers) s.options.socketTimeout = nextSettings.idleTimeoutMs;
    tls = nextTls;
    settings = nextSettings;
    config = next;
  }

  // Servers that never listen, one per listener kind and TLS mode, for accept().
  const detached = new Map<string, VslSmtpServer>();
  let tlsLoaded = false;

  async function accept(kind: ListenerKind, socket: Duplex, o: AcceptOptions): Promise<void> {
    if (closing !== null) throw new Error('the SMTP front is closed');
    if (!tlsLoaded) {
      tls ??= await loadTls(config);
      tlsLoaded = true;
    }
    const secure = kind === 'submissions' || o.implicitTls === true;
    if (secure && tls === null) throw new Error('implicit TLS needs server.tls.certificate and server.tls.private_key');
    const key = `${kind}/${secure}`;
    let server = detached.get(key);
    if (server === undefined) {
      server = new VslSmtpServer({ kind, front }, { ...serverOptions(kind), secure });
      server.on('error', (err: Error & { code?: string }) => log.warn({ err: err.message, code: err.code, listener: kind }, 'connection error'));
      detached.set(key, server);
      servers.push(server);
    }
    // The addresses are given, not read from the socket: a TLS socket over a
    // stream that is not a TCP socket has none.
    const socketOptions = { remoteAddress: o.client.address, remotePort: o.client.port, localAddress: o.server.address, localPort: o.server.port };
    if (!secure) {
      server.connect(socket as Socket, socketOptions);
      return;
    }
    const s = server;
    s._upgrade(socket as Socket, (err, tlsSocket) => {
      if (err || tlsSocket === undefined) {
        socket.destroy();
        log.info({ err: err?.message, listener: kind }, 'TLS handshake failed');
        return;
      }
      s.connect(tlsSocket, socketOptions);
    });
  }

  return {
    listen,
    close,
    reload,
    accept,
    get connections() {
      return registry.size;
    },
  };
}
