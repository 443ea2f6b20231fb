// Connection limits, timeouts, the early-talker pause, PROXY headers and the
// graceful stop (SPEC §4.3, §4.5, §9.2, §11.1).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, mock, test } from 'node:test';
import { next } from '../helpers/fake-runner.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startFront, withFront } from '../helpers/smtp-front.js';

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('connection limits', () => {
  test('beyond client_count_max_per_ip a client gets 421 4.7.0 Too many connections and is closed', async () => {
    await withFront({ config: (c) => (c.server.smtp.client_count_max_per_ip = 2) }, async (h) => {
      const a = await h.client();
      const b = await h.client();
      const third = await h.connect();
      assert.equal((await third.readReply()).last, '421 4.7.0 mx.test.example Too many connections, try again later');
      assert.equal(await third.closedWithin(2000), true);
      // The connect stage never ran for the refused one.
      assert.equal(h.runner.callsOf('connect').length, 2);
      a.destroy();
      await a.closedWithin(500);
      for (let i = 0; i < 100 && h.front.connections > 1; i++) await wait(10);
      const again = await h.connect();
      assert.equal((await again.readReply()).code, 220, 'a slot is free again');
      again.destroy();
      b.destroy();
    });
  });

  test('beyond client_count_max every client is refused the same way', async () => {
    await withFront({ config: (c) => (c.server.smtp.client_count_max = 1) }, async (h) => {
      const a = await h.client();
      const b = await h.connect();
      assert.equal((await b.readReply()).last, '421 4.7.0 mx.test.example Too many connections, try again later');
      a.destroy();
      b.destroy();
    });
  });
});

describe('listen backlog', () => {
  // ss (iproute2, installed by .ci/run) shows a listening socket's accept
  // backlog in its Send-Q column.
  const ss = ['/usr/bin/ss', '/bin/ss', '/usr/sbin/ss', '/sbin/ss'].find((p) => existsSync(p));
  test('the SMTP listener asks the kernel for a 4096-connection accept backlog, so a burst of clients is not dropped at SYN', { skip: ss ? false : 'ss (iproute2) is not installed' }, async () => {
    await withFront({}, async (h) => {
      const line = execFileSync(ss!, ['-ltnH', `sport = :${h.port}`], { encoding: 'utf8' }).trim();
      const sendQ = Number(line.split(/\s+/)[2]);
      const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
      assert.equal(sendQ, Math.min(4096, somaxconn), line);
      assert.ok(sendQ > 511, `above Node's default of 511 (somaxconn ${somaxconn})`);
    });
  });
});

describe('timeouts', () => {
  test('an idle client gets 421 4.4.2 <name> Timeout, closing connection', async () => {
    await withFront({ config: (c) => (c.server.smtp.timeout = '150ms') }, async (h) => {
      const c = await h.client();
      assert.equal((await c.readReply(3000)).last, '421 4.4.2 mx.test.example Timeout, closing connection');
      assert.equal(await c.closedWithin(2000), true);
    });
  });

  test('the idle timeout does not hit while a stage is still deciding', async () => {
    await withFront({
      config: (c) => (c.server.smtp.timeout = '100ms'),
      script: { mail: async () => (await wait(300), next()) },
    }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
      c.destroy();
    });
  });

  test('a client trickling DATA a byte at a time is cut off at data_timeout and nothing is spooled', async () => {
    await withFront({ config: (c) => (c.server.smtp.data_timeout = '200ms') }, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      await c.command('DATA');
      const drip = setInterval(() => {
        if (!c.closed) c.write('x');
      }, 20);
      try {
        assert.equal((await c.readReply(3000)).last, '421 4.4.2 mx.test.example Timeout, closing connection');
        assert.equal(await c.closedWithin(2000), true);
      } finally {
        clearInterval(drip);
      }
      assert.equal(h.sink.stored.length, 0);
    });
  });

  test('the session time limit ends even a busy, well-behaved session', async () => {
    await withFront({ config: (c) => (c.server.smtp.session_timeout = '200ms') }, async (h) => {
      const c = await h.client();
      const chatter = setInterval(() => {
        if (!c.closed) c.send('NOOP');
      }, 20);
      try {
        let last = '';
        for (let i = 0; i < 100 && !last.startsWith('421'); i++) last = (await c.readReply(3000)).last;
        assert.equal(last, '421 4.4.2 mx.test.example Timeout, closing connection');
        assert.equal(await c.closedWithin(2000), true);
      } finally {
        clearInterval(chatter);
      }
    });
  });
});

