// SPF (SPEC §7.9; RFC 7208): spf::check, spf::check_raw, v1 check_spf and
// check_spf_inner, all from mail.
//
// Record evaluation (mechanisms, macros, include/redirect) is mailauth's
// spfVerify; this module owns everything around it: the identity (MAIL FROM,
// or postmaster@<helo> for the null sender), the DNS limits (10 lookups, 2
// void lookups, our resolver and deadlines), the result cached once per
// transaction, the header formats and the decision tables of §7.9.
//
// mailauth's public spf() is not used because it does not report which
// mechanism matched (SPEC's `mechanism=<m>`) and counts the initial TXT query
// as a void lookup; its record evaluator is.

import { createRequire } from 'node:module';
import net from 'node:net';
import { domainToASCII } from 'node:url';
import type { MailAddress } from '../mail/types.js';
import { isLocalDomain } from '../vsl/values/address.js';
import type { Status } from '../vsl/values/status.js';
import { fnError, isMap, type Value } from '../vsl/values/value.js';
import { argText, checkArity, dnsFailure, dnsTimeoutMs, statusFor, typeName } from './dns/call-args.js';
import { mailauthResolver, type MailauthResolver } from './dns/mailauth-resolver.js';
import { normaliseIp } from './dns/names.js';
import { queryName } from './dns/resolver.js';
import { DnsError, type Resolver } from '../host/ports.js';
import { type HostBuiltin, type HostCall } from './host.js';

export type SpfResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';

/** DNS lookups that count (include a mx ptr exists redirect), RFC 7208 §4.6.4. */
export const SPF_MAX_LOOKUPS = 10;
export const SPF_MAX_VOID_LOOKUPS = 2;
/** Whole evaluation, as RFC 7208 §4.6.4 suggests (each query also has server.dns.timeout). */
export const SPF_OVERALL_MS = 20_000;

export interface SpfOutcome {
  result: SpfResult;
  /** The mechanism that decided (`-all`, `ip4:192.0.2.0/24`, `default` when none matched). */
  mechanism?: string;
  /** Why the result is an error or none. */
  problem?: string;
  identity: 'mailfrom' | 'helo';
  /** The identity checked: the sender, or postmaster@<helo>. */
  sender: string;
  /** The domain checked ('' when there is none, e.g. an address-literal HELO). */
  domain: string;
  ip: string;
  helo: string | null;
}

export interface SpfInput {
  /** Client IP (IPv4-mapped IPv6 is treated as IPv4). */
  ip: string;
  /** MAIL FROM; the null sender (or null) selects the HELO identity. */
  mailFrom: MailAddress | null;
  helo: string | null;
  /** Our host name, for the %{r} macro. */
  receiver: string;
  /** Deadline of each DNS query. */
  timeoutMs: number;
  /** Deadline of the whole evaluation (default SPF_OVERALL_MS). */
  overallMs?: number;
}

interface SpfVerifyResult {
  type?: string;
  val?: string;
  qualifier?: string;
  error?: string;
  text?: string;
}
interface SpfFailure {
  spfResult?: { error: string; text?: string };
}
type SpfVerify = (domain: string, opts: Record<string, unknown>) => Promise<SpfVerifyResult | false>;

const require = createRequire(import.meta.url);
// Loaded on first use: mailauth costs ~37 MB per process, and most processes never check SPF.
let spfVerifyFn: SpfVerify | null = null;
const spfVerify: SpfVerify = (domain, opts) => {
  spfVerifyFn ??= (require('mailauth/lib/spf/spf-verify.js') as { spfVerify: SpfVerify }).spfVerify;
  return spfVerifyFn(domain, opts);
};

const QUALIFIERS: Record<string, SpfResult> = { '+': 'pass', '-': 'fail', '~': 'softfail', '?': 'neutral' };

function spfError(error: 'permerror' | 'temperror' | 'none', text: string): Error & SpfFailure {
  const e = new Error(text) as Error & SpfFailure;
  e.spfResult = { error, text };
  return e;
}

/**
 * The DNS function given to spfVerify: counts lookups and void lookups,
 * enforces the overall deadline and turns DNS failures into SPF results.
 * The main resolver's first query (the checked domain's TXT) is free; the
 * sub-resolvers mailauth makes for the hosts of one mx or ptr mechanism have
 * their own 10-lookup budget (RFC 7208 §4.6.4). Void lookups are counted
 * across all of them.
 */
