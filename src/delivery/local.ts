// Local delivery (SPEC §7.6): maildir and mbox files whose paths come from
// the `delivery.maildir` / `delivery.mbox` templates with `{domain}` and
// `{local_part}`. Because the address is attacker-chosen and becomes a path,
// the local part is lower-cased and must match [a-z0-9._+-]+ without a
// leading dot, and the domain must be a plain DNS name; anything else fails
// that recipient permanently. Local file errors (permissions, full disk)
// are temporary: the message waits in the queue until they are fixed.

import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MailAddress } from '../mail/types.js';
import { addressText } from '../mail/types.js';
import { prependFields } from '../queue/message.js';
import { deferred, delivered, failed, type RcptResult } from './outcome.js';

export class LocalPathError extends Error {}

/** The file path for a recipient, or a LocalPathError explaining why the address cannot be one. */
export function localPath(template: string, rcpt: MailAddress): string {
  const local = rcpt.local.toLowerCase();
  if (!/^[a-z0-9._+-]+$/.test(local) || local.startsWith('.')) {
    throw new LocalPathError(`local part ${JSON.stringify(rcpt.local)} is not usable as a mailbox name`);
  }
  const domain = rcpt.domain.toLowerCase();
  if (template.includes('{domain}') && (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(domain) || domain.length > 253)) {
    throw new LocalPathError(`domain ${JSON.stringify(rcpt.domain)} is not usable in a mailbox path`);
  }
  const p = template.replaceAll('{domain}', domain).replaceAll('{local_part}', local);
  if (!path.isAbsolute(p)) throw new Error(`mailbox path ${JSON.stringify(p)} is not absolute (check delivery.maildir / delivery.mbox)`);
  return path.normalize(p);
}

/** Trace fields a local delivery agent adds: who sent it (envelope) and who it was delivered to. */
function withTrace(message: Buffer, mailFrom: MailAddress, rcpt: MailAddress): Buffer {
  return prependFields(message, [
    ['Return-Path', `<${addressText(mailFrom)}>`],
    ['Delivered-To', addressText(rcpt)],
  ]);
}

/** Local mailbox files use LF line ends. */
function toLf(data: Buffer): Buffer {
  return Buffer.from(data.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

let maildirSeq = 0;

/** A maildir file name unique across processes and hosts (the usual time.MusecPpidQseq.host form). */
export function maildirName(now: number): string {
  maildirSeq++;
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  const host = os.hostname().replace(/\//g, '\\057').replace(/:/g, '\\072');
  return `${sec}.M${usec}P${process.pid}Q${maildirSeq}R${randomBytes(4).toString('hex')}.${host}`;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The mailbox path for a recipient, or the result to report when there is
 * none: an unusable local part fails permanently (5.1.3), anything else
 * (an unreadable template, say) defers.
 */
function resolveLocal(template: string, rcpt: MailAddress): string | RcptResult {
  try {
    return localPath(template, rcpt);
  } catch (err) {
    const text = addressText(rcpt);
    if (err instanceof LocalPathError) return failed(text, `550 5.1.3 ${err.message}`, '5.1.3');
    return deferred(text, `451 4.3.0 ${(err as Error).message}`, '4.3.0');
  }
}

/**
 * Delivers into a maildir: the file is written and fsynced in tmp/, then
 * linked into new/ (a link never replaces an existing file) and the tmp/
 * name removed, so a reader never sees a partial message.
 */
export async function deliverMaildir(
  template: string,
  mailFrom: MailAddress,
  rcpt: MailAddress,
  message: Buffer,
  now: number,
): Promise<RcptResult> {
  const text = addressText(rcpt);
  const where = resolveLocal(template, rcpt);
  if (typeof where !== 'string') return where;
  const dir = where;
  try {
    for (const sub of ['tmp', 'new', 'cur']) await fs.mkdir(path.join(dir, sub), { recursive: true, mode: 0o700 });
    const data = toLf(withTrace(message, mailFrom, rcpt));
    for (let attempt = 0; ; attempt++) {
      const name = maildirName(now);
      const tmp = path.join(dir, 'tmp', name);
      try {
        const fh = await fs.open(tmp, 'wx', 0o600);
        try {
          await fh.writeFile(data);
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
export async function deliverMbox(
  template: string,
  mailFrom: MailAddress,
  rcpt: MailAddress,
  message: Buffer,
  now: number,
): Promise<RcptResult> {
  const text = addressText(rcpt);
  const where = resolveLocal(template, rcpt);
  if (typeof where !== 'string') return where;
  const file = where;
  try {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const entry = mboxEntry(mailFrom, withTrace(message, mailFrom, rcpt), now);
    const unlock = await lockMbox(file);
    try {
      // O_NOFOLLOW: a symlink planted where the mailbox should be is not followed.
      const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = fsConstants;
      const fh = await fs.open(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
      let before = 0;
      try {
        before = (await fh.stat()).size;
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
