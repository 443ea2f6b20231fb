// Postfix smtpd restrictions as vSL built-ins (SPEC §8.2): each one looks at
// the client, HELO or envelope and answers PERMIT (accept), DUNNO (next) or
// a reply in Postfix's words:
//   <code> <enhanced> <key>: <Class> rejected: <reason>
// with <key> `<address>`, `<helo>` or `<name[ip]>`.
//
// Where SPEC is silent we follow Postfix: a temporary DNS failure in the
// reject_unknown_* checks answers the same 450 reply as "not found"
// (Postfix's defer), a recipient whose local part asks for routing (`%`, `!`,
// `@`) is not an authorised destination (allow_untrusted_routing = no), and
// a null MX is `550 5.7.27` / `556 5.1.10 … Domain <d> does not accept mail
// (nullMX)`. Local domains also pass reject_unknown_sender_domain and
// reject_non_fqdn_recipient: we know our own domains exist.

import type { Logger } from 'pino';
import { addressText, stageIndex, type Header, type MailAddress, type Stage } from '../../mail/types.js';
import { DnsError } from '../../host/ports.js';
import { parseIPv4, parseIPv6, parseIp } from '../../vsl/values/net.js';
import { addressKeys, clientKeys, heloKeys, lookupFirst, type AccessMap, type ActionChecker, type LookupKeys } from './access-map.js';
import type { LegacyDecision } from './decision.js';
import type { LegacyLookups } from './lookups.js';
import { ipInNetworks, isExplicitlyRouted, isLocalDomain, type LegacyProbe } from './probe.js';

// ------------------------------------------------------------------ the restrictions

export type RestrictionName =
  | 'permit_mynetworks'
  | 'permit_sasl_authenticated'
  | 'reject_unauth_destination'
  | 'reject_non_fqdn_helo_hostname'
  | 'reject_invalid_helo_hostname'
  | 'reject_unknown_helo_hostname'
  | 'reject_non_fqdn_sender'
  | 'reject_unknown_sender_domain'
  | 'reject_non_fqdn_recipient'
  | 'reject_unknown_recipient_domain'
  | 'reject_unauth_pipelining'
  | 'reject_rbl_client'
  | 'check_client_access'
  | 'check_helo_access'
  | 'check_sender_access'
  | 'check_recipient_access';

export interface RestrictionSpec {
  /** Earliest stage (SPEC §8.2 "From"). */
  from: Stage;
  /** Waits on DNS or reads a data file. */
  io: boolean;
  /** Argument counts in vSL. */
  arity: [number, number];
  /** Arguments it takes when named in an access-map action (`reject_rbl_client zone`). */
  mapArgs: number;
}

export const RESTRICTIONS: Readonly<Record<RestrictionName, RestrictionSpec>> = {
  permit_mynetworks: { from: 'connect', io: false, arity: [0, 1], mapArgs: 0 },
  permit_sasl_authenticated: { from: 'connect', io: false, arity: [0, 0], mapArgs: 0 },
  reject_unauth_destination: { from: 'rcpt', io: false, arity: [0, 0], mapArgs: 0 },
  reject_non_fqdn_helo_hostname: { from: 'helo', io: false, arity: [0, 0], mapArgs: 0 },
  reject_invalid_helo_hostname: { from: 'helo', io: false, arity: [0, 0], mapArgs: 0 },
  reject_unknown_helo_hostname: { from: 'helo', io: true, arity: [0, 0], mapArgs: 0 },
  reject_non_fqdn_sender: { from: 'mail', io: false, arity: [0, 0], mapArgs: 0 },
  reject_unknown_sender_domain: { from: 'mail', io: true, arity: [0, 0], mapArgs: 0 },
  reject_non_fqdn_recipient: { from: 'rcpt', io: false, arity: [0, 0], mapArgs: 0 },
  reject_unknown_recipient_domain: { from: 'rcpt', io: true, arity: [0, 0], mapArgs: 0 },
  reject_unauth_pipelining: { from: 'helo', io: false, arity: [0, 0], mapArgs: 0 },
  reject_rbl_client: { from: 'connect', io: true, arity: [1, 1], mapArgs: 1 },
  check_client_access: { from: 'connect', io: true, arity: [1, 1], mapArgs: 1 },
  check_helo_access: { from: 'helo', io: true, arity: [1, 1], mapArgs: 1 },
  check_sender_access: { from: 'mail', io: true, arity: [1, 1], mapArgs: 1 },
  check_recipient_access: { from: 'rcpt', io: true, arity: [1, 1], mapArgs: 1 },
};

