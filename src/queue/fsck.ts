// A consistency check of a spool, for the crash tests and for operators:
// every message is in exactly one place, its record parses, and its
// message file matches the size and hash the record holds.

import { CorruptMessageError, placeLabel, type Spool } from './spool.js';
import { errCode } from './durable.js';

export interface SpoolCheck {
  /** Every message found, with its place label (`active`, `quarantine:NAME`, …). */
  messages: Map<string, string>;
  /** Everything wrong: duplicates across places, unreadable or mismatching pairs. */
  problems: string[];
}

export async function checkSpool(spool: Spool): Promise<SpoolCheck> {
  const messages = new Map<string, string>();
  const problems: string[] = [];
  for (const place of await spool.places()) {
    const label = placeLabel(place);
    for (const id of await spool.list(place)) {
      const seen = messages.get(id);
      if (seen !== undefined) problems.push(`${id}: in both ${seen} and ${label}`);
      messages.set(id, label);
      try {
        await spool.read(place, id); // parses the record and checks the message against it
      } catch (err) {
        if (errCode(err) === 'ENOENT') continue; // moved while we looked
        problems.push(err instanceof CorruptMessageError ? err.message : `${id}: ${(err as Error).message}`);
      }
    }
  }
  return { messages, problems };
}
