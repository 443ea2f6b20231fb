// `mta check main.vsl… [--json] [--strict]` (SPEC §11.2): compiles every file,
// runs top-level code and on_config (no listeners, no network), validates the
// stage map and data files, and prints one diagnostic per problem.

import { loadPolicy } from '../policy/load.js';
import { allBuiltins } from '../builtins/registry.js';
import { diagnosticToJson, formatDiagnostic, sortDiagnostics, type Diagnostic } from '../vsl/diagnostics.js';
import type { CliIo } from './io.js';
import { parseArgs, UsageError } from './args.js';

export const CHECK_HELP = `usage: mta check FILE... [--json] [--strict] [--set KEY=VALUE]...

Compiles each policy (and everything it imports), runs on_config and the
top-level code without opening listeners or using the network, validates the
stage map and the data files the policy names, and prints every problem as

  file:line:col: error|warning: message
     line | source
          |   ^
    = hint: what to do

Options:
  --json     print the diagnostics as a JSON array instead
  --strict   exit 1 on warnings too
  --set KEY=VALUE   apply a configuration override, as mta run would (repeatable)

Exit status: 0 clean (warnings allowed), 1 errors, 2 usage error.
`;

export interface CheckResult {
  file: string;
  ok: boolean;
  diagnostics: Diagnostic[];
  sources: Map<string, string>;
}

/** Checks one policy file; the version is disposed (nothing keeps running). */
export async function checkFile(file: string, set: string[] = []): Promise<CheckResult> {
  const r = await loadPolicy(file, { builtins: allBuiltins(), overrides: { set }, checkTlsFiles: true });
  if (r.ok) r.version.dispose();
  return { file, ok: r.ok, diagnostics: sortDiagnostics(r.diagnostics), sources: r.sources };
}

export async function checkCommand(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { flags: ['json', 'strict', 'help'], values: ['set'] });
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta check: ${e.message}\n\n${CHECK_HELP}`);
      return 2;
    }
    throw e;
  }
  if (args.flags.has('help')) {
    io.stdout.write(CHECK_HELP);
    return 0;
  }
  if (args.positional.length === 0) {
    io.stderr.write(`mta check: no policy file given\n\n${CHECK_HELP}`);
    return 2;
  }
  let errors = 0;
  let warnings = 0;
  const json: unknown[] = [];
  for (const file of args.positional) {
    const r = await checkFile(file, args.values.get('set') ?? []);
    for (const d of r.diagnostics) {
      if (d.severity === 'error') errors++;
      else warnings++;
      if (args.flags.has('json')) json.push(diagnosticToJson(d));
      else io.stderr.write(`${formatDiagnostic(d, r.sources.get(d.pos.file))}\n`);
    }
    if (!args.flags.has('json') && r.ok && r.diagnostics.length === 0) io.stdout.write(`${file}: ok\n`);
  }
  if (args.flags.has('json')) io.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  else if (errors || warnings) io.stderr.write(`${errors} error(s), ${warnings} warning(s)\n`);
  return errors > 0 || (args.flags.has('strict') && warnings > 0) ? 1 : 0;
}
