// SMTP smuggling against the whole server — real engine, real spool, read
// back from disk (issue "Hardening", must-show 3). test/smtp/data.test.ts
// proves the same variants against the front with a scripted runner; here
// the doe-family policy decides and the spool directory is the witness: one
// DATA never yields a second message, and nothing malformed is stored.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SmtpClient } from '../helpers/smtp-client.js';
import { DOE_FAMILY, startFullServer, type FullServer, type SpooledMessage } from './full-server.js';

/** A whole transaction, as a smuggler would hide it after a fake end of data. */
const transaction = (marker: string): string => `MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@doe-family.com>\r\nDATA\r\nSubject: ${marker}\r\n\r\n${marker} body\r\n.\r\n`;
const SMUGGLED = transaction('smuggled');

// The published end-of-data variants (SEC Consult 2023, and the
// `.\r\n`-after-bare-LF form), with the reply the message gets.
const VARIANTS: Array<[string, string, string]> = [
  ['\\n.\\n', '\n.\n', '554 5.5.2 Message contains bare CR or LF'],
  ['\\r.\\r', '\r.\r', '554 5.5.2 Message contains bare CR or LF'],
  ['\\r\\n.\\n', '\r\n.\n', '554 5.5.2 Message contains bare CR or LF'],
  ['\\n.\\r\\n', '\n.\r\n', '554 5.5.2 Message contains bare CR or LF'],
  ['.\\r\\n after bare LF lines', 'line one\nline two\n.\r\n', '554 5.5.2 Message contains bare CR or LF'],
  ['\\r.\\r\\n', '\r.\r\n', '554 5.5.2 Message contains bare CR or LF'],
  ['\\r\\n.\\r', '\r\n.\r', '554 5.5.2 Message contains bare CR or LF'],
  ['\\r\\n\\0.\\r\\n (NUL before the dot)', '\r\n\0.\r\n', '554 5.6.0 Message contains NUL characters'],
];

/** A stored message is well formed: CRLF only, Received: first, a valid envelope with recipients. */
function assertWellFormed(m: SpooledMessage): void {
  const text = m.eml;
  assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, `${m.id}: bare CR or LF in the spool`);
  assert.match(text, /^Received: /, `${m.id}: starts with Received:`);
  assert.ok(m.record.recipients.length > 0, `${m.id}: recipients`);
  assert.equal(m.record.id, m.id);
  assert.equal(m.record.size, m.eml.length);
}

describe('SMTP smuggling against the whole server (doe-family policy, real spool)', () => {
  let s: FullServer;
  before(async () => {
    s = await startFullServer({ policy: DOE_FAMILY() });
  });
  after(async () => {
    await s?.stop();
  });

  async function openData(): Promise<SmtpClient> {
    const c = await s.client();
    await c.ehlo('client.example.net');
    assert.equal((await c.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '250 2.1.5 Ok');
    assert.equal((await c.command('DATA')).code, 354);
    return c;
  }

  test('control: a proper <CRLF>.<CRLF> followed by a pipelined transaction gives two messages', async () => {
    // Proves the witness works: commands after a real terminator are commands.
    const before = (await s.spooled()).length;
    const c = await openData();
    c.write(`Subject: first\r\n\r\nfirst body\r\n.\r\n${transaction('pipelined')}`);
    assert.match((await c.readReply()).last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal((await c.readReply()).last, '250 2.1.0 Ok');
    assert.equal((await c.readReply()).last, '250 2.1.5 Ok');
    assert.equal((await c.readReply()).code, 354);
    assert.match((await c.readReply()).last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const all = await s.spooled();
    assert.equal(all.length, before + 2);
    for (const m of all) assertWellFormed(m);
  });

  for (const [name, sep, reply] of VARIANTS) {
    for (const split of [false, true]) {
      test(`${name}${split ? ', split across packets' : ''}: one ${reply.slice(0, 9)}, no second message, nothing spooled`, async () => {
        const before = await s.spooled();
        const c = await openData();
        const payload = `Subject: legit\r\n\r\nbody${sep}${SMUGGLED}`;
        if (split) {
          const at = payload.indexOf(sep) + 1;
          c.write(payload.slice(0, at));
          await new Promise((r) => setTimeout(r, 20));
          c.write(payload.slice(at));
        } else c.write(payload);
        assert.equal((await c.readReply()).last, reply);
        // The next reply answers the next command: none of the smuggled ones ran.
        assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
        assert.equal(c.pending, 0);
        assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '503 5.5.1 Bad sequence of commands', 'no smuggled transaction is open');
        c.destroy();
        const after = await s.spooled();
        assert.deepEqual(after.map((m) => m.id), before.map((m) => m.id), 'nothing new in the spool');
        for (const m of after) assert.doesNotMatch(m.eml, /smuggled/);
      });
    }
  }

  test('after a refused smuggling attempt the session still takes a proper message, exactly one', async () => {
    const before = (await s.spooled()).length;
    const c = await openData();
    c.write(`Subject: legit\r\n\r\nbody\n.\n${SMUGGLED}`);
    assert.equal((await c.readReply()).last, '554 5.5.2 Message contains bare CR or LF');
    assert.equal((await c.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '250 2.1.5 Ok');
    assert.equal((await c.command('DATA')).code, 354);
    assert.match((await c.data('Subject: second try\r\n\r\nclean\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
    c.destroy();
    const all = await s.spooled();
    assert.equal(all.length, before + 1);
    const last = all.find((m) => m.eml.includes('Subject: second try'))!;
    assertWellFormed(last);
    assert.doesNotMatch(last.eml, /smuggled/);
  });
});
