// Builds HostCall objects (src/builtins/host.ts) for tests of host built-ins,
// with a session, transaction and configuration that make sense by default
// and a logger and effects sink that record what the built-in did.
//
//   const call = makeHostCall({
//     stage: 'mail',
//     resolver: createResolver({ servers: [dns.address], timeoutMs: 1000 }),
//     session: { clientIp: '192.0.2.10', helo: 'mail.sender.test' },
//     mailFrom: 'alice@sender.test',
//     configure: (c) => { c.server.domain = 'example.org'; },
//   });
//   const status = await someBuiltin.fn(call, ['arg']);
//   call.headers  // [{ name, value, where }] in call order
//   call.logs     // pino records: { level: 'warn', msg, ...fields }
//
// Nothing touches the network unless a resolver is given: the default
// resolver answers NXDOMAIN for everything (like `mta explain --offline`).

import assert from 'node:assert/strict';
import pino from 'pino';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { DnsError, systemClock, type Clock, type HostEnv, type Resolver, type StateStore } from '../../src/host/ports.js';
import { type HostBuiltin, type HostCall } from '../../src/builtins/host.js';
import type { MessageView, Header, MailAddress, Session, Stage, StageEffect, Transaction } from '../../src/mail/types.js';
import { MemoryStateStore } from '../../src/builtins/state/memory.js';
import { replyLines } from '../../src/vsl/values/code.js';
import { Status } from '../../src/vsl/values/status.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { newHostLocals, type HostLocals } from '../../src/host/ports.js';

export const TEST_HOSTNAME = 'mx.example.test';

/** Asserts that `fn` throws a VslError whose message matches `re`. */
export function throwsVsl(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof VslError && re.test(e.message));
}

/** A rcpt-stage call with a@example.org and b@example.org accepted and c@example.org under evaluation. */
export function rcptCall(): TestHostCall {
  return makeHostCall({
    stage: 'rcpt',
    txn: {
      rcpts: [
        { address: mailAddress('a@example.org'), transport: { kind: 'default' } },
        { address: mailAddress('b@example.org'), transport: { kind: 'default' } },
      ],
      currentRcpt: mailAddress('c@example.org'),
    },
  });
}

/** The built-in called `name` in `list`; fails the test when it is not registered. */
export function findBuiltin(list: readonly HostBuiltin[], name: string): HostBuiltin {
  const b = list.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return b;
}

/** A status as the client would see it: `kind code text` (a quarantine as `quarantine NAME`). */
export function statusReply(v: Value): string {
  assert.ok(v instanceof Status, 'a status');
  if (v.kind === 'quarantine') return `quarantine ${v.quarantine}`;
  const c = v.effectiveCode();
  return `${v.kind}${c ? ` ${replyLines(c).join('\n')}` : ''}`;
}

export interface LogRecord {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  msg?: string;
  [field: string]: unknown;
}

export interface RecordedHeader extends Header {
  where: 'top' | 'bottom';
}

/** A HostCall plus what the built-in left behind. */
export interface TestHostCall extends HostCall {
  /** Headers added through call.effects.addHeader, in call order (also in effects.list()). */
  headers: RecordedHeader[];
  /** Every log record written through call.log or call.env.log. */
  logs: LogRecord[];
}

export interface HostCallInit {
  /** The built-ins' process state (default: shared by every call of this test file). */
  locals?: HostLocals;
  stage?: Stage;
  rule?: string;
  at?: string;
  fileDir?: string;
  /** Used as is when given; otherwise defaultConfig(TEST_HOSTNAME) passed through `configure`. */
  config?: Config;
  configure?: (c: Config) => void;
  resolver?: Resolver;
  state?: StateStore;
  clock?: Clock;
  policyDir?: string;
  /** Fields overriding the default session. */
  session?: Partial<Session>;
  /** Fields overriding the default transaction, or null for "no transaction". */
  txn?: Partial<Transaction> | null;
  /** Shortcut for txn.mailFrom: "a@b", "" (null sender) or a MailAddress. */
  mailFrom?: string | MailAddress;
  /** The message from preq on: a MessageView, or its raw text (LF or CRLF). */
  message?: MessageView | string | Buffer | null;
  cache?: Map<string, unknown>;
  dryRun?: boolean;
  credentials?: HostCall['credentials'];
}

/** A MailAddress from "local@domain" ("" or "<>" give the null sender). */
export function mailAddress(text: string): MailAddress {
  const raw = text.replace(/^<(.*)>$/, '$1');
  if (raw === '') return { local: '', domain: '', raw: text, isNull: true };
  const at = raw.lastIndexOf('@');
  if (at < 0) return { local: raw, domain: '', raw: text, isNull: false };
  return { local: raw.slice(0, at), domain: raw.slice(at + 1).toLowerCase(), raw: text, isNull: false };
}

