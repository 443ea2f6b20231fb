// The host object types of SPEC §6.1 (ip4 ip6 rg4 rg6 address fqdn regex
// identifier), their constructors, equality (§6.3), membership (§6.4) and
// address properties (§6.5), plus the `{tag, text}` form in which objects
// cross the sandbox boundary.
//
// Class constructors take already-canonical parts and do not validate; the
// lower-case factory functions (`ip4(s)`, …) are the script constructors and
// validate, throwing VslError named after themselves.

import type { MailAddress } from '../../mail/types.js';
import { canonicalAddressLiteral, canonicalDomain, parseMailbox } from './address.js';
import { Code, codeFromWire, typeName } from './code.js';
import { cidrContainsIp, cidrInside, formatCidr, formatIPv4, formatIPv6, parseCidr4, parseCidr6, parseIp, parseIPv4, parseIPv6, sameCidr, sameIp, type Cidr, type Cidr4, type Cidr6, type Ip } from './net.js';
import { Status, statusFromWire } from './status.js';
import { VChar, VObject, VslError, fnError, type Value } from './value.js';

/** An object that can cross the sandbox boundary as `{ tag, text }`. */
export interface WireObject {
  readonly wireTag: string;
  readonly wireText: string;
}

export function isWireObject(v: unknown): v is VObject & WireObject {
  return v instanceof VObject && typeof (v as Partial<WireObject>).wireTag === 'string';
}

/**
 * The text of a string, a char, or any object (SPEC §6.5: where a built-in
 * expects a string, an object's text is accepted); undefined otherwise.
 */
export function textOf(v: Value): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof VChar) return v.c;
  if (v instanceof VObject) return v.text();
  return undefined;
}

/** Regex on either side of `==` means "matches" (SPEC §6.3); every type defers to it. */
function regexSide(other: Value): Regex | undefined {
  return other instanceof Regex ? other : undefined;
}

// ---------------------------------------------------------------- IPs

abstract class IpObject extends VObject implements WireObject {
  abstract readonly ip: Ip;

  equals(other: Value): boolean {
    const re = regexSide(other);
    if (re) return re.equals(this);
    if (other instanceof IpObject) return sameIp(this.ip, other.ip);
    if (typeof other === 'string') {
      const ip = parseIp(other);
      return ip !== null && sameIp(this.ip, ip);
    }
    return false;
  }

  get wireTag(): string {
    return this.type;
  }
  get wireText(): string {
    return this.text();
  }
}

export class Ip4 extends IpObject {
  readonly type = 'ip4';
  readonly ip: Ip;
  constructor(readonly n: number) {
    super();
    this.ip = { v: 4, n };
  }
  text(): string {
    return formatIPv4(this.n);
  }
}

export class Ip6 extends IpObject {
  readonly type = 'ip6';
  readonly ip: Ip;
  constructor(readonly n: bigint) {
    super();
    this.ip = { v: 6, n };
  }
  text(): string {
    return formatIPv6(this.n);
  }
}

export function ip4(s: Value): Ip4 {
  if (s instanceof Ip4) return s;
  const t = textOf(s);
  const n = t === undefined ? null : parseIPv4(t);
  if (n === null) throw fnError('ip4', `invalid IPv4 address ${quoted(s)}`);
  return new Ip4(n);
}

export function ip6(s: Value): Ip6 {
  if (s instanceof Ip6) return s;
  const t = textOf(s);
  const n = t === undefined ? null : parseIPv6(t);
  if (n === null) throw fnError('ip6', `invalid IPv6 address ${quoted(s)}`);
  return new Ip6(n);
}

/** An Ip4 or Ip6 object for an IP text, or null. */
export function ipObject(s: string): Ip4 | Ip6 | null {
  const ip = parseIp(s);
  if (ip === null) return null;
  return ip.v === 4 ? new Ip4(ip.n) : new Ip6(ip.n);
}

// ---------------------------------------------------------------- networks

