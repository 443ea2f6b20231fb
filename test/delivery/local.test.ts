import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema.js';
import type { Transport } from '../../src/mail/types.js';
import { DEAD, DEFERRED } from '../../src/queue/spool.js';
import { mboxEntry } from '../../src/delivery/transports/mbox.js';
import { addr, openDeliveryFixture, T0 } from '../helpers/delivery-fixtures.js';

// ---- fixtures ----

async function setup(tune: (c: Config) => void, log = { info(_o: object, _m: string) {}, warn() {}, error() {} }) {
  const q = await openDeliveryFixture({ prefix: 'local-test-', tune, scheduler: { log } });
  return {
    ...q,
    /** Every recipient gets `transport`; the message has no Message-ID. */
    enqueue: (from: string, to: string[], transport: Transport, body = 'body\r\n') =>
      q.enqueue(from, to, { transport, data: (id) => Buffer.from(`From: <${from}>\r\nSubject: test ${id}\r\n\r\n${body}`) }),
  };
}

// ---- tests ----

test('maildir: the message is written in tmp/ and appears under a unique name in new/, with trace fields and LF line ends', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'maildirs-'));
  const q = await setup((c) => { c.delivery.maildir = `${boxes}/{domain}/{local_part}/Maildir`; });
  try {
    const id1 = await q.enqueue('alice@example.net', ['Bob@example.org'], { kind: 'maildir' });
    const id2 = await q.enqueue('alice@example.net', ['bob@example.org'], { kind: 'maildir' });
    await q.sched.runDue();
    const box = path.join(boxes, 'example.org', 'bob', 'Maildir');
    assert.deepEqual(await fs.readdir(path.join(box, 'tmp')), []);
    assert.deepEqual(await fs.readdir(path.join(box, 'cur')), []);
    const names = await fs.readdir(path.join(box, 'new'));
    assert.equal(names.length, 2);
    for (const n of names) assert.match(n, /^\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.[^/:]+$/);
    const texts = await Promise.all(names.map((n) => fs.readFile(path.join(box, 'new', n), 'utf8')));
    for (const t of texts) {
      assert.ok(t.startsWith('Return-Path: <alice@example.net>\nDelivered-To: Bob@example.org\n') || t.startsWith('Return-Path: <alice@example.net>\nDelivered-To: bob@example.org\n'), t);
      assert.ok(!t.includes('\r'), 'LF line ends');
    }
    assert.ok(texts.some((t) => t.includes(`Subject: test ${id1}`)) && texts.some((t) => t.includes(`Subject: test ${id2}`)));
    assert.equal(await q.spool.locate(id1), null);
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});

test('a local part that cannot be a mailbox name fails permanently and nothing is written outside the mail root', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'maildirs-'));
  const q = await setup((c) => {
    c.delivery.maildir = `${boxes}/{domain}/{local_part}/Maildir`;
    c.delivery.mbox = `${boxes}/mbox/{local_part}`;
  });
  try {
    const ids = [];
    for (const bad of ['.hidden@example.org', '../etc@example.org', 'a/b@example.org', 'x y@example.org', 'ok@../../etc']) {
      ids.push(await q.enqueue('', [bad], { kind: 'maildir' }));
    }
    ids.push(await q.enqueue('', ['..@example.org'], { kind: 'mbox' }));
    await q.sched.runDue();
    for (const id of ids) {
      const rec = await q.spool.readRecord(DEAD, id);
      assert.equal(rec.recipients[0]!.state, 'failed', rec.recipients[0]!.address.local);
      assert.match(rec.recipients[0]!.last_error ?? '', /^550 5\.1\.3 /);
    }
    assert.deepEqual(await fs.readdir(boxes), []);
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});

