// The output of `mta relay-test`: one line per probe (verdict, probe,
// envelope, the deciding reply), the control probe, and the result; or the
// same as JSON.

import type { ProbeDomains } from './probes.js';
import type { ProbeResult, RunSummary } from './verdict.js';

export interface RelayTestReport {
  /** `127.0.0.1:25`, or `policy main.vsl, client 203.0.113.9`. */
  target: string;
  domains: ProbeDomains;
  /** Things the reader should know (a guessed local domain, the greeting). */
  notes: string[];
  /** The control probe (a local recipient), run first. */
  control: ProbeResult | null;
  results: ProbeResult[];
  summary: RunSummary;
}

function resultLine(r: ProbeResult, idWidth: number): string {
  const verdict = r.verdict.padEnd(9);
  const envelope = `MAIL ${r.probe.mailFrom}  RCPT ${r.probe.rcptTo}`;
  return `${verdict} ${r.probe.id.padEnd(idWidth)} ${envelope}\n${''.padEnd(10)}${r.step}: ${r.reply}`;
}

function conclusion(s: RunSummary, holes: ProbeResult[]): string {
  if (s.exitCode === 1) return `OPEN RELAY: ${s.accepted} of ${s.total} probes accepted (${holes.map((h) => h.probe.id).join(', ')})`;
  if (s.exitCode === 0) return `no open relay found: all ${s.total} probes refused`;
  return `inconclusive: ${s.refused} of ${s.total} probes refused, ${s.inconclusive} deferred or failed, none accepted; run again later`;
}

export function formatText(r: RelayTestReport): string {
  const out: string[] = [];
  const d = r.domains;
  out.push(`relay test of ${r.target}`);
  out.push(`local domain ${d.local}, outside sender domain ${d.sender}, outside recipient domain ${d.outside}`);
  for (const n of r.notes) out.push(`note: ${n}`);
  out.push('');
  const width = Math.max(...r.results.map((x) => x.probe.id.length), 10);
  for (const x of r.results) out.push(resultLine(x, width));
  out.push('');
  if (r.control !== null) {
    const c = r.control;
    const ok = c.verdict === 'ACCEPTED';
    out.push(`control: MAIL ${c.probe.mailFrom} RCPT ${c.probe.rcptTo}: ${ok ? 'accepted' : c.verdict} (${c.step}: ${c.reply})`);
    if (!ok) out.push('warning: even a local recipient was not accepted from this client; the refusals above may only mean that this client is blocked');
  }
  out.push(`result: ${conclusion(r.summary, r.results.filter((x) => x.verdict === 'ACCEPTED'))}`);
  return `${out.join('\n')}\n`;
}

function resultJson(x: ProbeResult): Record<string, unknown> {
  return { id: x.probe.id, title: x.probe.title, mail_from: x.probe.mailFrom, rcpt_to: x.probe.rcptTo, step: x.step, reply: x.reply, verdict: x.verdict };
}

export function formatJson(r: RelayTestReport): string {
  const s = r.summary;
  return `${JSON.stringify(
    {
      target: r.target,
      local_domain: r.domains.local,
      sender_domain: r.domains.sender,
      outside_domain: r.domains.outside,
      notes: r.notes,
      control: r.control === null ? null : resultJson(r.control),
      probes: r.results.map(resultJson),
      summary: { total: s.total, refused: s.refused, accepted: s.accepted, inconclusive: s.inconclusive, open_relay: s.accepted > 0 },
      exit_code: s.exitCode,
    },
    null,
    2,
  )}\n`;
}
