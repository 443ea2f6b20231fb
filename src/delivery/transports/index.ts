// The transport table: every way out of the queue, by kind. The vSL
// built-ins (src/builtins/core/transport.ts), routing (../routes.ts) and
// `delivery.default` all read it; nothing else names a transport kind.
// Adding a transport is one file in this folder and one line here.

import type { Transport } from '../../mail/types.js';
import { forwardTransport } from './forward.js';
import { lmtpTransport } from './lmtp.js';
import { maildirTransport } from './maildir.js';
import { mboxTransport } from './mbox.js';
import { mxTransport } from './mx.js';
import { noneTransport } from './none.js';
import type { TransportDef } from './transport.js';

export type { DeliveryJob, TransportContext, TransportDef } from './transport.js';

export const TRANSPORTS: readonly TransportDef[] = [
  mxTransport,
  forwardTransport,
  maildirTransport,
  mboxTransport,
  noneTransport,
  lmtpTransport,
];

const byKind = new Map(TRANSPORTS.map((t) => [t.kind, t]));

/** The transport of a kind, or undefined when no such transport exists. */
export function transportDef(kind: string): TransportDef | undefined {
  return byKind.get(kind);
}

/**
 * Checks a transport value against the table: a known kind, a target when
 * it needs one (valid for it), none when it takes none. Returns a clean
 * copy; throws an Error naming the problem.
 */
export function checkTransport(t: Transport): Transport {
  const def = transportDef(t.kind);
  if (!def) throw new Error(`unknown transport ${JSON.stringify(t.kind)}`);
  if (t.target === undefined) {
    if (def.target && !def.target.optional) throw new Error(`transport ${def.kind} needs a target`);
    return { kind: def.kind };
  }
  if (!def.target) throw new Error(`transport ${def.kind} takes no target`);
  def.target.check(t.target);
  return { kind: def.kind, target: t.target };
}

/** How a transport reads in logs and `mta queue show`: its kind, and its target when it has one. */
export function describeTransport(t: Transport): string {
  return t.target === undefined ? t.kind : `${t.kind} ${t.target}`;
}
