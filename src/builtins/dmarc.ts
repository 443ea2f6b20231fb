// DMARC (SPEC §7.10; RFC 7489): dmarc::check, v1 check_dmarc, from preq.
//
// The policy is the From: domain's `_dmarc` record, or its organisational
// domain's (public suffix list, src/builtins/psl.ts) with `sp` applying to
// subdomains. DMARC passes when a passing DKIM signature or a passing SPF
// check is aligned with the From: domain: relaxed = same organisational
// domain, strict = the same name. Alignment is computed here rather than by
// mailauth, whose strict mode (4.13) compares the *organisational* domain of
// the signer with the From: domain and then falls back to relaxed, so a
// d=mail.example.org signature "strictly" aligns with From: example.org.
//
// pct is taken as 100. A temporary DNS failure that keeps us from knowing the
// policy, or from knowing whether an aligned identifier passed, is a runtime
// error (the stage's error handling, tempfail by default, applies): neither
// accepting nor refusing would be right.

import { DnsError, type Resolver } from '../host/ports.js';
import { type HostBuiltin, type HostCall } from './host.js';
import { checkArity, dnsFailure, dnsTimeoutMs, statusFor } from './dns/call-args.js';
import { dkimAuthClause, dkimForCall, fromDomains, pvalue, type DkimSignatureResult } from './dkim.js';
import { organizationalDomain } from './psl.js';
import { spfAuthClause, spfForCall, type SpfOutcome } from './spf.js';
import { fnError, type Value } from '../vsl/values/value.js';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';
export type AlignmentMode = 'r' | 's';

export interface DmarcRecord {
  p: DmarcPolicy;
  sp?: DmarcPolicy;
  adkim: AlignmentMode;
  aspf: AlignmentMode;
}

export const DMARC_REJECT_REPLY = '550 5.7.1 DMARC policy violation';

function policyValue(v: string | undefined): DmarcPolicy | undefined {
  const s = v?.toLowerCase();
  return s === 'none' || s === 'quarantine' || s === 'reject' ? s : undefined;
}

function modeValue(v: string | undefined): AlignmentMode {
  return v?.toLowerCase() === 's' ? 's' : 'r';
}

/**
 * Parses one TXT record. Null unless it starts with `v=DMARC1`. A missing or
 * invalid `p` makes the record `p=none` when it has a `rua` (RFC 7489
 * §6.6.3), else the record is unusable (null).
 */
export function parseDmarcRecord(txt: string): DmarcRecord | null {
  const parts = txt.split(';').map((x) => x.trim());
  if (!/^v\s*=\s*DMARC1$/i.test(parts[0] ?? '')) return null;
  const tags = new Map<string, string>();
  for (const part of parts.slice(1)) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim().toLowerCase();
    if (!tags.has(k)) tags.set(k, part.slice(eq + 1).trim());
  }
  let p = policyValue(tags.get('p'));
  if (!p) {
    if (!tags.has('rua')) return null;
    p = 'none';
  }
  const sp = policyValue(tags.get('sp'));
  return { p, ...(sp ? { sp } : {}), adkim: modeValue(tags.get('adkim')), aspf: modeValue(tags.get('aspf')) };
}

/** The usable record at `_dmarc.<domain>`: null when there is none or more than one. Throws temporary DnsErrors. */
async function recordAt(resolver: Resolver, domain: string, timeoutMs: number): Promise<DmarcRecord | null> {
  let txts: string[][];
  try {
    txts = await resolver.txt(`_dmarc.${domain}`, { timeoutMs });
  } catch (err) {
    if (err instanceof DnsError && !err.temporary) return null;
    throw err;
  }
  const candidates = txts.map((t) => t.join('')).filter((t) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(t));
  if (candidates.length !== 1) return null;
  return parseDmarcRecord(candidates[0]!);
}

export interface DmarcDiscovery {
  record: DmarcRecord;
  /** Where the record was found: the From: domain or its organisational domain. */
  foundAt: string;
  /** p, or sp for a subdomain under an organisational domain's record. */
  policy: DmarcPolicy;
}

/** RFC 7489 §6.6.3 policy discovery for `fromDomain`; null when no policy applies. */
export async function discoverPolicy(resolver: Resolver, fromDomain: string, timeoutMs: number): Promise<DmarcDiscovery | null> {
  const own = await recordAt(resolver, fromDomain, timeoutMs);
  if (own) return { record: own, foundAt: fromDomain, policy: own.p };
  const org = organizationalDomain(fromDomain);
  if (org === fromDomain) return null;
  const orgRecord = await recordAt(resolver, org, timeoutMs);
  if (!orgRecord) return null;
  return { record: orgRecord, foundAt: org, policy: orgRecord.sp ?? orgRecord.p };
}

/** Identifier alignment (RFC 7489 §3.1): strict = same name, relaxed = same organisational domain. */
export function aligned(identifier: string, fromDomain: string, mode: AlignmentMode): boolean {
  const a = identifier.toLowerCase().replace(/\.$/, '');
  const b = fromDomain.toLowerCase().replace(/\.$/, '');
  if (a === '' || b === '') return false;
  if (mode === 's') return a === b;
  return organizationalDomain(a) === organizationalDomain(b);
}

