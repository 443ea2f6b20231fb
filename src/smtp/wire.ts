// The connection as the protocol layer (protocol.ts) sees it: replies,
// close, the DATA byte stream and the TLS upgrade. Implemented by
// VslConnection on top of smtp-server (connection.ts); nothing in the
// protocol layer touches the library.

import type { Reply, TlsInfo } from '../mail/types.js';

export type DataEnd = 'end' | 'aborted';

export interface Wire {
  /**
   * Sends a reply. Counts 4xx/5xx as errors, delays replies from
   * `error.soft_count` errors on, and at `error.hard_count` follows the reply
   * with `421 4.7.0 Too many errors` and closes (SPEC §4.5). `close` closes
   * the connection after the reply.
   */
  reply(r: Reply, opts?: { close?: boolean }): Promise<void>;
  /** Sends a reply that ends the connection, outside error counting (421s, 554 to early talkers). */
  replyAndClose(r: Reply): void;
  /** Whether the connection is closing or closed: nothing more can be sent. */
  readonly gone: boolean;
  /** TLS of the connection now, or null. */
  tlsInfo(): TlsInfo | null;
  /**
   * Switches the parser to DATA mode: every (dot-unstuffed) chunk goes to
   * `onChunk` until the final CRLF.CRLF. Resolves `end` then, or `aborted`
   * when the client went away or the DATA timeout hit. Call before the 354
   * reply's command completes; call dataDone() once the end-of-data reply is sent.
   * While a promise `onChunk` returned is pending, no more is read.
   */
  receiveData(onChunk: (chunk: Buffer) => void | Promise<void>): Promise<DataEnd>;
  /** Resumes reading commands after the end-of-data reply. */
  dataDone(): void;
  /** Starts the TLS handshake after `220 2.0.0 Ready to start TLS`; `onSecure` runs once it completed. */
  startTls(onSecure: () => void): void;
  /** The reply to the current command must be awaited by the client (pipelining check). */
  markAwaited(): void;
  /**
   * Holds the idle timeout while the server works outside a command handler
   * (end of data: preq and the spool). Command handlers are covered already.
   */
  setBusy(busy: boolean): void;
}
