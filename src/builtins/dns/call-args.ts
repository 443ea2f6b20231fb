// Small helpers every DNS-based built-in shares: reading arguments as text,
// the configured deadlines, and turning a DnsError into the message a script
// sees.

import { parseDuration } from '../../config/units.js';
import type { HostCall } from '../host.js';
import { DnsError } from '../../host/ports.js';
import type { StatusKind } from '../../mail/types.js';
import { textOf } from '../../vsl/values/objects.js';
import { makeStatus, type Status } from '../../vsl/values/status.js';
import { fnError, VObject, VslError, type Value } from '../../vsl/values/value.js';

/**
 * The text of a string argument, or of a host object where a string is
 * expected (SPEC §6.5: address, fqdn, identifier, IP and code objects).
 * Anything else is a runtime error naming the function.
 */
export function argText(fn: string, what: string, v: Value): string {
  const t = textOf(v);
  if (t === undefined) throw fnError(fn, `${what} must be a string, got ${typeName(v)}`);
  return t;
}

/** Like argText, but `()` (or a missing argument) gives undefined. */
export function optArgText(fn: string, what: string, v: Value | undefined): string | undefined {
  return v === undefined ? undefined : argText(fn, what, v);
}

export function typeName(v: Value): string {
  if (v === undefined) return '()';
  if (typeof v === 'bigint') return 'i64';
  if (typeof v === 'number') return 'f64';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'string') return 'string';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'map';
  if (v instanceof VObject) return v.type;
  return typeof v;
}

export function checkArity(fn: string, args: Value[], min: number, max: number): void {
  if (args.length < min || args.length > max) {
    const want = min === max ? `${min}` : `${min} to ${max}`;
    throw fnError(fn, `expected ${want} argument${max === 1 ? '' : 's'}, got ${args.length}`);
  }
}

function duration(fn: string, key: string, text: string): number {
  try {
    return parseDuration(text);
  } catch {
    throw fnError(fn, `invalid ${key} '${text}'`);
  }
}

/** `server.dns.timeout` in ms: the deadline of one query (SPEC §7.7). */
export function dnsTimeoutMs(call: HostCall, fn: string): number {
  return duration(fn, 'server.dns.timeout', call.env.config.server.dns.timeout);
}

/** `server.dns.dnsbl_timeout` in ms (SPEC §8.1). */
export function dnsblTimeoutMs(call: HostCall, fn: string): number {
  return duration(fn, 'server.dns.dnsbl_timeout', call.env.config.server.dns.dnsbl_timeout);
}

/** A short human description of a DNS failure, for error messages and logs. */
export function dnsFailure(err: unknown): string {
  if (err instanceof DnsError) {
    switch (err.code) {
      case 'NXDOMAIN':
      case 'NODATA':
        return `no record for ${err.query}`;
      case 'TIMEOUT':
        return `timeout for ${err.query}`;
      default:
        return err.message;
    }
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * makeStatus, with a bad user-supplied code reported against the built-in
 * that received it (`check_rbl: invalid code: deny: …`) rather than the
 * status constructor.
 */
export function statusFor(fn: string, kind: StatusKind, arg?: Value): Status {
  try {
    return makeStatus(kind, arg);
  } catch (err) {
    if (err instanceof VslError) throw fnError(fn, `invalid code: ${err.message}`);
    throw err;
  }
}
