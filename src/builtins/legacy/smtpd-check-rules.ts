// Obtuse smtpd `smtpd_check_rules` files (SPEC §8.3), as e-smith shipped
// them: `action:Sources:Froms:Tos[:message]`, first matching line decides.
//
// Parsing builds a validated table with a diagnostic per malformed line;
// matching walks it against the client and the envelope. DNS is asked only
// when a line needs it (KNOWN/UNKNOWN, name patterns, RBL., NS=, %H), through
// LegacyLookups.
//
// Decisions this file takes where SPEC is silent (each fails closed):
// - A message cannot contain a raw `:` (it is written `%C`), so a sixth field
//   is "text after the message" and must be a `#` comment. List fields may
//   hold `/regex/` (which may contain `:` `,` and spaces) and bracketed IPv6
//   `[2001:db8::]/32`; colons inside those do not split fields.
// - Keywords (ALL KNOWN UNKNOWN TRUSTED UNTRUSTED EXCEPT USER, RBL., NS=) are
//   case-insensitive, so a lower-case `except` cannot silently become a host
//   pattern that widens an allow line.
// - Addresses are matched as the client wrote them (source route, quotes and
//   `%`/`!` kept), as Obtuse saw them; the e-smith "two @s", `%` hack and bang
//   path lines exist to catch exactly those forms.
// - A message that does not start with a 4xx/5xx code becomes
//   `550 Recipient not allowed` (with a warning). Replies are sent as
//   written: no enhanced status code is added, so migrated texts stay
//   verbatim. In %F an empty (null) sender reads `<>`.
// - A dotted-number source that is not a whole address (`192.168.1.`) is an
//   error rather than a pattern that can never match.

import type { Logger } from 'pino';
import type { Clock } from '../../host/ports.js';
import { cidrContainsIp, makeCidr4, parseCidr6, parseIPv4, parseIPv6, parseIp, type Cidr } from '../../vsl/values/net.js';
import type { LegacyDecision } from './decision.js';
import { DiagnosticSink, columnOf, splitLines, type Parsed } from './diagnostics.js';
import { compileGlob, globMatch, type Glob } from './glob.js';
import { reverseZoneName, type LegacyLookups } from './lookups.js';
import { addressAsReceived, isTrustedClient, type LegacyProbe } from './probe.js';
import { compileLinearRegex, type LinearRegex } from './linear-regex.js';

export type RuleAction = 'allow' | 'deny' | 'noto' | 'deny_delay' | 'noto_delay' | 'debug';
const ACTIONS: ReadonlySet<string> = new Set(['allow', 'deny', 'noto', 'deny_delay', 'noto_delay', 'debug']);

export const DEFAULT_MESSAGE = '550 Mail from %F to %T prohibited from your location (%U@%H ip=%I)';
export const INVALID_MESSAGE_REPLY = '550 Recipient not allowed';
export const MAX_LINE_BYTES = 1024;
export const MAX_REPLY_BYTES = 512;

/** What a host pattern (a source, or the part after `NS=`) matches. */
export type HostPattern =
  | { t: 'known' }
  | { t: 'unknown' }
  | { t: 'net'; cidr: Cidr }
  | { t: 'ipglob'; glob: Glob }
  | { t: 'name'; glob: Glob }
  | { t: 'regex'; re: LinearRegex };

export type SourceItem =
  | { t: 'all' }
  | { t: 'trusted' }
  | { t: 'untrusted' }
  | { t: 'rbl'; zone: string }
  | { t: 'ns'; host: HostPattern }
  | { t: 'ident'; text: string }
  | HostPattern;

export type LocalPattern = { t: 'any' } | { t: 'ident' } | { t: 'glob'; glob: Glob };
export type DomainPattern = { t: 'any' } | { t: 'glob'; glob: Glob } | { t: 'ns'; host: HostPattern };

export type AddressItem =
  | { t: 'all' }
  | { t: 'regex'; re: LinearRegex }
  | { t: 'whole'; glob: Glob }
  | { t: 'ns'; host: HostPattern }
  | { t: 'split'; local: LocalPattern; domain: DomainPattern; text: string };

/** `A B EXCEPT C D …`: matches when an item matches and the exception list does not. */
export interface ItemList<T> {
  items: T[];
  except: ItemList<T> | null;
}

export interface RuleLine {
  line: number;
  action: RuleAction;
  sources: ItemList<SourceItem>;
  froms: ItemList<AddressItem>;
  tos: ItemList<AddressItem>;
  /** Reply template (code already checked); null means DEFAULT_MESSAGE. */
  message: string | null;
}

