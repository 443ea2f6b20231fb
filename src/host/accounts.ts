// System users and groups, read from /etc/passwd and /etc/group (no NSS, no
// shelling out): user_exist (SPEC §7.2), the user/group of cmd services
// (§7.12), mailbox owners and server.user (a port to the system, so in host/).

import fs from 'node:fs';

export interface SystemUser {
  name: string;
  uid: number;
  gid: number;
}

function lines(file: string): string[][] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/** A user by name, or by numeric uid when `name` is all digits; null when unknown. */
export function lookupUser(name: string, passwd = '/etc/passwd'): SystemUser | null {
  for (const f of lines(passwd)) {
    if (f.length < 4) continue;
    if (f[0] === name || (/^\d+$/.test(name) && f[2] === name)) {
      const uid = Number(f[2]);
      const gid = Number(f[3]);
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { name: f[0]!, uid, gid };
    }
  }
  return null;
}

/** A group id by name or number; null when unknown. */
export function lookupGroup(name: string, group = '/etc/group'): number | null {
  for (const f of lines(group)) {
    if (f.length < 3) continue;
    if (f[0] === name || (/^\d+$/.test(name) && f[2] === name)) {
      const gid = Number(f[2]);
      if (Number.isInteger(gid)) return gid;
    }
  }
  return null;
}
