// What `mta test` keeps of the messages a transcript got accepted: a
// MessageSink holding them in memory (no spool, no delivery), and the
// `@expect` checks on them (SPEC §11.3).

import type { EnqueueRequest, MessageSink } from '../../smtp/sink.js';
import { addressText } from '../../mail/types.js';
import type { ExpectCheck } from './parse.js';

export interface AcceptedMessage {
  id: string;
  rcpts: string[];
  /** Quarantine name, or null for the active queue. */
  quarantine: string | null;
  data: Buffer;
}

export class MemorySink implements MessageSink {
  readonly messages: AcceptedMessage[] = [];

  async enqueue(req: EnqueueRequest): Promise<void> {
    this.messages.push({
      id: req.id,
      rcpts: req.rcpts.map((r) => addressText(r.address)),
      quarantine: req.quarantine ?? null,
      data: Buffer.from(req.data),
    });
  }
}

/** The header fields of a message: unfolded, names as written. */
export function headerFields(data: Buffer): Array<{ name: string; value: string }> {
  const text = data.toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  const out: Array<{ name: string; value: string }> = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length > 0) {
      out[out.length - 1]!.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon > 0) out.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  }
  return out;
}

/** Local part as written, domain without case. */
function sameAddress(a: string, b: string): boolean {
  const at = (s: string): [string, string] => {
    const i = s.lastIndexOf('@');
    return [s.slice(0, i), s.slice(i + 1).toLowerCase()];
  };
  const [la, da] = at(a);
  const [lb, db] = at(b);
  return la === lb && da === db;
}

/** Evaluates one `@expect`: null when it holds, else what was found instead. */
export function checkExpectation(check: ExpectCheck, messages: AcceptedMessage[]): string | null {
  const last = messages[messages.length - 1];
  switch (check.kind) {
    case 'queued': {
      const n = messages.filter((m) => m.quarantine === null).length;
      return n === check.count ? null : `expected ${check.count} queued message(s), got ${n}`;
    }
    case 'quarantined': {
      const n = messages.filter((m) => m.quarantine === check.name).length;
      return n === check.count ? null : `expected ${check.count} message(s) in quarantine "${check.name}", got ${n}`;
    }
    case 'header': {
      if (!last) return `expected a header ${check.name}, but no message was accepted`;
      const fields = headerFields(last.data).filter((f) => f.name.toLowerCase() === check.name.toLowerCase());
      if (fields.some((f) => f.value.startsWith(check.prefix))) return null;
      if (fields.length === 0) return `expected a header ${check.name}: ${check.prefix}…, the last message has no ${check.name} header`;
      return `expected a header ${check.name}: ${check.prefix}…, got ${fields.map((f) => `"${f.name}: ${f.value}"`).join(', ')}`;
    }
    case 'rcpt':
    case 'no-rcpt': {
      if (!last) return `expected a message${check.kind === 'rcpt' ? ' for' : ' not for'} ${check.address}, but no message was accepted`;
      const has = last.rcpts.some((r) => sameAddress(r, check.address));
      if (has === (check.kind === 'rcpt')) return null;
      const list = last.rcpts.length ? last.rcpts.join(', ') : 'none';
      return check.kind === 'rcpt' ? `expected ${check.address} among the recipients of the last message, got ${list}` : `expected ${check.address} not among the recipients of the last message, got ${list}`;
    }
  }
}
