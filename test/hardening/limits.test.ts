// The session limits of SPEC §4.5 and §9.2, set through configuration on
// the whole server (real engine, real spool) — test/smtp/limits.test.ts and
// protocol.test.ts prove each on the front with a scripted runner; here the
// values travel the way an administrator sets them (--set / on_config) —
// and the defaults are the safe ones.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { defaultConfig } from '../../src/config/schema.js';
import { DOE_FAMILY, startFullServer } from './full-server.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

describe('safe defaults', () => {
  test('every limit has a finite default: timeouts, line, header, message, recipients, errors, connections, AUTH failures', () => {
    const s = defaultConfig('mx.example.org').server;
    assert.deepEqual(
      {
        timeout: s.smtp.timeout, data_timeout: s.smtp.data_timeout, session_timeout: s.smtp.session_timeout,
        line_length_max: s.smtp.line_length_max, header_size_max: s.smtp.header_size_max, message_size_limit: s.smtp.message_size_limit,
        rcpt_count_max: s.smtp.rcpt_count_max, error: s.smtp.error,
        client_count_max: s.smtp.client_count_max, client_count_max_per_ip: s.smtp.client_count_max_per_ip,
        attempts_max: s.auth.attempts_max, failures_per_ip_max: s.auth.failures_per_ip_max, failure_window: s.auth.failure_window,
        handshake_timeout: s.tls.handshake_timeout, proxy_from: s.interfaces.proxy_from,
      },
      {
        timeout: '5m', data_timeout: '10m', session_timeout: '30m',
        line_length_max: 2048, header_size_max: 1048576, message_size_limit: 10240000,
        rcpt_count_max: 1000, error: { soft_count: 10, hard_count: 20, delay: '1s' },
        client_count_max: 256, client_count_max_per_ip: 20,
        attempts_max: 3, failures_per_ip_max: 10, failure_window: '15m',
        handshake_timeout: '10s', proxy_from: [],
      },
    );
  });
});

