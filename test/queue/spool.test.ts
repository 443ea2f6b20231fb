import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import pino from 'pino';
import type { Session } from '../../src/mail/types.js';
import { DirSyncBatcher } from '../../src/queue/durable.js';
import { parseRecord } from '../../src/queue/envelope.js';
import { isQueueId, newQueueId } from '../../src/queue/id.js';
import { applyMessageEffects, messageView } from '../../src/queue/message.js';
import type { MessageSink } from '../../src/smtp/sink.js';
import { ACTIVE, DEAD, DEFERRED, DuplicateIdError, quarantinePlace, Spool, type SpoolLogger } from '../../src/queue/spool.js';
import { addr, session as plainSession } from '../helpers/delivery-fixtures.js';

/** A session with TLS, AUTH and a reverse name, so that every field of the record's session snapshot is set. */
function session(): Session {
  return plainSession({
    id: 'sess1',
    connectedAt: new Date('2025-01-01T00:00:00Z'),
    tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
    auth: { mechanism: 'PLAIN', authid: 'alice' },
    reverseName: 'client.example.net',
  });
}

function message(subject: string): Buffer {
  return Buffer.from(`Received: from client.example.net\r\nFrom: <a@example.net>\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`);
}

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-test-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function enqueueOne(spool: Spool, opts: { quarantine?: string; id?: string } = {}) {
  const id = opts.id ?? newQueueId();
  const data = message(id);
  await spool.enqueue({
    id,
    mailFrom: addr('a@example.net'),
    rcpts: [{ address: addr('b@example.org'), transport: { kind: 'default' } }],
    data,
    session: session(),
    txnRemembered: null,
    quarantine: opts.quarantine ?? null,
    policyVersion: 'v1',
  });
  return { id, data };
}

test('queue ids are unique, filename-safe and sort by time', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) ids.add(newQueueId());
  assert.equal(ids.size, 5000);
  for (const id of ids) assert.ok(isQueueId(id) && /^[0-9A-Z]{21}$/.test(id), id);
  assert.ok(newQueueId(1_000_000) < newQueueId(2_000_000));
  assert.equal(isQueueId('../etc/passwd'), false);
  assert.equal(isQueueId('a/b'), false);
  assert.equal(isQueueId('.hidden'), false);
});

test('enqueue writes the message and a complete envelope record into active/ and nothing stays in tmp/', async () => {
  const spool = await Spool.open(dir);
  const { id, data } = await enqueueOne(spool);
  for (const sub of ['tmp', 'active', 'deferred', 'dead', 'quarantine', 'corrupt']) await fs.access(path.join(dir, sub));
  assert.deepEqual((await fs.readdir(path.join(dir, 'active'))).sort(), [`${id}.eml`, `${id}.json`]);
  assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), []);
  assert.deepEqual(await fs.readFile(path.join(dir, 'active', `${id}.eml`)), data);
  const rec = parseRecord(await fs.readFile(path.join(dir, 'active', `${id}.json`), 'utf8'), id);
  assert.equal(rec.version, 1);
  assert.equal(rec.mail_from.local, 'a');
  assert.equal(rec.recipients.length, 1);
  assert.deepEqual(
    { state: rec.recipients[0]!.state, attempts: rec.recipients[0]!.attempts, transport: rec.recipients[0]!.transport },
    { state: 'pending', attempts: 0, transport: { kind: 'default' } },
  );
  assert.equal(rec.session.client_ip, '192.0.2.10');
  assert.equal(rec.session.helo, 'client.example.net');
  assert.equal(rec.session.auth?.authid, 'alice');
  assert.equal(rec.session.tls?.protocol, 'TLSv1.3');
  assert.equal(rec.size, data.length);
  assert.equal(rec.policy_version, 'v1');
  assert.equal(rec.quarantine, null);
});

test('a quarantined enqueue lands in quarantine/<name>/ and the enqueued event names the place', async () => {
  const spool = await Spool.open(dir);
  const seen: string[] = [];
  spool.on('enqueued', (id: string, place: { kind: string; name?: string }) => seen.push(`${id} ${place.kind}:${place.name ?? ''}`));
  const { id } = await enqueueOne(spool, { quarantine: 'virus' });
  assert.deepEqual(await spool.list(quarantinePlace('virus')), [id]);
  assert.deepEqual(await spool.list(ACTIVE), []);
  assert.deepEqual(seen, [`${id} quarantine:virus`]);
  await assert.rejects(enqueueOne(spool, { quarantine: '../x' }), /invalid quarantine name/);
});

test('enqueueing an id that is already queued fails instead of replacing the message', async () => {
  const spool = await Spool.open(dir);
  const { id, data } = await enqueueOne(spool);
  await assert.rejects(enqueueOne(spool, { id }), DuplicateIdError);
  assert.deepEqual(await fs.readFile(path.join(dir, 'active', `${id}.eml`)), data);
  assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), []);
});

