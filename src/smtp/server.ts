// One listening socket: smtp-server's SMTPServer, creating VslConnection
// for each client. Overridden, and why:
//   connect              builds our connection class instead of the library's.
//   _expectsProxyHeader  PROXY v1 is honoured only from server.interfaces.proxy_from,
//                        which may hold networks, not only single addresses (SPEC §4.3).
//   _upgrade             implicit TLS (port 465) gets `server.tls.handshake_timeout`
//                        instead of the idle timeout.

import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { SMTPConnectionOptions, TLSError } from 'smtp-server/lib/smtp-connection.js';
import { normalizeIp } from '../vsl/values/address.js';
import { VslConnection } from './connection.js';
import type { ListenerContext } from './context.js';

export class VslSmtpServer extends SMTPServer {
  constructor(
    readonly listenerContext: ListenerContext,
    options: SMTPServerOptions,
  ) {
    super(options);
  }

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new VslConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.init();
  }

  override _expectsProxyHeader(socket: net.Socket): boolean {
    const ip = socket.remoteAddress;
    return ip !== undefined && this.listenerContext.front.settings().proxyFrom.contains(normalizeIp(ip));
  }

  override _upgrade(socket: net.Socket, callback: (err: TLSError | null, tlsSocket?: tls.TLSSocket) => void): void {
    const timer = setTimeout(() => {
      // Destroy the topmost socket: tearing the TCP socket out from under a
      // handshake in progress is what the library warns against.
      (this._pendingSockets.get(socket) ?? socket).destroy();
    }, this.listenerContext.front.settings().handshakeTimeoutMs);
    timer.unref();
    super._upgrade(socket, (err, tlsSocket) => {
      clearTimeout(timer);
      callback(err, tlsSocket);
    });
  }
}
