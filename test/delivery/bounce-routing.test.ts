// Routing is one function for every queued message, bounces included: the
// DSN to a local sender goes where the rcpt rules send that address (here
// its maildir), not to delivery.default (here a smarthost that refuses).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { startSmtpSink } from '../helpers/smtp-sink.js';
import { startTestServer, tempDir } from '../helpers/server.js';

const POLICY = `#{
  rcpt: [
    action "local mailboxes" || { if in_domain(ctx::rcpt()) { transport::maildir(ctx::rcpt()); } },
    rule "relay rcpt" || check_rcpt_relay(rg4("127.0.0.0/8")),
  ],
}
`;

async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('the DSN to a local sender is delivered by the transport its rcpt rules choose, not by delivery.default', async () => {
  const smarthost = await startSmtpSink({ script: { rcpt: () => ({ code: 550, text: '5.7.1 relaying refused by the smarthost' }) } });
  const boxes = tempDir('bounce-routing-');
  const s = await startTestServer({
    files: { 'main.vsl': POLICY },
    deliver: true,
    set: [
      'server.domain="doe-family.com"',
      `delivery.maildir=${JSON.stringify(`${boxes}/{local_part}/Maildir`)}`,
      `delivery.default=${JSON.stringify(smarthost.address)}`,
    ],
  });
  try {
    const c = await s.client();
    await c.ehlo();
    assert.equal((await c.command('MAIL FROM:<jane@doe-family.com>')).code, 250);
    assert.equal((await c.command('RCPT TO:<someone@example.net>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    assert.equal((await c.data('From: <jane@doe-family.com>\r\nSubject: to a refused address\r\n\r\nhello\r\n')).code, 250);
    await c.quit();
    const inbox = path.join(boxes, 'jane', 'Maildir', 'new');
    await waitFor('the DSN in jane\'s maildir', () => fs.existsSync(inbox) && fs.readdirSync(inbox).length === 1);
    const dsn = fs.readFileSync(path.join(inbox, fs.readdirSync(inbox)[0]!), 'utf8');
    assert.match(dsn, /^Return-Path: <>$/m);
    assert.match(dsn, /^Subject: Undelivered Mail Returned to Sender$/m);
    assert.match(dsn, /^Diagnostic-Code: smtp; 550 5\.7\.1 relaying refused by the smarthost$/m);
    // Only the original went to the smarthost (and was refused); the bounce did not.
    assert.ok(smarthost.messages.every((m) => m.mailFrom !== ''), 'no DSN offered to the smarthost');
  } finally {
    await s.stop();
    await smarthost.close();
    fs.rmSync(boxes, { recursive: true, force: true });
  }
});
