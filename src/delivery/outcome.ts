// The result of one delivery attempt for one recipient, and how remote
// replies and local errors map onto it (SPEC §10: 2xx delivered, 4xx /
// connection errors / timeouts deferred, 5xx failed).

export type Outcome = 'delivered' | 'deferred' | 'failed';

export interface RcptResult {
  /** The recipient address as text (`local@domain`). */
  address: string;
  outcome: Outcome;
  /** The remote reply (`550 5.1.1 No such user`) or a local diagnosis, one line. */
  reply: string;
  /** Enhanced status (`5.1.1`), derived from the reply class when the reply has none. */
  status: string;
  /** `dns; <host>` style name of the host that answered, if any. */
  remoteMta: string | null;
}

/** One line of printable text: CR/LF runs become spaces, controls are dropped, long text is cut. */
export function oneLine(text: string, max = 900): string {
  // eslint-disable-next-line no-control-regex
  const s = text.replace(/\r?\n/g, ' ').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').trim();
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Splits an SMTP reply into code and enhanced status; null when it is not a reply. */
export function parseReply(reply: string): { code: number; status: string | null } | null {
  const m = /^([2-5]\d\d)(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?/.exec(reply);
  if (!m) return null;
  return { code: Number(m[1]), status: m[2] ?? null };
}

/** The outcome an SMTP reply gives; anything that is not a reply is a temporary problem. */
export function resultFromReply(address: string, reply: string, remoteMta: string | null): RcptResult {
  const text = oneLine(reply);
  const parsed = parseReply(text);
  if (!parsed) {
    return { address, outcome: 'deferred', reply: `invalid reply from remote server: ${text}`, status: '4.5.0', remoteMta };
  }
  const cls = Math.floor(parsed.code / 100);
  const outcome: Outcome = cls === 2 ? 'delivered' : cls === 4 ? 'deferred' : cls === 5 ? 'failed' : 'deferred';
  // Align the enhanced class with the reply code (a "451 5.7.1" is a temporary failure).
  const status = parsed.status ? `${cls}${parsed.status.slice(1)}` : `${cls}.0.0`;
  return { address, outcome, reply: text, status, remoteMta };
}

/** A local or connection-level temporary problem. */
export function deferred(address: string, why: string, status = '4.4.1', remoteMta: string | null = null): RcptResult {
  return { address, outcome: 'deferred', reply: oneLine(why), status, remoteMta };
}

/** A permanent failure decided locally (bad local part, null MX, no such domain). */
export function failed(address: string, why: string, status: string, remoteMta: string | null = null): RcptResult {
  return { address, outcome: 'failed', reply: oneLine(why), status, remoteMta };
}

export function delivered(address: string, why: string, remoteMta: string | null = null): RcptResult {
  return { address, outcome: 'delivered', reply: oneLine(why), status: '2.0.0', remoteMta };
}

/** An error that decides every recipient of a route the same way. */
export class RouteError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly status: string,
  ) {
    super(message);
    this.name = 'RouteError';
  }

  resultFor(address: string): RcptResult {
    return this.permanent ? failed(address, this.message, this.status) : deferred(address, this.message, this.status);
  }
}
