// Loading the policy for a dry-run command (mta explain, mta relay-test
// --config): the --config file with its --set overrides, in toolEnv
// (src/policy/env.ts), diagnostics printed as mta check prints them.

import pino, { type Logger } from 'pino';
import { allBuiltins } from '../builtins/registry.js';
import { toolEnv } from '../policy/env.js';
import { loadPolicy, type PolicyVersion } from '../policy/load.js';
import { formatDiagnostic } from '../vsl/diagnostics.js';
import { single, type ParsedArgs } from './args.js';
import type { CliIo } from './io.js';

/** The loaded version, or null once the diagnostics are on stderr. */
export async function loadToolPolicy(args: ParsedArgs, io: CliIo): Promise<{ version: PolicyVersion; mainPath: string; log: Logger } | null> {
  const mainPath = single(args, 'config')!;
  const log = pino({ level: 'silent' });
  const offline = args.flags.has('offline');
  const r = await loadPolicy(mainPath, {
    builtins: allBuiltins(),
    overrides: { set: args.values.get('set') ?? [] },
    env: (config) => toolEnv(config, mainPath, log, offline),
  });
  if (!r.ok) {
    for (const d of r.diagnostics) io.stderr.write(`${formatDiagnostic(d, r.sources.get(d.pos.file))}\n`);
    return null;
  }
  return { version: r.version, mainPath, log };
}