export interface SmtpdRules {
  file: string;
  rules: RuleLine[];
}

// ------------------------------------------------------------------ parsing

interface Piece {
  text: string;
  /** UTF-16 index in the line. */
  at: number;
}

const isSep = (c: string): boolean => c === ' ' || c === ',' || c === '\t';

/** Index just after the `/regex/` starting at `i` (escapes and classes respected), or -1 when unterminated. */
function regexEnd(s: string, i: number): number {
  let inClass = false;
  for (let j = i + 1; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') j++;
    else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') inClass = true;
    else if (c === '/') return j + 1;
  }
  return -1;
}

/**
 * Splits a rule line into its four list fields (colons inside `/regex/` and
 * `[ipv6]` tokens do not count), the message, and what follows the message.
 */
function splitRuleLine(line: string): { fields: Piece[]; message: Piece | null; trailing: Piece | null } {
  const fields: Piece[] = [];
  let start = 0;
  let tokenStart = true;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (tokenStart && fields.length >= 1 && (c === '/' || c === '[')) {
      // An unterminated one is left to the token parser to report.
      const end = c === '/' ? regexEnd(line, i) : line.indexOf(']', i) + 1;
      i = end > 0 ? end : i + 1;
      tokenStart = false;
      continue;
    }
    if (c === ':') {
      fields.push({ text: line.slice(start, i), at: start });
      start = i + 1;
      tokenStart = true;
      i++;
      if (fields.length === 4) {
        const colon = line.indexOf(':', start);
        if (colon < 0) return { fields, message: { text: line.slice(start), at: start }, trailing: null };
        return {
          fields,
          message: { text: line.slice(start, colon), at: start },
          trailing: { text: line.slice(colon + 1), at: colon + 1 },
        };
      }
      continue;
    }
    tokenStart = isSep(c);
    i++;
  }
  fields.push({ text: line.slice(start), at: start });
  return { fields, message: null, trailing: null };
}

/** Splits a list field into tokens on spaces, commas and tabs; `/regex/` and `[…]` stay whole. */
function tokenize(field: Piece): Piece[] {
  const out: Piece[] = [];
  const s = field.text;
  let i = 0;
  while (i < s.length) {
    if (isSep(s[i]!)) {
      i++;
      continue;
    }
    const begin = i;
    if (s[i] === '/') {
      const end = regexEnd(s, i);
      i = end > 0 ? end : s.length;
    } else if (s[i] === '[') {
      const end = s.indexOf(']', i);
      i = end >= 0 ? end + 1 : s.length;
    }
    while (i < s.length && !isSep(s[i]!)) i++;
    out.push({ text: s.slice(begin, i), at: field.at + begin });
  }
  return out;
}

/** `/source/` as a case-insensitive regex; an error message when invalid. */
function parseRegex(tok: string): LinearRegex | string {
  if (tok.length < 2 || !tok.endsWith('/') || regexEnd(tok, 0) !== tok.length) {
    return `unterminated regular expression '${tok}'`;
  }
  // Matched in linear time (linear-regex.ts); backtracking-only syntax is refused here.
  return compileLinearRegex(tok.slice(1, -1), 'i');
}

/** A possibly abbreviated IPv4 network (`0/0`, `10/8`, `192.168/16`, `10.0.0.0/255.0.0.0`). */
function parseShortCidr4(tok: string): Cidr | string {
  const [addr, len] = tok.split('/') as [string, string];
  const octets = addr.split('.');
  if (octets.length > 4 || octets.some((o) => !/^\d{1,3}$/.test(o) || Number(o) > 255)) {
    return `invalid network '${tok}'`;
  }
  while (octets.length < 4) octets.push('0');
  const base = parseIPv4(octets.map((o) => String(Number(o))).join('.'))!;
  let bits: number;
  if (len.includes('.')) {
    const mask = parseIPv4(len);
    // A netmask must be contiguous ones then zeros.
    const inv = mask === null ? 1 : ~mask >>> 0;
    if (mask === null || (inv & (inv + 1)) !== 0) return `invalid netmask in '${tok}'`;
    bits = 32 - Math.log2(inv + 1);
  } else {
    if (!/^\d{1,2}$/.test(len) || Number(len) > 32) return `invalid prefix length in '${tok}'`;
    bits = Number(len);
  }
  return makeCidr4(base, bits);
}

type Parse<T> = { ok: T; warning?: string } | { error: string };