function limitedResolver(
  dns: MailauthResolver,
  shared: { voids: number; deadline: number },
  firstIsFree: boolean,
): MailauthResolver {
  let calls = 0;
  let lookups = 0;
  return async (name: string, rrtype: string) => {
    const free = firstIsFree && calls === 0;
    calls++;
    if (!free && ++lookups > SPF_MAX_LOOKUPS) throw spfError('permerror', `more than ${SPF_MAX_LOOKUPS} DNS lookups`);
    if (Date.now() > shared.deadline) throw spfError('temperror', 'SPF evaluation took too long');
    try {
      queryName(name);
    } catch {
      throw spfError('permerror', `invalid domain name ${JSON.stringify(name)}`);
    }
    try {
      return await dns(name, rrtype);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') {
        if (!free && ++shared.voids > SPF_MAX_VOID_LOOKUPS) {
          throw spfError('permerror', `more than ${SPF_MAX_VOID_LOOKUPS} void DNS lookups`);
        }
        return [];
      }
      const cause = (err as { cause?: unknown }).cause;
      const what = cause instanceof DnsError ? dnsFailure(cause) : err instanceof Error ? err.message : String(err);
      throw spfError('temperror', `${rrtype} lookup failed: ${what}`);
    }
  };
}

/** `example.org`, lower-case A-label, multi-label; null when not a usable domain (→ none). */
function spfDomain(d: string): string | null {
  let s = d.trim().replace(/\.$/, '');
  if (s === '' || s.startsWith('[') || net.isIP(s)) return null;
  if (/[^\x20-\x7e]/.test(s)) s = domainToASCII(s);
  if (!s) return null;
  try {
    s = queryName(s);
  } catch {
    return null;
  }
  if (!s.includes('.') || !/^[a-z0-9_.-]+$/.test(s)) return null;
  return s;
}

function mechanismText(r: SpfVerifyResult): string {
  if (!r.type) return 'default';
  const q = r.qualifier && r.qualifier !== '+' ? r.qualifier : '';
  return `${q}${r.type}${r.val ? `:${r.val}` : ''}`;
}

/** RFC 7208 check_host() for one transaction, through our resolver. */
export async function evaluateSpf(resolver: Resolver, input: SpfInput): Promise<SpfOutcome> {
  const ip = normaliseIp(input.ip) ?? input.ip;
  const helo = input.helo;
  const nullSender = !input.mailFrom || input.mailFrom.isNull;
  const identity: SpfOutcome['identity'] = nullSender ? 'helo' : 'mailfrom';
  const rawDomain = nullSender ? helo ?? '' : input.mailFrom!.domain;
  const domain = spfDomain(rawDomain);
  const sender = nullSender ? `postmaster@${domain ?? rawDomain}` : `${input.mailFrom!.local}@${domain ?? input.mailFrom!.domain}`;
  const base = { identity, sender, domain: domain ?? '', ip, helo };

  if (!net.isIP(ip)) return { ...base, result: 'none', problem: `invalid client IP ${ip}` };
  if (domain === null) {
    const why = rawDomain.startsWith('[') || net.isIP(rawDomain) ? 'address literal' : 'invalid domain';
    return { ...base, result: 'none', problem: `no domain to check (${why})` };
  }

  const overall = input.overallMs ?? SPF_OVERALL_MS;
  const shared = { voids: 0, deadline: Date.now() + overall };
  const dns = mailauthResolver(resolver, input.timeoutMs);
  const opts = {
    sender,
    ip,
    helo: helo ?? '',
    mta: input.receiver,
    resolver: limitedResolver(dns, shared, true),
    createSubResolver: () => limitedResolver(dns, shared, false),
  };

  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(spfError('temperror', 'SPF evaluation took too long')), overall);
  });
  let res: SpfVerifyResult | false;
  try {
    res = await Promise.race([spfVerify(domain, opts), expired]);
  } catch (err) {
    const f = (err as SpfFailure).spfResult;
    if (f && (f.error === 'permerror' || f.error === 'temperror' || f.error === 'none')) {
      return { ...base, result: f.error, problem: f.text ?? f.error };
    }
    return { ...base, result: 'temperror', problem: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
    expired.catch(() => {});
  }
  if (!res) return { ...base, result: 'none', problem: 'no SPF record' };
  if (res.error) {
    const kind = res.error === 'temperror' ? 'temperror' : 'permerror';
    return { ...base, result: kind, problem: res.text ?? res.error };
  }
  const result = QUALIFIERS[res.qualifier ?? '?'] ?? 'neutral';
  return { ...base, result, mechanism: mechanismText(res) };
}

