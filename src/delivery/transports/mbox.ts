// transport::mbox: appended to the recipient's mbox file (`delivery.mbox`),
// mboxrd quoting, under a dot-lock as mail readers expect.

import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import type { MailAddress } from '../../mail/types.js';
import { addressText } from '../../mail/types.js';
import { deferred, delivered, type RcptResult } from '../outcome.js';
import { deliverEach, makeMailboxDirs, type MailboxDelivery, toLf } from './mailbox.js';
import type { TransportDef } from './transport.js';

/** ctime-style date (`Sat Nov 22 03:54:00 2025`, UTC) for the mbox `From ` line. */
export function mboxDate(now: number): string {
  const d = new Date(now);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p2(d.getUTCHours())}:${p2(
    d.getUTCMinutes(),
  )}:${p2(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/**
 * One mbox entry (mboxrd): the `From sender date` separator, the message
 * with LF line ends where every line matching `>*From ` gets one more `>`,
 * and a blank line.
 */
export function mboxEntry(mailFrom: MailAddress, message: Buffer, now: number): Buffer {
  const sender = mailFrom.isNull ? 'MAILER-DAEMON' : addressText(mailFrom).replace(/\s/g, '_');
  let body = toLf(message).toString('latin1');
  body = body.replace(/^(>*From )/gm, '>$1');
  if (!body.endsWith('\n')) body += '\n';
  return Buffer.from(`From ${sender} ${mboxDate(now)}\n${body}\n`, 'latin1');
}

const LOCK_WAIT_MS = 10_000;
const LOCK_STALE_MS = 5 * 60_000;

/** Takes `<mbox>.lock` (dot-locking, as mail readers expect); a lock older than 5 minutes is broken. */
async function lockMbox(file: string): Promise<() => Promise<void>> {
  const lock = `${file}.lock`;
  const started = Date.now();
  for (;;) {
    try {
      const fh = await fs.open(lock, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => fs.rm(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      const st = await fs.stat(lock);
      if (Date.now() - st.mtimeMs > LOCK_STALE_MS) {
        await fs.rm(lock, { force: true });
        continue;
      }
    } catch {
      continue; // released meanwhile
    }
    if (Date.now() - started > LOCK_WAIT_MS) throw new Error(`mailbox ${file} is locked`);
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
  }
}

/** Appends to an mbox file under its lock; a failed write is cut back so the mailbox stays well-formed. */
async function deliverMbox({ file, owner, rcpt, data }: MailboxDelivery, mailFrom: MailAddress, now: number): Promise<RcptResult> {
  const text = addressText(rcpt);
  try {
    await makeMailboxDirs(path.dirname(file), owner);
    const entry = mboxEntry(mailFrom, data, now);
    const unlock = await lockMbox(file);
    try {
      // O_NOFOLLOW: a symlink planted where the mailbox should be is not followed.
      const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = fsConstants;
      const fh = await fs.open(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
      let before = 0;
      try {
        const st = await fh.stat();
        before = st.size;
        if (owner && (st.uid !== owner.uid || st.gid !== owner.gid)) await fh.chown(owner.uid, owner.gid);
        await fh.write(entry);
        await fh.sync();
      } catch (err) {
        await fh.truncate(before).catch(() => undefined);
        throw err;
      } finally {
        await fh.close();
      }
    } finally {
      await unlock();
    }
    return delivered(text, `250 2.0.0 delivered to mbox ${file}`);
  } catch (err) {
    return deferred(text, `451 4.3.0 mbox delivery to ${file} failed: ${(err as Error).message}`, '4.3.0');
  }
}

export const mboxTransport: TransportDef = {
  kind: 'mbox',
  builtin: 'mbox',
  target: null,
  destination: () => 'mbox',
  deliver: (_t, job, ctx) => deliverEach(job, ctx, ctx.cfg.delivery.mbox, (d) => deliverMbox(d, job.mailFrom, ctx.now())),
};
