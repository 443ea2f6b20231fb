// DATA and the end of data (SPEC §4.5, §7.5, §10): what reaches the spool,
// in which form, and what never does — smuggled messages, oversized ones,
// messages of clients that left mid-DATA.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MailAddress } from '../../src/mail/types.js';
import { ACTIVE, Spool } from '../../src/queue/spool.js';
import { accept, next, reject, withEffects } from '../helpers/fake-runner.js';
import type { SmtpClient } from '../helpers/smtp-client.js';
import { startFront, withFront, type Harness } from '../helpers/smtp-front.js';

function addr(local: string, domain: string): MailAddress {
  return { local, domain, raw: `<${local}@${domain}>`, isNull: false };
}

async function openTransaction(h: Harness, rcpts = ['u@test.example']): Promise<SmtpClient> {
  const c = await h.client();
  await c.ehlo();
  assert.equal((await c.command('MAIL FROM:<sender@remote.example>')).code, 250);
  for (const r of rcpts) await c.command(`RCPT TO:<${r}>`);
  assert.equal((await c.command('DATA')).code, 354);
  return c;
}

/** Unfolds a header block (RFC 5322 §2.2.3). */
function unfold(text: string): string {
  return text.replace(/\r\n(?=[ \t])/g, '');
}

describe('the spooled message', () => {
  test('starts with the Received: header in the SPEC form, then the client message unchanged', async () => {
    await withFront({}, async (h) => {
      const c = await openTransaction(h);
      const reply = await c.data('Subject: hello\r\nFrom: <sender@remote.example>\r\n\r\n.leading dot\r\nbody\r\n');
      const id = /queued as (\S+)$/.exec(reply.last)![1]!;
      const stored = h.sink.stored[0]!;
      assert.equal(stored.id, id);
      const text = unfold(stored.data.toString('utf8'));
      assert.match(text, new RegExp(`^Received: from client\\.example \\(unknown \\[127\\.0\\.0\\.1\\]\\) by mx\\.test\\.example with ESMTP id ${id}; [A-Z][a-z]{2}, \\d{1,2} [A-Z][a-z]{2} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000\\r\\n`));
      assert.ok(stored.data.toString('utf8').endsWith('\r\nSubject: hello\r\nFrom: <sender@remote.example>\r\n\r\n.leading dot\r\nbody\r\n'), 'dot-unstuffed, otherwise byte for byte');
      assert.deepEqual(await h.sink.onDisk(), [id], 'fsynced into the spool before the 250');
      assert.deepEqual(await h.sink.leftovers(), []);
      c.destroy();
    });
  });

  test('pending headers sit below Received: and above the client headers, session ones first, in call order', async () => {
    await withFront({
      script: {
        connect: withEffects(next(), [{ kind: 'header', op: 'append', name: 'X-Connect', value: 'c' }]),
        mail: withEffects(next(), [
          { kind: 'header', op: 'append', name: 'X-Mail-1', value: 'm1' },
          { kind: 'header', op: 'append', name: 'X-Mail-2', value: 'm2' },
        ]),
        rcpt: withEffects(next(), [{ kind: 'header', op: 'prepend', name: 'X-Rcpt', value: 'r' }]),
        preq: withEffects(next(), [{ kind: 'header', op: 'prepend', name: 'X-Preq', value: 'p' }]),
      },
    }, async (h) => {
      const c = await openTransaction(h);
      await c.data('Subject: s\r\n\r\nb\r\n');
      const names = h.sink.stored[0]!.data.toString('utf8').split('\r\n\r\n')[0]!.split('\r\n').filter((l) => !/^\s/.test(l)).map((l) => l.slice(0, l.indexOf(':')));
      assert.deepEqual(names, ['X-Preq', 'Received', 'X-Connect', 'X-Rcpt', 'X-Mail-1', 'X-Mail-2', 'Subject']);
      // preq saw the message as assembled, Received first.
      assert.equal(h.runner.callsOf('preq')[0]!.headers![0]!.name, 'Received');
      c.destroy();
    });
  });

  test('header edits act on the pending list before DATA and on the message at preq; From:/To: edits apply at end of DATA', async () => {
    await withFront({
      script: {
        mail: withEffects(next(), [
          { kind: 'header', op: 'append', name: 'X-Mail', value: 'm' },
          { kind: 'header', op: 'set', name: 'X-Set', value: 'first' },
          { kind: 'msg_from', address: addr('news', 'test.example') },
          { kind: 'msg_rcpt', op: 'add', address: addr('copy', 'test.example') },
        ]),
        rcpt: withEffects(next(), [
          { kind: 'header', op: 'rename', name: 'x-mail', newName: 'X-Renamed' },
          { kind: 'header', op: 'set', name: 'X-Set', value: 'second' },
          { kind: 'msg_rcpt', op: 'rm', address: addr('old', 'remote.example') },
        ]),
        preq: withEffects(next(), [
          { kind: 'header', op: 'remove', name: 'X-Drop' },
          { kind: 'header', op: 'set', name: 'Subject', value: '[tagged] hello' },
        ]),
      },
    }, async (h) => {
      const c = await openTransaction(h);
      await c.data('From: "Sender Name" <sender@remote.example>\r\nTo: Old <old@remote.example>, u@test.example\r\nX-Drop: 1\r\nSubject: hello\r\nX-Drop: 2\r\n\r\nbody\r\n');
      const head = unfold(h.sink.stored[0]!.data.toString('utf8').split('\r\n\r\n')[0]!).split('\r\n').slice(1);
      assert.deepEqual(head, ['X-Renamed: m', 'X-Set: second', 'From: "Sender Name" <news@test.example>', 'To: u@test.example, copy@test.example', 'Subject: [tagged] hello']);
      // preq saw the From:/To: edits already made.
      assert.ok(h.runner.callsOf('preq')[0]!.headers!.some((x) => x.name === 'From' && x.value === '"Sender Name" <news@test.example>'));
      c.destroy();
    });
  });

  test('a recipient refused at RCPT is absent from the spooled envelope', async () => {
    await withFront({
      script: { rcpt: (call) => (call.txn?.currentRcpt?.local === 'nobody' ? reject('550 5.1.1 unknown user') : next()) },
    }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<sender@remote.example>');
      assert.equal((await c.command('RCPT TO:<alice@test.example>')).code, 250);
      assert.equal((await c.command('RCPT TO:<nobody@test.example>')).last, '550 5.1.1 unknown user');
      assert.equal((await c.command('RCPT TO:<bob@test.example>')).code, 250);
      await c.command('DATA');
      await c.data('Subject: s\r\n\r\nb\r\n');
      assert.deepEqual(h.sink.stored[0]!.rcpts.map((r) => r.address.local), ['alice', 'bob']);
      // During its own stage the recipient was tentatively the last of the list.
      assert.deepEqual(h.runner.callsOf('rcpt')[1]!.txn!.rcpts.map((r) => r.address.local), ['alice', 'nobody']);
      c.destroy();
    });
  });

  test('envelope effects: add_rcpt at mail, transport at rcpt, rm_rcpt and mail_from at preq', async () => {
    await withFront({
      script: {
        mail: withEffects(next(), [{ kind: 'add_rcpt', address: addr('archive', 'test.example') }]),
        rcpt: withEffects(accept(), [{ kind: 'transport', rcpt: addr('u', 'test.example'), transport: { kind: 'maildir' } }]),
        preq: withEffects(next(), [
          { kind: 'rm_rcpt', address: addr('archive', 'test.example') },
          { kind: 'mail_from', address: addr('bounce', 'test.example') },
        ]),
      },
    }, async (h) => {
      const c = await openTransaction(h);
      await c.data('Subject: s\r\n\r\nb\r\n');
      const stored = h.sink.stored[0]!;
      assert.deepEqual(stored.rcpts.map((r) => [r.address.local, r.transport.kind]), [['u', 'maildir']]);
      assert.equal(stored.mailFrom.local, 'bounce');
      assert.deepEqual(h.runner.callsOf('rcpt')[0]!.txn!.rcpts.map((r) => r.address.local), ['archive', 'u']);
      c.destroy();
    });
  });

  test('with the real queue as the sink, the message is in active/ when the 250 arrives', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vsl-mta-front-spool-'));
    const spool = await Spool.open(dir);
    const h = await startFront({ sink: spool });
    try {
      const c = await openTransaction(h);
      const id = /queued as (\S+)$/.exec((await c.data('Subject: s\r\n\r\nb\r\n')).last)![1]!;
      assert.deepEqual(await spool.list(ACTIVE), [id]);
      c.destroy();
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a message left without recipients after preq is answered 250 and dropped', async () => {
    await withFront({ script: { preq: withEffects(next(), [{ kind: 'rm_rcpt', address: addr('u', 'test.example') }]) } }, async (h) => {
      const c = await openTransaction(h);
      assert.match((await c.data('Subject: s\r\n\r\nb\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      assert.equal(h.sink.stored.length, 0);
      c.destroy();
    });
  });

  test('a spool failure is a 451 4.3.0 and nothing is accepted', async () => {
    await withFront({}, async (h) => {
      h.sink.failNext = 1;
      const c = await openTransaction(h);
      assert.equal((await c.data('Subject: s\r\n\r\nb\r\n')).last, '451 4.3.0 Temporary local problem, try again later');
      assert.equal(h.sink.stored.length, 0);
      assert.equal((await c.command('NOOP')).code, 250);
      c.destroy();
    });
  });
});

describe('refused messages', () => {
  test('a message over message_size_limit gets 552 5.3.4, is not spooled, and the session continues', async () => {
    await withFront({ config: (c) => (c.server.smtp.message_size_limit = 1000) }, async (h) => {
      const c = await openTransaction(h);
      assert.equal((await c.data(`Subject: big\r\n\r\n${'y'.repeat(70)}\r\n`.repeat(20))).last, '552 5.3.4 Message size exceeds fixed maximum message size');
      assert.equal(h.sink.stored.length, 0);
      assert.equal(h.runner.callsOf('preq').length, 0);
      assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
      assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands', 'the transaction ended');
      c.destroy();
    });
  });

  test('50 Received: headers pass, 51 get 554 5.4.6 Too many hops', async () => {
    await withFront({}, async (h) => {
      const hops = (n: number): string => 'Received: from a by b; Sat, 1 Jan 2000 00:00:00 +0000\r\n'.repeat(n);
      let c = await openTransaction(h);
      assert.match((await c.data(`${hops(49)}Subject: s\r\n\r\nb\r\n`)).last, /^250 /, 'with ours, 50');
      c.destroy();
      c = await openTransaction(h);
      assert.equal((await c.data(`${hops(51)}Subject: s\r\n\r\nb\r\n`)).last, '554 5.4.6 Too many hops');
      assert.equal(h.sink.stored.length, 1);
      c.destroy();
    });
  });

  test('a message with NUL bytes is refused', async () => {
    await withFront({}, async (h) => {
      const c = await openTransaction(h);
      c.write(Buffer.from('Subject: nul\r\n\r\nbefore\0after\r\n.\r\n', 'latin1'));
      assert.equal((await c.readReply()).last, '554 5.6.0 Message contains NUL characters');
      assert.equal(h.sink.stored.length, 0);
      c.destroy();
    });
  });

  test('a header block over header_size_max gets 552 5.3.4', async () => {
    await withFront({ config: (c) => (c.server.smtp.header_size_max = 200) }, async (h) => {
      const c = await openTransaction(h);
      assert.match((await c.data(`X-Big: ${'h'.repeat(300)}\r\n\r\nb\r\n`)).last, /^552 5\.3\.4 /);
      assert.equal(h.sink.stored.length, 0);
      c.destroy();
    });
  });
});

describe('SMTP smuggling', () => {
  const smuggled = 'MAIL FROM:<evil@remote.example>\r\nRCPT TO:<victim@test.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n';
  const variants: Array<[string, string]> = [
    ['\\n.\\n', '\n.\n'],
    ['\\r.\\r', '\r.\r'],
    ['\\r\\n.\\n', '\r\n.\n'],
    ['\\n.\\r\\n', '\n.\r\n'],
    ['.\\r\\n after bare LF lines', 'line one\nline two\n.\r\n'],
    ['\\r\\n.\\r after a bare CR', '\r\r\n.\r'],
  ];
  for (const [name, sep] of variants) {
    for (const split of [false, true]) {
      test(`${name}${split ? ' (split across packets)' : ''} never ends the message: one 554 5.5.2, nothing spooled`, async () => {
        await withFront({ script: { preq: next() } }, async (h) => {
          const c = await openTransaction(h);
          const payload = `Subject: legit\r\n\r\nbody${sep}${smuggled}`;
          if (split) {
            const at = payload.indexOf(sep) + 1;
            c.write(payload.slice(0, at));
            await new Promise((r) => setTimeout(r, 20));
            c.write(payload.slice(at));
          } else c.write(payload);
          assert.equal((await c.readReply()).last, '554 5.5.2 Message contains bare CR or LF');
          // The next reply belongs to the next command: no smuggled MAIL/RCPT/DATA ran.
          assert.equal((await c.command('NOOP')).last, '250 2.0.0 Ok');
          assert.equal(h.sink.stored.length, 0);
          assert.equal(h.runner.callsOf('mail').length, 1);
          assert.equal(h.runner.callsOf('preq').length, 0);
          c.destroy();
        });
      });
    }
  }
});

describe('clients that go away', () => {
  test('a disconnect mid-DATA leaves nothing in the spool', async () => {
    await withFront({ script: { preq: next() } }, async (h) => {
      const c = await openTransaction(h);
      c.write('Subject: partial\r\n\r\nhalf a message\r\n');
      await new Promise((r) => setTimeout(r, 30));
      c.destroy();
      // Wait until the server noticed.
      for (let i = 0; i < 100 && h.front.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(h.front.connections, 0);
      assert.equal(h.sink.stored.length, 0);
      assert.deepEqual(await h.sink.onDisk(), []);
      assert.deepEqual(await h.sink.leftovers(), []);
      assert.equal(h.runner.callsOf('preq').length, 0);
    });
  });
});