// ---------------------------------------------------------------- headers

/** A Received-SPF / Authentication-Results value: dot-atom as is, else a quoted-string. */
function kv(value: string): string {
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$/.test(value)) return value;
  return `"${value.replace(/[\r\n]+/g, ' ').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** RFC 8601 pvalue for an address: `local@domain` bare when the local part is a dot-atom. */
function addressValue(addr: string): string {
  const at = addr.lastIndexOf('@');
  if (at > 0 && kv(addr.slice(0, at)) === addr.slice(0, at) && /^[A-Za-z0-9.-]+$/.test(addr.slice(at + 1))) return addr;
  return kv(addr);
}

/** `Received-SPF` value (SPEC §7.9). */
export function receivedSpfValue(o: SpfOutcome, receiver: string): string {
  const parts = [`${o.result} client-ip=${kv(o.ip)}`, `envelope-from=${addressValue(o.sender)}`];
  if (o.helo) parts.push(`helo=${kv(o.helo)}`);
  parts.push(`receiver=${kv(receiver)}`, `identity=${o.identity}`);
  if (o.mechanism && !o.problem) parts.push(`mechanism=${kv(o.mechanism)}`);
  if (o.problem && o.result !== 'none') parts.push(`problem=${kv(o.problem)}`);
  return parts.join('; ');
}

/** The `spf=` clause of Authentication-Results (without the authserv-id). */
export function spfAuthClause(o: SpfOutcome): string {
  return o.identity === 'helo'
    ? `spf=${o.result} smtp.helo=${kv(o.helo ?? o.domain)}`
    : `spf=${o.result} smtp.mailfrom=${addressValue(o.sender)}`;
}

// ---------------------------------------------------------------- per transaction

const CACHE_KEY = 'spf:outcome';
const HEADER_KEY = 'spf:headers-written';

/** The transaction's SPF outcome: computed at the first call, then reused (SPEC §7.9). */
export async function spfForCall(call: HostCall, fn: string): Promise<SpfOutcome> {
  const cached = call.cache.get(CACHE_KEY) as Promise<SpfOutcome> | undefined;
  if (cached) return cached;
  if (!call.txn) throw fnError(fn, 'no transaction: SPF is available from the mail stage');
  const p = evaluateSpf(call.env.resolver, {
    ip: call.session.clientIp,
    mailFrom: call.txn.mailFrom,
    helo: call.session.helo,
    receiver: call.env.config.server.name,
    timeoutMs: dnsTimeoutMs(call, fn),
  });
  // The promise is cached, so two evaluations in flight share one.
  call.cache.set(CACHE_KEY, p);
  const outcome = await p;
  call.log.info(
    { spf: outcome.result, identity: outcome.identity, sender: outcome.sender, mechanism: outcome.mechanism, problem: outcome.problem },
    `SPF ${outcome.result} for ${outcome.sender} from ${outcome.ip}`,
  );
  return outcome;
}

export type HeaderChoice = 'spf' | 'auth' | 'both' | 'none';

/** Writes the SPF headers once per transaction: each kind at most once, at the first call that asks for it. */
function writeHeaders(call: HostCall, o: SpfOutcome, choice: HeaderChoice): void {
  const written = (call.cache.get(HEADER_KEY) as Set<string> | undefined) ?? new Set<string>();
  call.cache.set(HEADER_KEY, written);
  const name = call.env.config.server.name;
  if ((choice === 'spf' || choice === 'both') && !written.has('spf')) {
    written.add('spf');
    call.effects.addHeader({ name: 'Received-SPF', value: receivedSpfValue(o, name) }, 'top');
  }
  if ((choice === 'auth' || choice === 'both') && !written.has('auth')) {
    written.add('auth');
    call.effects.addHeader({ name: 'Authentication-Results', value: `${name}; ${spfAuthClause(o)}` }, 'top');
  }
}

// ---------------------------------------------------------------- decisions

export const SPF_REPLY = {
  failed: '550 5.7.23 SPF validation failed',
  error: '550 5.7.24 SPF validation error',
  tempError: '451 4.7.24 SPF validation error',
} as const;

type Policy = 'strict' | 'soft';

/** The §7.9 tables. `v2` differs only in treating neutral and none as failures. */
export function spfDecision(result: SpfResult, policy: Policy, v2: boolean): { kind: 'next' } | { kind: 'deny'; reply: string } {
  switch (result) {
    case 'pass':
      return { kind: 'next' };
    case 'softfail':
      return policy === 'strict' ? { kind: 'deny', reply: SPF_REPLY.failed } : { kind: 'next' };
    case 'fail':
      return { kind: 'deny', reply: SPF_REPLY.failed };
    case 'neutral':
    case 'none':
      return v2 ? { kind: 'deny', reply: SPF_REPLY.failed } : { kind: 'next' };
    case 'temperror':
      return { kind: 'deny', reply: SPF_REPLY.tempError };
    case 'permerror':
      return { kind: 'deny', reply: SPF_REPLY.error };
  }
}

function headerChoice(fn: string, v: Value): HeaderChoice {
  const s = argText(fn, 'header', v);
  if (s === 'spf' || s === 'auth' || s === 'both' || s === 'none') return s;
  throw fnError(fn, `header must be "spf", "auth", "both" or "none", got "${s}"`);
}

function policyChoice(fn: string, v: Value): Policy {
  const s = argText(fn, 'policy', v);
  if (s === 'strict' || s === 'soft') return s;
  throw fnError(fn, `policy must be "strict" or "soft", got "${s}"`);
}

async function decide(call: HostCall, fn: string, header: HeaderChoice, policy: Policy, v2: boolean): Promise<Status> {
  const o = await spfForCall(call, fn);
  writeHeaders(call, o, header);
  const d = spfDecision(o.result, policy, v2);
  return d.kind === 'next' ? statusFor(fn, 'next') : statusFor(fn, 'deny', d.reply);
}

/** v1 check_spf: a local sender domain is not evaluated at all. */
async function checkSpfV1(call: HostCall, args: Value[]): Promise<Value> {
  const fn = 'check_spf';
  checkArity(fn, args, 1, 2);
  const header = headerChoice(fn, args[0]);
  const policy = args[1] === undefined ? 'strict' : policyChoice(fn, args[1]);
  const from = call.txn?.mailFrom;
  if (from && !from.isNull && isLocalDomain(from.domain, call.env.config.server)) return statusFor(fn, 'next');
  return decide(call, fn, header, policy, false);
}

async function checkSpfV2(call: HostCall, args: Value[]): Promise<Value> {
  const fn = 'spf::check';
  checkArity(fn, args, 0, 1);
  let header: HeaderChoice = 'both';
  let policy: Policy = 'strict';
  const opts = args[0];
  if (opts !== undefined) {
    if (!isMap(opts)) throw fnError(fn, `options must be a map, got ${typeName(opts)}`);
    for (const [k, v] of opts) {
      if (k === 'header') header = headerChoice(fn, v);
      else if (k === 'policy') policy = policyChoice(fn, v);
      else throw fnError(fn, `unknown option '${k}' (expected header, policy)`);
    }
  }
  return decide(call, fn, header, policy, true);
}

async function checkRaw(fn: string, call: HostCall, args: Value[]): Promise<Value> {
  checkArity(fn, args, 0, 0);
  const o = await spfForCall(call, fn);
  const m = new Map<string, Value>([['result', o.result]]);
  if (o.mechanism && !o.problem) m.set('mechanism', o.mechanism);
  else m.set('problem', o.problem ?? o.result);
  return m;
}

export const spfBuiltins: HostBuiltin[] = [
  { name: 'spf::check', fn: checkSpfV2, from: 'mail', io: true, arity: [0, 1] },
  { name: 'check_spf', fn: checkSpfV1, from: 'mail', io: true, arity: [1, 2] },
  { name: 'spf::check_raw', fn: (call, args) => checkRaw('spf::check_raw', call, args), from: 'mail', io: true, arity: 0 },
  { name: 'check_spf_inner', fn: (call, args) => checkRaw('check_spf_inner', call, args), from: 'mail', io: true, arity: 0 },
];