describe('greeting delay (early-talker pause)', () => {
  test('with greeting_delay 0 no timer stands between accept and the banner', async (t) => {
    const h = await startFront();
    try {
      // With setTimeout frozen, a banner that waited for any timer (smtp-server's own 100 ms
      // early-talker pause included) could never be sent.
      t.mock.timers.enable({ apis: ['setTimeout'] });
      const c = await SmtpClient.connect(h.port);
      let got: string | null = null;
      void c.readReply(60_000).then((r) => (got = r.last));
      for (let i = 0; i < 2000 && got === null; i++) await wait0(1);
      assert.equal(got, '220 mx.test.example Service ready');
      t.mock.timers.reset();
      c.destroy();
    } finally {
      mock.timers.reset();
      await h.close();
    }
  });

  test('with greeting_delay the banner waits for it', async (t) => {
    const h = await startFront({ config: (c) => (c.server.smtp.greeting_delay = '5s') });
    try {
      t.mock.timers.enable({ apis: ['setTimeout'] });
      const c = await SmtpClient.connect(h.port);
      let got: string | null = null;
      void c.readReply(60_000).then((r) => (got = r.last));
      await wait0(50);
      assert.equal(got, null, 'no banner before the delay');
      t.mock.timers.tick(5000);
      for (let i = 0; i < 200 && got === null; i++) await wait0(1);
      assert.equal(got, '220 mx.test.example Service ready');
      t.mock.timers.reset();
      c.destroy();
    } finally {
      mock.timers.reset();
      await h.close();
    }
  });

  test('with greeting_delay, a client talking first gets 554 5.5.0 and is closed, before any rule runs', async () => {
    await withFront({ config: (c) => (c.server.smtp.greeting_delay = '2s') }, async (h) => {
      const c = await SmtpClient.connect(h.port);
      c.send('EHLO hasty.example');
      assert.equal((await c.readReply()).last, '554 5.5.0 Protocol error: talking before greeting');
      assert.equal(await c.closedWithin(2000), true);
      assert.equal(h.runner.calls.length, 0);
    });
  });
});

/** Lets I/O callbacks run without using the (possibly mocked) setTimeout. */
async function wait0(rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

describe('client address', () => {
  test('a PROXY v1 header from server.interfaces.proxy_from sets the client address', async () => {
    await withFront({
      script: { connect: next() },
      config: (c) => {
        c.server.interfaces.proxy_from = ['127.0.0.0/8'];
        c.server.relay_networks = ['127.0.0.0/8'];
      },
    }, async (h) => {
      const c = await SmtpClient.connect(h.port, { preamble: 'PROXY TCP4 203.0.113.9 192.0.2.25 40000 25\r\n' });
      assert.equal((await c.greeting()).code, 220);
      assert.equal(h.runner.callsOf('connect')[0]!.session.clientIp, '203.0.113.9');
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      assert.equal((await c.command('RCPT TO:<u@far.example>')).last, '554 5.7.1 Relay access denied', 'the proxied client is not in relay_networks');
      c.destroy();
    });
  });

  test('a PROXY header from anyone else is just an unknown command', async () => {
    await withFront({ script: { connect: next() }, config: (c) => (c.server.interfaces.proxy_from = ['192.0.2.1']) }, async (h) => {
      const c = await h.client();
      assert.equal((await c.command('PROXY TCP4 203.0.113.9 192.0.2.25 40000 25')).last, '500 5.5.2 Syntax error, command unrecognized');
      assert.equal(h.runner.callsOf('connect')[0]!.session.clientIp, '127.0.0.1');
      c.destroy();
    });
  });

  test('an IPv4 client of a dual-stack listener is seen as a.b.c.d, not ::ffff:a.b.c.d', async () => {
    await withFront({ script: { connect: next() }, config: (c) => (c.server.interfaces.addr = ['[::]:0']) }, async (h) => {
      const c = await SmtpClient.connect(h.port, { host: '127.0.0.1' });
      await c.greeting();
      assert.equal(h.runner.callsOf('connect')[0]!.session.clientIp, '127.0.0.1');
      c.destroy();
    });
  });
});

describe('graceful stop', () => {
  test('close(): idle sessions get 421 4.3.2 at once, a transaction may finish first, new clients are refused', async () => {
    await withFront({}, async (h) => {
      const idle = await h.client();
      const busy = await h.client();
      await busy.ehlo();
      await busy.command('MAIL FROM:<a@remote.example>');
      const closing = h.front.close(5000);
      assert.equal((await idle.readReply()).last, '421 4.3.2 Service shutting down');
      assert.equal(await idle.closedWithin(2000), true);
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = net.connect(h.port, '127.0.0.1', () => resolve(s));
          s.once('error', reject);
        }),
        /ECONNREFUSED/,
      );
      assert.equal((await busy.command('RCPT TO:<u@test.example>')).code, 250);
      assert.equal((await busy.command('DATA')).code, 354);
      assert.match((await busy.data('Subject: last\r\n\r\nlast\r\n')).last, /^250 2\.0\.0 Ok: queued as /);
      assert.equal((await busy.readReply()).last, '421 4.3.2 Service shutting down');
      await closing;
      assert.equal(h.sink.stored.length, 1);
    });
  });

  test('close(): a transaction still open after the grace period gets 421 4.3.2 and nothing is spooled', async () => {
    await withFront({}, async (h) => {
      const c = await h.client();
      await c.ehlo();
      await c.command('MAIL FROM:<a@remote.example>');
      await c.command('RCPT TO:<u@test.example>');
      await c.command('DATA');
      c.write('Subject: slow\r\n\r\nhalf');
      await h.front.close(100);
      assert.equal((await c.readReply()).last, '421 4.3.2 Service shutting down');
      assert.equal(await c.closedWithin(2000), true);
      assert.equal(h.sink.stored.length, 0);
    });
  });
});
