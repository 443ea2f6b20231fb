// What one probe's replies mean. A probe ends at the first reply that is
// not a success (greeting, HELO/EHLO, MAIL) or at the RCPT reply:
//
//   RCPT 2xx                 ACCEPTED  the server took an outside recipient: a hole
//   5xx anywhere             refused
//   4xx anywhere             deferred  not a refusal: a greylisting or rate-limited
//                                      server may accept the same probe later
//   no reply (timeout, reset) error    the probe could not be completed
//
// Only `refused` shows the server closed for that probe. The run as a whole
// (summary below): any ACCEPTED is a hole (exit 1); all refused is a pass
// (exit 0); otherwise it is inconclusive (exit 3).

import type { RelayProbe } from './probes.js';

export type Verdict = 'refused' | 'ACCEPTED' | 'deferred' | 'error';

/** Where the probe's session stopped. */
export type ProbeStep = 'connect' | 'greeting' | 'helo' | 'mail' | 'rcpt';

export interface ProbeResult {
  probe: RelayProbe;
  /** The step whose reply decided the verdict. */
  step: ProbeStep;
  /** That reply as received (`554 5.7.1 Relay access denied`), or the failure (`timeout: no reply within 30000 ms`). */
  reply: string;
  verdict: Verdict;
}

/** The verdict of a reply given at `step`; null when the session goes on to the next step. */
export function judgeReply(step: ProbeStep, code: number): Verdict | null {
  if (code >= 500 && code <= 599) return 'refused';
  if (code >= 400 && code <= 499) return 'deferred';
  if (code >= 200 && code <= 299) return step === 'rcpt' ? 'ACCEPTED' : null;
  // 1xx/3xx are not valid answers to these commands: a broken or hostile server.
  return 'error';
}

export interface RunSummary {
  total: number;
  refused: number;
  accepted: number;
  inconclusive: number;
  /** 0 every probe refused, 1 a hole, 3 inconclusive (see above). */
  exitCode: 0 | 1 | 3;
}

export function summarise(results: ProbeResult[]): RunSummary {
  const accepted = results.filter((r) => r.verdict === 'ACCEPTED').length;
  const refused = results.filter((r) => r.verdict === 'refused').length;
  const inconclusive = results.length - accepted - refused;
  const exitCode = accepted > 0 ? 1 : inconclusive > 0 || results.length === 0 ? 3 : 0;
  return { total: results.length, refused, accepted, inconclusive, exitCode };
}
