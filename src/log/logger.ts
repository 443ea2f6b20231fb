// The process logger (pino) and the per-connection child loggers.
//
// JSON lines by default, pino-pretty for a human at a terminal
// (`logs.format = "pretty"`, one line per event). Output goes through
// src/log/sink.ts, asynchronous and dropping (and counting) lines it cannot
// write, so that logging never blocks or stops the SMTP service, even on a
// full disk; whatever is still buffered is flushed when the process exits.
//
// Secrets: the code never passes an AUTH password or payload to the logger,
// and the redaction below is a second guard should one slip into a log
// object anyway (SPEC §5.5: the password must never be logged).

import pino, { type DestinationStream, type Logger } from 'pino';
import { createRequire } from 'node:module';

// pino-pretty is loaded only for `logs.format = "pretty"`.
const require = createRequire(import.meta.url);
import type { Session } from '../mail/types.js';
import { notify } from './observers.js';
import { DroppingSink } from './sink.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** `trace debug info warn error fatal silent` (config `logs.level`). */
  level: string;
  /** `json` or `pretty` (config `logs.format`). */
  format: string;
  /** Where to write; stdout (fd 1) by default. Tests pass a stream to read the lines back. */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** A file descriptor to write instead of stdout (through the dropping sink). */
  fd?: number;
}

/** Keys whose values never reach a log line, wherever they sit in a log object. */
export const REDACTED_KEYS = ['authpass', 'password', 'passwd', 'secret', 'credentials', 'authPayload', 'saslResponse'];

function redactPaths(): string[] {
  const paths: string[] = [];
  for (const key of REDACTED_KEYS) paths.push(key, `*.${key}`, `*.*.${key}`);
  return paths;
}

// Asynchronous destinations still holding data when the process exits.
const pendingFlush = new Set<{ flushSync(): void }>();
let exitHookInstalled = false;

function flushOnExit(dest: { flushSync(): void }): void {
  pendingFlush.add(dest);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of pendingFlush) {
      try {
        d.flushSync();
      } catch {
        // the destination was never opened or is already closed: nothing to flush
      }
    }
  });
}

/** The process logger. */
export function createLogger(opts: LoggerOptions): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: redactPaths(), censor: '[redacted]' },
  };
  const format = opts.format === 'pretty' ? 'pretty' : 'json';
  let dest: DestinationStream | NodeJS.WritableStream;
  if (opts.destination) {
    dest = opts.destination;
  } else {
    const sink = new DroppingSink({ fd: opts.fd ?? 1, format });
    flushOnExit(sink);
    dest = sink;
  }
  if (format === 'pretty') {
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    // One line per event: the message, then the fields on the same line.
    const colorize = !opts.destination && opts.fd === undefined && process.stdout.isTTY === true;
    return pino(base, pretty({ colorize, translateTime: 'SYS:standard', singleLine: true, ignore: 'pid,hostname', destination: dest as NodeJS.WritableStream }));
  }
  return pino(base, dest as DestinationStream);
}

/** A logger that writes nothing (tests, dry runs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Child logger carrying the connection id and client IP on every line. */
export function connectionLogger(log: Logger, session: Pick<Session, 'id' | 'clientIp' | 'listener'>): Logger {
  return log.child({ conn: session.id, client_ip: session.clientIp, listener: session.listener });
}

/** One stage decision, as logged at info (SPEC §3.3). */
export interface StageDecision {
  stage: string;
  /** Deciding directive, or how the decision was made without one ("no rules", "relay guard", "remembered"). */
  rule: string | null;
  /** `file:line:col` of the deciding directive. */
  at: string | null;
  status: string;
  /** The reply as sent (first line is enough for multi-line replies). */
  reply: string;
  clientIp: string;
  helo: string | null;
  sender: string | null;
  recipient: string | null;
  messageId: string | null;
  /** Set when the stage failed (SPEC §5.7). */
  error?: string;
}

/**
 * Writes the single info line per stage decision (errors at error level,
 * SPEC §5.7) and counts it (mta_stage_decisions_total). Field names follow
 * docs/logging.md; `client_ip` is left out when the logger already carries
 * it (the connection logger does), so no line has a key twice.
 */
/** What logStageDecision needs: pino's logger, or the queue's narrower one (no bindings). */
export interface DecisionLogger {
  info(fields: object, message: string): void;
  error(fields: object, message: string): void;
  bindings?: () => Record<string, unknown>;
}

export function logStageDecision(log: DecisionLogger, d: StageDecision): void {
  notify('stageDecision', d.stage, d.status);
  const fields: Record<string, unknown> = {
    stage: d.stage,
    rule: d.rule,
    at: d.at,
    status: d.status,
    reply: d.reply,
    helo: d.helo,
    sender: d.sender,
    recipient: d.recipient,
    queue_id: d.messageId,
  };
  // Post-queue stages log through the queue's narrower logger, which has no bindings.
  const bound = typeof log.bindings === 'function' ? log.bindings() : {};
  if (bound.client_ip === undefined) fields.client_ip = d.clientIp;
  if (d.error !== undefined) {
    log.error({ ...fields, error: d.error }, failureMessage(d));
    return;
  }
  log.info(fields, `${d.stage}: ${d.status} ${d.reply}`);
}

/** `rule "x" failed at rcpt: <why>`, without repeating that prefix when the error already starts with it. */
function failureMessage(d: StageDecision): string {
  const prefix = `rule ${d.rule === null ? '' : `"${d.rule}" `}failed at ${d.stage}`;
  const error = d.error ?? '';
  return error.startsWith(prefix) ? error : `${prefix}: ${error}`;
}
