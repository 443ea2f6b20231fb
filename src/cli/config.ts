// `mta config --config main.vsl [--json] [--changed] [--set KEY=VALUE]...`:
// the effective configuration after on_config and the overrides, one
// `key = value` line per key, like `postconf -n` with --changed. Passwords in
// URLs (forward targets, the Redis store) are masked.

import os from 'node:os';
import { loadPolicy } from '../policy/load.js';
import { allBuiltins } from '../builtins/registry.js';
import { defaultConfig } from '../config/schema.js';
import { formatDiagnostic } from '../vsl/diagnostics.js';
import { flattenConfig, vslLiteral } from './docs/catalog.js';
import type { CliIo } from './io.js';
import { parseArgs, single, UsageError } from './args.js';

export const CONFIG_HELP = `usage: mta config --config main.vsl [--json] [--changed] [--set KEY=VALUE]...

Loads the policy (on_config and the --set overrides apply, no listeners are
opened) and prints every configuration key with its effective value, one
"key = value" line each. docs/configuration.md describes the keys.

Options:
  --changed         only the keys whose value differs from the default
  --json            one JSON object of key → value instead
  --set KEY=VALUE   an override, as mta run would apply it (repeatable)

Exit status: 0, 1 when the policy does not load, 2 on a usage error.
`;

/** `smtp://user:secret@host` → `smtp://user:***@host`. */
function masked(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*:)[^@/]*@/i, '$1***@');
  if (Array.isArray(v)) return v.map(masked);
  return v;
}

export async function configCommand(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { flags: ['json', 'changed', 'help'], values: ['config', 'set'] });
    if (args.flags.has('help')) {
      io.stdout.write(CONFIG_HELP);
      return 0;
    }
    if (!single(args, 'config')) throw new UsageError('--config is required');
    if (args.positional.length) throw new UsageError(`unexpected argument ${args.positional[0]}`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta config: ${e.message}\n\n${CONFIG_HELP}`);
      return 2;
    }
    throw e;
  }
  const r = await loadPolicy(single(args, 'config')!, { builtins: allBuiltins(), overrides: { set: args.values.get('set') ?? [] } });
  if (!r.ok) {
    for (const d of r.diagnostics.filter((x) => x.severity === 'error')) io.stderr.write(`${formatDiagnostic(d, r.sources.get(d.pos.file))}\n`);
    return 1;
  }
  const config = r.version.config;
  r.version.dispose();
  const defaults = new Map(flattenConfig(defaultConfig(os.hostname(), process.stdout.isTTY === true)).map(([k, v]) => [k, JSON.stringify(v)]));
  const entries = flattenConfig(config).filter(([k, v]) => !args.flags.has('changed') || defaults.get(k) !== JSON.stringify(v));
  if (args.flags.has('json')) {
    io.stdout.write(`${JSON.stringify(Object.fromEntries(entries.map(([k, v]) => [k, masked(v)])), null, 2)}\n`);
  } else {
    for (const [k, v] of entries) io.stdout.write(`${k} = ${vslLiteral(masked(v))}\n`);
  }
  return 0;
}
