// The transcript format of `mta test` (SPEC §11.3): `*.smtp` files of client
// lines, expected reply prefixes and `@` directives, sessions separated by
// `---`. This module only reads the text; src/tools/transcript/run.ts plays
// it. Every problem is reported with its line, and a file with a problem is
// not run at all (a half-understood test must not pass).
//
// Scope of the directives, as documented in docs/testing.md:
//   @client @listener @tls   describe one session; before its first C:/S: line
//   @set @user               change the world for the rest of the file; before
//                            the session's first C:/S: line (they reload the policy)
//   @dns @time @advance      change the world for the rest of the file; anywhere
//   @expect                  a check on the messages accepted so far; anywhere

import net from 'node:net';
import { defaultConfig } from '../../config/schema.js';
import { parseDuration } from '../../config/units.js';
import { applySet } from '../../config/validate.js';
import type { ListenerKind } from '../../mail/types.js';
import type { StubRecord } from '../../policy/env.js';

export type ExpectCheck =
  | { kind: 'queued'; count: number }
  | { kind: 'quarantined'; name: string; count: number }
  | { kind: 'header'; name: string; prefix: string }
  | { kind: 'rcpt'; address: string }
  | { kind: 'no-rcpt'; address: string };

export type Step =
  /** `C: text`: one line sent to the server, CRLF added. */
  | { kind: 'send'; line: number; text: string }
  /** `S: prefix` (`prefix` null for `S: *`) or `S!: prefix`: a check on the next reply. */
  | { kind: 'reply'; line: number; prefix: string | null; negate: boolean }
  | { kind: 'dns'; line: number; record: StubRecord }
  | { kind: 'user'; line: number; name: string; password: string }
  | { kind: 'set'; line: number; assignment: string }
  | { kind: 'time'; line: number; ms: number }
  | { kind: 'advance'; line: number; ms: number }
  | { kind: 'expect'; line: number; check: ExpectCheck; text: string };

export interface TranscriptSession {
  /** Line of the session's first line (1 for the first session, else the line after `---`). */
  line: number;
  client: { ip: string; port: number | null };
  listener: ListenerKind;
  /** The session is encrypted from its first byte (implicit TLS). */
  tls: boolean;
  steps: Step[];
  /** Index in `steps` of the first C:/S: step; steps.length when the session never connects. */
  connectAt: number;
}

export interface TranscriptError {
  line: number;
  message: string;
}

export interface Transcript {
  file: string;
  sessions: TranscriptSession[];
  errors: TranscriptError[];
}

const LISTENERS: readonly ListenerKind[] = ['smtp', 'submission', 'submissions'];
const DNS_TYPES: readonly StubRecord['type'][] = ['A', 'AAAA', 'MX', 'TXT', 'PTR', 'NS'];
/** A date-time as RFC 3339 writes it: the zone is required. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const HOSTNAME = /^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/;

function newSession(line: number): TranscriptSession {
  return { line, client: { ip: '127.0.0.1', port: null }, listener: 'smtp', tls: false, steps: [], connectAt: -1 };
}

/** Parses `IP`, `IP:port`, `[IPv6]:port` or a bare IPv6 address. */
export function parseClient(text: string): { ip: string; port: number | null } | string {
  let ip = text;
  let port: string | null = null;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    ip = bracketed[1]!;
    port = bracketed[2] ?? null;
  } else if (net.isIPv4(text.split(':')[0]!) && text.includes(':')) {
    [ip, port] = text.split(':', 2) as [string, string];
  }
  if (net.isIP(ip) === 0) return `'${ip}' is not an IP address`;
  if (port !== null) {
    const n = Number(port);
    if (!/^\d{1,5}$/.test(port) || n < 1 || n > 65535) return `'${port}' is not a port number`;
    return { ip, port: n };
  }
  return { ip, port: null };
}

function parseDnsRecord(args: string): StubRecord | string {
  const m = /^(\S+)\s+(\S+)\s+(.+)$/.exec(args);
  if (!m) return 'expected @dns NAME TYPE VALUE';
  const name = m[1]!;
  const type = m[2]!.toUpperCase() as StubRecord['type'];
  let value = m[3]!.trim();
  if (!DNS_TYPES.includes(type)) return `unknown record type '${m[2]}': expected one of ${DNS_TYPES.join(' ')}`;
  if (/^".*"$/.test(value)) value = value.slice(1, -1);
  switch (type) {
    case 'A':
      if (!net.isIPv4(value)) return `an A record needs an IPv4 address, got '${value}'`;
      break;
    case 'AAAA':
      if (!net.isIPv6(value)) return `an AAAA record needs an IPv6 address, got '${value}'`;
      break;
    case 'MX': {
      const parts = value.split(/\s+/);
      const host = parts.length === 2 ? parts[1]! : parts[0]!;
      if (parts.length > 2 || (parts.length === 2 && !/^\d{1,5}$/.test(parts[0]!)) || !HOSTNAME.test(host)) {
        return `an MX record is 'PREFERENCE HOST' or 'HOST', got '${value}'`;
      }
      break;
    }
    case 'PTR':
      if (net.isIP(name) === 0) return `a PTR record is named by the client address (@dns 192.0.2.1 PTR host.example), got '${name}'`;
      if (!HOSTNAME.test(value)) return `a PTR record needs a host name, got '${value}'`;
      break;
    case 'NS':
      if (!HOSTNAME.test(value)) return `an NS record needs a host name, got '${value}'`;
      break;
    case 'TXT':
      break;
  }
  if (type !== 'PTR' && !HOSTNAME.test(name)) return `'${name}' is not a domain name`;
  return { name, type, value };
}

