// Messaging Server (iMS) mapping tables: PORT_ACCESS, ORIG_SEND_ACCESS,
// SEND_ACCESS and MAIL_ACCESS (SPEC §8.4).
//
// A mapping file holds tables: a name at column 0, then indented
// `pattern template` entries. The first entry whose pattern matches the
// probe string decides through its template flags.
//
// Decisions this file takes where SPEC is silent:
// - Only the four access tables are validated and used; other tables of a
//   real iMS file (REVERSE, INTERNAL_IP, …) are kept as text and ignored.
// - Unescaped whitespace inside a template is an error (write `$ `), as is an
//   entry without a template; a table named twice is an error.
// - Probe fields come from the network, so a `|` inside the sender,
//   recipient or HELO is written `%7C`: it can never forge a field boundary
//   (patterns' `*` spans `|`, and `tcp_local|x|l|@evil|…` must not look like
//   a local destination).
// - dst: `l` for a local domain, else `tcp_local` (SPEC); but an explicitly
//   routed recipient of a local domain (`@a,@b:u@d`, `u%x@d`, `x.y!u@d`,
//   `"u@x"@d`) is not delivered to the local store: it asks to be routed on
//   through our internal systems, which iMS calls `tcp_intranet`. That is
//   the channel the standard anti-relay table of iMS tests for those forms.

import type { Logger } from 'pino';
import type { Clock } from '../../host/ports.js';
import { addressText, type MailAddress } from '../../mail/types.js';
import { cidrContainsIp, makeCidr4, parseCidr, parseIPv4, parseIPv6, parseIp, type Cidr } from '../../vsl/values/net.js';
import type { LegacyDecision } from './decision.js';
import { DiagnosticSink, columnOf, splitLines, type Parsed } from './diagnostics.js';
import { addressAsReceived, isExplicitlyRouted, isLocalDomain, isTrustedClient, type LegacyProbe } from './probe.js';

export type AccessTableName = 'PORT_ACCESS' | 'ORIG_SEND_ACCESS' | 'SEND_ACCESS' | 'MAIL_ACCESS';
export const ACCESS_TABLES: readonly AccessTableName[] = ['PORT_ACCESS', 'ORIG_SEND_ACCESS', 'SEND_ACCESS', 'MAIL_ACCESS'];

export type PatternToken =
  | { t: 'lit'; c: string }
  | { t: 'star' }
  | { t: 'pct' }
  | { t: 'ip'; cidr: Cidr };

export interface Template {
  /** `$Y` */
  accept: boolean;
  /** `$N` or `$F` */
  refuse: boolean;
  /** `$D<secs>` */
  delaySec: number | null;
  /** The text after the flags, escapes resolved; null when none. */
  text: string | null;
}

export interface MappingEntry {
  line: number;
  pattern: string;
  tokens: PatternToken[];
  template: Template;
}

export interface MappingTable {
  name: string;
  line: number;
  entries: MappingEntry[];
}

export interface MappingFile {
  file: string;
  /** Access tables by upper-case name. */
  tables: Map<string, MappingTable>;
}

const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';

// ------------------------------------------------------------------ parsing

/** Reads a `$`-escaped word from `s` at `i` up to unescaped whitespace; returns the raw text and the end. */
function readWord(s: string, i: number): { raw: string; end: number } {
  let j = i;
  while (j < s.length && !isBlank(s[j])) j += s[j] === '$' ? 2 : 1;
  j = Math.min(j, s.length);
  return { raw: s.slice(i, j), end: j };
}

/** An IP prefix `a.b.c.d/n` (or IPv6) from `$(…)`, abbreviated IPv4 allowed; null when invalid. */
function parseIpPrefix(text: string): Cidr | null {
  if (!text.includes('/')) {
    const ip = parseIp(text);
    return ip === null ? null : parseCidr(`${text}/${ip.v === 4 ? 32 : 128}`);
  }
  if (text.includes(':')) return parseCidr(text);
  const [addr, len] = text.split('/') as [string, string];
  const octets = addr.split('.');
  if (octets.length > 4 || !/^\d{1,2}$/.test(len) || Number(len) > 32) return null;
  while (octets.length < 4) octets.push('0');
  const n = parseIPv4(octets.join('.'));
  return n === null ? null : makeCidr4(n, Number(len));
}

