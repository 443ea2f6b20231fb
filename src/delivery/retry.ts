// Retry timing (SPEC §9.2 delivery.retry, delivery.max_age): after the n-th
// failed attempt the next one comes after the n-th delay of the schedule
// (the last one repeating), plus up to 10 % jitter so that messages
// deferred together do not all come back in the same second. Jitter only
// delays: a retry never happens before its scheduled time.

import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/units.js';

export const JITTER = 0.1;

export function retrySchedule(cfg: Config): number[] {
  const s = cfg.delivery.retry.map(parseDuration).filter((ms) => ms > 0);
  return s.length > 0 ? s : [5 * 60_000];
}

/** Delay before the attempt following the `attempts`-th one (attempts ≥ 1). */
export function retryDelay(schedule: number[], attempts: number, random: () => number = Math.random): number {
  const base = schedule[Math.min(Math.max(attempts, 1), schedule.length) - 1]!;
  return base + Math.floor(base * JITTER * random());
}

/** Whether a message whose age counts from `ageBase` is past delivery.max_age at `now`. */
export function isExpired(cfg: Config, ageBase: string, now: number): boolean {
  return now - Date.parse(ageBase) >= parseDuration(cfg.delivery.max_age);
}
