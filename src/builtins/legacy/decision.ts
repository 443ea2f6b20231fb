// What a legacy policy format decided, before it becomes a vSL status
// (SPEC §8.2–§8.4). The matchers return this plain value so they stay
// testable without the sandbox; builtins.ts turns it into a status.

export type LegacyDecisionKind = 'accept' | 'next' | 'reject' | 'deny' | 'quarantine';

export interface LegacyDecision {
  kind: LegacyDecisionKind;
  /** The reply for reject/deny (`550 5.7.1 …`). */
  reply?: string;
  /** Quarantine name (`hold`, `discard`). */
  quarantine?: string;
  /** How long the decision waited before it was made (noto_delay, `$D`). */
  delayMs?: number;
  /** The data-file line that decided, for logs and `mta explain`. */
  matched?: { file: string; line: number };
}