describe('limits set by configuration, on the whole server', () => {
  test('rcpt_count_max: the recipient beyond it gets 452 4.5.3, the message goes to the ones before', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.rcpt_count_max=2'] });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      await c.command('MAIL FROM:<alice@example.net>');
      assert.equal((await c.command('RCPT TO:<jdoe@doe-family.com>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<jane@doe-family.com>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<jim@doe-family.com>')).last, '452 4.5.3 Too many recipients');
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data('Subject: three\r\n\r\nbody\r\n')).last, /^250 /);
      c.destroy();
      const [m] = await s.spooled();
      assert.deepEqual(m!.record.recipients.map((r) => r.address.local), ['jdoe', 'jane']);
    } finally {
      await s.stop();
    }
  });

  test('line_length_max: a longer command line gets 500 5.5.6 and the session goes on', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.line_length_max=512'] });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      assert.equal((await c.command(`MAIL FROM:<${'a'.repeat(520)}@example.net>`)).last, '500 5.5.6 Line too long');
      assert.equal((await c.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('header_size_max and message_size_limit: 552 5.3.4, nothing spooled, SIZE advertised and enforced at MAIL', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.header_size_max=1024', 'server.smtp.message_size_limit=4096'] });
    try {
      const c = await s.client();
      assert.ok((await c.ehlo('client.example.net')).texts.includes('SIZE 4096'));
      assert.equal((await c.command('MAIL FROM:<alice@example.net> SIZE=5000')).last, '552 5.3.4 Message size exceeds fixed maximum message size');
      await c.command('MAIL FROM:<alice@example.net>');
      await c.command('RCPT TO:<jdoe@doe-family.com>');
      await c.command('DATA');
      assert.equal((await c.data(`X-Big: ${'h'.repeat(1100)}\r\n\r\nbody\r\n`)).last, '552 5.3.4 Message header size exceeds fixed maximum size');
      await c.command('MAIL FROM:<alice@example.net>');
      await c.command('RCPT TO:<jdoe@doe-family.com>');
      await c.command('DATA');
      assert.equal((await c.data(`Subject: big\r\n\r\n${`${'b'.repeat(78)}\r\n`.repeat(60)}`)).last, '552 5.3.4 Message size exceeds fixed maximum message size');
      c.destroy();
      assert.deepEqual(await s.spooled(), []);
    } finally {
      await s.stop();
    }
  });

  test('error.hard_count: the last error reply is followed by 421 4.7.0 Too many errors and the close', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.error.hard_count=3', 'server.smtp.error.delay="0s"'] });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      await c.command('MAIL FROM:<alice@example.net>');
      assert.equal((await c.command('RCPT TO:<a@example.org>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<b@example.org>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<c@example.org>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.readReply()).last, '421 4.7.0 Too many errors');
      assert.equal(await c.closedWithin(2000), true);
    } finally {
      await s.stop();
    }
  });

  test('client_count_max_per_ip and client_count_max: 421 4.7.0 Too many connections, and the slot frees on close', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.client_count_max_per_ip=2', 'server.smtp.client_count_max=3'] });
    try {
      const a = await s.client();
      const b = await s.client();
      const third = await s.connect();
      assert.equal((await third.readReply()).last, '421 4.7.0 mx.doe-family.com Too many connections, try again later');
      assert.equal(await third.closedWithin(2000), true);
      a.destroy();
      await a.closedWithin(1000);
      let again = await s.connect();
      for (let i = 0; i < 50 && (await again.readReply()).code !== 220; i++) {
        again.destroy();
        await new Promise((r) => setTimeout(r, 20));
        again = await s.connect();
      }
      assert.equal(again.closed, false, 'a slot is free again');
      again.destroy();
      b.destroy();
    } finally {
      await s.stop();
    }
  });

  test('AUTH failures per client IP: slowed down across sessions, then refused with 421 4.7.0 even with the right password', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-passwd-'));
    const passwd = path.join(dir, 'passwd');
    await writeFile(passwd, `jdoe:${await hashScrypt('s3cret-pw', { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n`);
    const s = await startFullServer({
      policy: DOE_FAMILY(),
      set: [`server.auth.backend=${JSON.stringify(`file:${passwd}`)}`, 'server.auth.failures_per_ip_max=2', 'server.smtp.error.delay="0s"', 'server.auth.allow_plaintext=true'],
    }).catch(async (e: unknown) => {
      await rm(dir, { recursive: true, force: true });
      throw e;
    });
    try {
      const attempt = async (password: string): Promise<{ reply: string; ms: number; closed: boolean }> => {
        const c = await s.client();
        await c.ehlo('client.example.net');
        const t0 = Date.now();
        const reply = (await c.command(`AUTH PLAIN ${b64(`\0jdoe\0${password}`)}`)).last;
        const ms = Date.now() - t0;
        const closed = await c.closedWithin(reply.startsWith('421') ? 2000 : 50);
        c.destroy();
        return { reply, ms, closed };
      };
      const first = await attempt('wrong-1');
      assert.equal(first.reply, '535 5.7.8 Authentication credentials invalid');
      const second = await attempt('wrong-2');
      assert.equal(second.reply, '535 5.7.8 Authentication credentials invalid');
      assert.ok(second.ms >= 900, `the second failure from this address was answered after ${second.ms} ms, not slowed down`);
      const third = await attempt('s3cret-pw');
      assert.deepEqual([third.reply, third.closed], ['421 4.7.0 Too many authentication failures', true]);
    } finally {
      await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('attempts_max: the last failed AUTH of a session is followed by 421 4.7.0 and the close', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-passwd-'));
    const passwd = path.join(dir, 'passwd');
    await writeFile(passwd, `jdoe:${await hashScrypt('s3cret-pw', { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 })}\n`);
    const s = await startFullServer({ policy: DOE_FAMILY(), set: [`server.auth.backend=${JSON.stringify(`file:${passwd}`)}`, 'server.auth.attempts_max=1', 'server.smtp.error.delay="0s"', 'server.auth.allow_plaintext=true'] }).catch(async (e: unknown) => {
      await rm(dir, { recursive: true, force: true });
      throw e;
    });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      assert.equal((await c.command(`AUTH PLAIN ${b64('\0jdoe\0wrong')}`)).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal((await c.readReply()).last, '421 4.7.0 Too many authentication failures');
      assert.equal(await c.closedWithin(2000), true);
    } finally {
      await s.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
