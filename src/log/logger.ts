// The process logger (pino) and the per-connection child loggers.
//
// JSON lines by default, pino-pretty for a human at a terminal
// (`logs.format = "pretty"`). Output goes through an asynchronous
// destination so that logging never blocks the SMTP event loop; whatever is
// still buffered is flushed when the process exits.
//
// Secrets: the code never passes an AUTH password or payload to the logger,
// and the redaction below is a second guard should one slip into a log
// object anyway (SPEC §5.5: the password must never be logged).

import pino, { type DestinationStream, type Logger } from 'pino';
import { createRequire } from 'node:module';

// pino-pretty is loaded only for `logs.format = "pretty"`.
const require = createRequire(import.meta.url);
import type { Session } from '../mail/types.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** `trace debug info warn error fatal silent` (config `logs.level`). */
  level: string;
  /** `json` or `pretty` (config `logs.format`). */
  format: string;
  /** Where to write; stdout (fd 1) by default. Tests pass a stream to read the lines back. */
  destination?: DestinationStream | NodeJS.WritableStream;
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
  if (opts.destination) return pino(base, opts.destination as DestinationStream);
  if (opts.format === 'pretty') {
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({ colorize: process.stdout.isTTY === true, sync: false, translateTime: 'SYS:standard' });
    return pino(base, stream);
  }
  const dest = pino.destination({ dest: 1, sync: false });
  flushOnExit(dest);
  return pino(base, dest);
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

/** Writes the single info line per stage decision (errors at error level, SPEC §5.7). */
export function logStageDecision(log: Logger, d: StageDecision): void {
  const fields = {
    stage: d.stage,
    rule: d.rule,
    at: d.at,
    status: d.status,
    reply: d.reply,
    client_ip: d.clientIp,
    helo: d.helo,
    sender: d.sender,
    recipient: d.recipient,
    message_id: d.messageId,
  };
  if (d.error !== undefined) {
    log.error({ ...fields, error: d.error }, `rule ${d.rule === null ? '' : `"${d.rule}" `}failed at ${d.stage}: ${d.error}`);
    return;
  }
  log.info(fields, `${d.stage}: ${d.status} ${d.reply}`);
}
