// The Messaging Server migration end to end (issue 5, SPEC §8.4): the
// ORIG_SEND_ACCESS anti-relay table of the article "Blocking SMTP relaying"
// (examples/msgsrv/mappings), run by the one-rule examples/msgsrv/main.vsl,
// answering a real SMTP client over a real socket of the real server.
//
// The client is always 127.0.0.1. It is the internal channel (tcp_intranet)
// when server.relay_networks covers it (the example as shipped) and the
// outside channel (tcp_local) when the test sets relay_networks to 10.0.0.0/8.
//
// SPEC conflict pinned here: of the four explicit-routing forms the table
// refuses, three (`u%x@d`, `x.y!u@d`, `"u@x"@d`) carry `%`, `!` or `@` in the
// local part, which SPEC §4.4 refuses before any rule with
// `554 5.7.1 Relay access denied` (and without the $D wait). Only the
// source-routed form `<@a,@b:u@d>` reaches the table over a socket. The
// table's own answer for all four is proven with the production built-in.

import { startServerIn, tempDir, type RunningIn } from '../helpers/server.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkFile } from '../../src/cli/check.js';
import type { Clock } from '../../src/host/ports.js';
import { legacyBuiltins } from '../../src/builtins/legacy/builtins.js';
import type { MailAddress } from '../../src/mail/types.js';
import { replyLines } from '../../src/vsl/values/code.js';
import { Status } from '../../src/vsl/values/status.js';
import { makeHostCall } from '../helpers/host-call.js';
import { fromRoot } from '../helpers/paths.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';

const EXAMPLE_DIR = fromRoot('examples/msgsrv');
const MAPPINGS_TEXT = fs.readFileSync(path.join(EXAMPLE_DIR, 'mappings'), 'utf8');
const MAIN_TEXT = fs.readFileSync(path.join(EXAMPLE_DIR, 'main.vsl'), 'utf8');
/** The sample table with the explicit-routing delay shortened from 30 s to 1 s. */
const SHORT_DELAY_MAPPINGS = MAPPINGS_TEXT.replaceAll('$N$D30|', '$N$D1|');
/** 127.0.0.1 is not internal: the client comes in on tcp_local. */
const OUTSIDE = ['server.relay_networks=["10.0.0.0/8"]'];

// ------------------------------------------------------------------ harness

// A loaded test machine can starve a rule of CPU for a second (vsl.rule_timeout,
// then 451 4.3.0); nothing here is about rule timeouts, so give them room.
const ROOMY = 'vsl.rule_timeout="5s"';

/** The real server on 127.0.0.1:0, main.vsl of `policyDir`, a temporary queue. */
function start(policyDir: string, opts: { set?: string[]; watch?: boolean; ownsDir?: boolean } = {}): Promise<RunningIn> {
  return startServerIn(policyDir, { ...opts, set: [ROOMY, ...(opts.set ?? [])] });
}

/** A temp policy directory: the example's main.vsl and the given mapping file. */
function policyCopy(mappings: string): string {
  const dir = tempDir('vsl-msgsrv-policy-');
  fs.writeFileSync(path.join(dir, 'main.vsl'), MAIN_TEXT);
  fs.writeFileSync(path.join(dir, 'mappings'), mappings);
  return dir;
}

async function session(port: number, from = 'alice@example.net'): Promise<SmtpClient> {
  const c = await SmtpClient.connect(port);
  assert.equal((await c.greeting()).code, 220);
  assert.equal((await c.ehlo('client.example.net')).code, 250);
  assert.equal((await c.command(`MAIL FROM:<${from}>`)).last, '250 2.1.0 Ok');
  return c;
}

/** RCPT TO with the path written as given (brackets included), timed. */
async function timedRcpt(c: SmtpClient, pathText: string): Promise<{ reply: SmtpReply; ms: number }> {
  const t0 = Date.now();
  const reply = await c.command(`RCPT TO:${pathText}`);
  return { reply, ms: Date.now() - t0 };
}

