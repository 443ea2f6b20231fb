// Statuses (SPEC §5.1): what a rule returns. The object only records and
// validates; what a status does at each stage is the stage machine's job
// (src/policy/), per SPEC §5.2–§5.4.

import type { StatusKind } from '../../mail/types.js';
import { Code, codeFromWire, parseReply, replyLines, toCode, typeName, wireTriple } from './code.js';
import { VObject, VslError, fnError, type Value } from './value.js';

/** `deny()` without a code (SPEC §5.1). */
export const DEFAULT_DENY_REPLY = '554 5.7.1 permanent problems with the remote server';
/** `reject()` without a code (SPEC §5.1). */
export const DEFAULT_REJECT_REPLY = '550 5.7.1 Command rejected by policy';

const QUARANTINE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const KINDS: readonly StatusKind[] = ['next', 'accept', 'faccept', 'deny', 'reject', 'info', 'quarantine'];

export function isStatusKind(s: string): s is StatusKind {
  return (KINDS as readonly string[]).indexOf(s) >= 0;
}

/** `info` is the v1 name of `reject`: they are one kind for comparison. */
function comparableKind(k: StatusKind): StatusKind {
  return k === 'info' ? 'reject' : k;
}

export class Status extends VObject {
  readonly type = 'status';
  constructor(
    readonly kind: StatusKind,
    /** The reply the status carries, if one was given. */
    readonly code?: Code,
    /** Quarantine name, for kind 'quarantine'. */
    readonly quarantine?: string,
  ) {
    super();
  }

  text(): string {
    return this.kind;
  }

  /** `deny(554 5.7.1 …)`, `accept()`, `quarantine(spam)`: the kind and the reply it will send. */
  override debug(): string {
    if (this.kind === 'quarantine') return `quarantine(${this.quarantine ?? ''})`;
    const c = this.effectiveCode();
    return `${this.kind}(${c === undefined ? '' : replyLines(c).join('\n')})`;
  }

  /** The carried code, or the default of deny/reject/info; undefined when the stage's normal reply applies. */
  effectiveCode(): Code | undefined {
    if (this.code !== undefined) return this.code;
    if (this.kind === 'deny') return parseReply(DEFAULT_DENY_REPLY);
    if (this.kind === 'reject' || this.kind === 'info') return parseReply(DEFAULT_REJECT_REPLY);
    return undefined;
  }

  /**
   * accept/faccept carrying a 4xx/5xx reply: the command is refused exactly as
   * by reject (SPEC §5.1). The stage machine checks this before applying the
   * kind.
   */
  get refuses(): boolean {
    return (this.kind === 'accept' || this.kind === 'faccept') && this.code !== undefined && this.code.code >= 400;
  }

  equals(other: Value): boolean {
    if (other instanceof Status) return comparableKind(other.kind) === comparableKind(this.kind);
    if (other instanceof VObject && other.type === 'regex') return other.equals(this);
    return false;
  }

  get wireTag(): string {
    return 'status';
  }
  /** Memo of wireText; `declare`d so that no constructor work is emitted for it. */
  declare private wire: string | undefined;
  get wireText(): string {
    this.wire ??= JSON.stringify([this.kind, this.code?.wireText ?? null, this.quarantine ?? null]);
    return this.wire;
  }
}

/** The statuses without a code: immutable, so one of each serves every rule (next() is on every path). */
const PLAIN = {
  next: new Status('next'), accept: new Status('accept'), faccept: new Status('faccept'),
  deny: new Status('deny'), reject: new Status('reject'),
};

/** Rebuilds a Status from its wireText; null if malformed. */
export function statusFromWire(text: string): Status | null {
  const a = wireTriple(text);
  if (!a) return null;
  const [k, c, q] = a;
  if (typeof k !== 'string' || !isStatusKind(k)) return null;
  let code: Code | undefined;
  if (c !== null) {
    if (typeof c !== 'string') return null;
    const parsed = codeFromWire(c);
    if (parsed === null) return null;
    code = parsed;
  }
  if (q !== null && (typeof q !== 'string' || !QUARANTINE_NAME.test(q))) return null;
  if ((k === 'quarantine') !== (q !== null)) return null;
  return new Status(k, code, q === null ? undefined : q);
}

function checkClass(kind: StatusKind, c: Code): void {
  const cls = Math.floor(c.code / 100);
  if (cls === 3) throw fnError(kind, '3xx replies are not allowed');
  if ((kind === 'deny' || kind === 'reject' || kind === 'info') && cls === 2) {
    throw fnError(kind, `needs a 4xx or 5xx reply, got ${c.code}`);
  }
}

/**
 * The status constructors (SPEC §5.1): `makeStatus('deny', "550 5.7.1 x")`.
 * `arg` is undefined when the script gave none. Errors name the constructor
 * (`deny: 3xx replies are not allowed`).
 */
export function makeStatus(kind: StatusKind, arg?: Value): Status {
  switch (kind) {
    case 'next':
      if (arg !== undefined) throw fnError(kind, 'takes no argument');
      return PLAIN.next;
    case 'quarantine': {
      if (typeof arg !== 'string') {
        throw fnError(kind, `expects a quarantine name string, got ${typeName(arg)}`);
      }
      if (!QUARANTINE_NAME.test(arg)) {
        throw fnError(kind, `invalid quarantine name '${arg}': use 1 to 64 of A-Z a-z 0-9 _ -`);
      }
      return new Status(kind, undefined, arg);
    }
    case 'info':
      if (arg === undefined) throw fnError(kind, 'a reply code is required');
      break;
    case 'accept':
    case 'faccept':
    case 'deny':
    case 'reject':
      if (arg === undefined) return PLAIN[kind];
      break;
    default:
      throw new VslError(`unknown status '${String(kind)}'`);
  }
  const c = toCode(kind, arg);
  let byKind = withCode.get(c);
  if (byKind === undefined) withCode.set(c, (byKind = {}));
  let st = byKind[kind];
  if (st === undefined) {
    checkClass(kind, c);
    st = byKind[kind] = new Status(kind, c);
  }
  return st;
}

/** Statuses by their (shared, immutable) code: `reject(code554_7_1)` makes one object, once. */
const withCode = new WeakMap<Code, Partial<Record<StatusKind, Status>>>();