function compilePattern(raw: string, at: number, lineNo: number, line: string, sink: DiagnosticSink): PatternToken[] | null {
  const out: PatternToken[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '*') out.push({ t: 'star' });
    else if (c === '%') out.push({ t: 'pct' });
    else if (c === '$') {
      const next = raw[i + 1];
      if (next === undefined) {
        sink.error(lineNo, columnOf(line, at + i), 'pattern ends with a lone $');
        return null;
      }
      if (next === '(') {
        const close = raw.indexOf(')', i + 2);
        const cidr = close < 0 ? null : parseIpPrefix(raw.slice(i + 2, close));
        if (cidr === null) {
          sink.error(lineNo, columnOf(line, at + i), `invalid IP prefix '${close < 0 ? raw.slice(i) : raw.slice(i, close + 1)}' (expected $(a.b.c.d/n))`);
          return null;
        }
        if (cidr.hostBitsSet) sink.warning(lineNo, columnOf(line, at + i), `IP prefix '${raw.slice(i, close + 1)}' has host bits set; they are ignored`);
        out.push({ t: 'ip', cidr });
        i = close;
      } else {
        out.push({ t: 'lit', c: next.toLowerCase() });
        i++;
      }
    } else out.push({ t: 'lit', c: c.toLowerCase() });
  }
  return out;
}

function parseTemplate(raw: string, at: number, lineNo: number, line: string, sink: DiagnosticSink): Template | null {
  const tpl: Template = { accept: false, refuse: false, delaySec: null, text: null };
  let i = 0;
  // Flags: `$` and a letter, at the start of the template.
  while (raw[i] === '$' && /[A-Za-z]/.test(raw[i + 1] ?? '')) {
    const flag = raw[i + 1]!;
    const col = columnOf(line, at + i);
    i += 2;
    switch (flag) {
      case 'Y':
        tpl.accept = true;
        break;
      case 'N':
      case 'F':
        tpl.refuse = true;
        break;
      case 'D': {
        const m = /^\d+/.exec(raw.slice(i));
        if (!m) {
          sink.error(lineNo, col, '$D needs a number of seconds ($D30)');
          return null;
        }
        tpl.delaySec = Number(m[0]);
        i += m[0].length;
        break;
      }
      default:
        sink.error(lineNo, col, `unknown flag $${flag} (supported: $Y, $N, $F, $D<secs>)`);
        return null;
    }
  }
  if (tpl.accept && tpl.refuse) {
    sink.error(lineNo, columnOf(line, at), 'template both accepts ($Y) and refuses ($N/$F)');
    return null;
  }
  if (raw[i] === '|') i++;
  let text = '';
  for (; i < raw.length; i++) {
    if (raw[i] === '$') {
      if (i + 1 >= raw.length) {
        sink.error(lineNo, columnOf(line, at + i), 'template ends with a lone $');
        return null;
      }
      text += raw[++i];
    } else text += raw[i];
  }
  tpl.text = text === '' ? null : text;
  return tpl;
}

