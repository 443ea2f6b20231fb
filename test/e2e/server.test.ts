// The SMTP server end to end (issue "SMTP server with stage hooks"): the
// real server of src/server.ts on a real socket, the real policy engine,
// the real spool. Stage decisions come from vSL rules, never from a fake.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SmtpClient } from '../helpers/smtp-client.js';
import { headerValues, queuedId, recipientsOf, REPO_ROOT, sampleMessage, sendData, startTestServer, tempDir, transaction, unusedTcpPort, type TestServer } from '../helpers/server.js';

const DOE = path.join(REPO_ROOT, 'examples', 'doe-family');
const RECEIVED = /^from client\.example \(unknown \[127\.0\.0\.1\]\) by mx\.doe-family\.com with ESMTP id (\S+); \w{3}, \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/;

// The doe-family example with its network replaced, in both dialects of objects file.
const insideObjects = {
  'objects.vsl': 'object internal_net rg4 = "127.0.0.0/8";\n',
  'objects-v2.vsl': 'export const internal_net = rg4("127.0.0.0/8");\n',
};

for (const main of ['main.vsl', 'main-v2.vsl']) {
  describe(`doe-family example (${main}) over a socket`, () => {
    test('a client outside internal_net: local sender denied and closed, inbound accepted, relay refused and absent from the spool', async () => {
      // The seed's 192.168.1.0/24 does not hold 127.0.0.1; loopback is not a relay network either.
      const s = await startTestServer({ copyFrom: DOE, main, set: ['server.relay_networks=[]'] });
      try {
        const spoofer = await s.client();
        await spoofer.ehlo();
        assert.equal((await spoofer.command('MAIL FROM:<john@doe-family.com>')).last, '554 5.7.1 Relay access denied');
        assert.ok(await spoofer.closedWithin(2000), 'deny closes the connection');

        const c = await s.client();
        const [, mail, jane, relay] = await transaction(c, 'a@example.org', ['jane@doe-family.com', 'x@example.net']);
        assert.equal(mail!.last, '250 2.1.0 Ok');
        assert.equal(jane!.last, '250 2.1.5 Ok');
        assert.equal(relay!.last, '554 5.7.1 Relay access denied');
        assert.equal(c.closed, false, 'a refused recipient does not end the session');
        const { data, end } = await sendData(c, sampleMessage('a@example.org', 'jane@doe-family.com'));
        assert.equal(data.code, 354);
        assert.match(end.last, /^250 2\.0\.0 Ok: queued as \S+$/);
        await c.quit();

        const spool = await s.spooled();
        assert.equal(spool.length, 1);
        const m = spool[0]!;
        assert.equal(m.id, queuedId(end));
        assert.equal(m.place, 'active');
        assert.deepEqual(recipientsOf(m), ['jane@doe-family.com'], 'the refused recipient is not in the envelope');
        assert.equal(`${m.record.mail_from.local}@${m.record.mail_from.domain}`, 'a@example.org');
        assert.ok(m.eml.startsWith('Received: '), 'Received: is the first header');
        const received = headerValues(m.eml, 'Received');
        assert.equal(received.length, 1);
        assert.equal(RECEIVED.exec(received[0]!)?.[1], m.id, received[0]);
        assert.equal(headerValues(m.eml, 'Subject')[0], 'e2e test', 'the message follows the headers unchanged');

        // The decision is logged with the rule and its position.
        const refused = s.logs.find((l) => l.stage === 'rcpt' && l.recipient === 'x@example.net');
        assert.equal(refused?.rule, 'relay rcpt');
        assert.match(String(refused?.at), new RegExp(`${main.replace('.', '\\.')}:\\d+:\\d+$`));
        assert.equal(refused?.reply, '554 5.7.1 Relay access denied');
      } finally {
        await s.stop();
      }
    });

    test('a client inside internal_net may use a local sender and relay to example.net', async () => {
      const s = await startTestServer({ copyFrom: DOE, main, files: insideObjects, set: ['server.relay_networks=["127.0.0.0/8"]'] });
      try {
        const c = await s.client();
        const [, mail, relay, local] = await transaction(c, 'john@doe-family.com', ['x@example.net', 'jane@doe-family.com']);
        assert.equal(mail!.last, '250 2.1.0 Ok');
        assert.equal(relay!.last, '250 2.1.5 Ok');
        assert.equal(local!.last, '250 2.1.5 Ok');
        const { end } = await sendData(c, sampleMessage('john@doe-family.com', 'x@example.net'));
        assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
        await c.quit();
        const [m, ...rest] = await s.spooled();
        assert.equal(rest.length, 0);
        assert.deepEqual(recipientsOf(m!), ['x@example.net', 'jane@doe-family.com']);
      } finally {
        await s.stop();
      }
    });
  });
}

