// Running as an unprivileged user (`server.user`, `server.group`): the
// server starts as root to bind port 25, then gives root up for good, so a
// bug in the SMTP front, the policy or delivery cannot act as root.
//
//   startup, as root:  load main.vsl → open the spool → give the spool and
//                      vsl.data_dir to the user (giveSpoolTo) → bind
//   dropPrivileges:    supplementary groups, gid, then uid (that order: once
//                      the uid is not 0 the others cannot change)
//   after:             sessions, delivery, reloads and policy data files run
//                      as the user (main.vsl and its files must be readable by it).
//
// With `server.user` empty (the default) nothing changes.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { lookupGroup, lookupUser } from '../host/accounts.js';
import type { Config } from '../config/schema.js';

export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user and group the configuration asks to run as; null when server.user is empty. Throws for unknown names. */
export function serverUser(cfg: Config): ServerUser | null {
  const name = cfg.server.user.trim();
  if (name === '') return null;
  const user = lookupUser(name);
  if (!user) throw new Error(`server.user: no system user ${JSON.stringify(name)}`);
  const groupName = cfg.server.group.trim();
  const gid = groupName === '' ? user.gid : lookupGroup(groupName);
  if (gid === null) throw new Error(`server.group: no system group ${JSON.stringify(groupName)}`);
  return { name: user.name, uid: user.uid, gid };
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.lchown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
}

/** Gives the spool (queue.dir) and vsl.data_dir, when they exist, to the server user; run as root before dropping. */
export async function giveSpoolTo(cfg: Config, log: Logger): Promise<void> {
  const user = serverUser(cfg);
  if (!user || !isRoot()) return;
  for (const dir of [cfg.queue.dir, cfg.vsl.data_dir]) {
    try {
      await chownTree(dir, user.uid, user.gid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  log.debug({ user: user.name, queue: cfg.queue.dir }, `the spool belongs to ${user.name}`);
}

/**
 * Switches this process to server.user / server.group for good. Not being
 * root is fine when we already are that user; otherwise it is an error (the
 * server must not run as someone else than configured).
 */
export function dropPrivileges(cfg: Config, log: Logger): void {
  const user = serverUser(cfg);
  if (!user) return;
  if (!isRoot()) {
    if (process.getuid?.() === user.uid) return;
    throw new Error(`server.user is ${user.name}, but the server runs as uid ${process.getuid?.()} and cannot switch (start it as root or as ${user.name})`);
  }
  // initgroups is in Node on POSIX systems, but not in @types/node 20.
  (process as unknown as { initgroups(user: string, extraGroup: number): void }).initgroups(user.name, user.gid);
  process.setgid!(user.gid);
  process.setuid!(user.uid);
  if (process.getuid!() !== user.uid || process.getgid!() !== user.gid) throw new Error(`could not switch to ${user.name}`);
  log.info({ user: user.name, uid: user.uid, gid: user.gid }, `running as ${user.name} (uid ${user.uid}, gid ${user.gid})`);
}
