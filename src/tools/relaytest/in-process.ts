// Runs relay probes in-process against a loaded policy (`mta relay-test
// --config main.vsl`), through src/tools/explain.ts: the same path parser,
// stages, relay guard and status table the server uses, with no socket and
// no writes. The stage rows of explain() become the replies a client would
// have read.

import type { Logger } from 'pino';
import { explain, type ExplainRow } from '../explain.js';
import type { PolicyVersion } from '../../policy/load.js';
import type { RelayProbe } from './probes.js';
import { judgeReply, type ProbeResult, type ProbeStep } from './verdict.js';

export interface InProcessOptions {
  /** The client address the probes come from (an outside address by default in the CLI). */
  client: string;
  helo: string;
  log: Logger;
}

const STEP_OF: Partial<Record<ExplainRow['stage'], ProbeStep>> = {
  connect: 'greeting',
  helo: 'helo',
  mail: 'mail',
  rcpt: 'rcpt',
};

export async function runProbeInProcess(version: PolicyVersion, probe: RelayProbe, opts: InProcessOptions): Promise<ProbeResult> {
  let result;
  try {
    result = await explain(version, { client: opts.client, helo: opts.helo, from: probe.mailFrom, to: [probe.rcptTo] }, opts.log);
  } catch (e) {
    return { probe, step: 'connect', reply: `explain failed: ${(e as Error).message}`, verdict: 'error' };
  }
  for (const row of result.rows) {
    const step = STEP_OF[row.stage];
    if (step === undefined) continue;
    const code = Number(row.reply.slice(0, 3));
    const verdict = judgeReply(step, Number.isInteger(code) ? code : 0);
    if (verdict !== null) return { probe, step, reply: row.reply, verdict };
  }
  // No row decided: the session ended before RCPT without a refusal (a close after a 2xx).
  const last = result.rows[result.rows.length - 1];
  return { probe, step: last ? (STEP_OF[last.stage] ?? 'rcpt') : 'connect', reply: last?.reply ?? '', verdict: 'error' };
}