describe('doe-family example unchanged, clients placed by a PROXY header', () => {
  // The seed's objects.vsl verbatim: 192.168.1.0/24 is inside, 203.0.113.9 outside (SPEC §1.3).
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ copyFrom: DOE, set: ['server.relay_networks=[]', 'server.interfaces.proxy_from=["127.0.0.1"]'] });
  });
  after(() => s.stop());
  const from = (ip: string): Promise<SmtpClient> => s.client({ preamble: `PROXY TCP4 ${ip} 127.0.0.1 40000 25\r\n` });

  test('203.0.113.9 may not relay; 192.168.1.7 may', async () => {
    const outside = await from('203.0.113.9');
    assert.deepEqual((await transaction(outside, 'a@example.org', ['u@external.test'])).slice(1).map((r) => r.last), [
      '250 2.1.0 Ok',
      '554 5.7.1 Relay access denied',
    ]);
    outside.destroy();
    const inside = await from('192.168.1.7');
    assert.deepEqual((await transaction(inside, 'john@doe-family.com', ['u@external.test'])).slice(1).map((r) => r.last), [
      '250 2.1.0 Ok',
      '250 2.1.5 Ok',
    ]);
    inside.destroy();
  });
});

// One policy whose rules pick a status from what the client sends: the
// client IP (through PROXY) at connect, the HELO name, the sender's and the
// recipient's local parts, the Subject at preq.
const CELLS_POLICY = `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.relay_networks = [];
  config.server.interfaces.proxy_from = ["127.0.0.1"];
  config.server.smtp.error.delay = "0s";
  config
}

#{
  connect: [
    rule "connect cells" || switch ctx::client_ip() {
      "203.0.113.1" => accept("220 welcome.test.example custom greeting"),
      "203.0.113.2" => deny("421 4.7.0 connect denied by test"),
      "203.0.113.3" => reject("554 5.7.1 connect rejected by test"),
      "203.0.113.4" => quarantine("conn_q"),
      _ => next(),
    },
  ],
  helo: [
    rule "helo cells" || switch ctx::helo() {
      "deny.test" => deny("550 5.7.1 helo denied by test"),
      "reject.test" => reject("550 5.7.1 helo rejected by test"),
      "accept.test" => accept("250 helo accepted by test"),
      "faccept.test" => faccept(),
      _ => next(),
    },
  ],
  mail: [
    rule "mail cells" || switch ctx::mail_from().local_part {
      "deny" => deny("553 5.7.1 sender denied by test"),
      "reject" => reject("553 5.7.1 sender rejected by test"),
      "accept" => accept("250 2.1.0 sender accepted by test"),
      "faccept" => faccept(),
      "quarantine" => quarantine("mail_q"),
      "error" => { throw "mail rule broke"; },
      _ => next(),
    },
  ],
  rcpt: [
    rule "rcpt cells" || switch ctx::rcpt().local_part {
      "deny" => deny("550 5.1.1 recipient denied by test"),
      "reject" => reject("550 5.1.1 recipient rejected by test"),
      "accept" => accept("250 2.1.5 recipient accepted by test"),
      "quarantine" => quarantine("rcpt_q"),
      _ => next(),
    },
  ],
  preq: [
    rule "preq cells" || switch msg::get_header("Subject") {
      "deny" => deny("554 5.7.1 message denied by test"),
      "reject" => reject("554 5.7.1 message rejected by test"),
      "accept" => accept("250 2.0.0 message accepted by test"),
      "quarantine" => quarantine("preq_q"),
      _ => next(),
    },
  ],
}
`;

