// The help texts of `mta` and `mta run` (run.ts and mta.ts both print them;
// kept here so neither imports the other).

/** The options of `mta run`, shown by `mta --help` and `mta run --help`. */
const SERVER_OPTIONS = `  --config FILE          the policy (main.vsl)
  --listen HOST:PORT     replace server.interfaces.addr (repeatable)
  --queue-dir DIR        replace queue.dir
  --set KEY=VALUE        override a configuration key (repeatable)
  --log-level LEVEL      trace|debug|info|warn|error|fatal|silent
  --log-format FORMAT    json|pretty
  --workers N            SMTP worker processes sharing the listeners (default: CPUs - 1,
                         at least 1; the primary delivers); 0 runs one process

Signals: SIGHUP reloads the policy; SIGTERM/SIGINT stop accepting, let sessions
finish (up to 30 s) and exit 0.
`;

export const RUN_HELP = `usage: mta [run] --config main.vsl [options]

Runs the server in the foreground, logging to stdout. Exits 1 at once when a
listener cannot be opened or the policy does not load, 2 on a usage error.

Options:
${SERVER_OPTIONS}`;

export const MAIN_HELP = `usage: mta [run] --config main.vsl [options]    run the server
       mta check FILE... [--json] [--strict] [--set KEY=VALUE]...
                                                 compile and lint policies
       mta config --config main.vsl [--json] [--changed] [--set KEY=VALUE]...
                                                 print the effective configuration
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
${SERVER_OPTIONS}`;
