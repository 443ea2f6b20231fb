// transport:: (SPEC §7.6): how each recipient is delivered — MX, forward to a
// relay, maildir, mbox, or not at all. Recorded as `transport` effects, one
// per recipient; the delivery side acts on them (src/delivery/).
//
// Forward targets are validated when the rule runs, with the parser the
// delivery side uses, so a typo fails the rule instead of every delivery.

import type { MailAddress, Transport } from '../../mail/types.js';
import { addressText } from '../../mail/types.js';
import { parseForwardTarget as parseRelayTarget, type RelayTarget } from '../../delivery/targets.js';
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

/** The text of a forward target argument: a string, or an ip4/ip6/fqdn object. */
function forwardTargetText(v: Value): string {
  if (v instanceof Ip4 || v instanceof Ip6 || v instanceof Fqdn) return v.text();
  if (typeof v === 'string') return v.trim();
  throw new Error(`forward target must be a string, an ip or an fqdn, got ${typeName(v)}`);
}

/** A validated forward target as stored in the transport (its text). */
function targetArg(fn: string, v: Value | undefined): string {
  if (v === undefined) throw fnError(fn, 'a forward target is required');
  try {
    const text = forwardTargetText(v);
    parseRelayTarget(text);
    return text;
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

function transportSetter(name: string, arity: number, targets: Targets, make: (call: HostCall, args: Value[]) => Transport): HostBuiltin {
  return builtin({
    name,
    from: 'rcpt',
    io: false,
    arity,
    fn(call, args) {
      requireTxn(call, name);
      const { rcpts, rest } = targets(call, name, args);
      setTransport(call, rcpts, make(call, rest));
      return undefined;
    },
  });
}

const one = (name: string, arity: number, make: (call: HostCall, args: Value[]) => Transport): HostBuiltin =>
  transportSetter(name, arity, oneRecipient, make);
const all = (name: string, arity: number, make: (call: HostCall, args: Value[]) => Transport): HostBuiltin =>
  transportSetter(name, arity, allRecipients, make);

const mx = (): Transport => ({ kind: 'mx' });
const maildir = (): Transport => ({ kind: 'maildir' });
const mbox = (): Transport => ({ kind: 'mbox' });
const none = (): Transport => ({ kind: 'none' });
const forward = (fn: string) => (_call: HostCall, [t]: Value[]): Transport => ({ kind: 'forward', target: targetArg(fn, t) });

export const transportBuiltins: HostBuiltin[] = [
  one('transport::deliver', 1, mx),
  all('transport::deliver_all', 0, mx),
  one('transport::forward', 2, forward('transport::forward')),
  all('transport::forward_all', 1, forward('transport::forward_all')),
  one('transport::maildir', 1, maildir),
  all('transport::maildir_all', 0, maildir),
  one('transport::mbox', 1, mbox),
  all('transport::mbox_all', 0, mbox),
  one('transport::disable_delivery', 1, none),
  all('transport::disable_delivery_all', 0, none),
];
