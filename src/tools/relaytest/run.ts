// One `mta relay-test` run: the control probe, then every relay probe, one
// at a time (a relay test is not a load test), and their summary. Over a
// socket (relayTestOverSmtp) or in-process against a policy
// (relayTestInProcess); both give the same report.

import type { Logger } from 'pino';
import type { PolicyVersion } from '../../policy/load.js';
import { runProbeInProcess } from './in-process.js';
import { controlProbe, relayProbes, type ProbeDomains, type RelayProbe } from './probes.js';
import type { RelayTestReport } from './report.js';
import { inspectServer, runSmtpProbe, type SmtpRunOptions, type SmtpTarget } from './smtp-runner.js';
import { summarise, type ProbeResult } from './verdict.js';

export interface DomainChoice {
  /** --local-domain; guessed when absent. */
  local?: string;
  sender: string;
  outside: string;
}

/** The domain of a host name: `mx.example.org` → `example.org`; names of two labels or fewer as they are. */
export function domainOfHost(name: string): string {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.');
  return labels.length > 2 ? labels.slice(1).join('.') : labels.join('.');
}

/** Unwraps `::ffff:a.b.c.d` and drops a zone (`%eth0`). */
function plainIp(ip: string | null): string | undefined {
  if (ip === null) return undefined;
  return ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').replace(/%.*$/, '');
}

async function runAll(control: RelayProbe, probes: RelayProbe[], run: (p: RelayProbe) => Promise<ProbeResult>): Promise<{ control: ProbeResult; results: ProbeResult[] }> {
  const first = await run(control);
  const results: ProbeResult[] = [];
  for (const p of probes) results.push(await run(p));
  return { control: first, results };
}

export class RelayTestError extends Error {}

function probeDomains(local: string, choice: DomainChoice): ProbeDomains {
  // A third party in the local domain would be a local recipient: every "hole" would be legitimate.
  if (choice.outside === local) throw new RelayTestError(`the outside recipient domain ${choice.outside} is the local domain; choose another with --to-domain`);
  return { local, sender: choice.sender, outside: choice.outside };
}

export async function relayTestOverSmtp(target: SmtpTarget, choice: DomainChoice, opts: SmtpRunOptions): Promise<RelayTestReport> {
  const notes: string[] = [];
  let info;
  try {
    info = await inspectServer(target, opts);
  } catch (e) {
    throw new RelayTestError(`${hostPort(target)}: ${(e as Error).message}`);
  }
  notes.push(`greeting: ${info.greeting}`);
  if (opts.starttls === true) notes.push(info.extensions.has('STARTTLS') ? 'each probe upgrades with STARTTLS before MAIL' : 'the server does not offer STARTTLS: the probes ran in plaintext');
  let local = choice.local;
  if (local === undefined) {
    if (info.name === null) throw new RelayTestError(`${hostPort(target)}: the greeting names no host to guess the local domain from; give --local-domain`);
    local = domainOfHost(info.name);
    notes.push(`local domain ${local} guessed from the greeting name ${info.name}; give --local-domain to choose it`);
  }
  const domains = probeDomains(local, choice);
  const serverIp = plainIp(info.address);
  if (serverIp !== undefined) domains.serverIp = serverIp;
  const { control, results } = await runAll(controlProbe(domains), relayProbes(domains), (p) => runSmtpProbe(target, p, opts));
  return { target: hostPort(target), domains, notes, control, results, summary: summarise(results) };
}

export interface InProcessChoice extends DomainChoice {
  client: string;
  helo: string;
  log: Logger;
  /** Shown as the target (the policy path). */
  policyName: string;
}

export async function relayTestInProcess(version: PolicyVersion, choice: InProcessChoice): Promise<RelayTestReport> {
  const notes: string[] = [];
  const local = choice.local ?? version.config.server.domain;
  if (choice.local === undefined) notes.push(`local domain ${local} is server.domain of the policy`);
  notes.push('in-process: the replies are those mta explain computes for the policy, with no socket');
  const domains = probeDomains(local, choice);
  const run = (p: RelayProbe): Promise<ProbeResult> => runProbeInProcess(version, p, { client: choice.client, helo: choice.helo, log: choice.log });
  const { control, results } = await runAll(controlProbe(domains), relayProbes(domains), run);
  return { target: `policy ${choice.policyName}, client ${choice.client}`, domains, notes, control, results, summary: summarise(results) };
}

function hostPort(t: SmtpTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
