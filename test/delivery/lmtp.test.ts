// The LMTP transport against a real Dovecot (its own config directory,
// LMTP on a loopback port and a unix socket): per-recipient replies after
// the final dot decide each recipient on its own.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseLmtpTarget } from '../../src/delivery/transports/lmtp.js';
import { DEAD } from '../../src/queue/spool.js';
import { openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { dovecotAvailable, startDovecot, type TestDovecot } from '../helpers/dovecot.js';
import { createSystemUser, type SystemUser } from '../helpers/system-user.js';

async function newFiles(maildir: string): Promise<string[]> {
  const dir = path.join(maildir, 'new');
  const names = await fs.readdir(dir).catch(() => []);
  return Promise.all(names.map((n) => fs.readFile(path.join(dir, n), 'utf8')));
}

test('LMTP targets: unix sockets, host and port, bracketed IPv6; anything else is refused', () => {
  assert.deepEqual(parseLmtpTarget('unix:/run/dovecot/lmtp'), { path: '/run/dovecot/lmtp' });
  assert.deepEqual(parseLmtpTarget('/run/dovecot/lmtp'), { path: '/run/dovecot/lmtp' });
  assert.deepEqual(parseLmtpTarget('127.0.0.1:2424'), { host: '127.0.0.1', port: 2424 });
  assert.deepEqual(parseLmtpTarget('Mail.Example.org'), { host: 'mail.example.org', port: 24 });
  assert.deepEqual(parseLmtpTarget('[::1]:24'), { host: '::1', port: 24 });
  for (const bad of ['unix:relative', 'host:99999', 'smtp://x', '[nonsense]:24', '']) assert.throws(() => parseLmtpTarget(bad), /invalid LMTP target/, bad);
});

describe('LMTP into Dovecot', { skip: !dovecotAvailable() && 'needs root, dovecot-core and dovecot-lmtpd' }, () => {
  let dovecot: TestDovecot;
  let mailUser: SystemUser;
  before(async () => {
    mailUser = createSystemUser('mtalmtp')!;
    dovecot = (await startDovecot(['john', 'jane'], mailUser))!;
  });
  after(async () => {
    await dovecot?.stop();
    mailUser?.remove();
  });

  test('over TCP: each known user gets the message; an unknown one fails on its own, with Dovecot reply', async () => {
    const q = await openDeliveryFixture({ prefix: 'lmtp-test-', tune: (c) => (c.delivery.lmtp = `127.0.0.1:${dovecot.port}`) });
    try {
      const id = await q.enqueue('alice@example.net', ['john@example.org', 'nobody@example.org', 'jane@example.org'], { transport: { kind: 'lmtp' } });
      await q.sched.runDue();
      for (const u of ['john', 'jane']) {
        const files = await newFiles(dovecot.maildir(u));
        assert.ok(files.some((f) => f.includes(`Subject: test ${id}`)), `${u} got it`);
      }
      // The failure of nobody@ alone sends the message to dead/ with a DSN to alice.
      assert.deepEqual(await q.spool.locate(id), DEAD);
      const record = await q.spool.readRecord(DEAD, id);
      const byAddr = Object.fromEntries(record.recipients.map((r) => [r.address.local, r]));
      assert.equal(byAddr.john!.state, 'delivered');
      assert.equal(byAddr.jane!.state, 'delivered');
      assert.equal(byAddr.nobody!.state, 'failed');
      assert.match(byAddr.nobody!.last_error!, /^550 5\.1\.1 /);
    } finally {
      await q.close();
    }
  });

  test('over the unix socket, with the target given in the transport', async () => {
    const q = await openDeliveryFixture({ prefix: 'lmtp-test-', tune: () => undefined });
    try {
      const id = await q.enqueue('alice@example.net', ['jane@example.org'], { transport: { kind: 'lmtp', target: `unix:${dovecot.socket}` } });
      await q.sched.runDue();
      assert.equal(await q.spool.locate(id), null, 'delivered and removed');
      assert.ok((await newFiles(dovecot.maildir('jane'))).some((f) => f.includes(`Subject: test ${id}`)));
    } finally {
      await q.close();
    }
  });

  test('a message line starting with a dot arrives unchanged (dot-stuffing)', async () => {
    const q = await openDeliveryFixture({ prefix: 'lmtp-test-', tune: (c) => (c.delivery.lmtp = dovecot.socket) });
    try {
      const body = (id: string) => Buffer.from(`From: <a@example.net>\r\nSubject: dots ${id}\r\n\r\n.leading dot\r\n..two\r\n`);
      const id = await q.enqueue('a@example.net', ['john@example.org'], { transport: { kind: 'lmtp' }, data: body });
      await q.sched.runDue();
      const got = (await newFiles(dovecot.maildir('john'))).find((f) => f.includes(`Subject: dots ${id}`));
      assert.ok(got, 'delivered');
      assert.match(got, /\n\.leading dot\r?\n\.\.two\r?\n/);
    } finally {
      await q.close();
    }
  });
});

test('an LMTP server that cannot be reached defers the recipients', async () => {
  const q = await openDeliveryFixture({ prefix: 'lmtp-test-', tune: (c) => (c.delivery.lmtp = 'unix:/nonexistent/lmtp') });
  try {
    const id = await q.enqueue('alice@example.net', ['john@example.org'], { transport: { kind: 'lmtp' } });
    await q.sched.runDue();
    const place = await q.spool.locate(id);
    assert.equal(place?.kind, 'deferred');
    const record = await q.spool.readRecord(place!, id);
    assert.match(record.recipients[0]!.last_error!, /^451 4\.4\.1 LMTP delivery to unix:\/nonexistent\/lmtp: cannot connect/);
  } finally {
    await q.close();
  }
});
