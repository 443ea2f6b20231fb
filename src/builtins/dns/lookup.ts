// dns::lookup and dns::rlookup (SPEC §7.7; v1 `lookup`, `rlookup`): I/O,
// from connect. Both throw when nothing is found, so a script tells "not
// found" from "found" with try/catch, and on errors and timeouts.

import { DnsError, type Resolver } from '../../host/ports.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { argText, checkArity, dnsFailure, dnsTimeoutMs } from './call-args.js';
import { normaliseIp } from './names.js';

/**
 * A then AAAA addresses of `host`. When one family answers and the other
 * fails, the addresses found are returned (and the failure logged): the name
 * exists. When nothing is found, a temporary failure wins over "no record" so
 * the error says what really happened.
 */
export async function lookupAddresses(
  resolver: Resolver,
  host: string,
  timeoutMs: number,
  onPartialFailure?: (err: unknown) => void,
): Promise<string[]> {
  const [a, aaaa] = await Promise.allSettled([resolver.a(host, { timeoutMs }), resolver.aaaa(host, { timeoutMs })]);
  const found = [
    ...(a.status === 'fulfilled' ? a.value : []),
    ...(aaaa.status === 'fulfilled' ? aaaa.value : []),
  ].map((r) => r.address);
  const failures = [a, aaaa].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const hard = failures.filter((e) => !(e instanceof DnsError) || (e.code !== 'NXDOMAIN' && e.code !== 'NODATA'));
  if (found.length) {
    for (const e of hard) onPartialFailure?.(e);
    return found;
  }
  throw hard[0] ?? failures[0] ?? new DnsError('NODATA', host);
}

async function dnsLookup(name: string, call: HostCall, args: Value[]): Promise<Value> {
  checkArity(name, args, 1, 1);
  const host = argText(name, 'host', args[0]);
  const timeoutMs = dnsTimeoutMs(call, name);
  try {
    return await lookupAddresses(call.env.resolver, host, timeoutMs, (err) =>
      call.log.warn({ fn: name, host, reason: dnsFailure(err) }, 'partial DNS failure'),
    );
  } catch (err) {
    throw fnError(name, dnsFailure(err));
  }
}

async function dnsRlookup(name: string, call: HostCall, args: Value[]): Promise<Value> {
  checkArity(name, args, 1, 1);
  const text = argText(name, 'ip', args[0]);
  const ip = normaliseIp(text);
  if (!ip) throw fnError(name, `invalid IP address '${text}'`);
  let names: string[];
  try {
    names = await call.env.resolver.ptr(ip, { timeoutMs: dnsTimeoutMs(call, name) });
  } catch (err) {
    throw fnError(name, dnsFailure(err));
  }
  if (!names.length) throw fnError(name, `no record for ${ip}`);
  return names;
}

function lookupBuiltin(name: string): HostBuiltin {
  return { name, fn: (call, args) => dnsLookup(name, call, args), from: 'connect', io: true, arity: 1 };
}

function rlookupBuiltin(name: string): HostBuiltin {
  return { name, fn: (call, args) => dnsRlookup(name, call, args), from: 'connect', io: true, arity: 1 };
}

export const dnsBuiltins: HostBuiltin[] = [
  lookupBuiltin('dns::lookup'),
  lookupBuiltin('lookup'),
  rlookupBuiltin('dns::rlookup'),
  rlookupBuiltin('rlookup'),
];