function parseExpect(args: string): ExpectCheck | string {
  const usage = 'expected @expect queued N | quarantined NAME N | header Name: prefix | rcpt ADDR | no-rcpt ADDR';
  let m: RegExpExecArray | null;
  if ((m = /^queued\s+(\d+)$/.exec(args))) return { kind: 'queued', count: Number(m[1]) };
  if ((m = /^quarantined\s+(\S+)\s+(\d+)$/.exec(args))) return { kind: 'quarantined', name: m[1]!, count: Number(m[2]) };
  if ((m = /^header\s+([!-9;-~]+):\s?(.*)$/.exec(args))) return { kind: 'header', name: m[1]!, prefix: m[2]! };
  if ((m = /^(rcpt|no-rcpt)\s+<?([^\s<>]+@[^\s<>]+)>?$/.exec(args))) return { kind: m[1] as 'rcpt' | 'no-rcpt', address: m[2]! };
  return usage;
}

/** Directives that must come before the session's first C:/S: line. */
const HEADER_ONLY = new Set(['client', 'listener', 'tls', 'set', 'user']);

export function parseTranscript(text: string, file: string): Transcript {
  const sessions: TranscriptSession[] = [];
  const errors: TranscriptError[] = [];
  let session = newSession(1);
  const lines = text.split('\n');

  const finish = (): void => {
    if (session.connectAt < 0) session.connectAt = session.steps.length;
    sessions.push(session);
  };

  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    // Indentation before C:/S: is allowed; what follows `C: ` is sent as written.
    const raw = lines[i]!.replace(/\r$/, '').trimStart();
    const trimmed = raw.trim();
    const fail = (message: string): void => {
      errors.push({ line, message });
    };
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (trimmed === '---') {
      finish();
      session = newSession(line + 1);
      continue;
    }
    const connected = session.connectAt >= 0;
    let m: RegExpExecArray | null;
    if ((m = /^C:(?: (.*)|)$/.exec(raw))) {
      if (!connected) session.connectAt = session.steps.length;
      session.steps.push({ kind: 'send', line, text: m[1] ?? '' });
      continue;
    }
    if ((m = /^S(!?):(.*)$/.exec(raw))) {
      const negate = m[1] === '!';
      const prefix = m[2]!.trim();
      if (prefix === '') {
        fail(`${negate ? 'S!' : 'S'}: needs a reply prefix${negate ? '' : ' or *'} (e.g. S: 250)`);
        continue;
      }
      if (negate && prefix === '*') {
        fail('S!: * can never match; write the prefix the reply must not start with');
        continue;
      }
      if (!connected) session.connectAt = session.steps.length;
      session.steps.push({ kind: 'reply', line, prefix: prefix === '*' ? null : prefix, negate });
      continue;
    }
    if ((m = /^@([a-z]+)(?:\s+(.*))?$/.exec(trimmed))) {
      const name = m[1]!;
      const args = (m[2] ?? '').trim();
      if (HEADER_ONLY.has(name) && connected) {
        fail(`@${name} must come before the first C: or S: line of its session`);
        continue;
      }
      switch (name) {
        case 'client': {
          const c = parseClient(args);
          if (typeof c === 'string') fail(`@client: ${c}`);
          else session.client = c;
          break;
        }
        case 'listener':
          if (!(LISTENERS as readonly string[]).includes(args)) fail(`@listener: expected smtp, submission or submissions, got '${args}'`);
          else session.listener = args as ListenerKind;
          break;
        case 'tls':
          if (args !== '') fail('@tls takes no argument');
          else session.tls = true;
          break;
        case 'dns': {
          const r = parseDnsRecord(args);
          if (typeof r === 'string') fail(`@dns: ${r}`);
          else session.steps.push({ kind: 'dns', line, record: r });
          break;
        }
        case 'user': {
          const u = /^(\S+)\s+(.+)$/.exec(args);
          if (!u) fail('@user: expected @user NAME PASSWORD');
          else session.steps.push({ kind: 'user', line, name: u[1]!, password: u[2]! });
          break;
        }
        case 'set':
          try {
            // Checked against the defaults now, so a typo is reported at its line.
            applySet(defaultConfig('mta-test.invalid'), args);
            session.steps.push({ kind: 'set', line, assignment: args });
          } catch (e) {
            fail(`@set: ${(e as Error).message}`);
          }
          break;
        case 'time': {
          const ms = Date.parse(args);
          if (!RFC3339.test(args) || Number.isNaN(ms)) fail(`@time: expected an RFC 3339 date-time such as 2024-05-01T12:00:00Z, got '${args}'`);
          else session.steps.push({ kind: 'time', line, ms });
          break;
        }
        case 'advance':
          try {
            session.steps.push({ kind: 'advance', line, ms: parseDuration(args) });
          } catch (e) {
            fail(`@advance: ${(e as Error).message}`);
          }
          break;
        case 'expect': {
          const c = parseExpect(args);
          if (typeof c === 'string') fail(`@expect: ${c}`);
          else session.steps.push({ kind: 'expect', line, check: c, text: args });
          break;
        }
        default:
          fail(`unknown directive @${name}: expected @client, @listener, @tls, @dns, @user, @set, @time, @advance or @expect`);
      }
      continue;
    }
    fail(`cannot read '${trimmed.length > 40 ? `${trimmed.slice(0, 40)}…` : trimmed}': lines are C: text, S: prefix, S!: prefix, @directive, # comment or ---`);
  }
  finish();
  return { file, sessions, errors };
}
