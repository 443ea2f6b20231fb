// Issue 16 item 6: server.auth.failures_per_ip_max caps the password checks
// per client, counting checks still in flight and across worker processes.
// Before, with a cap of 10, 20 parallel sessions got 29 checks (the cap was
// tested before the failures in flight were counted) and a sequential
// attacker got 20 with 2 workers (one table per process). Every check here
// fails, so each one shows as a 535; a refused attempt is a 421 without a check.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { DOE_FAMILY, spawnServer, startFullServer } from './full-server.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
let dir: string;
let passwd: string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-attempts-'));
  passwd = path.join(dir, 'passwd');
  // A real cost, so that checks overlap in time.
  await writeFile(passwd, `jdoe:${await hashScrypt('s3cret-pw', { ln: 14, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n`, { mode: 0o600 });
});
after(() => rm(dir, { recursive: true, force: true }));

const settings = (max: number): string[] => [`server.auth.backend=${JSON.stringify(`file:${passwd}`)}`, `server.auth.failures_per_ip_max=${max}`, 'server.auth.attempts_max=1', 'server.smtp.error.delay="0s"', 'server.auth.allow_plaintext=true'];

/** One session: EHLO, then AUTH PLAIN with a wrong password; the AUTH reply. */
async function wrongPassword(port: number, clients: SmtpClient[], i: number): Promise<string> {
  const c = await SmtpClient.connect(port, { timeoutMs: 30_000 });
  clients.push(c);
  await c.greeting();
  await c.ehlo('client.example.net');
  return (await c.command(`AUTH PLAIN ${b64(`\0jdoe\0wrong-${i}`)}`)).last;
}

function tally(replies: string[]): { checked: number; refused: number; other: string[] } {
  return {
    checked: replies.filter((r) => r === '535 5.7.8 Authentication credentials invalid').length,
    refused: replies.filter((r) => r === '421 4.7.0 Too many authentication failures').length,
    other: replies.filter((r) => !/^(535|421) /.test(r)),
  };
}

describe('AUTH checks per client, over real sockets', () => {
  test('20 parallel sessions get exactly failures_per_ip_max password checks (one process)', { timeout: 120_000 }, async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: settings(10) });
    const clients: SmtpClient[] = [];
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => wrongPassword(s.port, clients, i)));
      assert.deepEqual(tally(replies), { checked: 10, refused: 10, other: [] });
    } finally {
      for (const c of clients) c.destroy();
      await s.stop();
    }
  });

  test('with 2 worker processes: 20 parallel sessions get exactly 10 checks, then a sequential attacker gets none', { timeout: 120_000 }, async () => {
    const server = await spawnServer(DOE_FAMILY(), settings(10), ['--workers', '2']);
    const clients: SmtpClient[] = [];
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => wrongPassword(server.port, clients, i)));
      assert.deepEqual(tally(replies), { checked: 10, refused: 10, other: [] });
      const later: string[] = [];
      for (let i = 0; i < 6; i++) later.push(await wrongPassword(server.port, clients, 100 + i));
      assert.deepEqual(tally(later), { checked: 0, refused: 6, other: [] });
    } finally {
      for (const c of clients) c.destroy();
      await server.stop();
    }
  });

  test('with 2 worker processes a sequential attacker gets exactly failures_per_ip_max checks', { timeout: 120_000 }, async () => {
    const server = await spawnServer(DOE_FAMILY(), settings(3), ['--workers', '2']);
    const clients: SmtpClient[] = [];
    try {
      const replies: string[] = [];
      // The slow-down (0, 1 s, 2 s) applies between them.
      for (let i = 0; i < 8; i++) replies.push(await wrongPassword(server.port, clients, i));
      assert.deepEqual(replies.slice(0, 3), Array(3).fill('535 5.7.8 Authentication credentials invalid'));
      assert.deepEqual(tally(replies), { checked: 3, refused: 5, other: [] });
    } finally {
      for (const c of clients) c.destroy();
      await server.stop();
    }
  });
});
