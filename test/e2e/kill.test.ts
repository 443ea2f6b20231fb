// SIGKILL right after a 250 (issue "SMTP server", must-show 6): the CLI runs
// as a child process (`mta --config … --listen 127.0.0.1:0 --queue-dir …`,
// with its worker processes), the test sends messages over a real socket and
// kills the whole process group the moment the end-of-data 250 arrives. Every message acknowledged with a 250
// must then be in the spool, complete: its .eml and .json both present, the
// .json naming the right envelope, size and SHA-256 of the .eml.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { SmtpClient } from '../helpers/smtp-client.js';
import { queuedId, readSpool, recipientsOf, REPO_ROOT, tempDir, transaction, unusedTcpPort, writeFiles } from '../helpers/server.js';

const POLICY = `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = [];
  config
}
#{
  rcpt: [ rule "local only" || check_rcpt_relay([]) ],
}
`;

/** SIGKILL to the server and its workers (the whole process group). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Starts the CLI and resolves with its port, read from the `listening on` log line. */
function startCli(mainPath: string, queueDir: string, set: string[]): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const args = ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/main.ts'), '--config', mainPath, '--listen', '127.0.0.1:0', '--queue-dir', queueDir, '--log-format', 'json'];
  for (const s of set) args.push('--set', s);
  // Its own process group: `mta run` forks worker processes, and the kill must take them all at once.
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`the server did not start within 20 s:\n${out}`));
    }, 20_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const l = JSON.parse(line) as { msg?: string; port?: number };
          if (l.msg?.startsWith('listening on') && typeof l.port === 'number') {
            clearTimeout(timer);
            resolve({ child, port: l.port, output: () => out });
            return;
          }
        } catch {
          // a partial line: wait for the rest
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
}

/** A message of about `kb` KiB whose content the test can recognise. */
function bigMessage(tag: string, kb: number): string {
  const line = `${tag} `.repeat(Math.ceil(76 / (tag.length + 1))).slice(0, 76);
  const body = Array.from({ length: Math.ceil((kb * 1024) / 78) }, () => line).join('\r\n');
  return `From: <a@example.org>\r\nTo: <u@test.example>\r\nSubject: ${tag}\r\n\r\n${body}\r\n`;
}

test('SIGKILL right after the end-of-data 250 leaves every acknowledged message complete in the spool', async () => {
  const policyDir = tempDir('vsl-e2e-kill-policy-');
  const queueDir = tempDir('vsl-e2e-kill-queue-');
  writeFiles(policyDir, { 'main.vsl': POLICY });
  // Delivery would be attempted at once: send it to a closed local port, so
  // the scheduler only ever defers (it never reaches the network).
  const closedPort = await unusedTcpPort();
  const { child, port, output } = await startCli(path.join(policyDir, 'main.vsl'), queueDir, [`delivery.default=127.0.0.1:${closedPort}`]);
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  try {
    // Two sessions in flight; the kill comes as soon as the second 250 is read.
    const c1 = await SmtpClient.connect(port);
    const c2 = await SmtpClient.connect(port);
    await c1.greeting();
    await c2.greeting();
    const t1 = (await transaction(c1, 'a@example.org', ['u@test.example', 'v@test.example'])).map((r) => r.last);
    assert.deepEqual(t1.slice(1), ['250 2.1.0 Ok', '250 2.1.5 Ok', '250 2.1.5 Ok'], output());
    const t2 = (await transaction(c2, 'b@example.org', ['w@test.example'])).map((r) => r.last);
    assert.deepEqual(t2.slice(1), ['250 2.1.0 Ok', '250 2.1.5 Ok'], output());
    assert.equal((await c1.command('DATA')).code, 354, output());
    assert.equal((await c2.command('DATA')).code, 354, output());
    const bodies = new Map<string, string>();
    const m1 = bigMessage('first', 64);
    const end1 = await c1.data(m1);
    assert.match(end1.last, /^250 2\.0\.0 Ok: queued as /, output());
    bodies.set(queuedId(end1), m1);
    const m2 = bigMessage('second', 512);
    const end2 = await c2.data(m2);
    killGroup(child);
    assert.match(end2.last, /^250 2\.0\.0 Ok: queued as /);
    bodies.set(queuedId(end2), m2);
    assert.equal(await exited, 'SIGKILL');
    c1.destroy();
    c2.destroy();

    const spool = await readSpool(queueDir);
    for (const [id, body] of bodies) {
      const found = spool.filter((m) => m.id === id);
      assert.equal(found.length, 1, `${id} is in exactly one place of the spool`);
      const m = found[0]!;
      const eml = Buffer.from(m.eml, 'latin1');
      assert.equal(m.record.id, id);
      assert.equal(m.record.size, eml.length, 'the .json records the size of the .eml');
      assert.equal(m.record.sha256, createHash('sha256').update(eml).digest('hex'), 'the .eml is the message the .json describes');
      assert.ok(m.eml.startsWith('Received: '), 'the Received: header is there');
      assert.ok(m.eml.endsWith(body), 'the whole message, to its last byte');
    }
    const first = spool.find((m) => m.id === queuedId(end1))!;
    assert.deepEqual(recipientsOf(first), ['u@test.example', 'v@test.example']);
    assert.equal(`${first.record.mail_from.local}@${first.record.mail_from.domain}`, 'a@example.org');
    const second = spool.find((m) => m.id === queuedId(end2))!;
    assert.deepEqual(recipientsOf(second), ['w@test.example']);
    // Nothing else: no half-written message took a place in the spool.
    assert.equal(spool.length, 2);
    for (const place of ['active', 'deferred']) {
      for (const f of readdirSync(path.join(queueDir, place))) {
        assert.ok(bodies.has(f.replace(/\.(eml|json)$/, '')), `unexpected ${place}/${f}`);
      }
    }
  } finally {
    killGroup(child);
    await exited;
    rmSync(policyDir, { recursive: true, force: true });
    rmSync(queueDir, { recursive: true, force: true });
  }
});
