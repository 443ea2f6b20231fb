// `mta`: the command dispatcher. Each subcommand lives in its own module
// under src/cli/ and is loaded only when used. src/cli/main.ts runs it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processIo, type CliIo } from './io.js';
import { MAIN_HELP } from './help.js';

export function version(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = path.join(dir, 'package.json');
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return 'unknown';
}

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      io.stdout.write(MAIN_HELP);
      return cmd === undefined ? 2 : 0;
    case '--version':
    case '-V':
      io.stdout.write(`mta ${version()}\n`);
      return 0;
    case 'check':
      return (await import('./check.js')).checkCommand(rest, io);
    case 'passwd':
      return (await import('./passwd.js')).passwdCommand(rest, io as never);
    default:
      break;
  }
  const known = await loadCommand(cmd);
  if (known) return known(rest, io);
  if (cmd.startsWith('-')) {
    const run = await loadCommand('run');
    if (run) return run(argv, io);
  }
  io.stderr.write(`mta: unknown command '${cmd}'\n\n${MAIN_HELP}`);
  return 2;
}

type Command = (argv: string[], io: CliIo) => Promise<number>;

async function loadCommand(name: string): Promise<Command | null> {
  switch (name) {
    case 'run': return (await import('./run.js')).runCommand;
    case 'test': return (await import('./test.js')).testCommand;
    case 'explain': return (await import('./explain.js')).explainCommand;
    case 'queue': return (await import('./queue.js')).queueCommand as Command;
    case 'relay-test': return (await import('./relay-test.js')).relayTestCommand;
    case 'milter': return (await import('./milter.js')).milterCommand;
    case 'policy-server': return (await import('./policy-server.js')).policyServerCommand;
    case 'config': return (await import('./config.js')).configCommand;
    default: return null;
  }
}