/** A MessageView over raw message text; bare LF line ends are turned into CRLF. */
export function messageFromRaw(raw: string | Buffer): MessageView {
  const text = (typeof raw === 'string' ? raw : raw.toString('binary')).replace(/\r?\n/g, '\r\n');
  const buf = Buffer.from(text, 'binary');
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end + 2);
  const fields: Array<{ name: string; raw: string; value: string }> = [];
  for (const line of head.split(/\r\n/)) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length) {
      const last = fields[fields.length - 1]!;
      last.raw += `\r\n${line}`;
      last.value += line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon), raw: line, value: line.slice(colon + 1) });
  }
  for (const f of fields) f.value = f.value.replace(/\s+/g, ' ').trim();
  return { headers: () => fields.map((f) => ({ ...f })), raw: () => Buffer.from(buf) };
}

/** A resolver that knows no names at all. */
export const offlineResolver: Resolver = {
  a: async (n) => { throw new DnsError('NXDOMAIN', n); },
  aaaa: async (n) => { throw new DnsError('NXDOMAIN', n); },
  mx: async (n) => { throw new DnsError('NXDOMAIN', n); },
  txt: async (n) => { throw new DnsError('NXDOMAIN', n); },
  ptr: async (n) => { throw new DnsError('NXDOMAIN', n); },
  ns: async (n) => { throw new DnsError('NXDOMAIN', n); },
};

/** A pino logger whose records land in `logs` (parsed, level as a name). */
export function recordingLogger(logs: LogRecord[]): pino.Logger {
  // pino writes each record synchronously to any object with write().
  const sink = {
    write(line: string) {
      const rec = JSON.parse(line) as Record<string, unknown>;
      logs.push({ ...rec, level: pino.levels.labels[rec.level as number] as LogRecord['level'] });
    },
  };
  return pino({ level: 'trace', base: null, timestamp: false }, sink);
}

/** Calls made by one test file share their built-ins' process state, as the calls of one server do. */
const PROCESS_LOCALS = newHostLocals();

export function makeHostCall(init: HostCallInit = {}): TestHostCall {
  const config = init.config ?? defaultConfig(TEST_HOSTNAME);
  init.configure?.(config);
  const logs: LogRecord[] = [];
  const headers: RecordedHeader[] = [];
  const recorded: StageEffect[] = [];
  const log = recordingLogger(logs);
  const clock = init.clock ?? systemClock;
  const env: HostEnv = {
    config,
    resolver: init.resolver ?? offlineResolver,
    state: init.state ?? new MemoryStateStore(config.state.prefix, { clock }),
    clock,
    log,
    policyDir: init.policyDir ?? process.cwd(),
    locals: init.locals ?? PROCESS_LOCALS,
  };
  const session: Session = {
    id: 'test-session',
    listener: 'smtp',
    clientIp: '192.0.2.10',
    clientPort: 40000,
    serverIp: '127.0.0.1',
    serverPort: 25,
    serverName: config.server.name,
    connectedAt: new Date(clock.now()),
    tls: null,
    helo: 'client.example.test',
    esmtp: true,
    auth: null,
    pipeliningViolation: false,
    remembered: null,
    pendingHeaders: [],
    ...init.session,
  };
  const stage = init.stage ?? 'mail';
  let txn: Transaction | null = null;
  const wantsTxn = init.txn !== null && (init.txn !== undefined || init.mailFrom !== undefined || ['mail', 'rcpt', 'preq', 'postq', 'delivery'].includes(stage));
  if (wantsTxn) {
    const mailFrom =
      typeof init.mailFrom === 'string' ? mailAddress(init.mailFrom) : init.mailFrom ?? mailAddress('sender@example.net');
    txn = {
      id: 'TESTTXN0001',
      mailFrom,
      mailAt: new Date(clock.now()),
      rcpts: [],
      currentRcpt: null,
      remembered: null,
      pendingHeaders: [],
      ...(init.txn ?? {}),
    };
  }
  const message =
    init.message === undefined || init.message === null
      ? null
      : typeof init.message === 'string' || Buffer.isBuffer(init.message)
        ? messageFromRaw(init.message)
        : init.message;
  return {
    stage,
    rule: init.rule ?? 'test rule',
    at: init.at ?? 'main.vsl:1:1',
    fileDir: init.fileDir ?? env.policyDir,
    session,
    txn,
    message,
    env,
    log: log.child({ session: session.id, stage }),
    effects: {
      addHeader(h, where) {
        headers.push({ name: h.name, value: h.value, where });
        recorded.push({ kind: 'header', op: where === 'top' ? 'prepend' : 'append', name: h.name, value: h.value });
      },
      record(e) {
        recorded.push(e);
      },
      list: () => recorded,
    },
    ...(init.credentials ? { credentials: init.credentials } : {}),
    cache: init.cache ?? new Map(),
    dryRun: init.dryRun ?? false,
    headers,
    logs,
  };
}
