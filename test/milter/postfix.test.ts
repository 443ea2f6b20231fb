// `mta milter` behind a real Postfix (a private instance, test/helpers/postfix.ts):
// the doe-family policy gives through Postfix the replies `mta run` gives,
// and a policy's header, sender and recipient edits reach the delivered message.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { postfixUnavailable } from '../helpers/postfix.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { onConfig, startBehindPostfix, throughPostfix, type BehindPostfix } from './front-fixture.js';

const skip = postfixUnavailable() ?? false;
const MESSAGE = 'From: <a@example.org>\r\nTo: <jane@doe-family.com>\r\nSubject: hello\r\n\r\nHello Jane.\r\n';

/** The first reply code and enhanced code: what a client acts on. */
function codes(reply: string): string {
  return reply.split(' ').slice(0, 2).join(' ');
}

describe('mta milter with Postfix (smtpd_milters)', { skip }, () => {
  let s: BehindPostfix;
  let direct: TestServer;

  before(async () => {
    s = await startBehindPostfix('milter', { copyFrom: 'examples/doe-family' });
    direct = await startTestServer({ copyFrom: 'examples/doe-family' });
  });
  after(async () => {
    await s?.stop();
    await direct?.stop();
  });

  /** The same transaction sent straight to `mta run` (from 127.0.0.1, an outside client for doe-family). */
  async function directly(from: string, to: string): Promise<{ mail: string; rcpt: string | null }> {
    const c = await SmtpClient.connect(direct.port);
    try {
      await c.greeting();
      await c.ehlo();
      const mail = (await c.command(`MAIL FROM:<${from}>`)).last;
      const rcpt = mail.startsWith('250') ? (await c.command(`RCPT TO:<${to}>`)).last : null;
      return { mail, rcpt };
    } finally {
      c.destroy();
    }
  }

  it('accepts mail from outside to a local user and Postfix delivers it', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'a@example.org', to: ['jane@doe-family.com'], message: MESSAGE });
    assert.match(r.mail, /^250 /);
    assert.match(r.rcpts[0]!, /^250 /);
    assert.match(r.data!, /^250 /);
    const d = await directly('a@example.org', 'jane@doe-family.com');
    assert.equal(codes(d.rcpt!), '250 2.1.5');
    await s.sink.waitForMessages(1, 20_000);
    assert.deepEqual(s.sink.messages.at(-1)!.rcptTo, ['jane@doe-family.com']);
  });

  it('refuses relaying from outside to a foreign domain with the policy reply, as mta run does', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'a@example.org', to: ['x@example.net'] });
    const d = await directly('a@example.org', 'x@example.net');
    assert.equal(r.rcpts[0], '554 5.7.1 Relay access denied');
    assert.equal(codes(r.rcpts[0]!), codes(d.rcpt!));
  });

  it('refuses a local sender from outside at MAIL, as mta run does', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'jane@doe-family.com', to: ['john@doe-family.com'] });
    const d = await directly('jane@doe-family.com', 'john@doe-family.com');
    assert.equal(codes(r.mail), '554 5.7.1');
    assert.equal(codes(r.mail), codes(d.mail));
  });

  it('lets an authenticated client relay to a foreign domain', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', login: 'jane', from: 'jane@doe-family.com', to: ['friend@example.net'], message: MESSAGE });
    assert.match(r.mail, /^250 /);
    assert.match(r.rcpts[0]!, /^250 /);
    assert.match(r.data!, /^250 /);
  });

  it('logs every decision with its rule and file:line', () => {
    const rcpt = s.front.logs.find((l) => l.stage === 'rcpt' && l.status === 'reject');
    assert.ok(rcpt, 'a logged rcpt refusal');
    assert.equal(rcpt.rule, 'relay rcpt');
    assert.match(String(rcpt.at), /main\.vsl:\d+:\d+$/);
  });
});

const EDITING_POLICY = `
${onConfig('doe-family.com')}
#{
  preq: [
    action "stamp, rewrite and archive" || {
      msg::append_header("X-Vsl-Checked", "yes");
      envelop::rw_mail_from("bounces@doe-family.com");
      envelop::add_rcpt("archive@doe-family.com");
    },
  ],
}
`;

describe('mta milter edits the message Postfix delivers', { skip }, () => {
  let s: BehindPostfix;
  before(async () => {
    s = await startBehindPostfix('milter', { files: { 'main.vsl': EDITING_POLICY } });
  });
  after(() => s?.stop());

  it('adds the header, changes the envelope sender and adds the recipient', async () => {
    const r = await throughPostfix(s.postfix.port, { client: '203.0.113.9', from: 'a@example.org', to: ['jane@doe-family.com'], message: MESSAGE });
    assert.match(r.data!, /^250 /);
    // Postfix may deliver the two recipients in one transaction or two.
    await s.sink.waitForMessages(1, 20_000);
    if (s.sink.messages[0]!.rcptTo.length < 2) await s.sink.waitForMessages(2, 20_000);
    const rcpts = s.sink.messages.flatMap((m) => m.rcptTo).sort();
    assert.deepEqual(rcpts, ['archive@doe-family.com', 'jane@doe-family.com']);
    for (const m of s.sink.messages) {
      assert.equal(m.mailFrom, 'bounces@doe-family.com');
      assert.match(m.data.toString('utf8'), /\r\nX-Vsl-Checked: yes\r\n/);
      assert.match(m.data.toString('utf8'), /\r\nSubject: hello\r\n/);
    }
  });
});
