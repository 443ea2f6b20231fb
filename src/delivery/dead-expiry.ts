// Expiry of dead/ (`queue.dead_max_age`, "0s" = keep forever): a message
// that has been in dead/ longer than that is removed, with a log line. Its
// time of death is the modification time of its record, written when it
// was moved there (a rename keeps it). Run by the scheduler at start and at
// each stray-file collection (every 10 minutes).

import { promises as fs } from 'node:fs';
import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import { DEAD, type Spool, type SpoolLogger } from '../queue/spool.js';
import path from 'node:path';

/** Removes the dead messages older than queue.dead_max_age; returns how many. */
export async function expireDead(spool: Spool, cfg: Config, now: number, log: SpoolLogger): Promise<number> {
  const maxAge = parseDuration(cfg.queue.dead_max_age);
  if (maxAge <= 0) return 0;
  let removed = 0;
  for (const id of await spool.list(DEAD)) {
    let died: number;
    try {
      died = (await fs.stat(path.join(spool.dirOf(DEAD), `${id}.json`))).mtimeMs;
    } catch {
      continue; // removed meanwhile
    }
    if (now - died <= maxAge) continue;
    if (await spool.remove(id, DEAD)) {
      removed++;
      log.info({ queue_id: id, dead_since: new Date(died).toISOString() }, `queue: ${id} removed from dead/ after queue.dead_max_age (${cfg.queue.dead_max_age})`);
    }
  }
  return removed;
}
