// server.user: the server binds as root, then runs as that user; the spool
// belongs to it, and so do the mailbox files it delivers (so Dovecot running
// as that user reads them). With and without worker processes.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { freePort } from '../helpers/redis.js';
import { REPO_ROOT } from '../helpers/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { createSystemUser } from '../helpers/system-user.js';

const POLICY = (dir: string, user: string) => `fn on_config(config) {
  config.server.domain = "doe-family.com";
  config.server.user = "${user}";
  config.queue.dir = "${dir}/queue";
  config.vsl.data_dir = "${dir}/data";
  config.delivery.maildir = "${dir}/mail/{local_part}/Maildir";
  config
}
#{
  rcpt: [
    action "local mailboxes" || { if in_domain(ctx::rcpt()) { transport::maildir(ctx::rcpt()); } },
  ],
}
`;

/** The uid of a running process, from /proc. */
function uidOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

/** The pids of a process and its children (the cluster workers). */
function family(pid: number): number[] {
  const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children];
}

async function waitFor<T>(what: string, probe: () => Promise<T | null> | T | null, ms = 15_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    const v = await probe();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const canConnect = (port: number) =>
  new Promise<true | null>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(null));
  });

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

describe('server.user', { skip: process.getuid?.() !== 0 && 'needs root (to create a user and bind as root)' }, () => {
  for (const workers of ['0', '1']) {
    test(`with --workers ${workers}: every process runs as the user, which owns the spool and the delivered maildir files`, async () => {
      const user = createSystemUser('mtadrop')!;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'privilege-drop-'));
      fs.chmodSync(dir, 0o755); // the user reads the policy and creates mailboxes below
      fs.writeFileSync(path.join(dir, 'main.vsl'), POLICY(dir, user.name));
      fs.mkdirSync(path.join(dir, 'mail'));
      fs.chownSync(path.join(dir, 'mail'), user.uid, user.gid);
      const port = await freePort();
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'mta.js'), '--config', path.join(dir, 'main.vsl'), '--listen', `127.0.0.1:${port}`, '--workers', workers], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (d) => (output += d));
      child.stderr!.on('data', (d) => (output += d));
      try {
        await waitFor(`the listener (${output})`, () => canConnect(port));
        // Delivery starts once root is given up; the log line says so.
        await waitFor('the privilege drop', () => (output.includes(`running as ${user.name}`) ? true : null));
        // With workers, the primary gives up root once a worker reports listening, a moment after the worker's own line.
        await waitFor('every process running as the user', () => (family(child.pid!).every((pid) => uidOf(pid) === user.uid) ? true : null));
        for (const pid of family(child.pid!)) assert.equal(uidOf(pid), user.uid, `process ${pid} runs as ${user.name}`);
        assert.equal(fs.statSync(path.join(dir, 'queue')).uid, user.uid, 'the spool belongs to the user');

        const c = await SmtpClient.connect(port);
        await c.greeting();
        await c.ehlo();
        assert.equal((await c.command('MAIL FROM:<someone@example.net>')).code, 250);
        assert.equal((await c.command('RCPT TO:<jane@doe-family.com>')).code, 250);
        assert.equal((await c.command('DATA')).code, 354);
        assert.equal((await c.data('Subject: owned\r\n\r\nhello\r\n')).code, 250, output);
        await c.quit();
        const inbox = path.join(dir, 'mail', 'jane', 'Maildir', 'new');
        const file = await waitFor('the delivered file', () => (fs.existsSync(inbox) && fs.readdirSync(inbox)[0]) || null);
        const st = fs.statSync(path.join(inbox, file));
        assert.equal(st.uid, user.uid, 'the mailbox file belongs to the user');
        assert.equal(st.gid, user.gid);
        assert.equal(fs.statSync(path.join(dir, 'mail', 'jane', 'Maildir')).uid, user.uid, 'so does the maildir');
      } finally {
        await stop(child);
        fs.rmSync(dir, { recursive: true, force: true });
        user.remove();
      }
    });
  }
});
