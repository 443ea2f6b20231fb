// Hot reload (SPEC §12) of a running server: an administrator edits main.vsl
// while mail flows. The edit is seen on the next connection within a second,
// whether the editor writes in place or writes a new file and renames it;
// a transaction opened before the edit finishes on the policy current at its
// MAIL; a broken edit keeps the old policy and logs file:line:col, and
// fixing it resumes reloading.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, type RunningServer } from '../../src/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { captureLog, copyDir, tempDir } from '../helpers/server.js';
import { fromRoot } from '../helpers/paths.js';

const ORIGINAL_RULE = 'rule "relay rcpt" || check_rcpt_relay(doe::internal_net),';
/** The edit: jane has moved; every other recipient goes on to the relay rule. */
const JANE_MOVED = `rule "jane moved" || if ctx::rcpt().local_part == "jane" { reject("550 5.1.6 jane has moved") } else { next() },
    ${ORIGINAL_RULE}`;
/** The second edit: jane is back, john has moved. */
const JOHN_MOVED = `rule "john moved" || if ctx::rcpt().local_part == "john" { reject("550 5.1.6 john has moved") } else { next() },
    ${ORIGINAL_RULE}`;

interface Running {
  server: RunningServer;
  port: number;
  mainPath: string;
  logs: Array<Record<string, unknown>>;
  original: string;
  stop(): Promise<void>;
}

/** The doe-family example in a temp directory, served with hot reload on. */
async function startDoeFamily(): Promise<Running> {
  const policyDir = tempDir('vsl-reload-policy-');
  const queueDir = tempDir('vsl-reload-queue-');
  copyDir(fromRoot('examples', 'doe-family'), policyDir);
  const mainPath = path.join(policyDir, 'main.vsl');
  const original = fs.readFileSync(mainPath, 'utf8');
  assert.ok(original.includes(ORIGINAL_RULE), 'the doe-family example still has its relay rcpt rule');
  const { log, logs } = captureLog('info');
  const server = await startServer({
    mainPath,
    overrides: { listen: ['127.0.0.1:0'], queueDir, set: [`vsl.data_dir=${path.join(queueDir, 'data')}`] },
    log,
    deliver: false,
  });
  return {
    server, port: server.listeners[0]!.port, mainPath, logs, original,
    async stop() {
      await server.stop(500);
      fs.rmSync(policyDir, { recursive: true, force: true });
      fs.rmSync(queueDir, { recursive: true, force: true });
    },
  };
}

/** A transaction opened up to MAIL (the policy version is pinned from here on). */
async function openTransaction(port: number): Promise<SmtpClient> {
  const c = await SmtpClient.connect(port);
  assert.equal((await c.greeting()).code, 220);
  assert.equal((await c.ehlo('client.example.org')).code, 250);
  assert.equal((await c.command('MAIL FROM:<friend@example.org>')).code, 250);
  return c;
}

/** On a new connection: the reply to RCPT TO:<rcpt>. */
async function rcptReply(port: number, rcpt: string): Promise<string> {
  const c = await openTransaction(port);
  try {
    return (await c.command(`RCPT TO:<${rcpt}>`)).last;
  } finally {
    await c.quit().catch(() => c.destroy());
  }
}

/**
 * Polls new connections until RCPT TO:<rcpt> gets a reply starting with
 * `prefix`; fails when that takes longer than `withinMs` after the edit.
 */