/** A host pattern: an IP, a network, an IP glob, a name glob, `/regex/`, or KNOWN/UNKNOWN after `NS=`. */
function parseHostPattern(tok: string, allowKnown: boolean): Parse<HostPattern> {
  const u = tok.toUpperCase();
  if (allowKnown && u === 'KNOWN') return { ok: { t: 'known' } };
  if (allowKnown && u === 'UNKNOWN') return { ok: { t: 'unknown' } };
  if (tok.startsWith('/')) {
    const re = parseRegex(tok);
    return typeof re === 'string' ? { error: re } : { ok: { t: 'regex', re } };
  }
  if (tok.startsWith('[')) {
    // Bracketed IPv6: `[2001:db8::1]`, `[2001:db8::]/32` or `[2001:db8::/32]`.
    const m = /^\[([^\]]+)\](?:\/(\d{1,3}))?$/.exec(tok);
    const inner = m ? (m[2] !== undefined ? `${m[1]}/${m[2]}` : m[1]!) : '';
    const cidr = inner.includes('/') ? parseCidr6(inner) : parseIPv6(inner) !== null ? parseCidr6(`${inner}/128`) : null;
    if (!cidr) return { error: `invalid IPv6 address or network '${tok}'` };
    return hostBits({ t: 'net', cidr }, tok);
  }
  if (/^[0-9.]+\/[0-9.]+$/.test(tok)) {
    const cidr = parseShortCidr4(tok);
    return typeof cidr === 'string' ? { error: cidr } : hostBits({ t: 'net', cidr }, tok);
  }
  if (/^[0-9.]+$/.test(tok)) {
    const n = parseIPv4(tok);
    if (n !== null) return { ok: { t: 'net', cidr: makeCidr4(n, 32) } };
    if (tok.endsWith('.')) return { error: `incomplete IP address '${tok}' (write ${tok}* or a network like ${tok}0/24)` };
    return { error: `invalid IP address '${tok}'` };
  }
  if (/^[0-9.*?]+$/.test(tok)) return { ok: { t: 'ipglob', glob: compileGlob(tok) } };
  if (/^[A-Za-z0-9.*?_-]+$/.test(tok)) return { ok: { t: 'name', glob: compileGlob(tok.replace(/\.$/, '')) } };
  return { error: `invalid host pattern '${tok}'` };
}

function hostBits(p: { t: 'net'; cidr: Cidr }, tok: string): Parse<HostPattern> {
  return p.cidr.hostBitsSet ? { ok: p, warning: `network '${tok}' has host bits set; they are ignored` } : { ok: p };
}

function parseSource(tok: string): Parse<SourceItem> {
  const u = tok.toUpperCase();
  switch (u) {
    case 'ALL':
      return { ok: { t: 'all' } };
    case 'KNOWN':
      return { ok: { t: 'known' } };
    case 'UNKNOWN':
      return { ok: { t: 'unknown' } };
    case 'TRUSTED':
      return { ok: { t: 'trusted' } };
    case 'UNTRUSTED':
      return { ok: { t: 'untrusted' } };
  }
  if (u.startsWith('RBL.')) {
    const zone = tok.slice(4);
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+(=\d{1,3}(\.\d{1,3}){3})?$/.test(zone)) {
      return { error: `invalid DNSBL zone '${zone}' in '${tok}'` };
    }
    return { ok: { t: 'rbl', zone: zone.toLowerCase() } };
  }
  if (u.startsWith('NS=')) {
    const host = parseHostPattern(tok.slice(3), true);
    return 'error' in host ? host : { ok: { t: 'ns', host: host.ok }, ...(host.warning ? { warning: host.warning } : {}) };
  }
  if (!tok.startsWith('/') && tok.includes('@')) return { ok: { t: 'ident', text: tok } };
  return parseHostPattern(tok, false);
}

const SOURCE_ONLY = new Set(['KNOWN', 'UNKNOWN', 'TRUSTED', 'UNTRUSTED']);

