// SMTP paths and mailboxes (SPEC §4.4; RFC 5321 §4.1.2, RFC 6531 §3.3).
// One parser for the SMTP front (MAIL FROM / RCPT TO) and for the script
// constructor `address()`, so rules see exactly the addresses the server
// accepted. Pure: IDN conversion goes through platform().

import type { MailAddress } from '../../mail/types.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './net.js';
import { platform, platformGeneration } from './platform.js';

export { normalizeIp } from './net.js';

/** Replies of SPEC §4.4, as sent. */
export const PATH_REPLY = {
  badRecipient: '501 5.1.3 Bad recipient address syntax',
  badSender: '501 5.1.7 Bad sender address syntax',
  relayDenied: '554 5.7.1 Relay access denied',
  nonAscii: '553 5.6.7 Non-ASCII address requires SMTPUTF8',
  badParameters: '501 5.5.4 Syntax error in parameters',
} as const;

export interface PathOptions {
  kind: 'mail' | 'rcpt';
  /** The client gave SMTPUTF8 on MAIL: non-ASCII local parts and U-label domains are allowed. */
  smtputf8: boolean;
  /** server.domain, for `RCPT TO:<postmaster>`. */
  serverDomain: string;
}

export type PathResult = { ok: true; address: MailAddress } | { ok: false; reply: string };

// ---------------------------------------------------------------- characters

/** RFC 5322 atext without ALPHA/DIGIT. */
const ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~";

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/**
 * Non-ASCII characters allowed in an SMTPUTF8 path: anything but C1 controls
 * and lone surrogates (which no UTF-8 input can produce).
 */
function isAllowedNonAscii(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c <= 0x9f) return false;
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = s.charCodeAt(i + 1);
    return d >= 0xdc00 && d <= 0xdfff;
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const p = s.charCodeAt(i - 1);
    return p >= 0xd800 && p <= 0xdbff;
  }
  return true;
}

function isAtext(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  if (c >= 0x80) return isAllowedNonAscii(s, i);
  return isAsciiAlnum(c) || ATEXT_SPECIALS.indexOf(s[i]!) >= 0;
}

function hasNonAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return true;
  return false;
}

/** RFC 5321 Dot-string (with RFC 6531 UTF-8): atoms of atext joined by single dots. */
export function isDotString(s: string): boolean {
  if (s.length === 0 || s[0] === '.' || s[s.length - 1] === '.') return false;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '.') {
      if (s[i + 1] === '.') return false;
    } else if (!isAtext(s, i)) return false;
  }
  return true;
}

/** A local part as it is used: unquoted when it can be, else quoted with `"` and `\` escaped. */
export function canonicalLocalPart(content: string): string {
  if (isDotString(content)) return content;
  return `"${content.replace(/[\\"]/g, (m) => `\\${m}`)}"`;
}

// ---------------------------------------------------------------- domains

function isLdhLabel(l: string): boolean {
  if (l.length < 1 || l.length > 63) return false;
  if (l[0] === '-' || l[l.length - 1] === '-') return false;
  for (let i = 0; i < l.length; i++) {
    const c = l.charCodeAt(i);
    if (!isAsciiAlnum(c) && c !== 45) return false;
  }
  return true;
}

/**
 * The canonical form of a domain name: lower-case A-labels, validated as LDH
 * labels of 1–63 characters, at most 253 in all, the last label not all
 * digits (so nothing reads as an IPv4 address). A trailing dot is invalid
 * here (callers that allow it strip it first). Null when invalid or when IDN
 * conversion fails.
 */
/** Recent answers of canonicalDomain: every locality test and fqdn comparison canonicalises. */
const canonicalMemo = new Map<string, string | null>();
let memoGeneration = -1;

export function canonicalDomain(s: string): string | null {
  // IDN answers depend on the platform: a new one invalidates the memo.
  if (memoGeneration !== platformGeneration()) {
    canonicalMemo.clear();
    memoGeneration = platformGeneration();
  }
  let d = canonicalMemo.get(s);
  if (d === undefined) {
    d = canonicalDomainOf(s);
    if (canonicalMemo.size >= 1024) canonicalMemo.clear();
    canonicalMemo.set(s, d);
  }
  return d;
}

