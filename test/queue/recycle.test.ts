import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { FileRecycler, writeReused } from '../../src/queue/recycle.js';
import { ACTIVE, Spool } from '../../src/queue/spool.js';
import { enqueueTestMessage } from '../helpers/delivery-fixtures.js';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recycle-test-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function enqueue(spool: Spool, body: string) {
  let data = Buffer.alloc(0);
  const id = await enqueueTestMessage(spool, 'a@example.net', ['b@example.org'], {
    data: (queueId) => (data = Buffer.from(`From: <a@example.net>\r\nSubject: ${queueId}\r\n\r\n${body}\r\n`)),
  });
  return { id, data };
}

const inode = async (file: string) => (await fs.stat(file)).ino;
const reuseNames = async () => fs.readdir(path.join(dir, 'reuse')).catch(() => [] as string[]);

test('a removed message gives its two files to reuse/, and the next enqueue is written over them', async () => {
  const spool = await Spool.open(dir);
  const first = await enqueue(spool, 'first');
  const inodes = new Set([await inode(path.join(dir, 'active', `${first.id}.eml`)), await inode(path.join(dir, 'active', `${first.id}.json`))]);
  assert.equal(await spool.remove(first.id, ACTIVE), true);
  assert.equal((await reuseNames()).length, 2, 'both files are pooled, none freed');

  const second = await enqueue(spool, 'second');
  assert.deepEqual(await reuseNames(), [], 'both pooled files were taken');
  const reused = new Set([await inode(path.join(dir, 'active', `${second.id}.eml`)), await inode(path.join(dir, 'active', `${second.id}.json`))]);
  assert.deepEqual(reused, inodes, 'the new message lives in the old inodes');
  const read = await spool.read(ACTIVE, second.id); // checks size and sha256 against the record
  assert.deepEqual(read.message, second.data);
  assert.deepEqual(await fs.readdir(path.join(dir, 'tmp')), []);
});

test('a reused file longer than the new content is cut to the new length', async () => {
  const spool = await Spool.open(dir);
  const big = await enqueue(spool, 'x'.repeat(50_000));
  await spool.remove(big.id, ACTIVE);
  const small = await enqueue(spool, 'small');
  const eml = await fs.readFile(path.join(dir, 'active', `${small.id}.eml`));
  assert.deepEqual(eml, small.data);
  assert.deepEqual((await spool.read(ACTIVE, small.id)).message, small.data);
});

test('a record rewrite keeps the replaced record for reuse, with a single link once replaced', async () => {
  const spool = await Spool.open(dir);
  const { id } = await enqueue(spool, 'body');
  const record = (await spool.read(ACTIVE, id)).record;
  await spool.writeRecord(ACTIVE, { ...record, attempts: 1 });
  const pooled = await reuseNames();
  assert.equal(pooled.length, 1);
  const st = await fs.stat(path.join(dir, 'reuse', pooled[0]!));
  assert.equal(st.nlink, 1);
  assert.equal((await spool.read(ACTIVE, id)).record.attempts, 1);
});

test('a file with a second link is unlinked, not pooled, and its other name keeps its content', async () => {
  const recycler = new FileRecycler(path.join(dir, 'reuse'));
  const file = path.join(dir, 'a');
  await fs.writeFile(file, 'kept elsewhere');
  await fs.link(file, path.join(dir, 'other'));
  await recycler.give(file);
  assert.deepEqual(await reuseNames(), []);
  assert.equal(recycler.stats.unlinked, 1);
  assert.equal(await fs.readFile(path.join(dir, 'other'), 'utf8'), 'kept elsewhere');
});

test('a file linked into the pool is refused by take() while it keeps its other name, never overwritten', async () => {
  // keepReplaced links a record into the pool before a new one is renamed
  // over it; until then the pooled name is a second link. (Files renamed in
  // by give() had one link when given and are taken without a check.)
  const recycler = new FileRecycler(path.join(dir, 'reuse'));
  const file = path.join(dir, 'a');
  await fs.writeFile(file, 'old content');
  await recycler.keepReplaced(file);
  assert.equal(await writeReused(recycler, path.join(dir, 'new'), Buffer.from('new content')), false);
  assert.equal(recycler.stats.refused, 1);
  assert.equal(await fs.readFile(file, 'utf8'), 'old content');
  await assert.rejects(fs.access(path.join(dir, 'new')));
});

test('two processes taking from one pool never get the same file', async () => {
  const giver = new FileRecycler(path.join(dir, 'reuse'));
  for (let i = 0; i < 60; i++) {
    const f = path.join(dir, `f${i}`);
    await fs.writeFile(f, `file ${i}`);
    await giver.give(f);
  }
  // Two takers that know the pool only from its listing, like two SMTP workers.
  const takers = [new FileRecycler(path.join(dir, 'reuse')), new FileRecycler(path.join(dir, 'reuse'))];
  const got: number[] = [];
  await Promise.all(
    Array.from({ length: 80 }, async (_, i) => {
      const dest = path.join(dir, `t${i}`);
      const fh = await takers[i % 2]!.take(dest);
      if (!fh) return;
      got.push((await fh.stat()).ino);
      await fh.close();
    }),
  );
  assert.equal(got.length, 60, 'every pooled file was taken once');
  assert.equal(new Set(got).size, 60, 'no file was handed out twice');
  assert.deepEqual(await reuseNames(), []);
});

test('the pool holds at most its size; the rest is unlinked', async () => {
  const recycler = new FileRecycler(path.join(dir, 'reuse'), 3);
  for (let i = 0; i < 5; i++) {
    const f = path.join(dir, `f${i}`);
    await fs.writeFile(f, 'x');
    await recycler.give(f);
  }
  assert.equal((await reuseNames()).length, 3);
  assert.equal(recycler.stats.unlinked, 2);
});
