// The Postfix SMTPD access policy delegation protocol, reading side: a
// request is `name=value` lines ending with an empty line; the answer is
// `action=…` and an empty line. Unknown attributes are ignored, as the
// protocol asks; a line without `=` makes the request malformed (answered
// with a temporary failure). Limits keep one client from holding memory.

/** A request larger than this, or with a longer line, ends the connection. */
export const MAX_REQUEST_BYTES = 64 * 1024;
export const MAX_LINE_BYTES = 8 * 1024;

export type Request = { ok: true; attrs: Map<string, string> } | { ok: false; problem: string };

export class RequestTooLarge extends Error {}

/** Splits the byte stream into requests (one per empty line). */
export class RequestReader {
  private pending = '';
  private lines: string[] = [];
  private size = 0;

  /** The complete requests in the bytes received so far. */
  push(chunk: Buffer): Request[] {
    this.pending += chunk.toString('utf8');
    const out: Request[] = [];
    for (let nl = this.pending.indexOf('\n'); nl >= 0; nl = this.pending.indexOf('\n')) {
      const line = this.pending.slice(0, nl).replace(/\r$/, '');
      this.pending = this.pending.slice(nl + 1);
      if (line === '') {
        out.push(parseLines(this.lines));
        this.lines = [];
        this.size = 0;
        continue;
      }
      this.size += line.length + 1;
      if (line.length > MAX_LINE_BYTES || this.size > MAX_REQUEST_BYTES) throw new RequestTooLarge('policy request too large');
      this.lines.push(line);
    }
    if (this.pending.length > MAX_LINE_BYTES) throw new RequestTooLarge('policy request line too long');
    return out;
  }

  /** Bytes of a request that never got its empty line. */
  get incomplete(): boolean {
    return this.lines.length > 0 || this.pending.length > 0;
  }
}

function parseLines(lines: string[]): Request {
  const attrs = new Map<string, string>();
  for (const line of lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) return { ok: false, problem: `malformed attribute line '${line.slice(0, 60)}'` };
    attrs.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return { ok: true, attrs };
}

/** An answer as sent. */
export function answer(action: string): string {
  return `action=${action.replace(/[\r\n]+/g, ' ')}\n\n`;
}
