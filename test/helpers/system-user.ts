// A system user created for one test (useradd --system, no home, no login)
// and removed after: tests run as root here and in CI. Returns null when
// not root or useradd is missing.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface SystemUser {
  name: string;
  uid: number;
  gid: number;
  remove(): void;
}

function idOf(flag: '-u' | '-g', name: string): number {
  return Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
}

export function createSystemUser(prefix: string): SystemUser | null {
  if (process.getuid?.() !== 0) return null;
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  const made = spawnSync('useradd', ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', name], { encoding: 'utf8' });
  if (made.status !== 0) return null;
  return {
    name,
    uid: idOf('-u', name),
    gid: idOf('-g', name),
    remove: () => void spawnSync('userdel', [name], { stdio: 'ignore' }),
  };
}