abstract class RangeObject extends VObject implements WireObject {
  abstract readonly cidr: Cidr;

  /** The text had host bits set, which were cleared (`mta check` warns). */
  get hostBitsSet(): boolean {
    return this.cidr.hostBitsSet;
  }

  text(): string {
    return formatCidr(this.cidr);
  }

  equals(other: Value): boolean {
    const re = regexSide(other);
    if (re) return re.equals(this);
    if (other instanceof RangeObject) return sameCidr(this.cidr, other.cidr);
    if (typeof other === 'string') {
      const c = parseCidr4(other) ?? parseCidr6(other);
      return c !== null && sameCidr(this.cidr, c);
    }
    return false;
  }

  /** An IP (object or text, mapped IPv6 included) in the network, or a network inside it. */
  override contains(x: Value): boolean {
    if (x instanceof IpObject) return cidrContainsIp(this.cidr, x.ip);
    if (x instanceof RangeObject) return cidrInside(x.cidr, this.cidr);
    if (typeof x === 'string') {
      const ip = parseIp(x);
      if (ip !== null) return cidrContainsIp(this.cidr, ip);
      const c = parseCidr4(x) ?? parseCidr6(x);
      return c !== null && cidrInside(c, this.cidr);
    }
    return false;
  }

  /** Fast path for the hot rcpt check: an already-parsed IP. */
  containsIp(ip: Ip): boolean {
    return cidrContainsIp(this.cidr, ip);
  }

  get wireTag(): string {
    return this.type;
  }
  get wireText(): string {
    return this.text();
  }
}

export class Rg4 extends RangeObject {
  readonly type = 'rg4';
  constructor(readonly cidr: Cidr4) {
    super();
  }
}

export class Rg6 extends RangeObject {
  readonly type = 'rg6';
  constructor(readonly cidr: Cidr6) {
    super();
  }
}

export function rg4(s: Value): Rg4 {
  if (s instanceof Rg4) return s;
  const t = textOf(s);
  const c = t === undefined ? null : parseCidr4(t);
  if (c === null) throw fnError('rg4', `invalid network ${quoted(s)}`);
  return new Rg4(c);
}

export function rg6(s: Value): Rg6 {
  if (s instanceof Rg6) return s;
  const t = textOf(s);
  const c = t === undefined ? null : parseCidr6(t);
  if (c === null) throw fnError('rg6', `invalid network ${quoted(s)}`);
  return new Rg6(c);
}

// ---------------------------------------------------------------- fqdn

/** A canonical domain name: lower-case A-labels, no trailing dot. */
export class Fqdn extends VObject implements WireObject {
  readonly type = 'fqdn';
  constructor(readonly name: string) {
    super();
  }
  text(): string {
    return this.name;
  }
  equals(other: Value): boolean {
    const re = regexSide(other);
    if (re) return re.equals(this);
    if (other instanceof Fqdn) return other.name === this.name;
    if (typeof other === 'string') return fqdnKey(other) === this.name;
    return false;
  }
  get wireTag(): string {
    return 'fqdn';
  }
  get wireText(): string {
    return this.name;
  }
}

/** The canonical name of a domain text, one trailing dot allowed; null if invalid. */
function fqdnKey(s: string): string | null {
  return canonicalDomain(s.length > 1 && s[s.length - 1] === '.' ? s.slice(0, -1) : s);
}

export function fqdn(s: Value): Fqdn {
  if (s instanceof Fqdn) return s;
  const t = textOf(s);
  const name = t === undefined ? null : fqdnKey(t);
  if (name === null) throw fnError('fqdn', `invalid domain name ${quoted(s)}`);
  return new Fqdn(name);
}

// ---------------------------------------------------------------- address

/** A mailbox as the server uses it (SPEC §4.4, §6.5). */
export class Address extends VObject implements WireObject {
  readonly type = 'address';
  /** `.domain`, made once: the context's addresses are shared across rules. `declare`d: no constructor cost. */
  declare private domainObject: Fqdn | undefined;
  constructor(readonly mail: MailAddress) {
    super();
  }

