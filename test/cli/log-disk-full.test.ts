// A full log disk never blocks or stops SMTP service: `mta run` writing its
// log to a small tmpfs keeps greeting and queueing while the file system is
// full, drops (and counts) the lines it cannot write, says so once on
// stderr, and logs how many it lost once space returns. Mounting needs root
// (CI runs as root); elsewhere the test is skipped with the reason.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { SmtpClient } from '../helpers/smtp-client.js';
import { REPO_ROOT, sampleMessage, sendData, tempDir, transaction, unusedTcpPort } from '../helpers/server.js';

function fillUp(file: string): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

async function oneMessage(port: number, rcpt: string): Promise<{ greeting: number; end: number }> {
  const c = await SmtpClient.connect(port);
  try {
    const greeting = (await c.greeting()).code;
    await transaction(c, 'a@example.org', [rcpt]);
    const end = (await sendData(c, sampleMessage('a@example.org', rcpt))).end.code;
    await c.command('QUIT');
    return { greeting, end };
  } finally {
    c.destroy();
  }
}

test('with its log file system full the server still greets and queues, warns once, and recovers', async (t) => {
  const work = tempDir('vsl-logfull-');
  const mnt = path.join(work, 'logs');
  fs.mkdirSync(mnt);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    fs.rmSync(work, { recursive: true, force: true });
    return t.skip(`cannot mount a tmpfs (needs root): ${(mounted.stderr || mounted.error?.message || '').trim()}`);
  }
  const logFile = path.join(mnt, 'mta.log');
  const logFd = fs.openSync(logFile, 'a');
  const port = await unusedTcpPort();
  const child = spawn(process.execPath, [
    path.join(REPO_ROOT, 'bin/mta.js'), 'run', '--config', path.join(REPO_ROOT, 'examples/doe-family/main.vsl'),
    '--listen', `127.0.0.1:${port}`, '--queue-dir', path.join(work, 'queue'), '--workers', '0', '--log-format', 'json',
    '--set', `vsl.data_dir=${path.join(work, 'data')}`,
  ], { stdio: ['ignore', logFd, 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    for (const deadline = Date.now() + 20_000; ; ) {
      const ok = await SmtpClient.connect(port).then((c) => (c.destroy(), true), () => false);
      if (ok) break;
      assert.ok(Date.now() < deadline, `the server did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    fillUp(path.join(mnt, 'filler'));
    for (let i = 0; i < 6; i++) {
      assert.deepEqual(await oneMessage(port, 'jane@doe-family.com'), { greeting: 220, end: 250 }, `session ${i} on a full log disk`);
    }
    assert.equal(child.exitCode, null, 'the server is still running');
    const warnings = stderr.split('\n').filter((l) => l.includes('cannot write the log'));
    assert.equal(warnings.length, 1, `one warning on stderr, got:\n${stderr}`);
    assert.match(warnings[0]!, /ENOSPC/);

    fs.rmSync(path.join(mnt, 'filler'));
    let resumed: Record<string, unknown> | undefined;
    for (const deadline = Date.now() + 10_000; resumed === undefined && Date.now() < deadline; ) {
      assert.deepEqual(await oneMessage(port, 'jane@doe-family.com'), { greeting: 220, end: 250 });
      resumed = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('log writes resumed')).map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    }
    assert.ok(resumed, 'the log says writes resumed');
    assert.ok((resumed.log_lines_dropped as number) > 0, 'and how many lines were dropped');
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    fs.closeSync(logFd);
    spawnSync('umount', [mnt]);
    fs.rmSync(work, { recursive: true, force: true });
  }
});
