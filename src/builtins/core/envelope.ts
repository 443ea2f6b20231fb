// envelop:: (SPEC §7.4): changes to the envelope — sender and recipients —
// recorded as effects and applied by the caller when the stage succeeds.
// Headers are untouched, except by the v1 `rewrite_mail_from`, which also
// rewrites From: (at end of DATA).

import { addressText } from '../../mail/types.js';
import type { Value } from '../../vsl/values/value.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { currentRecipients, recipientArg, requireRecipient, requireTxn, sameMailbox, senderArg } from './addresses.js';
import { builtin } from './define.js';

function rwMailFrom(call: HostCall, [a]: Value[]): Value {
  requireTxn(call, 'envelop::rw_mail_from');
  call.effects.record({ kind: 'mail_from', address: senderArg('envelop::rw_mail_from', 'address', a!, true) });
  return undefined;
}

function rwRcpt(call: HostCall, [o, n]: Value[]): Value {
  const fn = 'envelop::rw_rcpt';
  requireTxn(call, fn);
  const from = requireRecipient(call, fn, recipientArg(call, fn, 'old recipient', o!));
  const to = recipientArg(call, fn, 'new recipient', n!);
  call.effects.record({ kind: 'rw_rcpt', from, to });
  return undefined;
}

/** add_rcpt and bcc: a recipient already in the envelope is left alone. */
function addRcpt(fn: string) {
  return (call: HostCall, [a]: Value[]): Value => {
    requireTxn(call, fn);
    const address = recipientArg(call, fn, 'recipient', a!);
    if (!currentRecipients(call).some((x) => sameMailbox(x, address))) {
      call.effects.record({ kind: 'add_rcpt', address });
      call.log.info({ rcpt: addressText(address) }, `${fn}: recipient added`);
    }
    return undefined;
  };
}

function rmRcpt(call: HostCall, [a]: Value[]): Value {
  const fn = 'envelop::rm_rcpt';
  requireTxn(call, fn);
  const address = recipientArg(call, fn, 'recipient', a!);
  const found = currentRecipients(call).find((x) => sameMailbox(x, address));
  if (!found) return false;
  call.effects.record({ kind: 'rm_rcpt', address: found });
  return true;
}

/** v1 `rewrite_mail_from(a)`: the envelope sender and the From: header. */
function rewriteMailFrom(call: HostCall, [a]: Value[]): Value {
  const fn = 'rewrite_mail_from';
  requireTxn(call, fn);
  // From: cannot be empty, so the null sender is refused here.
  const address = senderArg(fn, 'address', a!, false);
  call.effects.record({ kind: 'mail_from', address });
  call.effects.record({ kind: 'msg_from', address });
  return undefined;
}

export const envelopeBuiltins: HostBuiltin[] = [
  builtin({ name: 'envelop::rw_mail_from', from: 'mail', io: false, arity: 1, fn: rwMailFrom }),
  builtin({ name: 'envelop::rw_rcpt', from: 'rcpt', io: false, arity: 2, fn: rwRcpt }),
  builtin({ name: 'envelop::add_rcpt', from: 'mail', io: false, arity: 1, fn: addRcpt('envelop::add_rcpt') }),
  builtin({ name: 'envelop::bcc', from: 'mail', io: false, arity: 1, fn: addRcpt('envelop::bcc') }),
  builtin({ name: 'envelop::rm_rcpt', from: 'rcpt', io: false, arity: 1, fn: rmRcpt }),
  builtin({ name: 'rewrite_mail_from', from: 'mail', io: false, arity: 1, fn: rewriteMailFrom }),
];