test('concurrent enqueues share directory fsyncs (group commit) and all resolve durable', async () => {
  const spool = await Spool.open(dir);
  const before = spool.dirSync.syncCount;
  const results = await Promise.all(Array.from({ length: 50 }, () => enqueueOne(spool)));
  const fsyncs = spool.dirSync.syncCount - before;
  assert.ok(fsyncs < 25, `expected batched directory fsyncs, got ${fsyncs} for 50 enqueues`);
  const listed = await spool.list(ACTIVE);
  assert.deepEqual(listed, results.map((r) => r.id).sort());
});

test('the directory sync batcher never resolves a caller with a sync that started before it asked', async () => {
  const b = new DirSyncBatcher();
  const order: string[] = [];
  const first = b.sync(dir).then(() => order.push('first'));
  // Joins the same (not yet started) batch.
  const second = b.sync(dir).then(() => order.push('second'));
  await Promise.all([first, second]);
  assert.equal(b.syncCount, 1);
  const third = b.sync(dir);
  await third;
  assert.equal(b.syncCount, 2);
});

test('move and remove act by renames and report a lost race with false', async () => {
  const spool = await Spool.open(dir);
  const { id, data } = await enqueueOne(spool);
  assert.equal(await spool.move(id, ACTIVE, DEFERRED), true);
  assert.deepEqual(await spool.list(ACTIVE), []);
  assert.deepEqual((await fs.readdir(path.join(dir, 'active'))).filter((n) => !n.endsWith('.tmp')), []);
  assert.deepEqual(await spool.readMessage(DEFERRED, id), data);
  // Someone else already moved it: the second mover loses and breaks nothing.
  assert.equal(await spool.move(id, ACTIVE, DEAD), false);
  assert.deepEqual(await spool.locate(id), DEFERRED);
  assert.equal(await spool.remove(id, ACTIVE), false);
  assert.equal(await spool.remove(id, DEFERRED), true);
  assert.equal(await spool.locate(id), null);
  assert.deepEqual((await fs.readdir(path.join(dir, 'deferred'))).filter((n) => n.includes(id)), []);
});

test('recovery removes temporary files of dead writers, keeps those of live ones, and reports active and deferred messages', async () => {
  const spool = await Spool.open(dir);
  const a = await enqueueOne(spool);
  const d = await enqueueOne(spool);
  await spool.move(d.id, ACTIVE, DEFERRED);
  // A writer that died (pid 2^22+1 cannot exist on Linux) and one that is alive (us, since now).
  await fs.writeFile(path.join(dir, 'tmp', '4194305.1.X.eml.tmp'), 'partial');
  await fs.writeFile(path.join(dir, 'tmp', `${process.pid}.zz.Y.eml.tmp`), 'being written');
  const report = await spool.recover();
  assert.deepEqual(report.active, [a.id]);
  assert.deepEqual(report.deferred.map((x) => x.id), [d.id]);
  assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), [`${process.pid}.zz.Y.eml.tmp`]);
  assert.deepEqual(report.corrupt, []);
});

test('a corrupt record and a truncated message are moved to corrupt/ with a log line and the rest is recovered', async () => {
  const logged: string[] = [];
  const log = { info() {}, warn() {}, error: (_o: object, m: string) => logged.push(m) };
  const spool = await Spool.open(dir, { log });
  const good = await enqueueOne(spool);
  const badJson = await enqueueOne(spool);
  const truncated = await enqueueOne(spool);
  await fs.writeFile(path.join(dir, 'active', `${badJson.id}.json`), '{"version": 1, "id": ');
  await fs.truncate(path.join(dir, 'active', `${truncated.id}.eml`), 10);
  const report = await spool.recover();
  assert.deepEqual(report.active, [good.id]);
  assert.deepEqual(report.corrupt.sort(), [badJson.id, truncated.id].sort());
  const corrupt = await fs.readdir(path.join(dir, 'corrupt'));
  for (const id of [badJson.id, truncated.id]) {
    assert.ok(corrupt.includes(`${id}.json`) && corrupt.includes(`${id}.eml`), `${id} moved aside`);
    assert.ok(logged.some((m) => m.includes(id) && m.includes('corrupt')), `a log line for ${id}`);
  }
});

test('read detects a message file that no longer matches its record', async () => {
  const spool = await Spool.open(dir);
  const { id, data } = await enqueueOne(spool);
  const damaged = Buffer.from(data);
  damaged[damaged.length - 3]! ^= 0x20;
  await fs.writeFile(path.join(dir, 'active', `${id}.eml`), damaged);
  await assert.rejects(spool.read(ACTIVE, id), /does not match its record/);
});