/** Parses a mapping file; the access tables' entries are validated, other tables ignored. */
export function parseMappingFile(text: string, file: string): Parsed<MappingFile> {
  const sink = new DiagnosticSink(file);
  const tables = new Map<string, MappingTable>();
  let current: MappingTable | null = null;
  /** Inside a table that is not an access table: entries are skipped unread. */
  let ignoring = false;
  let sawTable = false;
  splitLines(text).forEach((line, idx) => {
    const lineNo = idx + 1;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('!') || trimmed.startsWith('#')) return;
    if (!isBlank(line[0])) {
      const name = trimmed.toUpperCase();
      sawTable = true;
      if (!/^[A-Z0-9_$.-]+$/.test(name)) {
        sink.error(lineNo, 1, `invalid table name '${trimmed}' (a table name stands alone at column 0; entries are indented)`);
        current = null;
        ignoring = true;
        return;
      }
      if (!(ACCESS_TABLES as readonly string[]).includes(name)) {
        current = null;
        ignoring = true;
        return;
      }
      if (tables.has(name)) {
        sink.error(lineNo, 1, `table ${name} is already defined at line ${tables.get(name)!.line}`);
        current = null;
        ignoring = true;
        return;
      }
      current = { name, line: lineNo, entries: [] };
      tables.set(name, current);
      ignoring = false;
      return;
    }
    if (ignoring) return;
    if (!current) {
      sink.error(lineNo, 1, sawTable ? 'entry outside a table' : 'entry before any table name (put the table name, e.g. ORIG_SEND_ACCESS, at column 0)');
      return;
    }
    const table: MappingTable = current;
    const start = line.length - line.trimStart().length;
    const pat = readWord(line, start);
    let j = pat.end;
    while (isBlank(line[j])) j++;
    if (j >= line.length) {
      sink.error(lineNo, columnOf(line, start), `entry '${pat.raw}' has no template`);
      return;
    }
    const tpl = readWord(line, j);
    let k = tpl.end;
    while (isBlank(line[k])) k++;
    if (k < line.length) {
      sink.error(lineNo, columnOf(line, k), 'unexpected text after the template (write a space inside a template as `$ `)');
      return;
    }
    const tokens = compilePattern(pat.raw, start, lineNo, line, sink);
    const template = parseTemplate(tpl.raw, j, lineNo, line, sink);
    if (!tokens || !template) return;
    table.entries.push({ line: lineNo, pattern: pat.raw, tokens, template });
  });
  return { value: { file, tables }, diagnostics: sink.list };
}

// ------------------------------------------------------------------ matching

/** Lengths of the IP addresses that can start at `i` in `s` (each a candidate for `$(…)`). */
function ipCandidates(s: string, i: number): Array<{ len: number; text: string }> {
  const out: Array<{ len: number; text: string }> = [];
  const v4 = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.)(\d{1,3})/.exec(s.slice(i, i + 15));
  if (v4) {
    for (let n = 1; n <= v4[2]!.length; n++) {
      const text = v4[1]! + v4[2]!.slice(0, n);
      if (parseIPv4(text) !== null) out.push({ len: text.length, text });
    }
  }
  const run = /^[0-9a-f:.]+/.exec(s.slice(i, i + 45));
  if (run && run[0].includes(':')) {
    for (let n = 2; n <= run[0].length; n++) {
      const text = run[0].slice(0, n);
      if (parseIPv6(text) !== null) out.push({ len: n, text });
    }
  }
  return out;
}

/**
 * Whether the whole (lower-cased) `s` matches the pattern. A forward pass
 * over reachable positions: O(tokens × length), whatever the pattern.
 */
export function patternMatches(tokens: readonly PatternToken[], s: string): boolean {
  const n = s.length;
  let cur = new Uint8Array(n + 1);
  cur[0] = 1;
  for (const tok of tokens) {
    const next = new Uint8Array(n + 1);
    let any = false;
    if (tok.t === 'star') {
      const first = cur.indexOf(1);
      if (first >= 0) {
        next.fill(1, first);
        any = true;
      }
    } else if (tok.t === 'pct') {
      for (let i = 0; i <= n; i++) {
        if (!cur[i]) continue;
        next[i] = 1;
        any = true;
        for (let j = i; j < n && s[j] !== '.'; j++) next[j + 1] = 1;
      }
    } else {
      for (let i = 0; i <= n; i++) {
        if (!cur[i]) continue;
        if (tok.t === 'lit') {
          if (s[i] === tok.c) {
            next[i + 1] = 1;
            any = true;
          }
        } else {
          for (const c of ipCandidates(s, i)) {
            const ip = parseIp(c.text);
            if (ip && cidrContainsIp(tok.cidr, ip)) {
              next[i + c.len] = 1;
              any = true;
            }
          }
        }
      }
    }
    if (!any) return false;
    cur = next;
  }
  return cur[n] === 1;
}

/** A network-controlled field of a probe, `|` written `%7C` so it cannot forge a field. */
function field(s: string): string {
  return s.replace(/\|/g, '%7C');
}

