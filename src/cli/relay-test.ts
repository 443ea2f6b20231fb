// `mta relay-test`: the open-relay self-check an administrator runs against
// their server, or in-process against a policy (src/tools/relaytest/).

import os from 'node:os';
import { isIP } from 'node:net';
import pino from 'pino';
import { allBuiltins } from '../builtins/registry.js';
import { resolverFromConfig } from '../builtins/dns/resolver.js';
import { offlineEnv } from '../policy/env.js';
import { loadPolicy } from '../policy/load.js';
import { formatJson, formatText, type RelayTestReport } from '../tools/relaytest/report.js';
import { relayTestInProcess, relayTestOverSmtp, RelayTestError } from '../tools/relaytest/run.js';
import type { SmtpTarget } from '../tools/relaytest/smtp-runner.js';
import { canonicalDomain } from '../vsl/values/address.js';
import { formatDiagnostic } from '../vsl/diagnostics.js';
import { parseArgs, single, UsageError, type ParsedArgs } from './args.js';
import type { CliIo } from './io.js';

export const RELAY_TEST_HELP = `usage: mta relay-test HOST[:PORT] [--local-domain D] [--from-domain D] [--to-domain D]
                      [--helo NAME] [--starttls] [--timeout SECONDS] [--json]
       mta relay-test --config main.vsl [--client IP] [--local-domain D] [--from-domain D]
                      [--to-domain D] [--helo NAME] [--set KEY=VALUE]... [--offline] [--json]

An open-relay self-check. Runs the classic relay probes — third party, null
sender, spoofed local sender, %-hack, quoted and escaped @, double @, bang
paths, source routes, address literals, look-alike domains, case variants,
trailing dot, fullwidth ＠ and ％ — and prints each probe, the reply that
decided it and a verdict: refused, ACCEPTED (a hole), deferred (4xx) or error.

Against HOST:PORT (port 25 by default) each probe is one SMTP session:
greeting, EHLO, MAIL, RCPT, RSET, QUIT. DATA is never sent: no mail leaves.
With --config the same probes run in-process through the policy's stages, as
mta explain would, from --client (default 203.0.113.9, an outside address).
A control probe (an outside sender to postmaster@LOCAL) runs first: it should
be accepted, else the client is probably blocked and the test says little.

  --local-domain D   a domain the server receives mail for (default: from the
                     greeting name, mx.example.org → example.org; with --config,
                     server.domain)
  --from-domain D    the outside sender's domain (default example.net)
  --to-domain D      the third party's domain (default example.org); use one
                     whose DNS resolves if the server checks recipient domains
  --helo NAME        EHLO name (default: this host's name, or relay-test.<from-domain>)
  --starttls         HOST:PORT only: upgrade each session with STARTTLS (when offered)
                     before MAIL, for servers that treat TLS clients differently
  --timeout SECONDS  deadline of each reply (default 30)
  --client IP        --config only: the client address (default 203.0.113.9)
  --set KEY=VALUE    --config only: override a configuration key (repeatable)
  --offline          --config only: answer every DNS query with NXDOMAIN
  --json             machine-readable output

Exit status: 0 every probe refused, 1 a probe was accepted (open relay),
2 usage, 3 inconclusive (a probe deferred or failed, the server unreachable,
or the policy did not load).
`;

const DEFAULT_CLIENT = '203.0.113.9';

/** `host`, `host:port`, `[v6]` or `[v6]:port`; port 25 when absent. */
export function parseTarget(spec: string): SmtpTarget {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(spec);
  if (!m) {
    // A bare IPv6 address has colons of its own.
    if (isIP(spec) === 6) return { host: spec, port: 25 };
    throw new UsageError(`invalid target '${spec}': expected HOST[:PORT] or [IPv6]:PORT`);
  }
  const port = m[2] === undefined ? 25 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`invalid port in '${spec}'`);
  return { host: m[1]!, port };
}

function domainOption(args: ParsedArgs, name: string, fallback?: string): string | undefined {
  const v = single(args, name) ?? fallback;
  if (v === undefined) return undefined;
  const d = canonicalDomain(v);
  if (d === null) throw new UsageError(`--${name}: '${v}' is not a domain name`);
  return d;
}

