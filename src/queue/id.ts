// Queue ids (SPEC §10): one id names a message from MAIL (it is also the
// transaction id, SPEC §4.2) until it leaves the spool. They must be unique
// across processes and restarts and safe as file names, so they are built
// from the time, the process id, a per-process counter and a little
// randomness, written in Crockford base32 (digits and upper-case letters
// without I, L, O, U). The time comes first so ids sort by age.

import { randomInt } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function base32(n: number, width: number): string {
  let out = '';
  let v = Math.floor(n);
  for (let i = 0; i < width; i++) {
    out = ALPHABET[v % 32]! + out;
    v = Math.floor(v / 32);
  }
  return out;
}

let counter = randomInt(0, 32 ** 4);

/**
 * A new queue id, 21 characters: 10 for the time in ms, 5 for the pid, 4 for
 * a counter and 2 random. Two ids from one process differ by the counter
 * (2^20 per millisecond would be needed to wrap); two processes alive at the
 * same time differ by pid; a restarted process reusing a pid differs by time.
 */
export function newQueueId(now: number = Date.now()): string {
  counter = (counter + 1) % 32 ** 4;
  return base32(now, 10) + base32(process.pid, 5) + base32(counter, 4) + base32(randomInt(0, 1024), 2);
}

/**
 * Whether `id` may name a message in the spool: letters, digits, `-` and `_`,
 * 1–64 characters, starting with a letter or digit. Ids from newQueueId pass,
 * as do derived ids such as a bounce's `<id>-B1`. Everything reading an id
 * from outside (CLI arguments, file names) checks it, so no path can escape
 * the spool.
 */
export function isQueueId(id: string): boolean {
  return /^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$/.test(id);
}

/** A quarantine name (SPEC §5.1). */
export function isQuarantineName(name: string): boolean {
  return /^[A-Za-z0-9_-]{1,64}$/.test(name);
}
