// `mta milter --config main.vsl --listen HOST:PORT|unix:PATH`: the policy as
// a milter for Postfix or Sendmail (src/milter/). Also the shared option
// handling of the two commands another MTA calls (see policy-server.ts).

import { createLogger } from '../log/logger.js';
import { startMilter } from '../milter/server.js';
import type { FrontServer } from '../reload/front-process.js';
import { runUntilSignalled } from '../reload/front-process.js';
import { PolicyLoadError } from '../reload/manager.js';
import type { DraftFactory, PolicyRuntimeOptions } from '../reload/runtime.js';
import { MessageDraft } from '../smtp/message.js';
import { parseArgs, single, UsageError } from './args.js';
import type { CliIo } from './io.js';

/** The options and signals of `mta milter` and `mta policy-server`, for their --help. */
export const FRONT_OPTIONS = `  --config FILE          the policy (main.vsl)
  --listen ADDR          HOST:PORT, [IPv6]:PORT or unix:PATH
  --set KEY=VALUE        override a configuration key (repeatable)
  --log-level LEVEL      trace|debug|info|warn|error
  --log-format FORMAT    json|pretty

SIGHUP reloads the policy (it also reloads when its files change);
SIGTERM/SIGINT stop.
`;

export const MILTER_HELP = `usage: mta milter --config main.vsl --listen HOST:PORT|unix:PATH [options]

Serves the policy as a milter (libmilter protocol 6) for Postfix
(smtpd_milters = inet:HOST:PORT) or Sendmail. connect, helo, mail, rcpt and
end of message run the vSL stages of the same names; preq edits become
header, sender, recipient and body modifications. The MTA keeps the queue.

${FRONT_OPTIONS}`;

type Start = (opts: PolicyRuntimeOptions & { listen: string; newDraft: DraftFactory }) => Promise<FrontServer>;

/** The fronts edit messages as the SMTP front's MessageDraft (they may not import src/smtp/ themselves). */
export const smtpDraft: DraftFactory = (prefix, fields, body) => MessageDraft.assemble(prefix, { fields, body, headerBytes: 0 });

/** Parses the options both commands take, starts the server and runs it until a stop signal. */
export async function frontCommand(name: string, help: string, start: Start, argv: string[], io: CliIo): Promise<number> {
  let config: string;
  let listen: string;
  let args;
  try {
    args = parseArgs(argv, { flags: ['help'], values: ['config', 'listen', 'set', 'log-level', 'log-format'] });
    if (args.flags.has('help')) {
      io.stdout.write(help);
      return 0;
    }
    if (args.positional.length) throw new UsageError(`unexpected argument ${args.positional[0]}`);
    config = single(args, 'config') ?? '';
    listen = single(args, 'listen') ?? '';
    if (config === '') throw new UsageError('--config is required');
    if (listen === '') throw new UsageError('--listen is required');
    const fmt = single(args, 'log-format');
    if (fmt && fmt !== 'json' && fmt !== 'pretty') throw new UsageError('--log-format is json or pretty');
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta ${name}: ${e.message}\n\n${help}`);
      return 2;
    }
    throw e;
  }
  const level = single(args, 'log-level');
  const log = createLogger({ level: level ?? 'info', format: single(args, 'log-format') ?? (process.stdout.isTTY ? 'pretty' : 'json') });
  try {
    const front = await start({
      mainPath: config,
      overrides: { set: args.values.get('set') ?? [], ...(level ? { logLevel: level } : {}) },
      log,
      listen,
      newDraft: smtpDraft,
    });
    return await runUntilSignalled(front, log);
  } catch (e) {
    io.stderr.write(e instanceof PolicyLoadError ? `${e.message}\n` : `mta ${name}: ${(e as Error).message}\n`);
    return 1;
  }
}

export function milterCommand(argv: string[], io: CliIo): Promise<number> {
  return frontCommand('milter', MILTER_HELP, startMilter, argv, io);
}
