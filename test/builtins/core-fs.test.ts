import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { coreBuiltins } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { makeHostCall, mailAddress } from '../helpers/host-call.js';

const MESSAGE = 'From: alice@sender.test\r\nSubject: hello\r\n\r\nbody\r\n';

let dataDir: string;
before(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'core-fs-'));
});
after(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function call(dryRun = false) {
  return makeHostCall({
    stage: 'preq',
    message: MESSAGE,
    dryRun,
    configure: (c) => {
      c.vsl.data_dir = dataDir;
    },
    txn: {
      id: 'Q1234ABCD',
      rcpts: [{ address: mailAddress('bob@example.org'), transport: { kind: 'default' } }],
    },
  });
}

async function run(c: HostCall, name: string, ...args: Value[]): Promise<Value> {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return await b.fn(c, args);
}

/** Every file under `dir`, relative. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

describe('fs::write', () => {
  test('stores the message, with this evaluation\'s header edits, as <data_dir>/<dir>/<id>.eml', async () => {
    const c = call();
    await run(c, 'msg::prepend_header', 'X-Archived', 'yes');
    await run(c, 'fs::write', 'archive/2024');
    const file = path.join(dataDir, 'archive', '2024', 'Q1234ABCD.eml');
    assert.equal(fs.readFileSync(file, 'utf8'), `X-Archived: yes\r\n${MESSAGE}`);
    assert.equal(fs.statSync(path.join(dataDir, 'archive')).mode & 0o777, 0o750 & ~process.umask());
    assert.deepEqual(tree(path.join(dataDir, 'archive')), ['2024', path.join('2024', 'Q1234ABCD.eml')], 'no temporary file left');
  });

  test('writing again replaces the file', async () => {
    const c = call();
    await run(c, 'fs::write', 'again');
    await run(c, 'msg::set_header', 'Subject', 'second');
    await run(c, 'fs::write', 'again');
    assert.match(fs.readFileSync(path.join(dataDir, 'again', 'Q1234ABCD.eml'), 'utf8'), /Subject: second/);
    assert.deepEqual(tree(path.join(dataDir, 'again')), ['Q1234ABCD.eml']);
  });

  test('a directory outside the data directory or with odd characters is refused', async () => {
    const c = call();
    for (const bad of ['../escape', '/etc', 'a/../../b', 'a b', '', 'a//b', '.', 'a/./b', 'x/', 'evil\0dir', 'ü']) {
      await assert.rejects(run(c, 'fs::write', bad), (e: unknown) => e instanceof VslError && /^fs::write: invalid directory/.test(e.message), JSON.stringify(bad));
    }
    await assert.rejects(run(c, 'fs::write', 1n), /directory must be a string/);
    assert.equal(fs.existsSync(path.join(path.dirname(dataDir), 'escape')), false);
  });

  test('in dry-run mode nothing is written and the write is reported', async () => {
    const c = call(true);
    await run(c, 'fs::write', 'dry');
    await run(c, 'fs::dump', 'dry');
    assert.equal(fs.existsSync(path.join(dataDir, 'dry')), false);
    assert.ok(c.logs.some((l) => /^fs::write: would write .*dry\/Q1234ABCD\.eml$/.test(String(l.msg))));
    assert.ok(c.logs.some((l) => /^fs::dump: would write .*dry\/Q1234ABCD\.json$/.test(String(l.msg))));
  });

  test('a write that fails is a runtime error naming the function', async () => {
    const c = call();
    fs.writeFileSync(path.join(dataDir, 'occupied'), 'a file where a directory should be');
    await assert.rejects(run(c, 'fs::write', 'occupied/sub'), (e: unknown) => e instanceof VslError && /^fs::write: cannot write /.test(e.message));
  });
});

describe('fs::dump', () => {
  test('stores the context and the message as <id>.json', async () => {
    const c = call();
    await run(c, 'fs::dump', 'dumps');
    const doc = JSON.parse(fs.readFileSync(path.join(dataDir, 'dumps', 'Q1234ABCD.json'), 'utf8'));
    assert.equal(doc.message, MESSAGE);
    assert.equal(doc.context.message_id, 'Q1234ABCD');
    assert.equal(doc.context.mail_from, 'sender@example.net');
    assert.deepEqual(doc.context.rcpt_list, ['bob@example.org']);
    assert.equal(doc.context.client_ip, '192.0.2.10');
    assert.equal(doc.context.helo, 'client.example.test');
    assert.equal(doc.context.stage, 'preq');
  });

  test('is declared as I/O from preq, like fs::write', () => {
    for (const n of ['fs::write', 'fs::dump']) {
      const b = coreBuiltins.find((x) => x.name === n)!;
      assert.equal(b.from, 'preq');
      assert.equal(b.io, true);
    }
  });
});
