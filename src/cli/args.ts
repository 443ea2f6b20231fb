// A small, strict argument parser shared by every subcommand: unknown options
// are usage errors (exit 2), never silently ignored.

export class UsageError extends Error {}

export interface ParsedArgs {
  positional: string[];
  flags: Set<string>;
  /** Options with values; repeatable options collect every value. */
  values: Map<string, string[]>;
}

export function parseArgs(argv: string[], spec: { flags: string[]; values: string[] }): ParsedArgs {
  const out: ParsedArgs = { positional: [], flags: new Set(), values: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (spec.flags.includes(name)) {
        if (eq > 0) throw new UsageError(`--${name} takes no value`);
        out.flags.add(name);
      } else if (spec.values.includes(name)) {
        const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value`);
        out.values.set(name, [...(out.values.get(name) ?? []), v]);
      } else {
        throw new UsageError(`unknown option ${a}`);
      }
    } else if (a === '-h') {
      out.flags.add('help');
    } else {
      out.positional.push(a);
    }
  }
  return out;
}

export function single(args: ParsedArgs, name: string): string | undefined {
  const v = args.values.get(name);
  if (v && v.length > 1) throw new UsageError(`--${name} given more than once`);
  return v?.[0];
}