  get isNull(): boolean {
    return this.mail.isNull;
  }
  get local(): string {
    return this.mail.local;
  }
  get domain(): string {
    return this.mail.domain;
  }
  get isLiteral(): boolean {
    return this.mail.domain[0] === '[';
  }

  /** `local@domain`; the null sender is "". */
  text(): string {
    return this.mail.isNull ? '' : `${this.mail.local}@${this.mail.domain}`;
  }

  equals(other: Value): boolean {
    const re = regexSide(other);
    if (re) return re.equals(this);
    if (other instanceof Address) return sameMailbox(this.mail, other.mail);
    if (typeof other === 'string') {
      if (this.mail.isNull) return other === '' || other === '<>' || other === 'null';
      const m = parseMailbox(other);
      return m !== null && sameMailbox(this.mail, m);
    }
    return false;
  }

  /** An identifier equal to the local part, an fqdn equal to the domain, or a string equal to either. */
  override contains(x: Value): boolean {
    // The null sender has no parts to find.
    if (this.mail.isNull) return false;
    if (x instanceof Identifier) return x.value === this.mail.local;
    if (x instanceof Fqdn) return x.name === this.mail.domain;
    if (typeof x === 'string') {
      if (x === this.mail.local) return true;
      if (this.isLiteral) return canonicalAddressLiteral(x) === this.mail.domain;
      return fqdnKey(x) === this.mail.domain;
    }
    return false;
  }

  override getProp(name: string): Value {
    switch (name) {
      case 'local_part':
        return this.mail.local;
      case 'domain':
        // Literals and the null sender's empty domain are strings (SPEC §6.5).
        if (this.isLiteral || this.mail.isNull) return this.mail.domain;
        this.domainObject ??= new Fqdn(this.mail.domain);
        return this.domainObject;
      case 'is_null':
        return this.mail.isNull;
      default:
        return super.getProp(name);
    }
  }

  get wireTag(): string {
    return 'address';
  }
  get wireText(): string {
    return this.text();
  }
}

function sameMailbox(a: MailAddress, b: MailAddress): boolean {
  if (a.isNull || b.isNull) return a.isNull === b.isNull;
  // Domains are canonical (lower-case, literals normalised): compare exactly.
  return a.local === b.local && a.domain === b.domain;
}

/** `address(s)` (v1 `new_address`): `u@d` or `<u@d>`; `""` or `"<>"` is the null sender. */
export function address(s: Value, fn = 'address'): Address {
  if (s instanceof Address) return s;
  const t = textOf(s);
  const m = t === undefined ? null : parseMailbox(t);
  if (m === null) throw fnError(fn, `invalid address ${quoted(s)}`);
  return new Address(m);
}

// ---------------------------------------------------------------- regex

export class Regex extends VObject implements WireObject {
  readonly type = 'regex';
  constructor(
    /** As written, `(?i)` included. */
    readonly source: string,
    readonly re: RegExp,
  ) {
    super();
  }
  text(): string {
    return this.source;
  }

  /** Unanchored search. */
  test(s: string): boolean {
    // No g/y flag, so RegExp.test keeps no state between calls.
    return this.re.test(s);
  }

  equals(other: Value): boolean {
    if (other instanceof Regex) return other.source === this.source;
    if (typeof other === 'string') return this.test(other);
    if (other instanceof VObject) return this.test(other.text());
    return false;
  }

  /** The text of `x` matches (strings, chars and objects have a text). */
  override contains(x: Value): boolean {
    const t = textOf(x);
    if (t === undefined) throw new VslError(`regex: cannot match a value of type ${typeName(x)}`);
    return this.test(t);
  }

  get wireTag(): string {
    return 'regex';
  }
  get wireText(): string {
    return this.source;
  }
}