export const RESTRICTION_NAMES = Object.keys(RESTRICTIONS) as RestrictionName[];

export function isRestrictionName(name: string): name is RestrictionName {
  return Object.prototype.hasOwnProperty.call(RESTRICTIONS, name);
}

/** Everything a restriction may look at or do. */
export interface PostfixContext {
  probe: LegacyProbe;
  stage: Stage;
  lookups: LegacyLookups;
  /** Loads an access map from its spec (`[type:]path`; the caller resolves relative paths). */
  loadMap(spec: string): Promise<AccessMap>;
  log: Logger;
  /** PREPEND: a header for the message (top of the pending list). */
  addHeader(h: Header): void;
  /** Nesting of access-map actions naming restrictions (guards against loops). */
  depth?: number;
}

/** Refused because of a broken policy, not because of the client: a runtime error of the calling built-in. */
export class RestrictionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestrictionError';
  }
}

const MAX_DEPTH = 8;

function refuse(reply: string, extra: Partial<LegacyDecision> = {}): LegacyDecision {
  const code = Number(reply.slice(0, 3));
  return { kind: code === 421 || code === 521 ? 'deny' : 'reject', reply, ...extra };
}

const ACCEPT: LegacyDecision = { kind: 'accept' };
const NEXT: LegacyDecision = { kind: 'next' };

// ------------------------------------------------------------------ names

/** Postfix valid_hostname: LDH(+`_`) labels of 1–63, at most 255 in all, not all numeric. */
export function isValidHostname(name: string): boolean {
  const n = name.endsWith('.') && !name.endsWith('..') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 255) return false;
  const labels = n.split('.');
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) return false;
    if (!/^[A-Za-z0-9_-]+$/.test(l) || l.startsWith('-') || l.endsWith('-')) return false;
  }
  return !labels.every((l) => /^\d+$/.test(l));
}

/** `[a.b.c.d]` or `[IPv6:…]`. */
export function isValidAddressLiteral(s: string): boolean {
  if (!s.startsWith('[') || !s.endsWith(']')) return false;
  const inner = s.slice(1, -1);
  if (/^ipv6:/i.test(inner)) return parseIPv6(inner.slice(5)) !== null;
  return parseIPv4(inner) !== null;
}

function isFqdn(name: string): boolean {
  const n = name.replace(/\.$/, '');
  return isValidHostname(n) && n.includes('.') && parseIp(n) === null;
}

/** The `<key>` of a reply for an address; the null sender reads `<>`. */
function addressKey(a: MailAddress): string {
  return `<${a.isNull ? '' : addressText(a)}>`;
}

function recipientOf(p: LegacyProbe, fn: string): MailAddress {
  const r = p.recipient;
  if (!r) throw new RestrictionError(`${fn}: no recipient under evaluation`);
  return r;
}

/**
 * The client's forward-confirmed name for access lookups and replies. As in
 * Postfix, a name that cannot be looked up right now is `unknown` (logged):
 * the address keys still apply, and a PTR outage does not stop all mail.
 */
async function clientNameForAccess(ctx: PostfixContext): Promise<string | null> {
  try {
    return await ctx.lookups.clientName();
  } catch (err) {
    if (!(err instanceof DnsError)) throw err;
    ctx.log.warn({ client_ip: ctx.probe.clientIp, err: err.message }, 'client name lookup failed; the client is unknown for this check');
    return null;
  }
}

// ------------------------------------------------------------------ checks

async function unknownDomain(ctx: PostfixContext, a: MailAddress, who: 'sender' | 'recipient'): Promise<LegacyDecision> {
  if (a.isNull || a.domain.startsWith('[') || isLocalDomain(ctx.probe, a.domain)) return NEXT;
  const status = await ctx.lookups.mailDomainStatus(a.domain);
  const cls = who === 'sender' ? 'Sender address' : 'Recipient address';
  if (status === 'found') return NEXT;
  if (status === 'null-mx') {
    const code = who === 'sender' ? '550 5.7.27' : '556 5.1.10';
    return refuse(`${code} ${addressKey(a)}: ${cls} rejected: Domain ${a.domain} does not accept mail (nullMX)`);
  }
  // Not found, or not known yet (temporary failure): Postfix defers both with the same words.
  const code = who === 'sender' ? '450 4.1.8' : '450 4.1.2';
  return refuse(`${code} ${addressKey(a)}: ${cls} rejected: Domain not found`);
}

