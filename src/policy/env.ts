// The long-lived host services a policy version uses (HostEnv): for the
// server (real resolver, configured state store), and for the offline tools
// (`mta explain --offline`, `mta test`): a resolver answering from stubs and
// NXDOMAIN otherwise, and a fresh in-memory state store.

import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import { DnsError, systemClock, type Clock, type HostEnv, type MxRecord, type Resolver } from '../host/ports.js';
import { newHostLocals } from '../host/ports.js';
import { createResolver } from '../builtins/dns/resolver.js';
import { createStateStore } from '../builtins/state/index.js';

export function serverEnv(config: Config, mainPath: string, log: Logger, clock: Clock = systemClock): HostEnv {
  return {
    config,
    resolver: createResolver({ servers: config.server.dns.servers, timeoutMs: parseDuration(config.server.dns.timeout) }),
    state: createStateStore(config.state.store, config.state.prefix, {
      clock,
      onConnectionError: (message: string) => log.warn({ err: message }, 'state store connection problem'),
    }),
    clock,
    log,
    policyDir: path.dirname(path.resolve(mainPath)),
    locals: newHostLocals(),
  };
}

export interface StubRecord {
  name: string;
  type: 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR' | 'NS';
  value: string;
}

/** A Resolver answering only from stubs (SPEC §11.3 `@dns`); any other query is NXDOMAIN. */
export function stubResolver(records: StubRecord[]): Resolver {
  const find = (name: string, type: StubRecord['type']): StubRecord[] => {
    const n = name.toLowerCase().replace(/\.$/, '');
    const all = records.filter((r) => r.name.toLowerCase().replace(/\.$/, '') === n);
    if (all.length === 0) throw new DnsError('NXDOMAIN', n);
    const typed = all.filter((r) => r.type === type);
    if (typed.length === 0) throw new DnsError('NODATA', n);
    return typed;
  };
  const ptrName = (ip: string): string => {
    if (ip.includes(':')) return ip; // stubs name PTR records by the address itself
    return ip;
  };
  return {
    a: async (name) => find(name, 'A').map((r) => ({ address: r.value, ttl: 300 })),
    aaaa: async (name) => find(name, 'AAAA').map((r) => ({ address: r.value, ttl: 300 })),
    mx: async (name): Promise<MxRecord[]> => find(name, 'MX').map((r) => {
      const [pref, host] = r.value.trim().split(/\s+/);
      return host === undefined ? { priority: 10, exchange: pref!.toLowerCase().replace(/\.$/, '') } : { priority: Number(pref), exchange: host.toLowerCase().replace(/\.$/, '') };
    }),
    txt: async (name) => find(name, 'TXT').map((r) => [r.value]),
    ptr: async (ip) => find(ptrName(ip), 'PTR').map((r) => r.value.toLowerCase().replace(/\.$/, '')),
    ns: async (name) => find(name, 'NS').map((r) => r.value.toLowerCase().replace(/\.$/, '')),
  };
}

/** A frozen or steppable clock for `mta test` (`@time`, `@advance`). */
export class TestClock implements Clock {
  constructor(public ms: number = Date.now()) {}
  now(): number {
    return this.ms;
  }
  async sleep(ms: number): Promise<void> {
    // Delays (deny_delay, $D, AUTH slow-down) pass instantly but move the clock.
    this.ms += ms;
  }
}

/** The environment of the offline tools: stub DNS, memory state, a test clock. */
export function offlineEnv(config: Config, mainPath: string, log: Logger, records: StubRecord[] = [], clock: Clock = systemClock): HostEnv {
  return {
    config,
    resolver: stubResolver(records),
    state: createStateStore('memory', config.state.prefix, { clock }),
    clock,
    log,
    policyDir: path.dirname(path.resolve(mainPath)),
    locals: newHostLocals(),
  };
}