async function waitForLog(logs: Array<Record<string, unknown>>, pred: (r: Record<string, unknown>) => boolean, ms = 5000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = logs.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error('expected log record did not appear');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const BODY = 'From: <alice@example.net>\r\nTo: <u@example.com>\r\nSubject: msgsrv\r\n\r\nhello\r\n';

// ------------------------------------------------------------------ relaying

describe('ORIG_SEND_ACCESS: relaying from outside and from inside', () => {
  test('an outside client (tcp_local) relaying out is refused with 550 5.7.1 Relaying not permitted', async () => {
    const s = await start(EXAMPLE_DIR, { set: OUTSIDE });
    try {
      const c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).last, '550 5.7.1 Relaying not permitted');
      // Inbound mail for the local domain is not relaying: the table lets it pass.
      assert.equal((await c.command('RCPT TO:<u@example.com>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data(BODY)).last, /^250 2\.0\.0 Ok: queued as /);
      c.destroy();
      const decided = s.logs.find((r) => r.fn === 'mapping::check' && r.decision === 'reject');
      assert.ok(decided, 'the refusal was decided by the mapping table');
      const relayLine = MAPPINGS_TEXT.split('\n').findIndex((l) => l.trim().startsWith('tcp_local|*|tcp_local|*')) + 1;
      assert.match(String(decided.at), new RegExp(`mappings:${relayLine}$`));
    } finally {
      await s.stop();
    }
  });

  test('an internal client (tcp_intranet: relay_networks covers 127.0.0.1, the example as shipped) may relay out', async () => {
    const s = await start(EXAMPLE_DIR);
    try {
      const c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('RCPT TO:<u@example.com>')).last, '250 2.1.5 Ok');
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data(BODY)).last, /^250 2\.0\.0 Ok: queued as /);
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});

// ------------------------------------------------------------------ explicit routing

describe('explicit routing to an internal domain from outside (table copy with $D1)', () => {
  let s: RunningIn;
  before(async () => {
    s = await start(policyCopy(SHORT_DELAY_MAPPINGS), { set: OUTSIDE, ownsDir: true });
  });
  after(async () => {
    await s.stop();
  });

  test('the source-routed form <@a,@b:u@d> reaches the table and is refused with Explicit routing not allowed after the $D wait', async () => {
    const c = await session(s.port);
    try {
      const { reply, ms } = await timedRcpt(c, '<@relay1.example.com,@relay2.example.com:u@example.com>');
      assert.equal(reply.last, '550 5.7.1 Explicit routing not allowed');
      assert.ok(ms >= 990, `the reply came after the $D1 wait (${ms} ms)`);
      const decided = s.logs.find((r) => r.fn === 'mapping::check' && r.decision === 'reject');
      assert.ok(decided);
      assert.equal(decided.delayMs, 1000);
      // The same mailbox without the route is plain inbound mail.
      assert.equal((await c.command('RCPT TO:<u@example.com>')).last, '250 2.1.5 Ok');
    } finally {
      c.destroy();
    }
  });

  test('u%x@d, x.y!u@d and "u@x"@d are refused by the server first: 554 5.7.1, no table lookup, no wait (SPEC §4.4)', async () => {
    const c = await session(s.port);
    try {
      const mark = s.logs.length;
      for (const p of ['<u%relay.example.com@example.com>', '<relay.example.com!u@example.com>', '<"u@relay.example.com"@example.com>']) {
        const { reply } = await timedRcpt(c, p);
        assert.equal(reply.last, '554 5.7.1 Relay access denied', p);
      }
      assert.equal(s.logs.slice(mark).some((r) => r.fn === 'mapping::check' || r.stage === 'rcpt'), false, 'no rcpt rule ran');
    } finally {
      c.destroy();
    }
  });
});

describe('the table\'s answer to all four explicit-routing forms (production built-in, example file)', () => {
  const builtin = legacyBuiltins.find((b) => b.name === 'mapping::check')!;

  /** The recipient as the server would hold it had §4.4 let it through: canonical parts, raw path as written. */
  function rcpt(local: string, raw: string): MailAddress {
    return { local, domain: 'example.com', raw, isNull: false };
  }

  async function decide(to: MailAddress, clientIp: string): Promise<{ status: Status; waits: number[] }> {
    const waits: number[] = [];
    const clock: Clock = { now: () => Date.now(), sleep: async (ms) => void waits.push(ms) };
    const call = makeHostCall({
      stage: 'rcpt',
      fileDir: EXAMPLE_DIR,
      clock,
      configure: (cfg) => {
        cfg.server.domain = 'example.com';
        cfg.server.relay_networks = ['10.0.0.0/8'];
      },
      session: { clientIp },
      mailFrom: 'alice@example.net',
      txn: { currentRcpt: to },
    });
    const status = await builtin.fn(call, ['mappings', 'ORIG_SEND_ACCESS']);
    assert.ok(status instanceof Status);
    return { status, waits };
  }

  const forms: Array<[string, MailAddress]> = [
    ['source route <@a,@b:u@d>', rcpt('u', '<@relay1.example.com,@relay2.example.com:u@example.com>')],
    ['percent hack u%x@d', rcpt('u%relay.example.com', '<u%relay.example.com@example.com>')],
    ['bang path x.y!u@d', rcpt('relay.example.com!u', '<relay.example.com!u@example.com>')],
    ['quoted "u@x"@d', rcpt('"u@relay.example.com"', '<"u@relay.example.com"@example.com>')],
  ];

  for (const [name, to] of forms) {
    test(`${name} from outside is refused with 550 5.7.1 Explicit routing not allowed after waiting $D30`, async () => {
      const { status, waits } = await decide(to, '192.0.2.7');
      assert.equal(status.kind, 'reject');
      assert.deepEqual(replyLines(status.effectiveCode()!), ['550 5.7.1 Explicit routing not allowed']);
      assert.deepEqual(waits, [30_000]);
    });
  }

  test('the same forms from an internal client are not refused (and do not wait)', async () => {
    for (const [name, to] of forms) {
      const { status, waits } = await decide(to, '10.1.2.3');
      assert.equal(status.kind, 'next', name);
      assert.deepEqual(waits, [], name);
    }
  });
});

// ------------------------------------------------------------------ bad input

describe('malformed, changed and vanished mapping files', () => {
  test('mta check reports malformed mapping entries with file:line', async () => {
    const broken = `${MAPPINGS_TEXT}  tcp_local|*|l|*   $Q\n  tcp_local|*|l|spam@*\n`;
    const lines = broken.split('\n');
    const badFlag = lines.indexOf('  tcp_local|*|l|*   $Q') + 1;
    const noTemplate = lines.indexOf('  tcp_local|*|l|spam@*') + 1;
    const dir = policyCopy(broken);
    try {
      const r = await checkFile(path.join(dir, 'main.vsl'));
      assert.equal(r.ok, false);
      const errors = r.diagnostics.filter((d) => d.severity === 'error');
      assert.deepEqual(errors.map((d) => `${path.basename(d.pos.file)}:${d.pos.line}`), [`mappings:${badFlag}`, `mappings:${noTemplate}`]);
      assert.match(errors[0]!.message, /unknown flag \$Q/);
      assert.match(errors[1]!.message, /has no template/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('on the running server a malformed edit is reported with file:line and the last good table stays', async () => {
    const s = await start(policyCopy(MAPPINGS_TEXT), { set: OUTSIDE, watch: true, ownsDir: true });
    const file = path.join(s.dir, 'mappings');
    try {
      let c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).code, 550);
      c.destroy();

      // Break the relay line: its template loses its escapes.
      const broken = MAPPINGS_TEXT.replace('$NRelaying$ not$ permitted', '$NRelaying not permitted');
      const badLine = broken.split('\n').findIndex((l) => l.includes('$NRelaying not permitted')) + 1;
      fs.writeFileSync(file, broken);
      const failed = await waitForLog(s.logs, (r) => r.reload === 'failed' && typeof r.at === 'string');
      assert.match(String(failed.at), new RegExp(`mappings:${badLine}:`));
      c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).last, '550 5.7.1 Relaying not permitted', 'the last good table is still used');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a mapping file that disappears at runtime gives 451 4.3.0, not an open relay', async () => {
    const s = await start(policyCopy(MAPPINGS_TEXT), { set: OUTSIDE, ownsDir: true });
    try {
      let c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).code, 550);
      c.destroy();
      fs.rmSync(path.join(s.dir, 'mappings'));
      c = await session(s.port);
      assert.equal((await c.command('RCPT TO:<carol@elsewhere.test>')).last, '451 4.3.0 Temporary local problem, try again later');
      assert.equal((await c.command('RCPT TO:<u@example.com>')).last, '451 4.3.0 Temporary local problem, try again later');
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});
