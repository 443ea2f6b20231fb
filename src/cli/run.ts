// `mta [run] --config main.vsl` (SPEC §11.1): runs the server in the
// foreground, logging to stdout. SIGHUP reloads; SIGTERM/SIGINT stop
// gracefully (up to 30 s) and exit 0.

import { createLogger } from '../log/logger.js';
import { startServer } from '../server.js';
import { PolicyLoadError } from '../reload/manager.js';
import type { CliIo } from './io.js';
import { MAIN_HELP } from './mta.js';
import { parseArgs, single, UsageError } from './args.js';

export async function runCommand(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs(argv[0] === 'run' ? argv.slice(1) : argv, {
      flags: ['help'],
      values: ['config', 'listen', 'queue-dir', 'set', 'log-level', 'log-format', 'workers'],
    });
    if (args.flags.has('help')) {
      io.stdout.write(MAIN_HELP);
      return 0;
    }
    if (!single(args, 'config')) throw new UsageError('--config is required');
    if (args.positional.length) throw new UsageError(`unexpected argument ${args.positional[0]}`);
    const fmt = single(args, 'log-format');
    if (fmt && fmt !== 'json' && fmt !== 'pretty') throw new UsageError('--log-format is json or pretty');
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta: ${e.message}\n\n${MAIN_HELP}`);
      return 2;
    }
    throw e;
  }
  const format = single(args, 'log-format') ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const log = createLogger({ level: single(args, 'log-level') ?? 'info', format });
  let server;
  try {
    server = await startServer({
      mainPath: single(args, 'config')!,
      overrides: {
        set: args.values.get('set') ?? [],
        listen: args.values.get('listen'),
        queueDir: single(args, 'queue-dir'),
        logLevel: single(args, 'log-level'),
        logFormat: single(args, 'log-format'),
      },
      log,
    });
  } catch (e) {
    if (e instanceof PolicyLoadError) {
      io.stderr.write(`${e.message}\n`);
      return 1;
    }
    io.stderr.write(`mta: ${(e as Error).message}\n`);
    return 1;
  }
  const running = server;
  return await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping: no new connections, sessions get up to 30 s');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      void running.stop(30_000).then(() => {
        log.info('stopped');
        log.flush?.();
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading the policy');
      void running.policy.reload('SIGHUP');
    });
  });
}
