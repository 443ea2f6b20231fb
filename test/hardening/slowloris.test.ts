// Slow and idle clients cannot hold the server (issue "Hardening",
// must-show 5; SPEC §4.5 `421 4.4.2`): 1,000 idle connections against the
// real server in its own process, a new client still greeted within 1 s,
// the idle ones closed at the configured timeout; and clients trickling a
// byte at a time cut off by the command, DATA and session deadlines.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { SmtpClient } from '../helpers/smtp-client.js';
import { makeTestCertificate } from '../helpers/tls-cert.js';
import { DOE_FAMILY, spawnServer, startFullServer } from './full-server.js';

const TIMEOUT_REPLY = '421 4.4.2 mx.doe-family.com Timeout, closing connection';

/** A raw idle connection: records what the server sent and when it closed. */
interface Idle {
  socket: net.Socket;
  text: string;
  bannerAt: number | null;
  closedAt: number | null;
}

function openIdle(port: number): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const idle: Idle = { socket, text: '', bannerAt: null, closedAt: null };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      idle.text += d;
      if (idle.bannerAt === null && idle.text.includes('\r\n')) {
        idle.bannerAt = Date.now();
        resolve(idle);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      idle.closedAt = Date.now();
      if (idle.bannerAt === null) reject(new Error(`closed before the banner: ${JSON.stringify(idle.text)}`));
    });
  });
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('1,000 idle connections (slowloris)', () => {
  test('a new client is greeted within 1 s while 1,000 idle connections are held; the idle ones get 421 4.4.2 at the timeout', async () => {
    const TIMEOUT_MS = 8_000;
    const server = await spawnServer(DOE_FAMILY(), [
      'server.smtp.client_count_max=2000',
      'server.smtp.client_count_max_per_ip=2000',
      `server.smtp.timeout="${TIMEOUT_MS / 1000}s"`,
    ]);
    const idle: Idle[] = [];
    try {
      // Open them in batches, each batch greeted before the next: the listen
      // backlog is not what is being tested.
      for (let i = 0; i < 1000; i += 50) {
        idle.push(...(await Promise.all(Array.from({ length: 50 }, () => openIdle(server.port)))));
      }
      const banners = new Set(idle.map((x) => x.text));
      assert.deepEqual([...banners], ['220 mx.doe-family.com Service ready\r\n'], 'every one admitted and greeted');
      assert.equal(idle.filter((x) => x.closedAt !== null).length, 0, 'all 1,000 still open');

      const t0 = Date.now();
      const fresh = await SmtpClient.connect(server.port);
      const greeting = await fresh.greeting();
      const elapsed = Date.now() - t0;
      assert.equal(greeting.last, '220 mx.doe-family.com Service ready');
      assert.ok(elapsed < 1000, `banner after ${elapsed} ms with 1,000 idle connections`);
      // And it is served, not just greeted.
      await fresh.ehlo('client.example.net');
      assert.equal((await fresh.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok');
      assert.equal((await fresh.command('RCPT TO:<jdoe@doe-family.com>')).last, '250 2.1.5 Ok');
      fresh.destroy();
      assert.equal(idle.filter((x) => x.closedAt !== null).length, 0, 'still held while the new client was served');

      // The idle ones are closed by the server at the timeout, each with the SPEC reply.
      const deadline = Date.now() + TIMEOUT_MS + 20_000;
      while (idle.some((x) => x.closedAt === null) && Date.now() < deadline) await wait(100);
      const open = idle.filter((x) => x.closedAt === null).length;
      assert.equal(open, 0, `${open} idle connections never closed`);
      const texts = new Set(idle.map((x) => x.text));
      assert.deepEqual([...texts], [`220 mx.doe-family.com Service ready\r\n${TIMEOUT_REPLY}\r\n`]);
      const early = idle.filter((x) => x.closedAt! - x.bannerAt! < TIMEOUT_MS - 500);
      assert.equal(early.length, 0, `${early.length} closed before the timeout`);
    } finally {
      for (const x of idle) x.socket.destroy();
      await server.stop();
    }
  });
});

describe('clients trickling a byte at a time', () => {
  test('a command line trickled at 1 byte per second is cut off at the idle timeout with 421 4.4.2, and others are served meanwhile', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.timeout="2s"', 'server.smtp.session_timeout="60s"'] });
    try {
      const slow = await s.client();
      const start = Date.now();
      const line = 'MAIL FROM:<' + 'a'.repeat(100);
      let i = 0;
      // Every byte comes well within the 2 s idle timeout; the line never ends.
      const drip = setInterval(() => {
        if (!slow.closed) slow.write(line[i++ % line.length]!);
      }, 1000);
      try {
        const other = await s.client();
        await other.ehlo('client.example.net');
        assert.equal((await other.command('MAIL FROM:<alice@example.net>')).last, '250 2.1.0 Ok');
        other.destroy();
        assert.equal((await slow.readReply(10_000)).last, TIMEOUT_REPLY);
        assert.equal(await slow.closedWithin(2000), true);
        const held = Date.now() - start;
        assert.ok(held < 10_000, `held ${held} ms: the session timeout (60 s) was not what ended it`);
        assert.ok(held >= 1900, `cut after ${held} ms, before the timeout`);
      } finally {
        clearInterval(drip);
      }
    } finally {
      await s.stop();
    }
  });

  test('complete commands trickled slowly keep a session only until session_timeout', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.timeout="2s"', 'server.smtp.session_timeout="3s"'] });
    try {
      const c = await s.client();
      const start = Date.now();
      const noop = 'NOOP\r\n';
      let i = 0;
      // One byte every 250 ms: a NOOP every 1.5 s, each within the idle timeout.
      const drip = setInterval(() => {
        if (!c.closed) c.write(noop[i++ % noop.length]!);
      }, 250);
      try {
        let last = '';
        for (let n = 0; n < 20 && !last.startsWith('421'); n++) last = (await c.readReply(10_000)).last;
        assert.equal(last, TIMEOUT_REPLY);
        assert.equal(await c.closedWithin(2000), true);
        const held = Date.now() - start;
        assert.ok(held >= 2900 && held < 10_000, `session lasted ${held} ms`);
      } finally {
        clearInterval(drip);
      }
    } finally {
      await s.stop();
    }
  });

  test('a client that asks for STARTTLS and then trickles its handshake is dropped at tls.handshake_timeout', async () => {
    const cert = await makeTestCertificate('mx.doe-family.com');
    const s = await startFullServer({
      policy: DOE_FAMILY(),
      set: [`server.tls.certificate=${JSON.stringify(cert.certPath)}`, `server.tls.private_key=${JSON.stringify(cert.keyPath)}`, 'server.tls.handshake_timeout="1s"', 'server.smtp.timeout="30s"'],
    }).catch(async (e: unknown) => {
      await cert.cleanup();
      throw e;
    });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      assert.equal((await c.command('STARTTLS')).last, '220 2.0.0 Ready to start TLS');
      const start = Date.now();
      // The first bytes of a TLS record header, one every 300 ms, never a whole ClientHello.
      const header = [0x16, 0x03, 0x01, 0x02, 0x00];
      let i = 0;
      const drip = setInterval(() => {
        if (!c.closed && i < header.length) c.write(Buffer.from([header[i++]!]));
      }, 300);
      try {
        assert.equal(await c.closedWithin(10_000), true);
        const held = Date.now() - start;
        assert.ok(held >= 900 && held < 10_000, `dropped after ${held} ms`);
      } finally {
        clearInterval(drip);
      }
    } finally {
      await s.stop();
      await cert.cleanup();
    }
  });

  test('a message trickled at 1 byte per 500 ms is cut off at data_timeout with 421 4.4.2 and nothing is spooled', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.smtp.timeout="2s"', 'server.smtp.data_timeout="2s"'] });
    try {
      const c = await s.client();
      await c.ehlo('client.example.net');
      await c.command('MAIL FROM:<alice@example.net>');
      await c.command('RCPT TO:<jdoe@doe-family.com>');
      assert.equal((await c.command('DATA')).code, 354);
      const drip = setInterval(() => {
        if (!c.closed) c.write('x');
      }, 500);
      try {
        assert.equal((await c.readReply(10_000)).last, TIMEOUT_REPLY);
        assert.equal(await c.closedWithin(2000), true);
      } finally {
        clearInterval(drip);
      }
      assert.deepEqual(await s.spooled(), []);
    } finally {
      await s.stop();
    }
  });
});
