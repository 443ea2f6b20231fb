// The one interface every transport implements (SPEC §7.6). The scheduler
// groups a message's open recipients by `destination()` and hands each group
// to `deliver()`; the transport answers with one result per recipient. A
// transport is one file in this folder plus one line in ./index.ts.

import type { Resolver } from '../../host/ports.js';
import type { Config } from '../../config/schema.js';
import type { MailAddress, Transport } from '../../mail/types.js';
import type { SpoolLogger } from '../../queue/spool.js';
import type { RcptResult } from '../outcome.js';
import type { DeliveryPool } from '../pool.js';

/** What a transport may use besides the message: the configuration and the shared delivery machinery. */
export interface TransportContext {
  cfg: Config;
  /** Outgoing SMTP connections and the overall concurrency limit (local deliveries use `runLocal`). */
  pool: DeliveryPool;
  resolver: Resolver;
  /** Port of MX hosts: 25 (tests point it elsewhere). */
  mxPort: number;
  random: () => number;
  now: () => number;
  log: SpoolLogger;
}

/** One message for the recipients of one destination. */
export interface DeliveryJob {
  queueId: string;
  mailFrom: MailAddress;
  rcpts: MailAddress[];
  message: Buffer;
}

/** The transport's one parameter, `target` (a relay, an LMTP socket), when it has one. */
export interface TargetParam {
  /** `transport::<builtin>(rcpt)` without a target is allowed (the transport then uses its config key). */
  optional: boolean;
  /** Throws an Error naming the problem when the target is unusable. */
  check(target: string): void;
}

export interface TransportDef {
  /** The `kind` stored in the envelope record (`{ kind: "lmtp", target: "…" }`). */
  kind: string;
  /** Name of the vSL built-ins: `transport::<builtin>(rcpt, …)` and `transport::<builtin>_all(…)`. */
  builtin: string;
  target: TargetParam | null;
  /** false for a transport that makes no delivery (disable_delivery): a dry run has nothing to capture. */
  delivers?: false;
  /**
   * The key grouping recipients delivered together (unique across transports:
   * `mx:<domain>`, a relay key, `lmtp:<target>`; the kind for local mailboxes)
   * in one connection or one LMTP transaction. Throws a RouteError when the recipient cannot be
   * routed (a bad target in the configuration, say).
   */
  destination(t: Transport, rcpt: MailAddress, ctx: TransportContext): string;
  /** Delivers one message to the group; one result per recipient, in any order. */
  deliver(t: Transport, job: DeliveryJob, ctx: TransportContext): Promise<RcptResult[]>;
}