test('stray message links left by an interrupted move are collected once old enough; orphans go to corrupt/', async () => {
  const spool = await Spool.open(dir);
  const { id } = await enqueueOne(spool);
  await spool.move(id, ACTIVE, DEFERRED);
  // As if a move back had crashed after linking: a second link in active/.
  await fs.link(path.join(dir, 'deferred', `${id}.eml`), path.join(dir, 'active', `${id}.eml`));
  // And an orphan .eml whose record never got written.
  await fs.writeFile(path.join(dir, 'active', 'ORPHAN1.eml'), 'x');
  assert.equal(await spool.collectStrays(60_000), 0, 'too recent: could be a move in progress');
  assert.equal(await spool.collectStrays(0), 2);
  assert.deepEqual(await fs.readdir(path.join(dir, 'active')), []);
  assert.deepEqual(await spool.locate(id), DEFERRED);
  assert.ok((await fs.readdir(path.join(dir, 'corrupt'))).includes('ORPHAN1.eml'));
});

test('only one scheduler may hold the spool lock; a stale lock is taken over', async () => {
  const spool = await Spool.open(dir);
  await fs.writeFile(path.join(dir, 'scheduler.pid'), '4194305\n'); // no such process
  await spool.lockScheduler();
  assert.equal(await spool.schedulerPid(), process.pid);
  await fs.writeFile(path.join(dir, 'scheduler.pid'), `${process.ppid}\n`); // alive, not us
  await assert.rejects(spool.lockScheduler(), /another scheduler/);
  await fs.writeFile(path.join(dir, 'scheduler.pid'), `${process.pid}\n`);
  await spool.unlockScheduler();
  assert.equal(await spool.schedulerPid(), null);
});

test('header edits keep untouched fields byte for byte, fold long values and edit From:/To: addresses', () => {
  const original = Buffer.from(
    'Received: from x\r\n by y; Mon, 1 Jan 2025 00:00:00 +0000\r\nFrom: "Alice A." <alice@example.net>\r\nTo: bob@example.org, "Carol" <carol@example.org>\r\nX-Spam: yes\r\nSubject: hi\r\n\r\nbody\r\nFrom the body\r\n',
  );
  const edited = applyMessageEffects(original, [
    { kind: 'header', op: 'prepend', name: 'X-First', value: 'one' },
    { kind: 'header', op: 'append', name: 'X-Long', value: 'word '.repeat(30).trim() },
    { kind: 'header', op: 'remove', name: 'x-spam' },
    { kind: 'header', op: 'set', name: 'Subject', value: 'changed' },
    { kind: 'header', op: 'rename', name: 'Received', newName: 'X-Old-Received' },
    { kind: 'msg_from', address: addr('alice@example.com') },
    { kind: 'msg_rcpt', op: 'rm', address: addr('bob@example.org') },
    { kind: 'msg_rcpt', op: 'rw', address: addr('carol@example.org'), to: addr('caroline@example.org') },
    { kind: 'msg_rcpt', op: 'add', address: addr('dave@example.org') },
  ]);
  const text = edited.toString();
  assert.ok(text.startsWith('X-First: one\r\nX-Old-Received: from x\r\n by y; Mon, 1 Jan 2025 00:00:00 +0000\r\n'), text);
  assert.ok(text.includes('From: "Alice A." <alice@example.com>\r\n'));
  assert.ok(text.includes('To: "Carol" <caroline@example.org>, dave@example.org\r\n'));
  assert.ok(!/X-Spam/i.test(text));
  assert.ok(text.includes('Subject: changed\r\n'));
  assert.ok(text.endsWith('\r\n\r\nbody\r\nFrom the body\r\n'), 'body untouched');
  const long = /X-Long:[^]*?\r\n(?! )/.exec(text)![0];
  for (const line of long.split('\r\n').filter(Boolean)) assert.ok(line.length <= 78, `line within 78 columns: ${line}`);
  const view = messageView(edited);
  assert.equal(view.headers().find((h) => h.name === 'X-Long')!.value, 'word '.repeat(30).trim());
  assert.throws(() => applyMessageEffects(original, [{ kind: 'header', op: 'append', name: 'Bad: name', value: 'x' }]), /invalid header name/);
  assert.throws(() => applyMessageEffects(original, [{ kind: 'header', op: 'append', name: 'X', value: 'a\r\nInjected: 1' }]), /CR or LF/);
});

test('the spool is the SMTP front\'s MessageSink and takes a pino logger', async () => {
  const log: SpoolLogger = pino({ level: 'silent' });
  const spool = await Spool.open(dir, { log });
  const sink: MessageSink = spool;
  const id = newQueueId();
  await sink.enqueue({ id, mailFrom: addr('a@example.net'), rcpts: [{ address: addr('b@example.org'), transport: { kind: 'mx' } }], data: message('x'), session: session(), txnRemembered: null });
  assert.deepEqual(await spool.locate(id), ACTIVE);
  assert.equal((await spool.readRecord(ACTIVE, id)).recipients[0]!.transport.kind, 'mx');
});
