// Message-ID and Date are added to mail from our own clients
// (server.relay_networks, authenticated) when missing, never to mail from
// outside, and never replace the client's own.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerValues, startTestServer } from '../helpers/server.js';

async function sendFromLoopback(set: string[], message: string): Promise<string> {
  const s = await startTestServer({ files: { 'main.vsl': '#{}' }, set: ['server.domain="doe-family.com"', ...set] });
  try {
    const c = await s.client();
    await c.ehlo();
    assert.equal((await c.command('MAIL FROM:<jane@doe-family.com>')).code, 250);
    assert.equal((await c.command('RCPT TO:<john@doe-family.com>')).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    assert.equal((await c.data(message)).code, 250);
    await c.quit();
    const [m] = await s.spooled();
    return m!.eml;
  } finally {
    await s.stop();
  }
}

const BARE = 'From: <jane@doe-family.com>\r\nSubject: no id\r\n\r\nhello\r\n';

test('a client in relay_networks without Message-ID and Date gets both', async () => {
  const eml = await sendFromLoopback([], BARE);
  const [id] = headerValues(eml, 'Message-ID');
  assert.match(id ?? '', /^<[^@\s]+@[^>\s]+>$/);
  assert.equal(headerValues(eml, 'Date').length, 1);
  assert.ok(!Number.isNaN(Date.parse(headerValues(eml, 'Date')[0]!)), 'an RFC 5322 date');
});

test('mail from outside (not in relay_networks, not authenticated) is left as it came', async () => {
  const eml = await sendFromLoopback(['server.relay_networks=[]'], BARE);
  assert.deepEqual(headerValues(eml, 'Message-ID'), []);
  assert.deepEqual(headerValues(eml, 'Date'), []);
});

test('the client\'s own Message-ID and Date are kept', async () => {
  const eml = await sendFromLoopback([], `Message-ID: <mine@client.test>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n${BARE}`);
  assert.deepEqual(headerValues(eml, 'Message-ID'), ['<mine@client.test>']);
  assert.deepEqual(headerValues(eml, 'Date'), ['Mon, 1 Dec 2025 10:00:00 +0000']);
});