/** iMS source channel: tcp_intranet (relay network), tcp_auth (authenticated) or tcp_local. */
export function sourceChannel(probe: LegacyProbe): string {
  if (isTrustedClient(probe)) return 'tcp_intranet';
  return probe.authenticated ? 'tcp_auth' : 'tcp_local';
}

/** iMS destination channel of a recipient (see the header comment for tcp_intranet). */
export function destinationChannel(probe: LegacyProbe, rcpt: MailAddress): string {
  if (!isLocalDomain(probe, rcpt.domain)) return 'tcp_local';
  return isExplicitlyRouted(rcpt) ? 'tcp_intranet' : 'l';
}

export function portAccessProbe(probe: LegacyProbe): string {
  return `TCP|${probe.serverIp}|${probe.serverPort}|${probe.clientIp}|${probe.clientPort}`;
}

/** `src|sender|dst|recipient`: the recipient as received (ORIG_SEND_ACCESS) or canonical (SEND_ACCESS). */
export function sendAccessProbe(probe: LegacyProbe, recipientForm: 'as-received' | 'canonical'): string {
  const rcpt = probe.recipient;
  if (!rcpt) throw new Error('no recipient to probe');
  const sender = probe.sender && !probe.sender.isNull ? addressText(probe.sender) : '';
  const rcptText = recipientForm === 'as-received' ? addressAsReceived(rcpt) : addressText(rcpt);
  return `${sourceChannel(probe)}|${field(sender)}|${destinationChannel(probe, rcpt)}|${field(rcptText)}`;
}

export function mailAccessProbe(probe: LegacyProbe): string {
  return `${portAccessProbe(probe)}|SMTP/${field(probe.helo ?? '')}|${sendAccessProbe(probe, 'canonical')}`;
}

export function probeFor(table: AccessTableName, probe: LegacyProbe): string {
  switch (table) {
    case 'PORT_ACCESS':
      return portAccessProbe(probe);
    case 'ORIG_SEND_ACCESS':
      return sendAccessProbe(probe, 'as-received');
    case 'SEND_ACCESS':
      return sendAccessProbe(probe, 'canonical');
    case 'MAIL_ACCESS':
      return mailAccessProbe(probe);
  }
}

/** The first entry of `table` matching `probeText`, or null. */
export function findEntry(table: MappingTable, probeText: string): MappingEntry | null {
  const s = probeText.toLowerCase();
  return table.entries.find((e) => patternMatches(e.tokens, s)) ?? null;
}

/** The reply of a refusing template: its text as-is when it has a 4xx/5xx code, else `550 5.7.1 <text>`. */
export function refusalReply(text: string | null): string {
  if (text !== null && /^[45]\d\d(?=[ -]|$)/.test(text)) return text;
  return `550 5.7.1 ${text ?? 'Access denied'}`;
}

export interface MappingRuntime {
  clock: Clock;
  log: Logger;
}

/**
 * Looks the probe up in `tableName` and applies the template: `$D` waits
 * (through the clock), then `$Y` accepts, `$N`/`$F` refuse (deny for
 * PORT_ACCESS, which runs before the greeting), anything else continues.
 */
export async function evaluateMapping(
  file: MappingFile,
  tableName: AccessTableName,
  probeText: string,
  rt: MappingRuntime,
): Promise<LegacyDecision> {
  const table = file.tables.get(tableName);
  if (!table) throw new Error(`no table ${tableName} in ${file.file}`);
  const entry = findEntry(table, probeText);
  if (!entry) return { kind: 'next' };
  const matched = { file: file.file, line: entry.line };
  const tpl = entry.template;
  rt.log.debug({ file: file.file, line: entry.line, table: tableName, probe: probeText }, 'mapping entry matched');
  let delayMs: number | undefined;
  if (tpl.delaySec !== null) {
    delayMs = tpl.delaySec * 1000;
    await rt.clock.sleep(delayMs);
  }
  const waited = delayMs === undefined ? {} : { delayMs };
  if (tpl.accept) return { kind: 'accept', matched, ...waited };
  if (tpl.refuse) {
    return { kind: tableName === 'PORT_ACCESS' ? 'deny' : 'reject', reply: refusalReply(tpl.text), matched, ...waited };
  }
  return { kind: 'next', matched, ...waited };
}