function parseAddress(tok: string): Parse<AddressItem> {
  const u = tok.toUpperCase();
  if (u === 'ALL') return { ok: { t: 'all' } };
  if (tok.startsWith('/')) {
    const re = parseRegex(tok);
    return typeof re === 'string' ? { error: re } : { ok: { t: 'regex', re } };
  }
  if (SOURCE_ONLY.has(u) || u.startsWith('RBL.')) return { error: `'${tok}' is only valid in the source list` };
  if (u.startsWith('NS=')) {
    const host = parseHostPattern(tok.slice(3), true);
    return 'error' in host ? host : { ok: { t: 'ns', host: host.ok } };
  }
  const at = tok.lastIndexOf('@');
  if (at < 0) return { ok: { t: 'whole', glob: compileGlob(tok) } };
  const lp = tok.slice(0, at);
  const dp = tok.slice(at + 1);
  if (lp === '' || dp === '') return { error: `incomplete address pattern '${tok}' (write ALL@domain or user@ALL)` };
  let local: LocalPattern;
  if (lp.toUpperCase() === 'ALL') local = { t: 'any' };
  else if (lp.toUpperCase() === 'USER') local = { t: 'ident' };
  else local = { t: 'glob', glob: compileGlob(lp) };
  let domain: DomainPattern;
  if (dp.toUpperCase() === 'ALL') domain = { t: 'any' };
  else if (dp.toUpperCase().startsWith('NS=')) {
    const host = parseHostPattern(dp.slice(3), true);
    if ('error' in host) return host;
    domain = { t: 'ns', host: host.ok };
  } else domain = { t: 'glob', glob: compileGlob(dp) };
  return { ok: { t: 'split', local, domain, text: tok } };
}

function parseList<T>(
  tokens: Piece[],
  parseItem: (tok: string) => Parse<T>,
  what: string,
  field: Piece,
  lineNo: number,
  line: string,
  sink: DiagnosticSink,
): ItemList<T> | null {
  const k = tokens.findIndex((t) => t.text.toUpperCase() === 'EXCEPT');
  const head = k < 0 ? tokens : tokens.slice(0, k);
  if (head.length === 0) {
    const at = k < 0 ? field.at : tokens[k]!.at;
    sink.error(lineNo, columnOf(line, at), k < 0 ? `empty ${what} list` : `EXCEPT without items before it in the ${what} list`);
    return null;
  }
  let ok = true;
  const items: T[] = [];
  for (const tok of head) {
    const r = parseItem(tok.text);
    if ('error' in r) {
      sink.error(lineNo, columnOf(line, tok.at), r.error);
      ok = false;
    } else {
      if (r.warning) sink.warning(lineNo, columnOf(line, tok.at), r.warning);
      items.push(r.ok);
    }
  }
  let except: ItemList<T> | null = null;
  if (k >= 0) {
    const rest = tokens.slice(k + 1);
    if (rest.length === 0) {
      sink.error(lineNo, columnOf(line, tokens[k]!.at), `EXCEPT without items after it in the ${what} list`);
      return null;
    }
    except = parseList(rest, parseItem, what, field, lineNo, line, sink);
    if (except === null) ok = false;
  }
  return ok ? { items, except } : null;
}

/** Parses a whole smtpd_check_rules file. Every malformed line gives a diagnostic; good lines are kept. */
export function parseSmtpdCheckRules(text: string, file: string): Parsed<SmtpdRules> {
  const sink = new DiagnosticSink(file);
  const rules: RuleLine[] = [];
  const lines = splitLines(text);
  lines.forEach((line, idx) => {
    const lineNo = idx + 1;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const bytes = Buffer.byteLength(line, 'utf8');
    if (bytes >= MAX_LINE_BYTES) {
      sink.error(lineNo, 1, `line is ${bytes} bytes long; lines must be shorter than ${MAX_LINE_BYTES} bytes`);
      return;
    }
    const { fields, message, trailing } = splitRuleLine(line);
    if (fields.length < 4) {
      sink.error(lineNo, 1, `expected action:sources:froms:tos[:message], found ${fields.length} field${fields.length === 1 ? '' : 's'}`);
      return;
    }
    const actionText = fields[0]!.text.trim().toLowerCase();
    if (!ACTIONS.has(actionText)) {
      sink.error(lineNo, columnOf(line, fields[0]!.at), `unknown action '${fields[0]!.text.trim()}' (expected allow, deny, noto, deny_delay, noto_delay or debug)`);
      return;
    }
    const action = actionText as RuleAction;
    let reply: string | null = null;
    if (message && !message.text.trim().startsWith('#')) {
      if (trailing && !trailing.text.trimStart().startsWith('#')) {
        sink.error(lineNo, columnOf(line, trailing.at), "text after the message must be a # comment (write ':' in a message as %C)");
        return;
      }
      const m = message.text.trim();
      if (m !== '') {
        if (/^[45]\d\d(?=[ -]|$)/.test(m)) reply = m;
        else {
          reply = INVALID_MESSAGE_REPLY;
          if (action !== 'allow' && action !== 'debug') {
            sink.warning(lineNo, columnOf(line, message.at), `message does not start with a 4xx or 5xx code; the reply will be '${INVALID_MESSAGE_REPLY}'`);
          }
        }
      }
    }
    const sources = parseList(tokenize(fields[1]!), parseSource, 'source', fields[1]!, lineNo, line, sink);
    const froms = parseList(tokenize(fields[2]!), parseAddress, 'from', fields[2]!, lineNo, line, sink);
    const tos = parseList(tokenize(fields[3]!), parseAddress, 'to', fields[3]!, lineNo, line, sink);
    if (!sources || !froms || !tos) return;
    rules.push({ line: lineNo, action, sources, froms, tos, message: reply });
  });
  return { value: { file, rules }, diagnostics: sink.list };
}

