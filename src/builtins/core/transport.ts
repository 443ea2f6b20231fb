// transport:: (SPEC §7.6): how each recipient is delivered. Two built-ins
// per transport of the table (src/delivery/transports/index.ts):
// `transport::<name>(rcpt, [target])` and `transport::<name>_all([target])`.
// Recorded as `transport` effects, one per recipient; the delivery side acts
// on them.
//
// Targets are validated when the rule runs, by the transport's own check,
// so a typo fails the rule instead of every delivery.

import type { MailAddress, Transport } from '../../mail/types.js';
import { addressText } from '../../mail/types.js';
import { parseForwardTarget as parseRelayTarget, type RelayTarget } from '../../delivery/targets.js';
import { TRANSPORTS, type TransportDef } from '../../delivery/transports/index.js';
import { Fqdn, Ip4, Ip6 } from '../../vsl/values/objects.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { typeName } from '../dns/call-args.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { currentRecipients, recipientArg, requireRecipient, requireTxn } from './addresses.js';
import { builtin } from './define.js';

export type { RelayTarget };

/**
 * Parses a forward target (SPEC §7.6): a host, `host:port`, an IP (IPv6
 * bracketed when a port follows), an ip/fqdn object,
 * `smtp://[user:pass@]host[:port][?tls=none|opportunistic|required|tunnel]`
 * or `smtps://[user:pass@]host[:port]`. Returns host, port, TLS mode and
 * credentials (null when none); throws an Error naming the problem.
 */
export function parseForwardTarget(target: string | Value): RelayTarget {
  return parseRelayTarget(forwardTargetText(target));
}

/** The text of a target argument: a string, or an ip4/ip6/fqdn object. */
function forwardTargetText(v: Value): string {
  if (v instanceof Ip4 || v instanceof Ip6 || v instanceof Fqdn) return v.text();
  if (typeof v === 'string') return v.trim();
  throw new Error(`forward target must be a string, an ip or an fqdn, got ${typeName(v)}`);
}

/** The transport a built-in call asks for: its kind and the validated target argument, if any. */
function transportFrom(fn: string, def: TransportDef, arg: Value | undefined): Transport {
  if (!def.target || (arg === undefined && def.target.optional)) return { kind: def.kind };
  if (arg === undefined) throw fnError(fn, 'a target is required');
  try {
    const text = forwardTargetText(arg);
    def.target.check(text);
    return { kind: def.kind, target: text };
  } catch (err) {
    throw fnError(fn, (err as Error).message);
  }
}

function setTransport(call: HostCall, rcpts: MailAddress[], transport: Transport): void {
  for (const rcpt of rcpts) call.effects.record({ kind: 'transport', rcpt, transport });
  if (transport.kind === 'none') {
    call.log.info({ rcpts: rcpts.map(addressText) }, 'delivery disabled by policy');
  }
}

/** Which recipients a transport built-in sets, and the arguments left for the transport. */
type Targets = (call: HostCall, name: string, args: Value[]) => { rcpts: MailAddress[]; rest: Value[] };

/** The one-recipient form: the first argument must be a recipient now. */
const oneRecipient: Targets = (call, name, args) => ({
  rcpts: [requireRecipient(call, name, recipientArg(call, name, 'recipient', args[0]!))],
  rest: args.slice(1),
});

/** The `_all` form: every recipient present at the call. */
const allRecipients: Targets = (call, _name, args) => ({ rcpts: currentRecipients(call), rest: args });

/** One built-in of a transport; `fixed` is 1 for the one-recipient form (its recipient argument), 0 for `_all`. */
function transportSetter(def: TransportDef, name: string, fixed: number, targets: Targets): HostBuiltin {
  const arity: number | [number, number] = !def.target ? fixed : def.target.optional ? [fixed, fixed + 1] : fixed + 1;
  return builtin({
    name,
    from: 'rcpt',
    io: false,
    arity,
    fn(call, args) {
      requireTxn(call, name);
      const { rcpts, rest } = targets(call, name, args);
      setTransport(call, rcpts, transportFrom(name, def, rest[0]));
      return undefined;
    },
  });
}

export const transportBuiltins: HostBuiltin[] = TRANSPORTS.flatMap((def) => [
  transportSetter(def, `transport::${def.builtin}`, 1, oneRecipient),
  transportSetter(def, `transport::${def.builtin}_all`, 0, allRecipients),
]);
