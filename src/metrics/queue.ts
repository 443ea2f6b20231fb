// The queue gauge's source: how many messages each spool state holds, read
// at scrape time from the spool directories.

import { placeLabel, type Spool } from '../queue/spool.js';

export function spoolCounts(spool: Spool): () => Promise<Record<string, number>> {
  return async () => {
    const out: Record<string, number> = { active: 0, deferred: 0, dead: 0 };
    for (const p of await spool.places()) out[placeLabel(p)] = (await spool.list(p)).length;
    return out;
  };
}