// ------------------------------------------------------------------ matching

/** The envelope and client as smtpd_check_rules sees them. */
export interface SmtpdCheckInput {
  clientIp: string;
  /** The client is in server.relay_networks. */
  trusted: boolean;
  /** As received; the null sender is `""`. */
  sender: string;
  recipient: string;
}

export function smtpdInputFromProbe(probe: LegacyProbe): SmtpdCheckInput {
  return {
    clientIp: probe.clientIp,
    trusted: isTrustedClient(probe),
    sender: probe.sender ? addressAsReceived(probe.sender) : '',
    recipient: probe.recipient ? addressAsReceived(probe.recipient) : '',
  };
}

export interface SmtpdCheckRuntime {
  lookups: LegacyLookups;
  clock: Clock;
  log: Logger;
  notoDelayMs: number;
  denyDelayMs: number;
}

export const DEFAULT_DELAY_MS = 10_000;

class Matcher {
  constructor(
    private readonly input: SmtpdCheckInput,
    private readonly rt: SmtpdCheckRuntime,
    private readonly file: string,
  ) {}

  private line = 0;

  async list<T>(list: ItemList<T>, one: (item: T) => Promise<boolean>): Promise<boolean> {
    let hit = false;
    for (const item of list.items) {
      if (await one(item)) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
    return list.except === null ? true : !(await this.list(list.except, one));
  }

  /** Matches a host pattern against the client: its forward-confirmed name and its IP. */
  async client(p: HostPattern): Promise<boolean> {
    const ip = parseIp(this.input.clientIp);
    switch (p.t) {
      case 'known':
        return (await this.rt.lookups.clientName()) !== null;
      case 'unknown':
        return (await this.rt.lookups.clientName()) === null;
      case 'net':
        return ip !== null && cidrContainsIp(p.cidr, ip);
      case 'ipglob':
        return globMatch(p.glob, this.input.clientIp);
      case 'name': {
        const name = await this.rt.lookups.clientName();
        return name !== null && globMatch(p.glob, name);
      }
      case 'regex': {
        const name = await this.rt.lookups.clientName();
        return (name !== null && p.re.test(name)) || p.re.test(this.input.clientIp);
      }
    }
  }

  /** Matches a host pattern against a list of NS/MX hosts, by name or by address. */
  async hosts(p: HostPattern, hosts: string[]): Promise<boolean> {
    switch (p.t) {
      case 'known':
        return hosts.length > 0;
      case 'unknown':
        return hosts.length === 0;
      case 'name':
        return hosts.some((h) => globMatch(p.glob, h));
      default:
        break;
    }
    if (p.t === 'regex' && hosts.some((h) => p.re.test(h))) return true;
    for (const h of hosts) {
      for (const a of await this.rt.lookups.hostAddresses(h)) {
        const ip = parseIp(a);
        if (p.t === 'net' && ip !== null && cidrContainsIp(p.cidr, ip)) return true;
        if (p.t === 'ipglob' && globMatch(p.glob, a)) return true;
        if (p.t === 'regex' && p.re.test(a)) return true;
      }
    }
    return false;
  }

  private async nsOf(domain: string): Promise<string[]> {
    // Address literals have no NS or MX.
    if (domain === '' || domain.startsWith('[')) return [];
    return this.rt.lookups.nsMxHosts(domain.toLowerCase());
  }

  private identUnsupported(text: string): false {
    this.rt.log.debug({ file: this.file, line: this.line, item: text }, 'smtpd_check_rules: ident items are not supported and never match');
    return false;
  }

  source = async (s: SourceItem): Promise<boolean> => {
    switch (s.t) {
      case 'all':
        return true;
      case 'trusted':
        return this.input.trusted;
      case 'untrusted':
        return !this.input.trusted;
      case 'rbl':
        return this.rt.lookups.dnsblListed(s.zone, this.input.clientIp);
      case 'ns': {
        const name = await this.rt.lookups.clientName();
        // Without a name, the hosts serving the client's reverse zone.
        const zone = name ?? reverseZoneName(this.input.clientIp) ?? '';
        return this.hosts(s.host, zone === '' ? [] : await this.rt.lookups.nsMxHosts(zone));
      }
      case 'ident':
        return this.identUnsupported(s.text);
      default:
        return this.client(s);
    }
  };

  address(text: string): (a: AddressItem) => Promise<boolean> {
    return async (a) => {
      switch (a.t) {
        case 'all':
          return true;
        case 'regex':
          return a.re.test(text);
        case 'whole':
          return globMatch(a.glob, text);
        case 'ns': {
          const at = text.lastIndexOf('@');
          return at >= 0 && this.hosts(a.host, await this.nsOf(text.slice(at + 1)));
        }
        case 'split': {
          const at = text.lastIndexOf('@');
          if (at < 0) return false;
          const local = text.slice(0, at);
          const domain = text.slice(at + 1);
          if (a.local.t === 'ident') return this.identUnsupported(a.text);
          if (a.local.t === 'glob' && !globMatch(a.local.glob, local)) return false;
          if (a.domain.t === 'any') return true;
          if (a.domain.t === 'glob') return globMatch(a.domain.glob, domain);
          return this.hosts(a.domain.host, await this.nsOf(domain));
        }
      }
    };
  }

  async matches(rule: RuleLine): Promise<boolean> {
    this.line = rule.line;
    return (
      (await this.list(rule.sources, this.source)) &&
      (await this.list(rule.froms, this.address(this.input.sender))) &&
      (await this.list(rule.tos, this.address(this.input.recipient)))
    );
  }
}

/** Cuts a string to at most `max` UTF-8 bytes without splitting a character. */
function truncateBytes(s: string, max: number): string {
  if (Buffer.byteLength(s, 'utf8') <= max) return s;
  let out = '';
  let n = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch, 'utf8');
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return out;
}

