// A Resolver (src/builtins/host.ts) answering from tables, for unit tests of
// built-ins that look names up; anything not in the tables is NXDOMAIN, and
// 'SERVFAIL' answers fail temporarily. Every question is recorded in `asked`.
import { DnsError, type Resolver } from '../../src/host/ports.js';

export type Answer = string[] | 'SERVFAIL';

export interface Zone {
  a?: Record<string, Answer>;
  aaaa?: Record<string, Answer>;
  ptr?: Record<string, Answer>;
  ns?: Record<string, Answer>;
  mx?: Record<string, Answer>;
  txt?: Record<string, Answer>;
}

export function fakeResolver(zone: Zone, asked: string[] = []): Resolver {
  const answer = (type: keyof Zone, name: string): string[] => {
    asked.push(`${type} ${name}`);
    const a = zone[type]?.[name];
    if (a === 'SERVFAIL') throw new DnsError('SERVFAIL', name);
    if (!a) throw new DnsError('NXDOMAIN', name);
    return a;
  };
  return {
    a: async (n) => answer('a', n).map((address) => ({ address, ttl: 60 })),
    aaaa: async (n) => answer('aaaa', n).map((address) => ({ address, ttl: 60 })),
    mx: async (n) => answer('mx', n).map((exchange, i) => ({ exchange, priority: 10 * i })),
    txt: async (n) => answer('txt', n).map((t) => [t]),
    ptr: async (ip) => answer('ptr', ip),
    ns: async (n) => answer('ns', n),
  };
}
