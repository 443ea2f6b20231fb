// Crash safety of enqueue at the queue level: a child process enqueues
// messages (several at once, so group commits overlap) and reports each id
// once its enqueue resolved; it is killed with SIGKILL at a random moment.
// After recovery every reported message must be present, complete and in
// exactly one place, and the spool must be consistent.
//
// This file is also the child: run with MTA_CRASH_CHILD=<dir> it enqueues
// until killed instead of defining tests.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkSpool } from '../../src/queue/fsck.js';
import { newQueueId } from '../../src/queue/id.js';
import { ACTIVE, Spool } from '../../src/queue/spool.js';

/** The message for an id: its size and content follow from the id alone, so the parent can check it. */
function messageFor(id: string): Buffer {
  const h = createHash('sha256').update(id).digest('hex');
  const size = 100 + (parseInt(h.slice(0, 8), 16) % 60_000);
  const line = `${h}${h}`.slice(0, 76);
  const lines: string[] = [];
  for (let n = 0; n * 78 < size; n++) lines.push(line);
  return Buffer.from(`Message-ID: <${id}@crash.test>\r\nSubject: crash ${id}\r\n\r\n${lines.join('\r\n')}\r\n`);
}

async function child(dir: string): Promise<never> {
  const spool = await Spool.open(dir);
  const session = {
    id: 'crash', listener: 'smtp' as const, client_ip: '127.0.0.1', client_port: 1, server_ip: '127.0.0.1', server_port: 25,
    server_name: 'crash.test', connected_at: new Date().toISOString(), tls: null, helo: 'crash.test', esmtp: true,
    auth: null, reverse_name: null, remembered: null,
  };
  const worker = async () => {
    for (;;) {
      const id = newQueueId();
      await spool.enqueue({
        id,
        mailFrom: { local: 'a', domain: 'crash.test', raw: '<a@crash.test>', isNull: false },
        rcpts: [{ address: { local: 'b', domain: 'crash.test', raw: '<b@crash.test>', isNull: false }, transport: { kind: 'default' } }],
        data: messageFor(id),
        session,
        txnRemembered: null,
      });
      // Pipes are written synchronously on Linux: once this returns the line is the parent's.
      process.stdout.write(`OK ${id}\n`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  throw new Error('unreachable');
}

const childDir = process.env.MTA_CRASH_CHILD;
if (childDir) {
  await child(childDir);
} else {
  test('enqueues that resolved survive SIGKILL at random moments: complete, in one place, never duplicated', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'crash-test-'));
    const acknowledged = new Set<string>();
    const self = fileURLToPath(import.meta.url);
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--test'));
    try {
      for (let round = 0; round < 4; round++) {
        const killAfter = 1 + Math.floor(Math.random() * 60);
        const proc = spawn(process.execPath, [...execArgv, self], {
          env: { ...process.env, MTA_CRASH_CHILD: dir },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        let buffered = '';
        let count = 0;
        const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`child produced ${count} acknowledgements in 30 s: ${stderr}`)), 30_000);
          proc.stdout.on('data', (c: Buffer) => {
            buffered += c.toString();
            const lines = buffered.split('\n');
            buffered = lines.pop()!;
            for (const l of lines) {
              if (!l.startsWith('OK ')) continue;
              acknowledged.add(l.slice(3));
              count++;
            }
            if (count >= killAfter && proc.exitCode === null) {
              proc.kill('SIGKILL');
              clearTimeout(timer);
              resolve();
            }
          });
          proc.on('exit', () => {
            clearTimeout(timer);
            if (count < killAfter) reject(new Error(`child exited early: ${stderr}`));
          });
        });
        await exited;
        // Lines written before the kill may still be in the pipe.
        for (const l of buffered.split('\n')) if (l.startsWith('OK ')) acknowledged.add(l.slice(3));

        const spool = await Spool.open(dir);
        const report = await spool.recover();
        assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), [], `round ${round}: the dead writer's temporary files are gone`);
        const check = await checkSpool(spool);
        assert.deepEqual(check.problems, [], `round ${round}: spool consistent`);
        for (const id of acknowledged) {
          assert.equal(check.messages.get(id), 'active', `round ${round}: acknowledged ${id} is queued`);
          const { record, message } = await spool.read(ACTIVE, id);
          assert.deepEqual(message, messageFor(id), `round ${round}: ${id} complete`);
          assert.equal(record.recipients.length, 1);
        }
        assert.ok(report.active.length >= acknowledged.size);
        // Every message in the spool is one the child made, complete (read() checked its hash).
        for (const id of check.messages.keys()) assert.deepEqual((await spool.read(ACTIVE, id)).message, messageFor(id));
      }
      assert.ok(acknowledged.size >= 4);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
}