function nonFqdnAddress(p: LegacyProbe, a: MailAddress, who: 'sender' | 'recipient'): LegacyDecision {
  if (a.isNull || a.domain.startsWith('[')) return NEXT;
  if (who === 'recipient' && isLocalDomain(p, a.domain)) return NEXT;
  if (isFqdn(a.domain)) return NEXT;
  const cls = who === 'sender' ? 'Sender address' : 'Recipient address';
  return refuse(`504 5.5.2 ${addressKey(a)}: ${cls} rejected: need fully-qualified address`);
}

/** The zone without a `=127.0.0.N` answer filter, as shown in replies. */
function zoneName(zone: string): string {
  const eq = zone.indexOf('=');
  return eq < 0 ? zone : zone.slice(0, eq);
}

/**
 * The restrictions that need neither DNS nor files, answered synchronously
 * (their built-ins are not I/O). Undefined for the others.
 */
export function syncRestriction(p: LegacyProbe, name: RestrictionName, args?: string[]): LegacyDecision | undefined {
  switch (name) {
    case 'permit_mynetworks':
      return ipInNetworks(p.clientIp, args ?? p.relayNetworks) ? ACCEPT : NEXT;
    case 'permit_sasl_authenticated':
      return p.authenticated ? ACCEPT : NEXT;
    case 'reject_unauth_destination': {
      const r = recipientOf(p, name);
      if (isLocalDomain(p, r.domain) && !isExplicitlyRouted(r)) return NEXT;
      return refuse(`554 5.7.1 ${addressKey(r)}: Relay access denied`);
    }
    case 'reject_non_fqdn_helo_hostname':
      if (p.helo === null || p.helo.startsWith('[') || isFqdn(p.helo)) return NEXT;
      return refuse(`504 5.5.2 <${p.helo}>: Helo command rejected: need fully-qualified hostname`);
    case 'reject_invalid_helo_hostname': {
      if (p.helo === null) return NEXT;
      const ok = p.helo.startsWith('[') ? isValidAddressLiteral(p.helo) : isValidHostname(p.helo) || parseIp(p.helo) !== null;
      return ok ? NEXT : refuse(`501 5.5.2 <${p.helo}>: Helo command rejected: Invalid name`);
    }
    case 'reject_non_fqdn_sender':
      return p.sender ? nonFqdnAddress(p, p.sender, 'sender') : NEXT;
    case 'reject_non_fqdn_recipient':
      return nonFqdnAddress(p, recipientOf(p, name), 'recipient');
    case 'reject_unauth_pipelining':
      // The SMTP front records the violation (SPEC §4.3, §8.2).
      return p.pipeliningViolation ? refuse('503 5.5.0 Error: improper use of SMTP command pipelining') : NEXT;
    default:
      return undefined;
  }
}

/**
 * Runs one restriction. `args` are its arguments as text (networks for
 * permit_mynetworks — undefined means server.relay_networks — a zone, or
 * an access map spec).
 */
export async function runRestriction(ctx: PostfixContext, name: RestrictionName, args?: string[]): Promise<LegacyDecision> {
  const sync = syncRestriction(ctx.probe, name, args);
  if (sync) return sync;
  const p = ctx.probe;
  switch (name) {
    case 'reject_unknown_helo_hostname': {
      if (p.helo === null || p.helo.startsWith('[')) return NEXT;
      const status = await ctx.lookups.hostStatus(p.helo.toLowerCase().replace(/\.$/, ''));
      // Not found, or not known yet (temporary failure): Postfix defers both with the same words.
      return status === 'found' ? NEXT : refuse(`450 4.7.1 <${p.helo}>: Helo command rejected: Host not found`);
    }
    case 'reject_unknown_sender_domain':
      return p.sender ? unknownDomain(ctx, p.sender, 'sender') : NEXT;
    case 'reject_unknown_recipient_domain':
      return unknownDomain(ctx, recipientOf(p, name), 'recipient');
    case 'reject_rbl_client': {
      const zone = args?.[0];
      if (!zone) throw new RestrictionError(`${name}: a DNSBL zone is required`);
      if (!(await ctx.lookups.dnsblListed(zone, p.clientIp))) return NEXT;
      return refuse(`554 5.7.1 Service unavailable; Client host [${p.clientIp}] blocked using ${zoneName(zone)}`);
    }
    case 'check_client_access':
    case 'check_helo_access':
    case 'check_sender_access':
    case 'check_recipient_access': {
      const spec = args?.[0];
      if (!spec) throw new RestrictionError(`${name}: an access map is required`);
      return checkAccess(ctx, name, spec);
    }
    default:
      throw new RestrictionError(`${name}: not implemented`);
  }
}

