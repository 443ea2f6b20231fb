// `mta explain` (SPEC §11.4): what the policy decides for one transaction.

import fs from 'node:fs';
import pino from 'pino';
import { loadPolicy } from '../policy/load.js';
import { allBuiltins } from '../builtins/registry.js';
import { explain } from '../tools/explain.js';
import { offlineEnv, serverEnv } from '../policy/env.js';
import { formatDiagnostic } from '../vsl/diagnostics.js';
import type { CliIo } from './io.js';
import { parseArgs, single, UsageError } from './args.js';
import net from 'node:net';

export const EXPLAIN_HELP = `usage: mta explain --config main.vsl --client IP [--helo NAME] [--from ADDR]
                   [--to ADDR]... [--auth USER] [--tls] [--message FILE]
                   [--offline] [--json] [--set KEY=VALUE]...

Runs every stage for one transaction in-process — no connection, no delivery,
no writes (fs::, csv writes and cmd are reported as "would run"; a fresh
memory state store is used) — and prints, per stage and recipient, the
deciding directive with file:line, the status and the reply.

  --client IP       the client address (required)
  --helo NAME       HELO/EHLO argument
  --from ADDR       MAIL FROM address ("" for the null sender)
  --to ADDR         RCPT TO address (repeatable)
  --auth USER       the session authenticated as USER (authenticate stage skipped)
  --tls             the session is under TLS
  --message FILE    the message for preq (default: a minimal synthesised one)
  --offline         answer every DNS query with NXDOMAIN
  --json            machine-readable output

Exit status: 0 queued for at least one recipient, 3 refused, 1 error, 2 usage.
`;

export async function explainCommand(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { flags: ['tls', 'offline', 'json', 'help'], values: ['config', 'client', 'helo', 'from', 'to', 'auth', 'message', 'set'] });
    if (args.flags.has('help')) {
      io.stdout.write(EXPLAIN_HELP);
      return 0;
    }
    if (!single(args, 'config')) throw new UsageError('--config is required');
    const client = single(args, 'client');
    if (!client) throw new UsageError('--client is required');
    if (net.isIP(client) === 0) throw new UsageError(`--client expects an IP address, got '${client}'`);
    if (args.positional.length) throw new UsageError(`unexpected argument ${args.positional[0]}`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta explain: ${e.message}\n\n${EXPLAIN_HELP}`);
      return 2;
    }
    throw e;
  }
  const mainPath = single(args, 'config')!;
  const log = pino({ level: 'silent' });
  const offline = args.flags.has('offline');
  const r = await loadPolicy(mainPath, {
    builtins: allBuiltins(),
    overrides: { set: args.values.get('set') ?? [] },
    env: (config) => (offline ? offlineEnv(config, mainPath, log) : { ...serverEnv(config, mainPath, log), state: offlineEnv(config, mainPath, log).state }),
  });
  if (!r.ok) {
    for (const d of r.diagnostics) io.stderr.write(`${formatDiagnostic(d, r.sources.get(d.pos.file))}\n`);
    return 1;
  }
  let message: Buffer | undefined;
  const msgFile = single(args, 'message');
  if (msgFile) message = Buffer.from(fs.readFileSync(msgFile, 'utf8').replace(/\r?\n/g, '\r\n'));
  try {
    const result = await explain(r.version, {
      client: single(args, 'client')!, helo: single(args, 'helo'), from: single(args, 'from'), to: args.values.get('to') ?? [],
      auth: single(args, 'auth'), tls: args.flags.has('tls'), message,
    }, log);
    if (args.flags.has('json')) {
      const deliveries = result.deliveries.map((d) => ({ ...d, data: d.data.toString('base64') }));
      io.stdout.write(`${JSON.stringify({ version: r.version.id, queued_for: result.queuedFor, closed: result.closed, disposition: result.disposition, deliveries, stages: result.rows }, null, 2)}\n`);
    } else {
      for (const row of result.rows) {
        const cols = [row.stage.padEnd(13), (row.recipient ?? '').padEnd(24), row.decider.padEnd(44), row.status.padEnd(10), row.reply];
        io.stdout.write(`${cols.join(' ').trimEnd()}\n`);
        if (row.error) io.stdout.write(`${''.padEnd(14)}${row.error}\n`);
        for (const e of row.effects) io.stdout.write(`${''.padEnd(14)}would ${describeEffect(e)}\n`);
      }
      io.stdout.write(result.queuedFor.length ? `queued for: ${result.queuedFor.join(', ')}\n` : 'not queued\n');
      io.stdout.write(`${describeDisposition(result)}\n`);
    }
    return result.queuedFor.length > 0 ? 0 : 3;
  } finally {
    r.version.dispose();
  }
}

/** Where the message ends, and by which transport each recipient would be delivered. */
function describeDisposition(r: import('../tools/explain.js').ExplainResult): string {
  const d = r.disposition;
  switch (d.kind) {
    case 'refused': return 'final: refused';
    case 'quarantine': return `final: held in quarantine ${d.name}`;
    case 'dead': return `final: dead (${d.reason})`;
    case 'deferred': return `final: deferred (${d.reason})`;
    case 'delivered':
      return ['final: delivered', ...r.deliveries.map((x) => `  ${x.rcpts.join(', ')} by ${x.transport}${x.destination ? ` (${x.destination})` : ''}, ${x.data.length} bytes`)].join('\n');
  }
}

function describeEffect(e: import('../mail/types.js').StageEffect): string {
  switch (e.kind) {
    case 'header': return e.op === 'remove' ? `remove header ${e.name}` : e.op === 'rename' ? `rename header ${e.name} to ${e.newName}` : `${e.op} header ${e.name}: ${e.value}`;
    case 'transport': return `deliver ${e.rcpt.local}@${e.rcpt.domain} by ${e.transport.kind}${e.transport.kind === 'forward' ? ` to ${e.transport.target}` : ''}`;
    default: return e.kind.replace('_', ' ');
  }
}