function canonicalDomainOf(s: string): string | null {
  if (s.length === 0 || s.length > 1024) return null;
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      if (!isAllowedNonAscii(s, i)) return null;
      ascii = false;
    } else if (!isAsciiAlnum(c) && c !== 45 && c !== 46) {
      // Refused before IDN conversion: WHATWG-style converters percent-decode.
      return null;
    }
  }
  let d: string;
  if (ascii) d = s.toLowerCase();
  else {
    try {
      d = platform().toASCII(s).toLowerCase();
    } catch {
      return null;
    }
  }
  if (d.length > 253) return null;
  const labels = d.split('.');
  for (const l of labels) if (!isLdhLabel(l)) return null;
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return null;
  return d;
}

/** `[192.0.2.1]` or `[IPv6:…]` in canonical form (tag spelled `IPv6`, RFC 5952 address); null otherwise. */
export function canonicalAddressLiteral(s: string): string | null {
  if (s.length < 3 || s[0] !== '[' || s[s.length - 1] !== ']') return null;
  const inner = s.slice(1, -1);
  if (/^ipv6:/i.test(inner)) {
    const n = parseIPv6(inner.slice(5));
    return n === null ? null : `[IPv6:${formatIPv6(n)}]`;
  }
  const n = parseIPv4(inner);
  return n === null ? null : `[${formatIPv4(n)}]`;
}

/** The domain part of a mailbox: a canonical domain or address literal; null if invalid. */
function canonicalMailDomain(s: string): string | null {
  return s[0] === '[' ? canonicalAddressLiteral(s) : canonicalDomain(s);
}

// ---------------------------------------------------------------- paths

type Scanned =
  | { ok: true; content: string; domain: string | null }
  | { ok: false };

const BAD: Scanned = { ok: false };

/** Skips an RFC 5321 A-d-l (`@a,@b:`) at the start; returns the index after `:`, or -1. */
function skipSourceRoute(s: string): number {
  let i = 0;
  for (;;) {
    if (s[i] !== '@') return -1;
    i++;
    let end = i;
    if (s[end] === '[') {
      end = s.indexOf(']', end);
      if (end < 0) return -1;
      end++;
    } else {
      while (end < s.length && s[end] !== ',' && s[end] !== ':') end++;
    }
    if (canonicalMailDomain(s.slice(i, end)) === null) return -1;
    if (s[end] === ':') return end + 1;
    if (s[end] !== ',') return -1;
    i = end + 1;
  }
}

/** Splits the inside of `<…>` into the local part's content (unquoted, unescaped) and the raw domain. */
function scanMailbox(inner: string): Scanned {
  let i = 0;
  if (inner[0] === '@') {
    i = skipSourceRoute(inner);
    if (i < 0) return BAD;
  }
  let content = '';
  if (inner[i] === '"') {
    i++;
    for (;;) {
      if (i >= inner.length) return BAD;
      const ch = inner[i]!;
      const c = inner.charCodeAt(i);
      if (ch === '"') {
        i++;
        break;
      }
      if (ch === '\\') {
        const e = inner.charCodeAt(i + 1);
        if (!(e >= 32 && e <= 126)) return BAD;
        content += inner[i + 1];
        i += 2;
        continue;
      }
      if (c >= 0x80) {
        if (!isAllowedNonAscii(inner, i)) return BAD;
      } else if (c < 32 || c === 127) return BAD;
      content += ch;
      i++;
    }
    if (i < inner.length && inner[i] !== '@') return BAD;
  } else {
    const at = inner.indexOf('@', i);
    content = inner.slice(i, at < 0 ? inner.length : at);
    // Also refuses `\`, quotes, spaces, brackets and controls outside quotes.
    if (!isDotString(content)) return BAD;
    i = at < 0 ? inner.length : at;
  }
  if (content.length === 0) return BAD;
  if (i >= inner.length) return { ok: true, content, domain: null };
  const domain = inner.slice(i + 1);
  if (domain.length === 0) return BAD;
  return { ok: true, content, domain };
}

/** Whether a recipient local part asks for source routing (`@`, `%`, `!`), look-alikes included. */
export function hasRoutingCharacter(content: string): boolean {
  return /[@%!]/.test(content) || /[@%!]/.test(content.normalize('NFKC'));
}

/**
 * Parses a MAIL or RCPT path (`<…>`, the argument without its ESMTP
 * parameters; surrounding blanks ignored) per SPEC §4.4. The result's
 * `raw` is the path as given.
 */