async function expectWithin(port: number, rcpt: string, prefix: string, editedAt: number, withinMs: number): Promise<void> {
  let last = '';
  for (;;) {
    last = await rcptReply(port, rcpt);
    if (last.startsWith(prefix)) return;
    if (Date.now() - editedAt > withinMs) assert.fail(`after ${withinMs} ms RCPT TO:<${rcpt}> still gets "${last}", not "${prefix}…"`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until a log line satisfies `pred` (bounded); returns it. */
async function logLine(logs: Array<Record<string, unknown>>, pred: (l: Record<string, unknown>) => boolean, withinMs = 3000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const found = logs.find(pred);
    if (found) return found;
    if (Date.now() > deadline) assert.fail(`no such log line within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Writes a file the way editors that save atomically do: a new file renamed over the old one. */
function writeThenRename(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.swp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

describe('hot reload of a running server', () => {
  test('an in-place edit refusing jane is seen on the next connection within 1 s; a transaction opened before it still accepts jane', async () => {
    const s = await startDoeFamily();
    try {
      assert.match(await rcptReply(s.port, 'jane@doe-family.com'), /^250 2\.1\.5/);
      const before = s.server.policy.current().id;
      const pinned = await openTransaction(s.port);

      const editedAt = Date.now();
      fs.writeFileSync(s.mainPath, s.original.replace(ORIGINAL_RULE, JANE_MOVED));
      await expectWithin(s.port, 'jane@doe-family.com', '550 5.1.6 jane has moved', editedAt, 1000);
      assert.notEqual(s.server.policy.current().id, before);

      // MAIL was answered under the old policy: RCPT and DATA run on it too (SPEC §12).
      assert.match((await pinned.command('RCPT TO:<jane@doe-family.com>')).last, /^250 2\.1\.5/);
      assert.equal((await pinned.command('DATA')).code, 354);
      assert.match((await pinned.data('Subject: sent across the edit\r\n\r\nhello\r\n')).last, /^250 2\.0\.0 Ok: queued as/);
      await pinned.quit();

      // Other recipients still follow the relay rule on the new policy.
      assert.match(await rcptReply(s.port, 'john@doe-family.com'), /^250 2\.1\.5/);
      assert.match(await rcptReply(s.port, 'someone@example.net'), /^554 5\.7\.1 Relay access denied/);
      const reload = await logLine(s.logs, (l) => l.reload === 'ok');
      assert.equal(reload.previous, before);
      assert.equal(typeof reload.ms, 'number');
    } finally {
      await s.stop();
    }
  });

  test('an edit saved by write-then-rename is seen within 1 s, and a transaction pinned before it keeps the old rules', async () => {
    const s = await startDoeFamily();
    try {
      fs.writeFileSync(s.mainPath, s.original.replace(ORIGINAL_RULE, JANE_MOVED));
      await expectWithin(s.port, 'jane@doe-family.com', '550 5.1.6', Date.now(), 1000);
      assert.match(await rcptReply(s.port, 'john@doe-family.com'), /^250 2\.1\.5/);

      const pinned = await openTransaction(s.port);
      const editedAt = Date.now();
      writeThenRename(s.mainPath, s.original.replace(ORIGINAL_RULE, JOHN_MOVED));
      await expectWithin(s.port, 'john@doe-family.com', '550 5.1.6 john has moved', editedAt, 1000);
      assert.match(await rcptReply(s.port, 'jane@doe-family.com'), /^250 2\.1\.5/);

      // The pinned transaction still runs the jane-moved policy.
      assert.match((await pinned.command('RCPT TO:<john@doe-family.com>')).last, /^250 2\.1\.5/);
      assert.match((await pinned.command('RCPT TO:<jane@doe-family.com>')).last, /^550 5\.1\.6 jane has moved/);
      await pinned.quit();

      // A second rename-save is picked up as well (the watch survives the replaced inode).
      const again = Date.now();
      writeThenRename(s.mainPath, s.original);
      await expectWithin(s.port, 'john@doe-family.com', '250 2.1.5', again, 1000);
    } finally {
      await s.stop();
    }
  });

  test('a broken edit keeps the old policy and logs file:line:col; fixing it resumes reloading', async () => {
    const s = await startDoeFamily();
    try {
      const before = s.server.policy.current().id;
      // A rule missing its closing brace, on a line we know.
      const broken = s.original.replace(ORIGINAL_RULE, `rule "jane moved" || if ctx::rcpt().local_part == "jane" { reject("550 5.1.6 jane has moved") else { next() },\n    ${ORIGINAL_RULE}`);
      const brokenLine = broken.split('\n').findIndex((l) => l.includes('rule "jane moved"')) + 1;
      fs.writeFileSync(s.mainPath, broken);

      // The parser reports the stray `else` on its line (at it, or where the missing `}` belongs, just before);
      // other lines may follow (the bracket left unclosed).
      const elseCol = broken.split('\n')[brokenLine - 1]!.indexOf('else') + 1;
      const failed = await logLine(s.logs, (l) => {
        const m = /main\.vsl:(\d+):(\d+)$/.exec(String(l.at));
        return l.reload === 'failed' && m !== null && Number(m[1]) === brokenLine && Number(m[2]) >= elseCol - 2 && Number(m[2]) <= elseCol;
      });
      assert.match(String(failed.msg), new RegExp(`main\\.vsl:${brokenLine}:\\d+: `));
      assert.match(String(failed.diagnostic), /error:/);
      assert.match(String(failed.diagnostic), /\^/, 'the diagnostic is printed as mta check prints it, with a caret');

      // The old behaviour stays: jane is accepted, the version is the same.
      assert.match(await rcptReply(s.port, 'jane@doe-family.com'), /^250 2\.1\.5/);
      assert.equal(s.server.policy.current().id, before);

      // Fixing the file resumes reloading.
      const fixedAt = Date.now();
      fs.writeFileSync(s.mainPath, s.original.replace(ORIGINAL_RULE, JANE_MOVED));
      await expectWithin(s.port, 'jane@doe-family.com', '550 5.1.6 jane has moved', fixedAt, 1000);
      assert.notEqual(s.server.policy.current().id, before);
    } finally {
      await s.stop();
    }
  });

  test('a broken edit of an imported file is refused the same way, at the imported file\'s position', async () => {
    const s = await startDoeFamily();
    try {
      const objects = path.join(path.dirname(s.mainPath), 'objects.vsl');
      const text = fs.readFileSync(objects, 'utf8');
      fs.writeFileSync(objects, `${text}\nobject broken rg4 = ;\n`);
      const failed = await logLine(s.logs, (l) => l.reload === 'failed' && typeof l.at === 'string');
      assert.match(String(failed.at), /objects\.vsl:\d+:\d+$/);
      assert.match(await rcptReply(s.port, 'jane@doe-family.com'), /^250 2\.1\.5/);
      // From the internal network the relay still works: the old objects are in force.
      fs.writeFileSync(objects, text.replace('192.168.1.0/24', '127.0.0.0/8'));
      await expectWithin(s.port, 'someone@example.net', '250 2.1.5', Date.now(), 1000);
    } finally {
      await s.stop();
    }
  });

  test('an edit saved while a reload is running is not lost', async () => {
    const s = await startDoeFamily();
    try {
      fs.writeFileSync(s.mainPath, s.original.replace(ORIGINAL_RULE, JANE_MOVED));
      // A reload reads the files as it starts; the next save lands while it runs.
      const running = s.server.policy.reload('signal');
      const editedAt = Date.now();
      fs.writeFileSync(s.mainPath, s.original.replace(ORIGINAL_RULE, JOHN_MOVED));
      const first = await running;
      assert.equal(first.ok, true);
      await expectWithin(s.port, 'john@doe-family.com', '550 5.1.6 john has moved', editedAt, 1000);
      assert.match(await rcptReply(s.port, 'jane@doe-family.com'), /^250 2\.1\.5/);
    } finally {
      await s.stop();
    }
  });

  test('SIGHUP-style forced reload without changes keeps the version and says so', async () => {
    const s = await startDoeFamily();
    try {
      const before = s.server.policy.current().id;
      const r = await s.server.policy.reload('signal');
      assert.equal(r.ok, true);
      assert.equal(r.version, before);
      await logLine(s.logs, (l) => l.reload === 'unchanged' && l.version === before);
    } finally {
      await s.stop();
    }
  });
});