function defaultHelo(senderDomain: string): string {
  const h = os.hostname();
  return h.includes('.') && canonicalDomain(h) !== null ? h : `relay-test.${senderDomain}`;
}

export async function relayTestCommand(argv: string[], io: CliIo): Promise<number> {
  let args: ParsedArgs;
  let target: SmtpTarget | null = null;
  let timeoutMs = 30_000;
  let local: string | undefined;
  let sender: string;
  let outside: string;
  try {
    args = parseArgs(argv, {
      flags: ['json', 'offline', 'starttls', 'help'],
      values: ['config', 'client', 'local-domain', 'from-domain', 'to-domain', 'helo', 'timeout', 'set'],
    });
    if (args.flags.has('help')) {
      io.stdout.write(RELAY_TEST_HELP);
      return 0;
    }
    const config = single(args, 'config');
    if (config === undefined) {
      if (args.positional.length !== 1) throw new UsageError(args.positional.length === 0 ? 'give HOST:PORT or --config main.vsl' : `unexpected argument ${args.positional[1]}`);
      target = parseTarget(args.positional[0]!);
      for (const o of ['client', 'set']) if (args.values.has(o)) throw new UsageError(`--${o} needs --config`);
      if (args.flags.has('offline')) throw new UsageError('--offline needs --config');
    } else {
      if (args.positional.length > 0) throw new UsageError('give either HOST:PORT or --config, not both');
      if (args.values.has('timeout')) throw new UsageError('--timeout applies to HOST:PORT only');
      if (args.flags.has('starttls')) throw new UsageError('--starttls applies to HOST:PORT only');
      const client = single(args, 'client');
      if (client !== undefined && isIP(client) === 0) throw new UsageError(`--client: '${client}' is not an IP address`);
    }
    const t = single(args, 'timeout');
    if (t !== undefined) {
      const s = Number(t);
      if (!(s > 0 && s <= 3600)) throw new UsageError('--timeout is a number of seconds, 0 < s ≤ 3600');
      timeoutMs = Math.round(s * 1000);
    }
    local = domainOption(args, 'local-domain');
    sender = domainOption(args, 'from-domain', 'example.net')!;
    outside = domainOption(args, 'to-domain', 'example.org')!;
    if (outside === local) throw new UsageError('--to-domain must not be the local domain');
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta relay-test: ${e.message}\n\n${RELAY_TEST_HELP}`);
      return 2;
    }
    throw e;
  }
  const helo = single(args, 'helo') ?? defaultHelo(sender);
  let report: RelayTestReport;
  try {
    if (target !== null) {
      report = await relayTestOverSmtp(target, { local, sender, outside }, { helo, timeoutMs, starttls: args.flags.has('starttls') });
    } else {
      const r = await inProcess(args, { local, sender, outside, helo }, io);
      if (r === null) return 3;
      report = r;
    }
  } catch (e) {
    if (e instanceof RelayTestError) {
      io.stderr.write(`mta relay-test: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  io.stdout.write(args.flags.has('json') ? formatJson(report) : formatText(report));
  return report.summary.exitCode;
}

async function inProcess(args: ParsedArgs, d: { local: string | undefined; sender: string; outside: string; helo: string }, io: CliIo): Promise<RelayTestReport | null> {
  const mainPath = single(args, 'config')!;
  const log = pino({ level: 'silent' });
  const offline = args.flags.has('offline');
  const r = await loadPolicy(mainPath, {
    builtins: allBuiltins(),
    overrides: { set: args.values.get('set') ?? [] },
    // Real DNS unless --offline, but never the configured state store: a test writes nothing.
    env: (config) => {
      const env = offlineEnv(config, mainPath, log);
      return offline ? env : { ...env, resolver: resolverFromConfig(config) };
    },
  });
  if (!r.ok) {
    for (const diag of r.diagnostics) io.stderr.write(`${formatDiagnostic(diag, r.sources.get(diag.pos.file))}\n`);
    io.stderr.write('mta relay-test: the policy did not load\n');
    return null;
  }
  try {
    return await relayTestInProcess(r.version, {
      local: d.local, sender: d.sender, outside: d.outside, helo: d.helo, log,
      client: single(args, 'client') ?? DEFAULT_CLIENT, policyName: mainPath,
    });
  } finally {
    r.version.dispose();
  }
}