test('mbox: entries get a From line with sender and date, ">From " quoting of body lines, and a blank line between them', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'mboxes-'));
  const q = await setup((c) => { c.delivery.mbox = `${boxes}/{local_part}`; });
  try {
    await q.enqueue('alice@example.net', ['carol@example.org'], { kind: 'mbox' }, 'From the start\r\n>From quoted\r\nnot From here\r\n');
    await q.sched.runDue();
    await q.enqueue('', ['carol@example.org'], { kind: 'mbox' }, 'second\r\n');
    await q.sched.runDue();
    const text = await fs.readFile(path.join(boxes, 'carol'), 'utf8');
    const entries = text.split(/^(?=From )/m);
    assert.equal(entries.length, 2, text);
    assert.ok(entries[0]!.startsWith('From alice@example.net Sat Mar  1 10:00:00 2025\nReturn-Path: <alice@example.net>\nDelivered-To: carol@example.org\n'), entries[0]);
    assert.ok(entries[0]!.includes('\n\n>From the start\n>>From quoted\nnot From here\n\n'), entries[0]);
    assert.ok(entries[1]!.startsWith('From MAILER-DAEMON Sat Mar  1 10:00:00 2025\n'));
    assert.ok(text.endsWith('second\n\n'));
    assert.ok(!text.includes('\r'));
    assert.deepEqual((await fs.readdir(boxes)).sort(), ['carol'], 'the lock file is gone');
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});

test('mbox delivery waits for a held lock and breaks a stale one', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'mboxes-'));
  const q = await setup((c) => { c.delivery.mbox = `${boxes}/{local_part}`; });
  try {
    const lock = path.join(boxes, 'dave.lock');
    await fs.writeFile(lock, 'someone else');
    await q.enqueue('alice@example.net', ['dave@example.org'], { kind: 'mbox' });
    const run = q.sched.runDue();
    // While the lock is held nothing is appended.
    await new Promise((r) => setTimeout(r, 150));
    await assert.rejects(fs.access(path.join(boxes, 'dave')));
    await fs.rm(lock);
    await run;
    assert.match(await fs.readFile(path.join(boxes, 'dave'), 'utf8'), /^From alice@example\.net /);

    const old = new Date(Date.now() - 10 * 60_000);
    await fs.writeFile(lock, 'crashed holder');
    await fs.utimes(lock, old, old);
    await q.enqueue('alice@example.net', ['dave@example.org'], { kind: 'mbox' });
    await q.sched.runDue();
    assert.equal((await fs.readFile(path.join(boxes, 'dave'), 'utf8')).match(/^From /gm)?.length, 2);
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});

test('mbox entry format is the mboxrd one', () => {
  const e = mboxEntry(addr('a@b.test'), Buffer.from('Subject: x\r\n\r\nFrom me\r\n>>From you'), T0).toString();
  assert.equal(e, 'From a@b.test Sat Mar  1 10:00:00 2025\nSubject: x\n\n>From me\n>>>From you\n\n');
});

test('a local delivery problem (unwritable path) defers instead of failing', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'maildirs-'));
  await fs.writeFile(path.join(boxes, 'file'), 'not a directory');
  const q = await setup((c) => { c.delivery.maildir = `${boxes}/file/{local_part}`; });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@example.org'], { kind: 'maildir' });
    await q.sched.runDue();
    const rec = await q.spool.readRecord(DEFERRED, id);
    assert.match(rec.recipients[0]!.last_error ?? '', /^451 4\.3\.0 maildir delivery/);
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});

test('transport none delivers nothing and completes the recipient', async () => {
  const logged: string[] = [];
  const q = await setup(() => undefined, { info: (_o: object, m: string) => void logged.push(m), warn() {}, error() {} });
  try {
    const id = await q.enqueue('alice@example.net', ['bob@example.org'], { kind: 'none' });
    await q.sched.runDue();
    assert.equal(await q.spool.exists(id), false);
    assert.ok(logged.some((m) => m.includes('delivery disabled')), logged.join('\n'));
  } finally {
    await q.close();
  }
});

test('an mbox path that is a symlink is not followed: the delivery waits and the link target is untouched', async () => {
  const boxes = await fs.mkdtemp(path.join(os.tmpdir(), 'mboxes-'));
  const victim = path.join(boxes, 'victim');
  await fs.writeFile(victim, 'precious\n');
  await fs.symlink(victim, path.join(boxes, 'eve'));
  const q = await setup((c) => { c.delivery.mbox = `${boxes}/{local_part}`; });
  try {
    const id = await q.enqueue('alice@example.net', ['eve@example.org'], { kind: 'mbox' });
    await q.sched.runDue();
    assert.equal(await fs.readFile(victim, 'utf8'), 'precious\n');
    assert.match((await q.spool.readRecord(DEFERRED, id)).recipients[0]!.last_error ?? '', /ELOOP|symbolic link/);
  } finally {
    await q.close();
    await fs.rm(boxes, { recursive: true, force: true });
  }
});