describe('status × stage cells through the real engine (SPEC §5.2)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ files: { 'main.vsl': CELLS_POLICY } });
  });
  after(() => s.stop());

  // Every connection comes through PROXY (proxy_from holds 127.0.0.1); 198.51.100.7 picks no connect cell.
  const from = (ip: string): Promise<SmtpClient> => s.connect({ preamble: `PROXY TCP4 ${ip} 127.0.0.1 40000 25\r\n` });
  const client = async (): Promise<SmtpClient> => {
    const c = await from('198.51.100.7');
    assert.equal((await c.greeting()).code, 220);
    return c;
  };
  /** Sends a message with this Subject from a@remote.example to u@test.example; returns the end-of-data reply. */
  const message = async (c: SmtpClient, subject: string, rcpt = 'u@test.example') => {
    const replies = await transaction(c, 'a@remote.example', [rcpt]);
    assert.deepEqual(replies.slice(1).map((r) => r.code), [250, 250]);
    return (await sendData(c, sampleMessage('a@remote.example', rcpt, subject))).end;
  };
  const placeOf = async (id: string) => (await s.spooled()).find((m) => m.id === id)?.place ?? null;

  test('connect: accept replaces the greeting; deny and reject send their code and close; quarantine greets normally and holds the message', async () => {
    const accepted = await from('203.0.113.1');
    assert.equal((await accepted.greeting()).last, '220 welcome.test.example custom greeting');
    assert.equal((await accepted.ehlo()).code, 250);
    accepted.destroy();

    const denied = await from('203.0.113.2');
    assert.equal((await denied.greeting()).last, '421 4.7.0 connect denied by test');
    assert.ok(await denied.closedWithin(2000));

    const rejected = await from('203.0.113.3');
    assert.equal((await rejected.greeting()).last, '554 5.7.1 connect rejected by test');
    assert.ok(await rejected.closedWithin(2000));

    const held = await from('203.0.113.4');
    assert.equal((await held.greeting()).last, '220 mx.test.example Service ready');
    const end = await message(held, 'plain');
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal(await placeOf(queuedId(end)), 'quarantine/conn_q');
    held.destroy();
  });

  test('helo: deny closes; reject keeps the session but MAIL gets 503 until a HELO succeeds; accept replaces the first EHLO line', async () => {
    const denied = await client();
    assert.equal((await denied.command('EHLO deny.test')).last, '550 5.7.1 helo denied by test');
    assert.ok(await denied.closedWithin(2000));

    const rejected = await client();
    assert.equal((await rejected.command('HELO reject.test')).last, '550 5.7.1 helo rejected by test');
    assert.equal((await rejected.command('MAIL FROM:<a@remote.example>')).last, '503 5.5.1 Bad sequence of commands');
    assert.equal(rejected.closed, false);
    assert.equal((await rejected.command('HELO client.example')).last, '250 mx.test.example');
    assert.equal((await rejected.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
    rejected.destroy();

    const accepted = await client();
    const ehlo = await accepted.command('EHLO accept.test');
    assert.equal(ehlo.lines[0], '250-helo accepted by test');
    assert.ok(ehlo.texts.includes('PIPELINING'), 'the capabilities follow');
    accepted.destroy();
  });

  test('helo faccept is remembered for the session: later mail, rcpt and preq rules are skipped', async () => {
    const c = await client();
    await c.ehlo('faccept.test');
    assert.equal((await c.command('MAIL FROM:<reject@remote.example>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<reject@test.example>')).last, '250 2.1.5 Ok');
    const { end } = await sendData(c, sampleMessage('reject@remote.example', 'reject@test.example', 'reject'));
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal(await placeOf(queuedId(end)), 'active');
    c.destroy();
  });

  test('mail: deny closes; reject and a rule error refuse MAIL only, and MAIL may be retried', async () => {
    const denied = await client();
    await denied.ehlo();
    assert.equal((await denied.command('MAIL FROM:<deny@remote.example>')).last, '553 5.7.1 sender denied by test');
    assert.ok(await denied.closedWithin(2000));

    const c = await client();
    await c.ehlo();
    assert.equal((await c.command('MAIL FROM:<reject@remote.example>')).last, '553 5.7.1 sender rejected by test');
    assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands', 'no transaction');
    assert.equal((await c.command('MAIL FROM:<error@remote.example>')).last, '451 4.3.0 Temporary local problem, try again later');
    assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '503 5.5.1 Bad sequence of commands', 'no transaction');
    assert.equal((await c.command('MAIL FROM:<accept@remote.example>')).last, '250 2.1.0 sender accepted by test');
    assert.equal((await c.command('RCPT TO:<u@test.example>')).last, '250 2.1.5 Ok');
    c.destroy();
    assert.ok(s.logs.some((l) => l.level === 50 && /rule "mail cells" failed at mail: .*mail rule broke/.test(String(l.msg))), 'the failure is logged at error');
  });

  test('mail faccept and quarantine are remembered for their transaction only: rcpt and preq rules skipped; quarantine holds the message', async () => {
    const c = await client();
    await c.ehlo();
    assert.equal((await c.command('MAIL FROM:<faccept@remote.example>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<reject@test.example>')).last, '250 2.1.5 Ok', 'rcpt rules skipped');
    let { end } = await sendData(c, sampleMessage('faccept@remote.example', 'reject@test.example', 'reject'));
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /, 'preq rules skipped');
    const faccepted = (await s.spooled()).find((m) => m.id === queuedId(end))!;
    assert.equal(faccepted.record.txn_remembered?.kind, 'faccept');

    // quarantine is remembered too (SPEC §5.4): later rules are skipped with normal replies.
    assert.equal((await c.command('MAIL FROM:<quarantine@remote.example>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<reject@test.example>')).last, '250 2.1.5 Ok', 'rcpt rules skipped');
    ({ end } = await sendData(c, sampleMessage('quarantine@remote.example', 'reject@test.example', 'deny')));
    assert.match(end.last, /^250 2\.0\.0 Ok: queued as /, 'preq rules skipped');
    assert.equal(await placeOf(queuedId(end)), 'quarantine/mail_q');

    // The next transaction inherits neither.
    assert.equal((await c.command('MAIL FROM:<a@remote.example>')).last, '250 2.1.0 Ok');
    assert.equal((await c.command('RCPT TO:<reject@test.example>')).last, '550 5.1.1 recipient rejected by test');
    c.destroy();
  });

  test('rcpt: reject refuses one recipient and the session goes on; accept sends its code; deny closes; quarantine holds the message', async () => {
    const c = await client();
    const replies = await transaction(c, 'a@remote.example', ['reject@test.example', 'accept@test.example', 'quarantine@test.example']);
    assert.deepEqual(replies.slice(1).map((r) => r.last), [
      '250 2.1.0 Ok',
      '550 5.1.1 recipient rejected by test',
      '250 2.1.5 recipient accepted by test',
      '250 2.1.5 Ok',
    ]);
    const { end } = await sendData(c, sampleMessage('a@remote.example', 'accept@test.example', 'plain'));
    const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
    assert.equal(m.place, 'quarantine/rcpt_q');
    assert.deepEqual(recipientsOf(m), ['accept@test.example', 'quarantine@test.example'], 'the rejected recipient is not in the envelope');

    assert.equal((await c.command('MAIL FROM:<a@remote.example>')).code, 250);
    assert.equal((await c.command('RCPT TO:<deny@test.example>')).last, '550 5.1.1 recipient denied by test');
    assert.ok(await c.closedWithin(2000), 'deny closes');
  });

  test('preq: reject discards the message and the session goes on; accept sends its code; quarantine queues into quarantine; deny discards and closes', async () => {
    const before = (await s.spooled()).length;
    const c = await client();
    assert.equal((await message(c, 'reject')).last, '554 5.7.1 message rejected by test');
    assert.equal((await s.spooled()).length, before, 'a rejected message is not queued');

    assert.equal((await c.command('RSET')).last, '250 2.0.0 Ok');
    assert.equal((await message(c, 'accept')).last, '250 2.0.0 message accepted by test');
    assert.equal((await s.spooled()).length, before + 1);

    const held = await message(c, 'quarantine');
    assert.match(held.last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal(await placeOf(queuedId(held)), 'quarantine/preq_q');

    assert.equal((await message(c, 'deny')).last, '554 5.7.1 message denied by test');
    assert.ok(await c.closedWithin(2000), 'deny closes');
    assert.equal((await s.spooled()).length, before + 2, 'a denied message is not queued');
  });

  test('pipelined EHLO, MAIL, RCPTs and DATA in one packet are answered in order by the real engine', async () => {
    const c = await client();
    const replies = await c.pipeline([
      'EHLO client.example',
      'MAIL FROM:<a@remote.example>',
      'RCPT TO:<reject@test.example>',
      'RCPT TO:<u@test.example>',
      'RCPT TO:<accept@test.example>',
      'DATA',
    ]);
    assert.deepEqual(replies.map((r) => r.last), [
      '250 SIZE 10240000',
      '250 2.1.0 Ok',
      '550 5.1.1 recipient rejected by test',
      '250 2.1.5 Ok',
      '250 2.1.5 recipient accepted by test',
      '354 Start mail input; end with <CRLF>.<CRLF>',
    ]);
    const end = await c.data(sampleMessage('a@remote.example', 'u@test.example', 'plain'));
    const m = (await s.spooled()).find((x) => x.id === queuedId(end))!;
    assert.deepEqual(recipientsOf(m), ['u@test.example', 'accept@test.example']);
    c.destroy();
  });

  test('a HELO refused in a pipelined group makes the MAIL and RCPT after it fail with 503', async () => {
    const c = await client();
    const replies = await c.pipeline(['EHLO reject.test', 'MAIL FROM:<a@remote.example>', 'RCPT TO:<u@test.example>', 'NOOP']);
    assert.deepEqual(replies.map((r) => r.last), [
      '550 5.7.1 helo rejected by test',
      '503 5.5.1 Bad sequence of commands',
      '503 5.5.1 Bad sequence of commands',
      '250 2.0.0 Ok',
    ]);
    c.destroy();
  });
});

