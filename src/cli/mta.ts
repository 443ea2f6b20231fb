// `mta`: the command dispatcher. Each subcommand lives in its own module
// under src/cli/ and is loaded only when used. src/cli/main.ts runs it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processIo, type CliIo } from './io.js';

export const MAIN_HELP = `usage: mta [run] --config main.vsl [options]    run the server
       mta check FILE... [--json] [--strict]     compile and lint policies
       mta test [PATH...] [--config main.vsl] [--watch]
                                                 run *.smtp transcript tests
       mta explain --config main.vsl --client IP [--helo H] [--from A] [--to B]...
                   [--auth USER] [--tls] [--message FILE] [--offline] [--json]
                                                 show what each stage decides
       mta queue list|show ID|retry ID|--all|remove ID|quarantine list|release ID
                   [--queue-dir DIR] [--json]    inspect and act on the queue
       mta passwd FILE USER [--argon2]           add or change a credentials entry
       mta relay-test HOST:PORT [--local-domain D] | --config main.vsl
                                                 probe a server for open relaying
       mta milter --config main.vsl --listen HOST:PORT|unix:PATH
                                                 serve the policy as a milter (Postfix, Sendmail)
       mta policy-server --config main.vsl --listen HOST:PORT|unix:PATH
                                                 serve the policy to Postfix check_policy_service
       mta --help | --version

Run 'mta COMMAND --help' for the options of a command.

Server options (mta run):
  --config FILE          the policy (main.vsl)
  --listen HOST:PORT     replace server.interfaces.addr (repeatable)
  --queue-dir DIR        replace queue.dir
  --set KEY=VALUE        override a configuration key (repeatable)
  --log-level LEVEL      trace|debug|info|warn|error
  --log-format FORMAT    json|pretty
  --workers N            SMTP worker processes sharing the listeners (default: CPUs - 1,
                         at least 1; the primary delivers); 0 runs one process

Signals: SIGHUP reloads the policy; SIGTERM/SIGINT stop accepting, let sessions
finish (up to 30 s) and exit 0.
`;

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
    default: return null;
  }
}

