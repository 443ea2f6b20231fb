// transport::maildir: one file per message in the recipient's maildir
// (`delivery.maildir`), written in tmp/ and linked into new/.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addressText } from '../../mail/types.js';
import { deferred, delivered, type RcptResult } from '../outcome.js';
import { deliverEach, makeMailboxDirs, type MailboxDelivery, syncDir } from './mailbox.js';
import type { TransportDef } from './transport.js';

let maildirSeq = 0;

/** A maildir file name unique across processes and hosts (the usual time.MusecPpidQseq.host form). */
export function maildirName(now: number): string {
  maildirSeq++;
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  const host = os.hostname().replace(/\//g, '\\057').replace(/:/g, '\\072');
  return `${sec}.M${usec}P${process.pid}Q${maildirSeq}R${randomBytes(4).toString('hex')}.${host}`;
}

/**
 * Delivers into a maildir: the file is written and fsynced in tmp/, then
 * linked into new/ (a link never replaces an existing file) and the tmp/
 * name removed, so a reader never sees a partial message.
 */
async function deliverMaildir({ file: dir, owner, rcpt, data }: MailboxDelivery, now: number): Promise<RcptResult> {
  const text = addressText(rcpt);
  try {
    for (const sub of ['tmp', 'new', 'cur']) await makeMailboxDirs(path.join(dir, sub), owner);
    for (let attempt = 0; ; attempt++) {
      const name = maildirName(now);
      const tmp = path.join(dir, 'tmp', name);
      try {
        const fh = await fs.open(tmp, 'wx', 0o600);
        try {
          await fh.writeFile(data);
          if (owner) await fh.chown(owner.uid, owner.gid);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await fs.link(tmp, path.join(dir, 'new', name));
      } catch (err) {
        await fs.rm(tmp, { force: true });
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 3) continue;
        throw err;
      }
      await fs.rm(tmp, { force: true });
      await syncDir(path.join(dir, 'new'));
      return delivered(text, `250 2.0.0 delivered to maildir ${path.join(dir, 'new', name)}`);
    }
  } catch (err) {
    return deferred(text, `451 4.3.0 maildir delivery to ${dir} failed: ${(err as Error).message}`, '4.3.0');
  }
}

export const maildirTransport: TransportDef = {
  kind: 'maildir',
  builtin: 'maildir',
  target: null,
  destination: () => 'maildir',
  deliver: (_t, job, ctx) => deliverEach(job, ctx, ctx.cfg.delivery.maildir, (d) => deliverMaildir(d, ctx.now())),
};