describe('relay guard: a policy without rcpt rules (SPEC §5.6)', () => {
  const policy = {
    'main.vsl': `
fn on_config(config) {
  config.server.name = "mx.test.example";
  config.server.domain = "test.example";
  config.server.virtual = ["virtual.example"];
  config
}
#{
  mail: [ rule "any sender" || next() ],
}
`,
  };

  test('from a client outside server.relay_networks: a foreign recipient gets 554 5.7.1, local domains are accepted, the session goes on', async () => {
    const s = await startTestServer({ files: policy, set: ['server.relay_networks=[]'] });
    try {
      const c = await s.client();
      const replies = await transaction(c, 'a@example.org', ['x@example.net', 'u@test.example', 'v@VIRTUAL.example', 'y@test.example.evil.test']);
      assert.deepEqual(replies.slice(1).map((r) => r.last), [
        '250 2.1.0 Ok',
        '554 5.7.1 Relay access denied',
        '250 2.1.5 Ok',
        '250 2.1.5 Ok',
        '554 5.7.1 Relay access denied',
      ]);
      const { end } = await sendData(c, sampleMessage('a@example.org', 'u@test.example'));
      assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
      await c.quit();
      const [m] = await s.spooled();
      assert.deepEqual(recipientsOf(m!), ['u@test.example', 'v@virtual.example']);
      assert.ok(s.logs.some((l) => l.stage === 'rcpt' && l.rule === 'relay guard' && l.recipient === 'x@example.net'), 'logged as the relay guard');
    } finally {
      await s.stop();
    }
  });

  test('with the default relay_networks (loopback) the same client may relay', async () => {
    const s = await startTestServer({ files: policy });
    try {
      const c = await s.client();
      const replies = await transaction(c, 'a@example.org', ['x@example.net']);
      assert.equal(replies[2]!.last, '250 2.1.5 Ok');
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('bench/policy.vsl: the anchors\' policy', () => {
  test('spamford@cyberpromo.com is refused, relaying is refused, yourdomain.com is accepted and routed to no delivery', async () => {
    const s = await startTestServer({ copyFrom: path.join(REPO_ROOT, 'bench'), main: 'policy.vsl' });
    try {
      const c = await s.client();
      await c.ehlo();
      assert.equal((await c.command('MAIL FROM:<spamford@cyberpromo.com>')).last, '550 5.7.1 <spamford@cyberpromo.com>: Sender address rejected: Access denied');
      assert.equal((await c.command('MAIL FROM:<a@example.org>')).last, '250 2.1.0 Ok');
      assert.equal((await c.command('RCPT TO:<x@example.net>')).last, '554 5.7.1 Relay access denied');
      assert.equal((await c.command('RCPT TO:<bob@yourdomain.com>')).last, '250 2.1.5 Ok');
      const { end } = await sendData(c, sampleMessage('a@example.org', 'bob@yourdomain.com'));
      assert.match(end.last, /^250 2\.0\.0 Ok: queued as /);
      c.destroy();
      const [m] = await s.spooled();
      assert.deepEqual(m!.record.recipients.map((r) => r.transport), [{ kind: 'none' }], 'never delivered to the network');
    } finally {
      await s.stop();
    }
  });
});

describe('bench/anchors-project.sh: the PROJECT_CMD line starts the server', () => {
  const script = path.join(REPO_ROOT, 'bench', 'anchors-project.sh');
  const built = fs.existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'));
  const smtpSource = ['/usr/sbin/smtp-source', '/usr/bin/smtp-source'].find((p) => fs.existsSync(p));

  test('the server listens, one message from smtp-source is accepted, PROJECT_COUNT counts it and the spool empties', async (t) => {
    if (!built) return t.skip('dist/ is not built (npm run build): PROJECT_CMD runs bin/mta.js');
    const line = /^export PROJECT_CMD="(.*)"$/m.exec(fs.readFileSync(script, 'utf8'))?.[1];
    assert.ok(line, 'the script sets PROJECT_CMD');
    assert.match(line, /^exec node bin\/mta\.js --config bench\/policy\.vsl --listen 127\.0\.0\.1:2530 --queue-dir \$queue --log-level warn$/);
    const queue = tempDir('vsl-e2e-anchors-');
    const port = await unusedTcpPort();
    // The same line, on a free port and a temporary spool.
    const cmd = line.replace('127.0.0.1:2530', `127.0.0.1:${port}`).replace('$queue', queue);
    const child = spawn('bash', ['-c', cmd], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      let c: SmtpClient | null = null;
      for (const deadline = Date.now() + 20_000; c === null && Date.now() < deadline; ) {
        c = await SmtpClient.connect(port).catch(async () => {
          await new Promise((r) => setTimeout(r, 100));
          return null;
        });
      }
      assert.ok(c, `the server did not listen within 20 s:\n${out}`);
      assert.equal((await c.greeting()).last, '220 mx.test.local Service ready');
      c.destroy();

      if (smtpSource) {
        const r = spawnSync(smtpSource, ['-m', '1', '-l', '2000', '-f', 'a@example.org', '-t', 'bob@yourdomain.com', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 20_000 });
        assert.equal(r.status, 0, `smtp-source: ${r.stdout}${r.stderr}\n${out}`);
      } else {
        const s = await SmtpClient.connect(port);
        await s.greeting();
        await transaction(s, 'a@example.org', ['bob@yourdomain.com']);
        assert.equal((await sendData(s, sampleMessage('a@example.org', 'bob@yourdomain.com'))).end.code, 250);
        s.destroy();
      }
      const count = spawnSync(script, ['--count'], { env: { ...process.env, ANCHORS_QUEUE: queue }, encoding: 'utf8', timeout: 20_000 });
      assert.equal(count.stdout.trim(), '1', `PROJECT_COUNT: ${count.stdout}${count.stderr}\n${out}`);
      // Discarded, not delivered anywhere: the spool empties (nothing deferred or dead).
      const left = () => ['active', 'deferred', 'dead'].flatMap((d) => fs.readdirSync(path.join(queue, d)).filter((f) => f.endsWith('.json')));
      for (const deadline = Date.now() + 10_000; left().length > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(left(), [], out);
    } finally {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      const killer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 5000);
      await exited;
      clearTimeout(killer);
      fs.rmSync(queue, { recursive: true, force: true });
    }
  });
});
