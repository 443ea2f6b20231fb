// Issue 16 item 5: connection slots. Before: 20 per exact address and 256
// in total, per worker process, so 13 addresses held the whole server, an
// IPv6 client could open 20 per address of its /64 and N workers multiplied
// every limit by N. Now IPv6 clients count per prefix
// (server.smtp.client_ipv6_prefix_length, /64), the counts are server-wide
// (the primary holds them for the workers, src/smtp/shared-limits.ts), and
// the last client_count_reserved_for_new slots only go to clients holding
// no connection yet. Client addresses other than 127.0.0.1 come in through
// PROXY headers from the loopback (server.interfaces.proxy_from).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PrimaryLink } from '../../src/smtp/shared-limits.js';
import { DOE_FAMILY, spawnServer, startFullServer } from './full-server.js';
import { SmtpClient } from '../helpers/smtp-client.js';

const proxied = (ip: string): string => `PROXY ${ip.includes(':') ? 'TCP6' : 'TCP4'} ${ip} ${ip.includes(':') ? '::1' : '127.0.0.1'} 40000 25\r\n`;

/** Connects as `ip` (through a PROXY header) and reads the first reply: the greeting or a refusal. */
async function connectAs(port: number, ip: string, clients: SmtpClient[]): Promise<string> {
  const c = await SmtpClient.connect(port, { preamble: proxied(ip) });
  clients.push(c);
  return (await c.readReply()).last;
}

describe('connection slots over real sockets', () => {
  test('IPv6 clients count per /64: a third address of the same /64 is refused, another /64 is not', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.interfaces.proxy_from=["127.0.0.1"]', 'server.smtp.client_count_max_per_ip=2'] });
    const clients: SmtpClient[] = [];
    try {
      assert.match(await connectAs(s.port, '2001:db8:1:2::a', clients), /^220 /);
      assert.match(await connectAs(s.port, '2001:db8:1:2::b', clients), /^220 /);
      assert.match(await connectAs(s.port, '2001:db8:1:2:ffff::c', clients), /^421 4\.7\.0 .*Too many connections/);
      assert.match(await connectAs(s.port, '2001:db8:1:3::a', clients), /^220 /);
    } finally {
      for (const c of clients) c.destroy();
      await s.stop();
    }
  });

  test('the prefix length is configurable: /128 counts every address apart', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY(), set: ['server.interfaces.proxy_from=["127.0.0.1"]', 'server.smtp.client_count_max_per_ip=1', 'server.smtp.client_ipv6_prefix_length=128'] });
    const clients: SmtpClient[] = [];
    try {
      assert.match(await connectAs(s.port, '2001:db8:1:2::a', clients), /^220 /);
      assert.match(await connectAs(s.port, '2001:db8:1:2::b', clients), /^220 /);
      assert.match(await connectAs(s.port, '2001:db8:1:2::a', clients), /^421 /);
    } finally {
      for (const c of clients) c.destroy();
      await s.stop();
    }
  });

  test('slots kept for new addresses: busy addresses cannot take the last ones, a new address can', async () => {
    // 16 slots, the last 2 (an eighth) for addresses holding none; 8 per address.
    const s = await startFullServer({
      policy: DOE_FAMILY(),
      set: ['server.interfaces.proxy_from=["127.0.0.1"]', 'server.smtp.client_count_max=16', 'server.smtp.client_count_max_per_ip=8', 'server.smtp.client_count_reserved_for_new=2'],
    });
    const clients: SmtpClient[] = [];
    try {
      for (let i = 0; i < 8; i++) assert.match(await connectAs(s.port, '192.0.2.1', clients), /^220 /);
      for (let i = 0; i < 6; i++) assert.match(await connectAs(s.port, '192.0.2.2', clients), /^220 /);
      // 14 in use: the last 2 are kept for clients with no connection.
      assert.match(await connectAs(s.port, '192.0.2.2', clients), /^421 4\.7\.0 .*Too many connections/);
      assert.match(await connectAs(s.port, '198.51.100.7', clients), /^220 /);
      assert.match(await connectAs(s.port, '203.0.113.9', clients), /^220 /);
      // Full now, for everyone.
      assert.match(await connectAs(s.port, '198.51.100.8', clients), /^421 /);
    } finally {
      for (const c of clients) c.destroy();
      await s.stop();
    }
  });

  test('with 2 worker processes the per-address limit holds server-wide, and closed sessions free their slots', { timeout: 60_000 }, async () => {
    const server = await spawnServer(DOE_FAMILY(), ['server.smtp.client_count_max_per_ip=3'], ['--workers', '2']);
    const clients: SmtpClient[] = [];
    try {
      const first = await Promise.all(Array.from({ length: 8 }, () => SmtpClient.connect(server.port).then(async (c) => {
        clients.push(c);
        return { c, reply: (await c.readReply(10_000)).last };
      })));
      const greeted = first.filter((x) => x.reply.startsWith('220 '));
      assert.equal(greeted.length, 3, first.map((x) => x.reply).join('\n'));
      assert.ok(first.filter((x) => !x.reply.startsWith('220 ')).every((x) => /^421 4\.7\.0 .*Too many connections/.test(x.reply)));
      // Give one back: a new connection gets it, whichever worker takes it.
      await greeted[0]!.c.quit();
      assert.equal(await greeted[0]!.c.closedWithin(5000), true);
      let admitted = false;
      for (let i = 0; i < 20 && !admitted; i++) {
        const c = await SmtpClient.connect(server.port);
        clients.push(c);
        admitted = (await c.readReply(10_000)).last.startsWith('220 ');
        if (!admitted) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(admitted, true, 'the freed slot was never given to a new connection');
    } finally {
      for (const c of clients) c.destroy();
      await server.stop();
    }
  });
});

describe('the channel to the primary fails closed', () => {
  test('without an IPC channel a worker\'s slot request is refused, not granted', async () => {
    assert.equal(process.connected === true && typeof process.send === 'function', false, 'this test needs a process without an IPC channel');
    const link = new PrimaryLink(() => ({ windowMs: 60_000, maxFailures: 10 }), 200);
    try {
      await assert.rejects(link.acquire('192.0.2.1', { total: 10, perClient: 10, reservedForNew: 0 }), /channel to the primary process is down/);
      await assert.rejects(link.begin('192.0.2.1'), /channel to the primary process is down/);
    } finally {
      link.close();
    }
  });
});
