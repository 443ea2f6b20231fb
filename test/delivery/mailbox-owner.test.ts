// delivery.mailbox_owner: maildir and mbox files (and the directories made
// for them) belong to one mail user, or to the local user of the recipient,
// so a mail reader running as that user can read them.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { DEAD } from '../../src/queue/spool.js';
import { openDeliveryFixture } from '../helpers/delivery-fixtures.js';
import { createSystemUser } from '../helpers/system-user.js';

describe('delivery.mailbox_owner', { skip: process.getuid?.() !== 0 && 'needs root (chown, useradd)' }, () => {
  test('a user name: every maildir file and directory belongs to that one user; "{local_part}": to the local user', async () => {
    const vmail = createSystemUser('mtavmail')!;
    const local = createSystemUser('mtalocal')!;
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'mailbox-owner-'));
    const q = await openDeliveryFixture({
      prefix: 'mailbox-owner-spool-',
      tune: (c) => {
        c.delivery.maildir = `${root}/maildir/{domain}/{local_part}/Maildir`;
        c.delivery.mbox = `${root}/mbox/{local_part}`;
        c.delivery.mailbox_owner = vmail.name;
      },
    });
    try {
      await q.enqueue('a@example.net', ['jane@example.org'], { transport: { kind: 'maildir' } });
      await q.sched.runDue();
      const box = path.join(root, 'maildir', 'example.org', 'jane', 'Maildir');
      const [file] = await fs.readdir(path.join(box, 'new'));
      for (const p of [path.join(box, 'new', file!), box, path.join(root, 'maildir', 'example.org')]) {
        const st = await fs.stat(p);
        assert.deepEqual([st.uid, st.gid], [vmail.uid, vmail.gid], p);
      }

      q.cfg.delivery.mailbox_owner = '{local_part}';
      await q.enqueue('a@example.net', [`${local.name}@example.org`], { transport: { kind: 'mbox' } });
      const unknown = await q.enqueue('a@example.net', ['nosuchuser@example.org'], { transport: { kind: 'mbox' } });
      await q.sched.runDue();
      const st = await fs.stat(path.join(root, 'mbox', local.name));
      assert.deepEqual([st.uid, st.gid], [local.uid, local.gid]);
      const record = await q.spool.readRecord(DEAD, unknown);
      assert.match(record.recipients[0]!.last_error!, /^550 5\.1\.1 no local user "nosuchuser"/);
    } finally {
      await q.close();
      await fs.rm(root, { recursive: true, force: true });
      vmail.remove();
      local.remove();
    }
  });
});
