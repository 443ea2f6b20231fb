// Starts a real, private Dovecot for a test: only its LMTP service, on a
// free loopback port and a unix socket in its own base_dir, no TLS, users
// from a passwd-file (one uid/gid for all of them), maildirs under its own
// temporary directory. `stop()` ends it and removes the directory. Needs
// root (Dovecot's master runs as root) and Debian's dovecot-core and
// dovecot-lmtpd; returns null when they are missing.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, chownSync, chmodSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.js';

export interface TestDovecot {
  port: number;
  /** The LMTP unix socket. */
  socket: string;
  /** The maildir of a user (`<dir>/mail/<user>/Maildir`). */
  maildir(user: string): string;
  stop(): Promise<void>;
}

export function dovecotAvailable(): boolean {
  return (
    process.getuid?.() === 0 &&
    spawnSync('dovecot', ['--version'], { stdio: 'ignore' }).status === 0 &&
    existsSync('/usr/lib/dovecot/lmtp')
  );
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('data', (d) => done(d.toString().startsWith('220')));
    sock.on('error', () => done(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts Dovecot with LMTP for `users`, whose mail files belong to uid:gid. */
export async function startDovecot(users: string[], owner: { uid: number; gid: number }): Promise<TestDovecot | null> {
  if (!dovecotAvailable()) return null;
  const dir = mkdtempSync(join(tmpdir(), 'dovecot-'));
  // Its auth process runs as the dovecot user and reads the users file.
  chmodSync(dir, 0o755);
  const port = await freePort();
  for (const sub of ['run', 'state', 'mail']) mkdirSync(join(dir, sub));
  chownSync(join(dir, 'mail'), owner.uid, owner.gid);
  const passwd = users.map((u) => `${u}::${owner.uid}:${owner.gid}::${join(dir, 'mail', u)}::`).join('\n');
  writeFileSync(join(dir, 'users'), `${passwd}\n`);
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    [
      `base_dir = ${join(dir, 'run')}`,
      `state_dir = ${join(dir, 'state')}`,
      `log_path = ${join(dir, 'dovecot.log')}`,
      'ssl = no',
      'protocols = lmtp',
      'listen = 127.0.0.1',
      'first_valid_uid = 1',
      'auth_username_format = %Ln',
      'mail_location = maildir:~/Maildir',
      `passdb {\n  driver = passwd-file\n  args = username_format=%Ln ${join(dir, 'users')}\n}`,
      `userdb {\n  driver = passwd-file\n  args = username_format=%Ln ${join(dir, 'users')}\n}`,
      `service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = ${port}\n  }\n  unix_listener lmtp {\n    mode = 0666\n  }\n}`,
      '',
    ].join('\n'),
  );
  const child = spawn('dovecot', ['-F', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited(child);
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    if (await answers(port)) {
      return { port, socket: join(dir, 'run', 'lmtp'), maildir: (u) => join(dir, 'mail', u, 'Maildir'), stop };
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`dovecot did not start: ${stderr.trim()}`);
}