export function parsePath(raw: string, opts: PathOptions): PathResult {
  const syntax = opts.kind === 'rcpt' ? PATH_REPLY.badRecipient : PATH_REPLY.badSender;
  const fail = (reply: string): PathResult => ({ ok: false, reply });
  const path = raw.replace(/^[ \t]+|[ \t]+$/g, '');
  if (path.length < 2 || path[0] !== '<' || path[path.length - 1] !== '>') return fail(syntax);
  const inner = path.slice(1, -1);
  if (inner.length === 0) {
    if (opts.kind === 'rcpt') return fail(syntax);
    return { ok: true, address: { local: '', domain: '', raw: path, isNull: true } };
  }
  const scanned = scanMailbox(inner);
  if (!scanned.ok) return fail(syntax);
  if (!opts.smtputf8 && hasNonAscii(inner)) return fail(PATH_REPLY.nonAscii);
  if (opts.kind === 'rcpt' && hasRoutingCharacter(scanned.content)) return fail(PATH_REPLY.relayDenied);
  const local = canonicalLocalPart(scanned.content);
  if (scanned.domain === null) {
    if (opts.kind === 'rcpt' && local.toLowerCase() === 'postmaster') {
      const domain = canonicalDomain(opts.serverDomain) ?? opts.serverDomain.toLowerCase();
      return { ok: true, address: { local: 'postmaster', domain, raw: path, isNull: false } };
    }
    return fail(syntax);
  }
  if (scanned.domain[scanned.domain.length - 1] === '.') return fail(syntax);
  const domain = canonicalMailDomain(scanned.domain);
  if (domain === null) return fail(syntax);
  return { ok: true, address: { local, domain, raw: path, isNull: false } };
}

/** Index just past the `>` closing the path at the start of `arg` (quotes respected), or -1. */
function pathEnd(arg: string): number {
  if (arg[0] !== '<') return -1;
  let quoted = false;
  for (let i = 1; i < arg.length; i++) {
    const ch = arg[i];
    if (quoted) {
      if (ch === '\\') i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '>') return i + 1;
  }
  return -1;
}

export type PathArgumentResult =
  | { ok: true; address: MailAddress; params: string }
  | { ok: false; reply: string };

/**
 * Parses the whole argument after `MAIL FROM:` / `RCPT TO:`: the path, then
 * the ESMTP parameters (returned as text, blanks trimmed, for the caller to
 * check). Junk glued to the path is `501 5.5.4 Syntax error in parameters`.
 */
export function parsePathArgument(arg: string, opts: PathOptions): PathArgumentResult {
  const s = arg.replace(/^[ \t]+|[ \t]+$/g, '');
  const end = pathEnd(s);
  if (end < 0) return { ok: false, reply: opts.kind === 'rcpt' ? PATH_REPLY.badRecipient : PATH_REPLY.badSender };
  const rest = s.slice(end);
  if (rest.length > 0 && rest[0] !== ' ') return { ok: false, reply: PATH_REPLY.badParameters };
  const r = parsePath(s.slice(0, end), opts);
  if (!r.ok) return r;
  return { ok: true, address: r.address, params: rest.replace(/^ +/, '') };
}

/**
 * A mailbox as scripts write it (`address(s)`, comparisons): `u@d` or
 * `<u@d>`; `""` and `"<>"` are the null sender. UTF-8 allowed; no
 * recipient-only checks. Null when invalid.
 */
export function parseMailbox(s: string): MailAddress | null {
  const t = s.replace(/^[ \t]+|[ \t]+$/g, '');
  if (t === '' || t === '<>') return { local: '', domain: '', raw: s, isNull: true };
  const r = parsePath(t[0] === '<' ? t : `<${t}>`, { kind: 'mail', smtputf8: true, serverDomain: '' });
  if (!r.ok) return null;
  return { ...r.address, raw: s };
}

// ---------------------------------------------------------------- local domains

export interface LocalDomainConfig {
  domain: string;
  virtual: string[];
}

/** Comparison key of a domain for locality: canonical, one trailing dot ignored; literals and invalid names have none. */
function localityKey(d: string): string | null {
  if (d.length === 0 || d[0] === '[') return null;
  return canonicalDomain(d[d.length - 1] === '.' ? d.slice(0, -1) : d);
}

/**
 * Builds a matcher for the local domains (server.domain and server.virtual):
 * exact, label-wise and case-insensitive after IDN conversion. Address
 * literals are never local.
 */
export function localDomainMatcher(local: LocalDomainConfig): (domain: string) => boolean {
  const keys = new Set<string>();
  for (const d of [local.domain, ...local.virtual]) {
    const k = localityKey(d);
    if (k !== null) keys.add(k);
  }
  return (domain: string) => {
    const k = localityKey(domain);
    return k !== null && keys.has(k);
  };
}

export function isLocalDomain(domain: string, local: LocalDomainConfig): boolean {
  return localDomainMatcher(local)(domain);
}