/** Expands %F %T %H %I %U %C %% in a reply template (%H asks DNS only when present). */
export async function expandMessage(template: string, input: SmtpdCheckInput, lookups: LegacyLookups): Promise<string> {
  const name = /%H/.test(template) ? await lookups.clientName() : null;
  const out = template.replace(/%([FTHIUC%])/g, (_m, c: string) => {
    switch (c) {
      case 'F':
        return input.sender === '' ? '<>' : input.sender;
      case 'T':
        return input.recipient;
      case 'H':
        return name ?? 'unknown';
      case 'I':
        return input.clientIp;
      case 'U':
        return 'unknown';
      case 'C':
        return ':';
      default:
        return '%';
    }
  });
  return truncateBytes(out, MAX_REPLY_BYTES);
}

/**
 * Runs the rules for one recipient: the first line whose three lists match
 * decides; `debug` lines are logged and skipped; no match gives `next`.
 * Delays are waited here, through the runtime's clock.
 */
export async function evaluateSmtpdCheckRules(
  table: SmtpdRules,
  input: SmtpdCheckInput,
  rt: SmtpdCheckRuntime,
): Promise<LegacyDecision> {
  const m = new Matcher(input, rt, table.file);
  for (const rule of table.rules) {
    if (!(await m.matches(rule))) continue;
    const matched = { file: table.file, line: rule.line };
    switch (rule.action) {
      case 'debug':
        rt.log.info({ file: table.file, line: rule.line, client_ip: input.clientIp, sender: input.sender, recipient: input.recipient }, `smtpd_check_rules: debug line ${rule.line} matched`);
        continue;
      case 'allow':
        return { kind: 'accept', matched };
      default: {
        const reply = await expandMessage(rule.message ?? DEFAULT_MESSAGE, input, rt.lookups);
        const kind = rule.action.startsWith('deny') ? 'deny' : 'reject';
        if (rule.action.endsWith('_delay')) {
          const delayMs = kind === 'deny' ? rt.denyDelayMs : rt.notoDelayMs;
          await rt.clock.sleep(delayMs);
          return { kind, reply, delayMs, matched };
        }
        return { kind, reply, matched };
      }
    }
  }
  return { kind: 'next' };
}