// ------------------------------------------------------------------ access maps

interface Subject {
  keys: LookupKeys;
  /** `<address>`, `<helo>` or `<name[ip]>`, computed only when a reply needs it. */
  replyKey: () => Promise<string>;
  cls: string;
}

async function subjectOf(ctx: PostfixContext, name: RestrictionName, map: AccessMap): Promise<Subject | null> {
  const p = ctx.probe;
  switch (name) {
    case 'check_client_access': {
      // A cidr table only answers the address: do not ask DNS for a name it cannot use.
      const host = map.type === 'cidr' ? undefined : await clientNameForAccess(ctx);
      const replyKey = async () => {
        const name = host === undefined ? await clientNameForAccess(ctx) : host;
        return `<${name ?? 'unknown'}[${p.clientIp}]>`;
      };
      return { keys: clientKeys(host ?? null, p.clientIp), replyKey, cls: 'Client host' };
    }
    case 'check_helo_access': {
      if (p.helo === null) return null;
      const helo = p.helo;
      return { keys: heloKeys(helo), replyKey: async () => `<${helo}>`, cls: 'Helo command' };
    }
    case 'check_sender_access': {
      const s = p.sender;
      if (!s) return null;
      return { keys: addressKeys(s, p.recipientDelimiter), replyKey: async () => addressKey(s), cls: 'Sender address' };
    }
    default: {
      const r = recipientOf(p, name);
      return { keys: addressKeys(r, p.recipientDelimiter), replyKey: async () => addressKey(r), cls: 'Recipient address' };
    }
  }
}

async function checkAccess(ctx: PostfixContext, name: RestrictionName, spec: string): Promise<LegacyDecision> {
  const map = await ctx.loadMap(spec);
  const subject = await subjectOf(ctx, name, map);
  if (!subject) return NEXT;
  const hit = lookupFirst(map, subject.keys);
  if (!hit) return NEXT;
  const action = parseAction(hit.action);
  if ('error' in action) throw new RestrictionError(`${name}: ${map.file}:${hit.line}: ${action.error}`);
  const decision = await applyAction(ctx, action, subject, hit.key);
  return { ...decision, matched: { file: map.file, line: hit.line } };
}

// ------------------------------------------------------------------ actions

export type AccessAction =
  | { t: 'ok' }
  | { t: 'dunno' }
  | { t: 'reject' | 'defer'; text: string | null }
  | { t: 'code'; code: number; text: string | null }
  | { t: 'hold' | 'discard'; text: string | null }
  | { t: 'warn' | 'info'; text: string | null }
  | { t: 'prepend'; name: string; value: string }
  | { t: 'restrictions'; list: Array<{ name: RestrictionName; args: string[] }> };

