// Aliases before local delivery: the /etc/aliases format for the local
// domains, a virtual alias map for any domain, recursion, self-reference,
// loops failing with 5.4.6.

import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { defaultConfig } from '../../src/config/schema.js';
import { type AliasTables, expandAlias, parseAliasesFile, parseVirtualMap } from '../../src/delivery/aliases.js';
import { addressText } from '../../src/mail/types.js';
import { DEAD } from '../../src/queue/spool.js';
import { addr, openDeliveryFixture } from '../helpers/delivery-fixtures.js';

const cfg = defaultConfig('mx.doe-family.com');
cfg.server.domain = 'doe-family.com';

const ALIASES = `# the Doe family
postmaster: root
root:       jane
abuse:      postmaster,
            john@doe-family.com
jane:       \\jane, archive@example.net
loop-a:     loop-b
loop-b:     loop-a
pipe:       "|/usr/bin/procmail", jane
`;

function tables(aliases = ALIASES, virtual = ''): AliasTables {
  return { local: parseAliasesFile(aliases).table, virtual: parseVirtualMap(virtual).table };
}

function expand(to: string, t = tables()): string[] | string {
  const x = expandAlias(addr(to), t, cfg);
  return x.kind === 'none' ? 'none' : x.kind === 'loop' ? `loop ${x.chain.join(' -> ')}` : x.addresses.map(addressText);
}

describe('alias expansion', () => {
  test('recursive, with continuation lines, comments, and the local user of a bare name', () => {
    assert.deepEqual(expand('postmaster@doe-family.com'), ['jane@doe-family.com', 'archive@example.net']);
    assert.deepEqual(expand('Abuse@Doe-Family.com'), ['jane@doe-family.com', 'archive@example.net', 'john@doe-family.com']);
  });

  test('an alias naming itself (here as \\jane) delivers to its own mailbox', () => {
    assert.deepEqual(expand('jane@doe-family.com'), ['jane@doe-family.com', 'archive@example.net']);
  });

  test('a cycle without a mailbox is a loop; an address without an entry is not expanded', () => {
    assert.equal(expand('loop-a@doe-family.com'), 'loop loop-a@doe-family.com -> loop-b@doe-family.com -> loop-a@doe-family.com');
    assert.equal(expand('john@doe-family.com'), 'none');
  });

  test('/etc/aliases entries apply to the local domains only; the delimiter falls back to the base name', () => {
    assert.equal(expand('postmaster@example.net'), 'none');
    assert.deepEqual(expand('root+cron@doe-family.com'), ['jane@doe-family.com', 'archive@example.net']);
  });

  test('unsupported targets (pipes, files, :include:) are reported and skipped', () => {
    const parsed = parseAliasesFile(ALIASES);
    assert.deepEqual(parsed.warnings, [{ line: 9, message: 'target "|/usr/bin/procmail" is not supported (only addresses and local names)' }]);
    assert.deepEqual(parsed.table.get('pipe'), ['jane']);
  });

  test('the virtual map: full addresses and @domain catch-alls, for any domain', () => {
    const t = tables('', 'info@example.net  john@doe-family.com, jane@doe-family.com\n@example.org  jane@doe-family.com\n');
    assert.deepEqual(expand('info@example.net', t), ['john@doe-family.com', 'jane@doe-family.com']);
    assert.deepEqual(expand('anyone@example.org', t), ['jane@doe-family.com']);
    assert.equal(expand('other@example.net', t), 'none');
  });
});

test('queued mail to postmaster@ reaches its alias\'s mailbox; an alias loop fails with 5.4.6', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'aliases-test-'));
  await fs.writeFile(path.join(dir, 'aliases'), 'postmaster: jane\nloop-a: loop-b\nloop-b: loop-a\n');
  const q = await openDeliveryFixture({
    prefix: 'aliases-spool-',
    tune: (c) => {
      c.server.domain = 'doe-family.com';
      c.delivery.aliases = path.join(dir, 'aliases');
      c.delivery.maildir = `${dir}/{local_part}/Maildir`;
    },
    // What rcpt rules delivering the local domain to maildirs would choose.
    scheduler: { chooseTransport: async () => ({ kind: 'maildir' }) },
  });
  try {
    const id = await q.enqueue('', ['postmaster@doe-family.com', 'loop-a@doe-family.com'], { transport: { kind: 'maildir' } });
    await q.sched.runDue();
    const inbox = path.join(dir, 'jane', 'Maildir', 'new');
    const files = await fs.readdir(inbox);
    assert.equal(files.length, 1);
    assert.match(await fs.readFile(path.join(inbox, files[0]!), 'utf8'), /^Delivered-To: jane@doe-family\.com$/m);
    const record = await q.spool.readRecord(DEAD, id);
    const by = Object.fromEntries(record.recipients.map((r) => [addressText(r.address), r]));
    assert.equal(by['postmaster@doe-family.com']!.state, 'delivered');
    assert.equal(by['jane@doe-family.com']!.alias_of, 'postmaster@doe-family.com');
    assert.equal(by['loop-a@doe-family.com']!.state, 'failed');
    assert.match(by['loop-a@doe-family.com']!.last_error!, /^554 5\.4\.6 alias loop: /);
  } finally {
    await q.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