export interface DmarcEvaluation {
  fromDomain: string;
  result: 'pass' | 'fail' | 'none' | 'temperror';
  policy: DmarcPolicy | null;
  /** The aligned passing DKIM signature, if any. */
  dkim: DkimSignatureResult | null;
  spfAligned: boolean;
}

/** DMARC for one From: domain, given the transaction's DKIM signatures and SPF outcome. */
export function judge(
  fromDomain: string,
  discovery: DmarcDiscovery | null,
  signatures: DkimSignatureResult[],
  spf: SpfOutcome,
): DmarcEvaluation {
  if (!discovery) return { fromDomain, result: 'none', policy: null, dkim: null, spfAligned: false };
  const { adkim, aspf } = discovery.record;
  const dkim = signatures.find((s) => s.status === 'pass' && aligned(s.sdid, fromDomain, adkim)) ?? null;
  const spfAligned = spf.result === 'pass' && aligned(spf.domain, fromDomain, aspf);
  if (dkim || spfAligned) return { fromDomain, result: 'pass', policy: discovery.policy, dkim, spfAligned };
  const temporary =
    signatures.some((s) => s.status === 'temperror' && aligned(s.sdid, fromDomain, adkim)) ||
    (spf.result === 'temperror' && aligned(spf.domain, fromDomain, aspf));
  return { fromDomain, result: temporary ? 'temperror' : 'fail', policy: discovery.policy, dkim: null, spfAligned: false };
}

const SEVERITY: Record<DmarcPolicy, number> = { none: 0, quarantine: 1, reject: 2 };

function dmarcClause(e: DmarcEvaluation | null): string {
  if (!e) return 'dmarc=none';
  const policy = e.policy ? ` (p=${e.policy})` : '';
  return `dmarc=${e.result}${policy} header.from=${pvalue(e.fromDomain)}`;
}

const CACHE_KEY = 'dmarc:evaluations';

async function checkDmarc(fn: string, call: HostCall, args: Value[]): Promise<Value> {
  checkArity(fn, args, 0, 0);
  if (!call.message) throw fnError(fn, 'no message: DMARC is available from the preq stage');
  let evaluations = call.cache.get(CACHE_KEY) as DmarcEvaluation[] | undefined;
  const first = evaluations === undefined;
  if (!evaluations) {
    const timeoutMs = dnsTimeoutMs(call, fn);
    const domains = fromDomains(call.message);
    const [dkim, spf] = await Promise.all([dkimForCall(call, fn), spfForCall(call, fn)]);
    evaluations = [];
    for (const d of domains) {
      let discovery: DmarcDiscovery | null;
      try {
        discovery = await discoverPolicy(call.env.resolver, d, timeoutMs);
      } catch (err) {
        throw fnError(fn, `temporary DNS failure looking up the DMARC policy of ${d}: ${dnsFailure(err)}`);
      }
      evaluations.push(judge(d, discovery, dkim.signatures, spf));
    }
    call.cache.set(CACHE_KEY, evaluations);
    const dkimShown = evaluations.find((e) => e.dkim)?.dkim ?? dkim.summary;
    const clauses = [dkimAuthClause(dkimShown), spfAuthClause(spf), ...(evaluations.length ? evaluations.map(dmarcClause) : [dmarcClause(null)])];
    call.effects.addHeader({ name: 'Authentication-Results', value: `${call.env.config.server.name}; ${clauses.join('; ')}` }, 'top');
  }

  // The strictest policy among the From: domains that failed decides (one
  // forged domain among several must not slip through).
  let action: DmarcPolicy = 'none';
  for (const e of evaluations) {
    if (first) {
      call.log.info({ dmarc: e.result, domain: e.fromDomain, policy: e.policy }, `DMARC ${e.result} for ${e.fromDomain}`);
    }
    if (e.result === 'pass' || e.result === 'none' || !e.policy) continue;
    if (e.result === 'temperror' && e.policy !== 'none') {
      throw fnError(fn, `temporary failure checking DKIM/SPF for ${e.fromDomain}; try again later`);
    }
    if (SEVERITY[e.policy] > SEVERITY[action]) action = e.policy;
  }
  switch (action) {
    case 'none':
      return statusFor(fn, 'next');
    case 'quarantine':
      return statusFor(fn, 'quarantine', 'dmarc');
    case 'reject':
      return statusFor(fn, 'deny', DMARC_REJECT_REPLY);
  }
}

export const dmarcBuiltins: HostBuiltin[] = [
  { name: 'dmarc::check', from: 'preq', io: true, arity: 0, fn: (call, args) => checkDmarc('dmarc::check', call, args) },
  { name: 'check_dmarc', from: 'preq', io: true, arity: 0, fn: (call, args) => checkDmarc('check_dmarc', call, args) },
];