/** Parses an access-map action (case-insensitive words, as in Postfix). */
export function parseAction(text: string): AccessAction | { error: string } {
  const s = text.trim();
  const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(s);
  if (!m) return { error: 'empty action' };
  const word = m[1]!;
  const rest = m[2]?.trim() || null;
  const upper = word.toUpperCase();
  if (upper === 'OK') {
    if (rest !== null) return { error: 'unexpected text after OK' };
    return { t: 'ok' };
  }
  // All digits is OK (pop-before-smtp style), except a bare 4NN/5NN: that reads as a refusal.
  if (/^\d+$/.test(s) && !/^[45]\d\d$/.test(s)) return { t: 'ok' };
  if (/^\d{3}$/.test(word)) {
    const code = Number(word);
    if (code < 400 || code > 599) return { error: `reply code ${word} must be 4xx or 5xx` };
    return { t: 'code', code, text: rest };
  }
  switch (upper) {
    case 'DUNNO':
      if (rest !== null) return { error: 'unexpected text after DUNNO' };
      return { t: 'dunno' };
    case 'REJECT':
      return { t: 'reject', text: rest };
    case 'DEFER':
      return { t: 'defer', text: rest };
    case 'HOLD':
      return { t: 'hold', text: rest };
    case 'DISCARD':
      return { t: 'discard', text: rest };
    case 'WARN':
      return { t: 'warn', text: rest };
    case 'INFO':
      return { t: 'info', text: rest };
    case 'PREPEND': {
      const h = /^([\x21-\x39\x3b-\x7e]+):[ \t]*(.*)$/.exec(rest ?? '');
      if (!h) return { error: "PREPEND needs 'Name: value'" };
      if (/[\r\n]/.test(h[2]!)) return { error: 'PREPEND value contains a line break' };
      return { t: 'prepend', name: h[1]!, value: h[2]! };
    }
  }
  // A list of restrictions, with their arguments: `permit_mynetworks, reject_rbl_client zone`.
  const words = s.split(/[\s,]+/).filter((w) => w !== '');
  const list: Array<{ name: RestrictionName; args: string[] }> = [];
  for (let i = 0; i < words.length; i++) {
    const n = words[i]!.toLowerCase().replace(/^postfix::/, '');
    if (!isRestrictionName(n)) {
      return { error: `unknown action '${words[i]}' (expected OK, DUNNO, REJECT, DEFER, 4NN/5NN text, HOLD, DISCARD, WARN, INFO, PREPEND or a postfix:: restriction)` };
    }
    const want = RESTRICTIONS[n].mapArgs;
    const args = words.slice(i + 1, i + 1 + want);
    if (args.length < want) return { error: `${n} needs an argument` };
    list.push({ name: n, args });
    i += want;
  }
  return { t: 'restrictions', list };
}

export const checkAction: ActionChecker = (action) => {
  const r = parseAction(action);
  return 'error' in r ? r.error : null;
};

/** `<code> <enhanced> <key>: <Class> rejected: <text>`; an enhanced code leading the text is used (class aligned), else `<class>.7.1`. */
function mapReply(code: number, key: string, cls: string, text: string | null): string {
  const cc = String(code)[0]!;
  let enhanced = `${cc}.7.1`;
  let body = text ?? '';
  const e = /^[245]\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(body);
  if (e) {
    enhanced = `${cc}.${e[1]}.${e[2]}`;
    body = body.slice(e[0].length);
  }
  return `${code} ${enhanced} ${key}: ${cls} rejected: ${body === '' ? 'Access denied' : body}`;
}

async function applyAction(ctx: PostfixContext, action: AccessAction, subject: Subject, lookupKey: string): Promise<LegacyDecision> {
  const p = ctx.probe;
  const context = {
    client: p.clientIp,
    helo: p.helo ?? undefined,
    from: p.sender ? addressText(p.sender) : undefined,
    to: p.recipient ? addressText(p.recipient) : undefined,
    key: lookupKey,
  };
  switch (action.t) {
    case 'ok':
      return ACCEPT;
    case 'dunno':
      return NEXT;
    case 'reject':
      return refuse(mapReply(554, await subject.replyKey(), subject.cls, action.text));
    case 'defer':
      return refuse(mapReply(450, await subject.replyKey(), subject.cls, action.text));
    case 'code':
      return refuse(mapReply(action.code, await subject.replyKey(), subject.cls, action.text));
    case 'hold':
    case 'discard':
      ctx.log.info({ ...context, reason: action.text ?? undefined }, `access map ${action.t.toUpperCase()}`);
      return { kind: 'quarantine', quarantine: action.t };
    case 'warn':
      ctx.log.warn(context, `access map WARN: ${action.text ?? ''}`.trimEnd());
      return NEXT;
    case 'info':
      ctx.log.info(context, `access map INFO: ${action.text ?? ''}`.trimEnd());
      return NEXT;
    case 'prepend':
      ctx.addHeader({ name: action.name, value: action.value });
      return NEXT;
    case 'restrictions': {
      const depth = (ctx.depth ?? 0) + 1;
      if (depth > MAX_DEPTH) throw new RestrictionError(`access map actions nest more than ${MAX_DEPTH} deep (a map naming itself?)`);
      for (const r of action.list) {
        const spec = RESTRICTIONS[r.name];
        if (stageIndex(ctx.stage) < stageIndex(spec.from)) {
          throw new RestrictionError(`E_TOO_EARLY: postfix::${r.name} is available from stage ${spec.from} (called in ${ctx.stage})`);
        }
        const d = await runRestriction({ ...ctx, depth }, r.name, r.args.length > 0 ? r.args : undefined);
        if (d.kind !== 'next') return d;
      }
      return NEXT;
    }
  }
}
