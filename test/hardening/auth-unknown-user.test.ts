// Issue 16 item 7: the check of an unknown user costs what a real user's
// does, whatever algorithms and costs the password file mixes. Before, the
// dummy copied the first entry's algorithm: unknown 101 ms, scrypt user
// 95 ms, argon2id user 163 ms (medians). Now an unknown name is verified
// against a dummy of one of the file's users, picked by a keyed hash of the
// name: the same KDF and parameters as that user, stable for the name, the
// same in every worker. Timings belong in a benchmark; these tests compare
// the work (algorithm and parameters) each check pays.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { costOf, hashArgon2id, hashScrypt, parsePhc, PasswdFileBackend } from '../../src/builtins/auth/passwd-file.js';
import { DOE_FAMILY, startFullServer } from './full-server.js';

const SCRYPT = { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 };
const ARGON2 = { m: 1024, t: 1, p: 1 };
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

let dir: string;
let passwd: string;
let costs: Map<string, string>;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-timing-'));
  passwd = path.join(dir, 'passwd');
  const entries: Array<[string, string]> = [
    ['scrypt-user', await hashScrypt('pw-1', SCRYPT)],
    ['argon-user', await hashArgon2id('pw-2', ARGON2)],
    ['scrypt-user-2', await hashScrypt('pw-3', SCRYPT)],
    ['argon-user-2', await hashArgon2id('pw-4', ARGON2)],
  ];
  costs = new Map(entries.map(([u, h]) => [u, costOf(parsePhc(h) as Exclude<ReturnType<typeof parsePhc>, string>)]));
  await writeFile(passwd, entries.map(([u, h]) => `${u}:${h}\n`).join(''), { mode: 0o600 });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('unknown users cost what real users cost', () => {
  test('every unknown name pays the KDF and parameters of a user of the file, and both kinds occur', async () => {
    const backend = new PasswdFileBackend(passwd);
    const present = new Set(costs.values());
    const seen = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const r = await backend.check(`nobody-${i}`, 'guess');
      assert.equal(r.valid, false);
      assert.ok(present.has(r.cost), `unknown user paid ${r.cost}, which no user of the file costs`);
      seen.set(r.cost, (seen.get(r.cost) ?? 0) + 1);
    }
    // Two costs, each held by half the users: 40 names all landing on one has probability 2^-39.
    assert.equal(seen.size, 2, JSON.stringify([...seen]));
  });

  test('a real user pays its own entry\'s cost', async () => {
    const backend = new PasswdFileBackend(passwd);
    for (const [user, cost] of costs) assert.equal((await backend.check(user, 'wrong')).cost, cost, user);
  });

  test('the same unknown name costs the same every time and in every process (no spread a real user lacks)', async () => {
    const one = new PasswdFileBackend(passwd);
    const other = new PasswdFileBackend(passwd); // another worker reading the same file
    for (let i = 0; i < 10; i++) {
      const name = `probe-${i}`;
      const first = (await one.check(name, 'x')).cost;
      assert.equal((await one.check(name, 'y')).cost, first);
      assert.equal((await other.check(name, 'z')).cost, first);
    }
  });
});

describe('over a real socket', () => {
  test('an unknown user and a real user with a wrong password get the same 535; the right password 235', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: [`server.auth.backend=${JSON.stringify(`file:${passwd}`)}`, 'server.auth.failures_per_ip_max=100', 'server.smtp.error.delay="0s"', 'server.auth.allow_plaintext=true'] });
    try {
      const auth = async (user: string, pw: string): Promise<string> => {
        const c = await s.client();
        await c.ehlo('client.example.net');
        const r = (await c.command(`AUTH PLAIN ${b64(`\0${user}\0${pw}`)}`)).last;
        c.destroy();
        return r;
      };
      assert.equal(await auth('nobody-at-all', 'pw-1'), '535 5.7.8 Authentication credentials invalid');
      assert.equal(await auth('argon-user', 'pw-1'), '535 5.7.8 Authentication credentials invalid');
      assert.equal(await auth('argon-user', 'pw-2'), '235 2.7.0 Authentication succeeded');
    } finally {
      await s.stop();
    }
  });
});
