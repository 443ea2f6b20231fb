// greylist::check(opts?) (SPEC §8.5): temporary refusal of unknown
// (client network, sender, recipient) triplets. A sender that retries after
// `delay` and within `retry_window` of its first attempt passes, and the
// triplet stays passed for `ttl` after its last use.
//
// Decisions are judged on timestamps kept in the record and the policy clock
// (`call.env.clock`), not on the store's expiry alone: the store TTL only
// bounds how long garbage lives, so an injected clock and a Redis shared by
// instances with slightly different clocks give the same answers.

import { isIP } from 'node:net';
import { parseDuration } from '../config/units.js';
import { addressText, type MailAddress } from '../mail/types.js';
import { makeStatus } from '../vsl/values/status.js';
import { fnError, isMap, type Value } from '../vsl/values/value.js';
import type { Clock, StateStore } from '../host/ports.js';
import type { HostBuiltin } from './host.js';

export const GREYLIST_REPLY = '451 4.7.1 Greylisted, please try again later';

export interface GreylistOptions {
  delayMs: number;
  retryWindowMs: number;
  ttlMs: number;
}

export const GREYLIST_DEFAULTS: GreylistOptions = {
  delayMs: parseDuration('5m'),
  retryWindowMs: parseDuration('2d'),
  ttlMs: parseDuration('35d'),
};

/** What a policy check decided, before it becomes a vSL status. */
export type CheckDecision = { kind: 'next' } | { kind: 'reject'; reply: string };

/** Why the greylist decided as it did (for logs and `mta explain`). */
export type GreylistReason =
  | 'new' // first sight of the triplet
  | 'early' // retried before `delay`
  | 'expired' // retried after `retry_window`, or unused for `ttl`: starts over
  | 'passed' // retried in time: passes from now on
  | 'known'; // already passed: ttl refreshed

export interface Triplet {
  clientIp: string;
  /** The sender as text (`''` or `<>` for the null sender). */
  sender: string;
  rcpt: string;
}

/** The record kept per triplet: state and the time that matters for it. */
interface GreylistRecord {
  /** pending: first attempt at `t`; passed: last used at `t`. */
  s: 'pending' | 'passed';
  t: number;
}

/** The network a client belongs to for greylisting: IPv4 /24, IPv6 /64. */
export function clientNetwork(ip: string): string {
  let addr = ip.trim();
  const zone = addr.indexOf('%');
  if (zone >= 0) addr = addr.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped) addr = mapped[1]!;
  const family = isIP(addr);
  if (family === 4) {
    const [a, b, c] = addr.split('.');
    return `${Number(a)}.${Number(b)}.${Number(c)}.0/24`;
  }
  if (family === 6) {
    const groups = expandIpv6(addr);
    return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
  }
  throw new Error(`not an IP address: '${ip}'`);
}

/** The eight 16-bit groups of a valid IPv6 address (embedded IPv4 allowed). */
function expandIpv6(addr: string): number[] {
  let text = addr.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, null];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const all = [...headGroups, ...Array<string>(tail === null ? 0 : missing).fill('0'), ...tailGroups];
  return all.map((g) => parseInt(g, 16));
}

/** The triplet key: network, lower-cased sender (`<>` when null), recipient. */
export function tripletKey(t: Triplet): string {
  const sender = t.sender === '' || t.sender === '<>' ? '<>' : t.sender.toLowerCase();
  return `greylist:${clientNetwork(t.clientIp)}|${sender}|${t.rcpt}`;
}

function parseRecord(text: string | null): GreylistRecord | null {
  if (text === null) return null;
  try {
    const r = JSON.parse(text) as Partial<GreylistRecord>;
    if ((r.s === 'pending' || r.s === 'passed') && typeof r.t === 'number' && Number.isFinite(r.t)) {
      return { s: r.s, t: r.t };
    }
  } catch {
    // a damaged record counts as unknown
  }
  return null;
}

/**
 * Greylists one triplet against the store: the core of greylist::check,
 * callable without a sandbox.
 */
export async function greylistCheck(
  store: StateStore,
  clock: Clock,
  triplet: Triplet,
  opts: GreylistOptions = GREYLIST_DEFAULTS,
): Promise<CheckDecision & { reason: GreylistReason }> {
  const key = tripletKey(triplet);
  const now = clock.now();
  const record = parseRecord(await store.get(key));
  const greylisted = { kind: 'reject' as const, reply: GREYLIST_REPLY };
  const startOver = async (reason: 'new' | 'expired') => {
    await store.set(key, JSON.stringify({ s: 'pending', t: now }), opts.retryWindowMs);
    return { ...greylisted, reason };
  };

  if (record === null) return startOver('new');
  if (record.s === 'passed') {
    if (now - record.t > opts.ttlMs) return startOver('expired');
    await store.set(key, JSON.stringify({ s: 'passed', t: now }), opts.ttlMs);
    return { kind: 'next', reason: 'known' };
  }
  const age = now - record.t;
  if (age > opts.retryWindowMs) return startOver('expired');
  // The first attempt keeps its time: early retries do not push it back.
  if (age < opts.delayMs) return { ...greylisted, reason: 'early' };
  await store.set(key, JSON.stringify({ s: 'passed', t: now }), opts.ttlMs);
  return { kind: 'next', reason: 'passed' };
}

const OPTION_KEYS: Record<string, keyof GreylistOptions> = {
  delay: 'delayMs',
  retry_window: 'retryWindowMs',
  ttl: 'ttlMs',
};

/** Reads the options map of greylist::check; errors name the function. */
export function parseGreylistOptions(arg: Value | undefined, fn = 'greylist::check'): GreylistOptions {
  const opts = { ...GREYLIST_DEFAULTS };
  if (arg === undefined) return opts;
  if (!isMap(arg)) throw fnError(fn, 'options must be a map like #{ delay: "5m" }');
  for (const [name, value] of arg) {
    const field = OPTION_KEYS[name];
    if (!field) throw fnError(fn, `unknown option '${name}' (expected delay, retry_window, ttl)`);
    if (typeof value !== 'string') throw fnError(fn, `option ${name} must be a duration string like "5m"`);
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (err) {
      throw fnError(fn, `option ${name}: ${(err as Error).message}`);
    }
    if (ms <= 0) throw fnError(fn, `option ${name} must be longer than 0`);
    opts[field] = ms;
  }
  if (opts.retryWindowMs <= opts.delayMs) {
    throw fnError(fn, 'option retry_window must be longer than delay');
  }
  return opts;
}

function senderText(a: MailAddress): string {
  return a.isNull ? '<>' : addressText(a);
}

export const greylistBuiltins: HostBuiltin[] = [
  {
    name: 'greylist::check',
    from: 'rcpt',
    io: true,
    arity: [0, 1],
    fn: async (call, args) => {
      const fn = 'greylist::check';
      const opts = parseGreylistOptions(args[0], fn);
      const rcpt = call.txn?.currentRcpt;
      if (!call.txn || !rcpt) throw fnError(fn, 'no recipient under evaluation');
      let decision: CheckDecision & { reason: GreylistReason };
      try {
        decision = await greylistCheck(
          call.env.state,
          call.env.clock,
          { clientIp: call.session.clientIp, sender: senderText(call.txn.mailFrom), rcpt: addressText(rcpt) },
          opts,
        );
      } catch (err) {
        throw fnError(fn, (err as Error).message);
      }
      call.log.debug({ rule: call.rule, greylist: decision.reason }, 'greylist decision');
      return decision.kind === 'next' ? makeStatus('next') : makeStatus('reject', decision.reply);
    },
  },
];
