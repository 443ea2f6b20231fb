// msg:: (SPEC §7.5): reading the message header from preq on, writing header
// fields from connect on, and editing the addresses of From: and To:.
//
// Writes are recorded as effects (call.effects.record) and applied by the
// caller when the stage succeeds: before DATA to the pending list, from preq
// on to the message. Reads go through currentHeaders(), which replays the
// writes already recorded in this evaluation.

import type { StageEffect } from '../../mail/types.js';
import { textOf } from '../../vsl/values/objects.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { typeName } from '../dns/call-args.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { senderArg } from './addresses.js';
import { builtin } from './define.js';
import { checkHeaderName, checkHeaderValue, currentHeaders, currentMessage, sameHeaderName, type HeaderField } from './headers.js';

export { applyHeaderEffects, currentHeaders, foldHeader } from './headers.js';

function nameArg(fn: string, v: Value | undefined): string {
  const t = v === undefined ? undefined : textOf(v);
  if (t === undefined) throw fnError(fn, `header name must be a string, got ${typeName(v)}`);
  return checkHeaderName(fn, t);
}

function valueArg(fn: string, name: string, v: Value | undefined): string {
  const t = v === undefined ? undefined : textOf(v);
  if (t === undefined) throw fnError(fn, `value of header ${name} must be a string, got ${typeName(v)}`);
  // Blanks around a value carry nothing (reads trim them) and a trailing one could end up alone on a folded line.
  return checkHeaderValue(fn, name, t).trim();
}

function fieldsNamed(call: HostCall, name: string): HeaderField[] {
  return currentHeaders(call).filter((h) => sameHeaderName(h.name, name));
}

function requireMessage(call: HostCall, fn: string): void {
  if (!call.message) throw fnError(fn, 'there is no message before the preq stage');
}

// ---------------------------------------------------------------- reads (from preq)

function read(name: string, arity: number | [number, number], fn: (call: HostCall, args: Value[]) => Value): HostBuiltin {
  return builtin({
    name,
    from: 'preq',
    io: false,
    arity,
    fn(call, args) {
      requireMessage(call, name);
      return fn(call, args);
    },
  });
}

const reads: HostBuiltin[] = [
  read('msg::has_header', 1, (call, [n]) => fieldsNamed(call, nameArg('msg::has_header', n)).length > 0),
  read('msg::count_header', 1, (call, [n]) => BigInt(fieldsNamed(call, nameArg('msg::count_header', n)).length)),
  read('msg::get_header', 1, (call, [n]) => fieldsNamed(call, nameArg('msg::get_header', n))[0]?.value ?? ''),
  read('msg::get_all_headers', [0, 1], (call, args) => {
    if (args.length === 0) return currentHeaders(call).map((h) => `${h.name}: ${h.value}`);
    return fieldsNamed(call, nameArg('msg::get_all_headers', args[0])).map((h) => h.value);
  }),
  read('msg::get_header_untouched', 1, (call, [n]) => fieldsNamed(call, nameArg('msg::get_header_untouched', n)).map((h) => h.raw)),
  read('msg::mail', 0, (call) => currentMessage(call, 'msg::mail').toString('utf8')),
  read('msg::to_string', 0, (call) => currentMessage(call, 'msg::to_string').toString('utf8')),
];

// ---------------------------------------------------------------- header writes (from connect)

function write(name: string, arity: number, fn: (call: HostCall, args: Value[]) => Value): HostBuiltin {
  return builtin({ name, from: 'connect', io: false, arity, fn });
}

function addHeader(fn: string, op: 'append' | 'prepend') {
  return (call: HostCall, [n, v]: Value[]): Value => {
    const name = nameArg(fn, n);
    call.effects.record({ kind: 'header', op, name, value: valueArg(fn, name, v) });
    return undefined;
  };
}

const writes: HostBuiltin[] = [
  write('msg::append_header', 2, addHeader('msg::append_header', 'append')),
  write('msg::prepend_header', 2, addHeader('msg::prepend_header', 'prepend')),
  write('msg::set_header', 2, (call, [n, v]) => {
    const name = nameArg('msg::set_header', n);
    call.effects.record({ kind: 'header', op: 'set', name, value: valueArg('msg::set_header', name, v) });
    return undefined;
  }),
  write('msg::rename_header', 2, (call, [a, b]) => {
    const name = nameArg('msg::rename_header', a);
    const newName = nameArg('msg::rename_header', b);
    call.effects.record({ kind: 'header', op: 'rename', name, newName });
    return undefined;
  }),
  write('msg::rm_header', 1, (call, [n]) => {
    const name = nameArg('msg::rm_header', n);
    const existed = fieldsNamed(call, name).length > 0;
    call.effects.record({ kind: 'header', op: 'remove', name });
    return existed;
  }),
];

// ---------------------------------------------------------------- From:/To: edits (from mail)

// These edit addresses of the message; before DATA they are kept with the
// transaction and applied at end of DATA, so they need a transaction.
function edit(name: string, arity: number, make: (call: HostCall, args: Value[]) => StageEffect): HostBuiltin {
  return builtin({
    name,
    from: 'mail',
    io: false,
    arity,
    fn(call, args) {
      call.effects.record(make(call, args));
      return undefined;
    },
  });
}

const edits: HostBuiltin[] = [
  edit('msg::rw_mail_from', 1, (_call, [a]) => ({
    kind: 'msg_from',
    address: senderArg('msg::rw_mail_from', 'address', a!, false),
  })),
  // To: is not the envelope: any mailbox will do, the null address will not.
  edit('msg::rw_rcpt', 2, (_call, [o, n]) => ({
    kind: 'msg_rcpt',
    op: 'rw',
    address: senderArg('msg::rw_rcpt', 'old address', o!, false),
    to: senderArg('msg::rw_rcpt', 'new address', n!, false),
  })),
  edit('msg::add_rcpt', 1, (_call, [a]) => ({ kind: 'msg_rcpt', op: 'add', address: senderArg('msg::add_rcpt', 'address', a!, false) })),
  edit('msg::rm_rcpt', 1, (_call, [a]) => ({ kind: 'msg_rcpt', op: 'rm', address: senderArg('msg::rm_rcpt', 'address', a!, false) })),
];

export const messageBuiltins: HostBuiltin[] = [...reads, ...writes, ...edits];