/** `regex(s)`: ECMAScript syntax, Unicode mode; a leading `(?i)` makes it case-insensitive. */
export function regex(s: Value): Regex {
  if (s instanceof Regex) return s;
  if (typeof s !== 'string') throw fnError('regex', `expects a string, got ${typeName(s)}`);
  let body = s;
  let flags = 'u';
  if (body.startsWith('(?i)')) {
    body = body.slice(4);
    flags = 'iu';
  }
  let re: RegExp;
  try {
    re = new RegExp(body, flags);
  } catch (e) {
    throw fnError('regex', `invalid pattern '${s}': ${(e as Error).message}`);
  }
  return new Regex(s, re);
}

// ---------------------------------------------------------------- identifier

export class Identifier extends VObject implements WireObject {
  readonly type = 'identifier';
  constructor(readonly value: string) {
    super();
  }
  text(): string {
    return this.value;
  }
  equals(other: Value): boolean {
    const re = regexSide(other);
    if (re) return re.equals(this);
    if (other instanceof Identifier) return other.value === this.value;
    if (typeof other === 'string') return other === this.value;
    return false;
  }
  get wireTag(): string {
    return 'identifier';
  }
  get wireText(): string {
    return this.value;
  }
}

/** `identifier(s)`: non-empty, without whitespace, control characters or `@`. */
export function identifier(s: Value): Identifier {
  if (s instanceof Identifier) return s;
  const t = textOf(s);
  if (t === undefined || t.length === 0 || /[\s@\u0000-\u001f\u007f-\u009f]/u.test(t)) {
    throw fnError('identifier', `invalid identifier ${quoted(s)}`);
  }
  return new Identifier(t);
}

// ---------------------------------------------------------------- wire

/**
 * Rebuilds an object from its `{ wireTag, wireText }`. Covers the types of
 * this file, code and status; an unknown tag or invalid text is a VslError.
 */
export function objectFromWire(tag: string, text: string): VObject {
  switch (tag) {
    case 'ip4':
      return ip4(text);
    case 'ip6':
      return ip6(text);
    case 'rg4':
      return rg4(text);
    case 'rg6':
      return rg6(text);
    case 'address':
      return address(text);
    case 'fqdn':
      return fqdn(text);
    case 'regex':
      return regex(text);
    case 'identifier':
      return identifier(text);
    case 'code': {
      const c: Code | null = codeFromWire(text);
      if (c === null) throw new VslError(`invalid code on the wire: ${text}`);
      return c;
    }
    case 'status': {
      const st: Status | null = statusFromWire(text);
      if (st === null) throw new VslError(`invalid status on the wire: ${text}`);
      return st;
    }
    default:
      throw new VslError(`unknown object type '${tag}'`);
  }
}

/** `{ tag, text }` of an object that can cross the boundary, or undefined. */
export function toWire(v: VObject): { tag: string; text: string } | undefined {
  return isWireObject(v) ? { tag: v.wireTag, text: v.wireText } : undefined;
}

// ---------------------------------------------------------------- helpers

function quoted(v: Value): string {
  const t = textOf(v);
  return t !== undefined ? `'${t}'` : `(a value of type ${typeName(v)})`;
}

/** The types of v1 `object` declarations (SPEC §6.2) and of `file:` elements. */
export const OBJECT_TYPES = new Set(['ip4', 'ip6', 'rg4', 'rg6', 'fqdn', 'address', 'identifier', 'string', 'regex', 'file', 'group', 'code']);
export const ELEMENT_TYPES = new Set(['ip4', 'ip6', 'rg4', 'rg6', 'fqdn', 'address', 'identifier', 'string', 'regex']);

/** Older spellings of declaration types: vSMTP 1.x wrote `object me ident = "john";`. */
const TYPE_SPELLINGS: Record<string, string> = { ident: 'identifier' };

/** The declaration type a written type name means (`ident` is `identifier`). */
export function declarationType(written: string): string {
  return Object.prototype.hasOwnProperty.call(TYPE_SPELLINGS, written) ? TYPE_SPELLINGS[written]! : written;
}
