// What the local mailbox transports (maildir, mbox) share (SPEC §7.6):
// files whose paths come from the `delivery.maildir` / `delivery.mbox`
// templates with `{domain}` and `{local_part}`, trace fields, LF line ends,
// and the mailbox owner.
//
// Because the address is attacker-chosen and becomes a path, the local part
// is lower-cased and must match [a-z0-9._+-]+ without a leading dot, and the
// domain must be a plain DNS name; anything else fails that recipient
// permanently. Local file errors (permissions, full disk) are temporary: the
// message waits in the queue until they are fixed.
//
// Ownership (`delivery.mailbox_owner`): "" leaves files to the user the
// server runs as (after the drop to `server.user`, that user: the usual
// virtual-mail setup runs as `vmail`); a user name gives every mailbox to
// that one user; "{local_part}" gives each to the system user of that name.
// Giving files to another user needs root, so with `server.user` set the
// owner must be that user (or ""): anything else defers with the reason.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { lookupUser } from '../../host/accounts.js';
import type { Config } from '../../config/schema.js';
import type { MailAddress } from '../../mail/types.js';
import { addressText } from '../../mail/types.js';
import { prependFields } from '../../queue/message.js';
import { deferred, failed, type RcptResult } from '../outcome.js';
import type { DeliveryJob, TransportContext } from './transport.js';

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
export function withTrace(message: Buffer, mailFrom: MailAddress, rcpt: MailAddress): Buffer {
  return prependFields(message, [
    ['Return-Path', `<${addressText(mailFrom)}>`],
    ['Delivered-To', addressText(rcpt)],
  ]);
}

/** Local mailbox files use LF line ends. */
export function toLf(data: Buffer): Buffer {
  return Buffer.from(data.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

export async function syncDir(dir: string): Promise<void> {
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
export function resolveLocal(template: string, rcpt: MailAddress): string | RcptResult {
  try {
    return localPath(template, rcpt);
  } catch (err) {
    const text = addressText(rcpt);
    if (err instanceof LocalPathError) return failed(text, `550 5.1.3 ${err.message}`, '5.1.3');
    return deferred(text, `451 4.3.0 ${(err as Error).message}`, '4.3.0');
  }
}


/** uid and gid files of a mailbox are given to; null = leave them to the process's user. */
export interface MailboxOwner {
  uid: number;
  gid: number;
}

/** Why a mailbox cannot get its owner: permanent when the local user does not exist. */
class OwnerError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

/** The owner `delivery.mailbox_owner` names for a recipient (null: the process's own user). */
export function mailboxOwner(cfg: Config, rcpt: MailAddress): MailboxOwner | null {
  const setting = cfg.delivery.mailbox_owner.trim();
  if (setting === '') return null;
  const perUser = setting === '{local_part}';
  const name = perUser ? rcpt.local.toLowerCase() : setting;
  const user = lookupUser(name);
  if (!user) {
    throw perUser
      ? new OwnerError(`550 5.1.1 no local user ${JSON.stringify(name)}`, true)
      : new OwnerError(`451 4.3.5 delivery.mailbox_owner: no system user ${JSON.stringify(name)}`, false);
  }
  if (typeof process.getuid === 'function' && user.uid === process.getuid() && user.gid === process.getgid!()) return null;
  return { uid: user.uid, gid: user.gid };
}

/** Gives a file or directory to the mailbox owner (nothing to do when the owner is the process's user). */
export async function giveTo(file: string, owner: MailboxOwner | null): Promise<void> {
  if (owner) await fs.chown(file, owner.uid, owner.gid);
}

/** mkdir -p that gives every directory it creates to the owner (a reader running as the owner must traverse them). */
export async function makeMailboxDirs(dir: string, owner: MailboxOwner | null): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (!first || !owner) return;
  for (let d = dir; ; d = path.dirname(d)) {
    await giveTo(d, owner);
    if (d === first || d === path.dirname(d)) break;
  }
}

/** One local mailbox delivery: the path, the owner and the message with its trace fields. */
export interface MailboxDelivery {
  file: string;
  owner: MailboxOwner | null;
  rcpt: MailAddress;
  /** The message with Return-Path and Delivered-To, LF line ends. */
  data: Buffer;
}

/**
 * Runs a local delivery for each recipient of the job, each within the
 * overall delivery concurrency; resolves the path and owner first, so a
 * bad address or an unknown owner is reported without touching the disk.
 */
export function deliverEach(
  job: DeliveryJob,
  ctx: TransportContext,
  template: string,
  one: (d: MailboxDelivery) => Promise<RcptResult>,
): Promise<RcptResult[]> {
  return Promise.all(
    job.rcpts.map((rcpt) => {
      const where = resolveLocal(template, rcpt);
      if (typeof where !== 'string') return where;
      let owner: MailboxOwner | null;
      try {
        owner = mailboxOwner(ctx.cfg, rcpt);
      } catch (err) {
        const text = addressText(rcpt);
        if (err instanceof OwnerError && err.permanent) return failed(text, err.message, '5.1.1');
        return deferred(text, (err as Error).message, '4.3.5');
      }
      const data = toLf(withTrace(job.message, job.mailFrom, rcpt));
      return ctx.pool.runLocal(() => one({ file: where, owner, rcpt, data }));
    }),
  );
}
