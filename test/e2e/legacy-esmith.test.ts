// The e-smith migration end to end (issue 5, SPEC §8.3): the default
// smtpd_check_rules file of the how-to "How to restrict access to the SMTP
// server" (examples/esmith/smtpd_check_rules, with yourdomain.com), loaded by
// the one-rule examples/esmith/main.vsl, answering a real SMTP client over a
// real socket of the real server (src/server.ts startServer).
//
// Every connection comes from 127.0.0.1, which the seed file allows
// (`allow:127.0.0.1:ALL:ALL`). The "from outside" tests therefore run a copy
// of the example whose allow line names 192.0.2.1 instead. DNS is a loopback
// server (test/helpers/dns-server.ts) giving 127.0.0.1 the forward-confirmed
// name client.example.test, so %H reads as a name.
//
// SPEC conflict pinned here: SPEC §4.4 refuses a RCPT whose local part holds
// `@`, `%` or `!` with `554 5.7.1 Relay access denied` before any rule runs
// (§5.4: never skipped), and an unquoted second `@` is a 501 syntax error. So
// over a socket the file's bang-path / two-@ / %-hack lines are never reached;
// their 551 (with %H (%I), %F and %T) is proven at the built-in level with the
// production built-in, the example file and the real DNS.

import { startServerIn, tempDir, type RunningIn } from '../helpers/server.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkCommand, checkFile } from '../../src/cli/check.js';
import { createResolver } from '../../src/builtins/dns/resolver.js';
import { legacyBuiltins } from '../../src/builtins/legacy/builtins.js';
import type { MailAddress } from '../../src/mail/types.js';
import { replyLines } from '../../src/vsl/values/code.js';
import { Status } from '../../src/vsl/values/status.js';
import { startDnsServer, type DnsTestServer } from '../helpers/dns-server.js';
import { makeHostCall } from '../helpers/host-call.js';
import { fromRoot } from '../helpers/paths.js';
import { SmtpClient, type SmtpReply } from '../helpers/smtp-client.js';

const EXAMPLE_DIR = fromRoot('examples/esmith');
const RULES_TEXT = fs.readFileSync(path.join(EXAMPLE_DIR, 'smtpd_check_rules'), 'utf8');
const MAIN_TEXT = fs.readFileSync(path.join(EXAMPLE_DIR, 'main.vsl'), 'utf8');
/** The seed file with the local-network allow line naming another host: 127.0.0.1 is "outside". */
const OUTSIDE_RULES = RULES_TEXT.replace('allow:127.0.0.1:ALL:ALL', 'allow:192.0.2.1:ALL:ALL');
const CLIENT_NAME = 'client.example.test';

const ZONE = {
  // 127.0.0.1 has a forward-confirmed name, so %H is a name, not "unknown".
  '1.0.0.127.in-addr.arpa': { PTR: [CLIENT_NAME] },
  [CLIENT_NAME]: { A: ['127.0.0.1'] },
  // ALL@NS=*cyberpromo.com: a domain served by a cyberpromo.com name server,
  // one whose MX is at cyberpromo.com, and one with nothing to do with it.
  'hosted.test': { NS: ['ns1.cyberpromo.com'], A: ['192.0.2.80'] },
  'mxhosted.test': { NS: ['ns.mxhosted.test'], MX: ['10 mx.cyberpromo.com'] },
  'clean.test': { NS: ['ns.clean.test'], MX: ['10 mx.clean.test'] },
  // A domain whose name servers fail: the NS= line cannot be decided.
  'broken.test': { behaviour: 'servfail' as const },
};

// ------------------------------------------------------------------ harness

// A loaded test machine can starve a rule of CPU for a second (vsl.rule_timeout,
// then 451 4.3.0); nothing here is about rule timeouts, so give them room.
const ROOMY = 'vsl.rule_timeout="5s"';

/**
 * The real server on 127.0.0.1:0 with a temporary queue, the loopback DNS
 * server as resolver; `policyDir` holds main.vsl (used in place).
 */
function start(policyDir: string, dns: DnsTestServer, opts: { watch?: boolean; set?: string[]; ownsDir?: boolean } = {}): Promise<RunningIn> {
  return startServerIn(policyDir, { ...opts, set: [`server.dns.servers=["${dns.address}"]`, 'server.dns.timeout="5s"', ROOMY, ...(opts.set ?? [])] });
}

/** A temp policy directory: the example's main.vsl and the given rules file. */
function policyCopy(rules: string): string {
  const dir = tempDir('vsl-esmith-policy-');
  fs.writeFileSync(path.join(dir, 'main.vsl'), MAIN_TEXT);
  fs.writeFileSync(path.join(dir, 'smtpd_check_rules'), rules);
  return dir;
}

/** Connects, reads the greeting, EHLO and MAIL FROM (both must be accepted). */
async function session(port: number, from: string): Promise<SmtpClient> {
  const c = await SmtpClient.connect(port);
  assert.equal((await c.greeting()).code, 220);
  assert.equal((await c.ehlo('client.example.test')).code, 250);
  assert.equal((await c.command(`MAIL FROM:<${from}>`)).last, '250 2.1.0 Ok');
  return c;
}

async function rcpt(c: SmtpClient, to: string): Promise<SmtpReply> {
  return c.command(`RCPT TO:<${to}>`);
}

/** Polls the captured log until `pred` holds for a record (the watcher reloads asynchronously). */
async function waitForLog(logs: Array<Record<string, unknown>>, pred: (r: Record<string, unknown>) => boolean, ms = 5000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = logs.find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error('expected log record did not appear');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const msg = (r: Record<string, unknown>): string => String(r.msg ?? '');

/** The message text with headers a spooled test message needs. */
const BODY = 'From: <alice@example.net>\r\nTo: <bob@yourdomain.com>\r\nSubject: e-smith\r\n\r\nhello\r\n';

let dns: DnsTestServer;
before(async () => {
  dns = await startDnsServer(ZONE);
});
after(async () => {
  await dns.stop();
});

// ------------------------------------------------------------------ the default file

describe('e-smith default rules from outside the local network (allow line moved to 192.0.2.1)', () => {
  let s: RunningIn;
  before(async () => {
    s = await start(policyCopy(OUTSIDE_RULES), dns, { ownsDir: true });
  });
  after(async () => {
    await s.stop();
  });

  test('everyone@yourdomain.com is refused with 551 "cannot send mail to … from outside our local network"', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      assert.equal(
        (await rcpt(c, 'everyone@yourdomain.com')).last,
        `551 Sorry ${CLIENT_NAME} (127.0.0.1), you cannot send mail to everyone@yourdomain.com from outside our local network.`,
      );
      // The sub-domain form and the shared@ line of the file answer the same way.
      assert.equal(
        (await rcpt(c, 'shared@sales.yourdomain.com')).last,
        `551 Sorry ${CLIENT_NAME} (127.0.0.1), you cannot send mail to shared@sales.yourdomain.com from outside our local network.`,
      );
      // A refused RCPT leaves the session open (noto is reject, not deny).
      assert.equal((await c.command('NOOP')).code, 250);
    } finally {
      c.destroy();
    }
  });

  test('bob@yourdomain.com is accepted by "allow any of our domains", and only it is queued', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      assert.equal((await rcpt(c, 'bob@yourdomain.com')).last, '250 2.1.5 Ok');
      assert.equal((await rcpt(c, 'bob@mail.yourdomain.com')).last, '250 2.1.5 Ok');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).code, 551);
      assert.equal((await c.command('DATA')).code, 354);
      const end = await c.data(BODY);
      assert.match(end.last, /^250 2\.0\.0 Ok: queued as \S+$/);
      const id = /queued as (\S+)/.exec(end.last)![1]!;
      const record = JSON.parse(
        fs.readFileSync(path.join(s.server.config().queue.dir, 'active', `${id}.json`), 'utf8'),
      ) as { recipients: Array<{ address: MailAddress }> };
      assert.deepEqual(
        record.recipients.map((r) => `${r.address.local}@${r.address.domain}`),
        ['bob@yourdomain.com', 'bob@mail.yourdomain.com'],
      );
    } finally {
      c.destroy();
    }
  });

  test('any other recipient gets 551 "I don\'t allow unauthorized relaying" with %H(%I), %F and %T substituted', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      assert.equal(
        (await rcpt(c, 'carol@elsewhere.test')).last,
        `551 Sorry ${CLIENT_NAME}(127.0.0.1), I don't allow unauthorized relaying. Please use another SMTP host to mail from alice@example.net to carol@elsewhere.test`,
      );
      // Domains that merely end in the local name are not ours.
      assert.equal((await rcpt(c, 'bob@notyourdomain.com')).code, 551);
    } finally {
      c.destroy();
    }
    // The null sender reads <> in %F.
    const n = await session(s.port, '');
    try {
      assert.equal(
        (await rcpt(n, 'carol@elsewhere.test')).last,
        `551 Sorry ${CLIENT_NAME}(127.0.0.1), I don't allow unauthorized relaying. Please use another SMTP host to mail from <> to carol@elsewhere.test`,
      );
    } finally {
      n.destroy();
    }
  });

  test('bang path, %-hack and quoted-@ recipients are refused by the server with 554 5.7.1 before the file is read (SPEC §4.4)', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      const before = s.logs.length;
      assert.equal((await rcpt(c, 'a!b@yourdomain.com')).last, '554 5.7.1 Relay access denied');
      assert.equal((await rcpt(c, 'a%b@elsewhere.test')).last, '554 5.7.1 Relay access denied');
      assert.equal((await rcpt(c, '"a@b"@elsewhere.test')).last, '554 5.7.1 Relay access denied');
      // Unquoted, a second @ is a syntax error (SPEC §4.4), also before any rule.
      assert.equal((await rcpt(c, 'a@b@elsewhere.test')).last, '501 5.1.3 Bad recipient address syntax');
      const ruleRan = s.logs.slice(before).some((r) => r.fn === 'smtpd_check_rules' || r.stage === 'rcpt');
      assert.equal(ruleRan, false, 'no rcpt rule ran for these recipients');
      assert.equal((await rcpt(c, 'bob@yourdomain.com')).last, '250 2.1.5 Ok');
    } finally {
      c.destroy();
    }
  });
});

describe('e-smith default rules from the local network (examples/esmith as shipped)', () => {
  let s: RunningIn;
  before(async () => {
    // The example directory itself, unmodified: its allow:127.0.0.1 line applies.
    s = await start(EXAMPLE_DIR, dns);
  });
  after(async () => {
    await s.stop();
  });

  test('every recipient is accepted, foreign ones and everyone@ included', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      for (const to of ['everyone@yourdomain.com', 'bob@yourdomain.com', 'carol@elsewhere.test', 'dave@example.org']) {
        assert.equal((await rcpt(c, to)).last, '250 2.1.5 Ok', to);
      }
      assert.equal((await c.command('DATA')).code, 354);
      assert.match((await c.data(BODY)).last, /^250 2\.0\.0 Ok: queued as /);
    } finally {
      c.destroy();
    }
  });

  test('routing tricks are still refused over the socket: 554 5.7.1 (SPEC §4.4) where the file would say 551', async () => {
    const c = await session(s.port, 'alice@example.net');
    try {
      assert.equal((await rcpt(c, 'a!b@elsewhere.test')).last, '554 5.7.1 Relay access denied');
      assert.equal((await rcpt(c, 'a%b@elsewhere.test')).last, '554 5.7.1 Relay access denied');
      assert.equal((await rcpt(c, '"a@b"@elsewhere.test')).last, '554 5.7.1 Relay access denied');
    } finally {
      c.destroy();
    }
  });
});

describe('the file\'s own answer to routing tricks (production built-in, example file, loopback DNS)', () => {
  const builtin = legacyBuiltins.find((b) => b.name === 'smtpd_check_rules')!;

  /** The recipient as the server would hold it had §4.4 let it through: raw form as written. */
  function routed(local: string, domain: string, raw: string): MailAddress {
    return { local, domain, raw, isNull: false };
  }

  async function decide(to: MailAddress, clientIp: string): Promise<Status> {
    const call = makeHostCall({
      stage: 'rcpt',
      fileDir: EXAMPLE_DIR,
      resolver: createResolver({ servers: [dns.address], timeoutMs: 2000 }),
      session: { clientIp },
      mailFrom: 'alice@example.net',
      txn: { currentRcpt: to },
    });
    const status = await builtin.fn(call, ['smtpd_check_rules']);
    assert.ok(status instanceof Status);
    return status;
  }

  const sorry = (to: string): string =>
    `551 Sorry ${CLIENT_NAME} (127.0.0.1), I don't allow unauthorized relaying. You can't use me to send mail from alice@example.net to ${to}.`;

  test('a!b@x.test is refused with 551 and %H (%I), %F, %T substituted — even from the allowed 127.0.0.1', async () => {
    const s = await decide(routed('a!b', 'x.test', '<a!b@x.test>'), '127.0.0.1');
    assert.equal(s.kind, 'reject');
    assert.deepEqual(replyLines(s.effectiveCode()!), [sorry('a!b@x.test')]);
  });

  test('a@b@c.test is refused with 551 by the two-@ line', async () => {
    const s = await decide(routed('a@b', 'c.test', '<a@b@c.test>'), '127.0.0.1');
    assert.equal(s.kind, 'reject');
    assert.deepEqual(replyLines(s.effectiveCode()!), [sorry('a@b@c.test')]);
  });

  test('a%b@c.test is refused with 551 by the %-hack line', async () => {
    const s = await decide(routed('a%b', 'c.test', '<a%b@c.test>'), '127.0.0.1');
    assert.equal(s.kind, 'reject');
    assert.deepEqual(replyLines(s.effectiveCode()!), [sorry('a%b@c.test')]);
  });

  test('a plain recipient from the allowed network is accepted by the same file', async () => {
    const s = await decide(routed('carol', 'elsewhere.test', '<carol@elsewhere.test>'), '127.0.0.1');
    assert.equal(s.kind, 'accept');
  });
});

// ------------------------------------------------------------------ the deny list (Solution 2)

/**
 * The "10DenyList" template fragment of Solution 2, in front of the default
 * file: first the seed form `deny:ALL:$EmailBlocks:ALL` with a real sender
 * list, then one line per address-pattern example of the how-to, each with a
 * message naming its pattern so a test can tell which line decided.
 */
const DENY_LIST = [
  '# Block access to the SMTP server from:',
  'deny:ALL:spamford@cyberpromo.com junk@spam.example:ALL',
  'deny:ALL:/^[0-9]+@.*$/:ALL:550 5.7.1 pattern /^[0-9]+@.*$/ blocks %F',
  'deny:ALL:sales@ALL:ALL:550 5.7.1 pattern sales@ALL blocks %F',
  'deny:ALL:ALL@*cyberpromo.com:ALL:550 5.7.1 pattern ALL@*cyberpromo.com blocks %F',
  'deny:ALL:ALL@NS=*cyberpromo.com:ALL:550 5.7.1 pattern ALL@NS=*cyberpromo.com blocks %F',
  'deny:ALL:USER@obtuse.com:ALL:550 5.7.1 pattern USER@obtuse.com blocks %F',
  '',
].join('\n');

describe('the deny list of "Solution 2" (10DenyList) over a socket', () => {
  let s: RunningIn;
  before(async () => {
    const header = RULES_TEXT.indexOf('# Don\'t allow bang paths');
    const rules = `${OUTSIDE_RULES.slice(0, header)}${DENY_LIST}\n${OUTSIDE_RULES.slice(header)}`;
    s = await start(policyCopy(rules), dns, { ownsDir: true });
  });
  after(async () => {
    await s.stop();
  });

  /** MAIL FROM `from`, RCPT bob@yourdomain.com: the reply, and whether the server then closed. */
  async function attempt(from: string): Promise<{ reply: SmtpReply; closed: boolean }> {
    const c = await session(s.port, from);
    try {
      const reply = await rcpt(c, 'bob@yourdomain.com');
      // deny closes right after its reply; only permanent refusals can be denies here.
      const closed = reply.code >= 500 ? await c.closedWithin(2000) : c.closed;
      return { reply, closed };
    } finally {
      c.destroy();
    }
  }

  test('deny:ALL:$EmailBlocks:ALL refuses a listed sender with the default 550 and closes the session', async () => {
    for (const from of ['spamford@cyberpromo.com', 'JUNK@spam.example']) {
      const { reply, closed } = await attempt(from);
      assert.equal(reply.last, `550 Mail from ${from} to bob@yourdomain.com prohibited from your location (unknown@${CLIENT_NAME} ip=127.0.0.1)`);
      assert.equal(closed, true, `session closed after refusing ${from}`);
    }
    // A sender not on the list is let through to the rest of the file.
    const ok = await attempt('friend@example.net');
    assert.equal(ok.reply.last, '250 2.1.5 Ok');
  });

  test('/^[0-9]+@.*$/ blocks all-numeric user parts only', async () => {
    const hit = await attempt('12345@anywhere.test');
    assert.equal(hit.reply.last, '550 5.7.1 pattern /^[0-9]+@.*$/ blocks 12345@anywhere.test');
    assert.equal(hit.closed, true);
    assert.equal((await attempt('a12345@anywhere.test')).reply.code, 250);
    assert.equal((await attempt('12345a@anywhere.test')).reply.code, 250);
  });

  test('sales@ALL blocks the user "sales" from anywhere, and no other user', async () => {
    const hit = await attempt('sales@anywhere.test');
    assert.equal(hit.reply.last, '550 5.7.1 pattern sales@ALL blocks sales@anywhere.test');
    assert.equal(hit.closed, true);
    assert.equal((await attempt('Sales@other.example')).reply.code, 550, 'matching is case-insensitive');
    assert.equal((await attempt('salesman@anywhere.test')).reply.code, 250);
  });

  test('ALL@*cyberpromo.com blocks any address of a domain ending in cyberpromo.com', async () => {
    for (const from of ['x@cyberpromo.com', 'x@mail.cyberpromo.com', 'x@notcyberpromo.com']) {
      const hit = await attempt(from);
      assert.equal(hit.reply.last, `550 5.7.1 pattern ALL@*cyberpromo.com blocks ${from}`);
      assert.equal(hit.closed, true);
    }
    assert.equal((await attempt('x@cyberpromo.com.example')).reply.code, 250);
  });

  test('ALL@NS=*cyberpromo.com blocks domains whose name server or MX ends in cyberpromo.com (loopback DNS)', async () => {
    for (const from of ['x@hosted.test', 'x@mxhosted.test']) {
      const hit = await attempt(from);
      assert.equal(hit.reply.last, `550 5.7.1 pattern ALL@NS=*cyberpromo.com blocks ${from}`);
      assert.equal(hit.closed, true);
    }
    assert.equal((await attempt('x@clean.test')).reply.code, 250);
    assert.ok(dns.queries.includes('hosted.test NS'), 'the NS records were asked for');
  });

  test('a name-server lookup that fails is a temporary failure, never a pass', async () => {
    const { reply } = await attempt('x@broken.test');
    assert.equal(reply.last, '451 4.3.0 Temporary local problem, try again later');
  });

  test('USER@obtuse.com (ident) never matches: ident lookups are not supported', async () => {
    assert.equal((await attempt('joe@obtuse.com')).reply.last, '250 2.1.5 Ok');
  });
});

// ------------------------------------------------------------------ bad input

describe('malformed, changed and vanished rule files', () => {
  test('mta check reports every malformed line with file:line', async () => {
    const broken = `${RULES_TEXT}allw:ALL:ALL:ALL\nnoto:ALL:ALL\n`;
    const dir = policyCopy(broken);
    const lines = broken.split('\n');
    const badAction = lines.indexOf('allw:ALL:ALL:ALL') + 1;
    const missingField = lines.indexOf('noto:ALL:ALL') + 1;
    try {
      const r = await checkFile(path.join(dir, 'main.vsl'));
      assert.equal(r.ok, false);
      const errors = r.diagnostics.filter((d) => d.severity === 'error');
      const at = errors.map((d) => `${path.basename(d.pos.file)}:${d.pos.line}`);
      assert.deepEqual(at, [`smtpd_check_rules:${badAction}`, `smtpd_check_rules:${missingField}`]);
      assert.match(errors[0]!.message, /unknown action 'allw'/);
      assert.match(errors[1]!.message, /expected action:sources:froms:tos/);
      // The command prints them as file:line:col: error: …, and exits 1.
      let err = '';
      const code = await checkCommand([path.join(dir, 'main.vsl')], {
        stdin: process.stdin,
        stdout: { write: () => true },
        stderr: { write: (t: string) => ((err += t), true) },
      });
      assert.equal(code, 1);
      assert.match(err, new RegExp(`smtpd_check_rules:${badAction}:1: error: unknown action 'allw'`));
      assert.match(err, new RegExp(`smtpd_check_rules:${missingField}:1: error: expected action`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('on the running server: a good edit applies, a malformed one is reported with file:line and the last good version stays', async () => {
    const s = await start(policyCopy(OUTSIDE_RULES), dns, { watch: true, ownsDir: true });
    const rules = path.join(s.dir, 'smtpd_check_rules');
    try {
      let c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).code, 551);
      c.destroy();

      // A valid change (127.0.0.1 allowed again) is used from the next recipient on.
      fs.writeFileSync(rules, RULES_TEXT);
      await waitForLog(s.logs, (r) => /policy \S+ loaded|policy unchanged/.test(msg(r)));
      c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).last, '250 2.1.5 Ok');
      c.destroy();

      // A malformed change: the reload fails naming file:line, and the last good file stays in force.
      const broken = RULES_TEXT.replace('allow:127.0.0.1:ALL:ALL', 'allow:127.0.0.1:ALL');
      const badLine = broken.split('\n').indexOf('allow:127.0.0.1:ALL') + 1;
      const mark = s.logs.length;
      fs.writeFileSync(rules, broken);
      const failed = await waitForLog(s.logs, (r) => s.logs.indexOf(r) >= mark && r.reload === 'failed' && typeof r.at === 'string');
      assert.match(String(failed.at), new RegExp(`smtpd_check_rules:${badLine}:`));
      assert.match(msg(failed), /expected action:sources:froms:tos/);
      c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).last, '250 2.1.5 Ok', 'the last good version still allows 127.0.0.1');
      assert.equal((await rcpt(c, 'x@yourdomain.com')).last, '250 2.1.5 Ok');
      c.destroy();
      // The rule itself also logged the bad line when it kept the good version.
      assert.ok(s.logs.some((r) => /is invalid; keeping the last good version/.test(msg(r))));
    } finally {
      await s.stop();
    }
  });

  test('a rule file that disappears at runtime gives 451 4.3.0 (temporary failure), not an open door', async () => {
    const s = await start(policyCopy(OUTSIDE_RULES), dns, { watch: true, ownsDir: true });
    const rules = path.join(s.dir, 'smtpd_check_rules');
    try {
      let c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'bob@yourdomain.com')).code, 250);
      c.destroy();

      fs.rmSync(rules);
      c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).last, '451 4.3.0 Temporary local problem, try again later');
      assert.equal((await rcpt(c, 'bob@yourdomain.com')).last, '451 4.3.0 Temporary local problem, try again later');
      assert.equal((await c.command('DATA')).last, '554 5.5.1 No valid recipients');
      c.destroy();
      // The reload triggered by the removal fails too; the server keeps running.
      await waitForLog(s.logs, (r) => r.reload === 'failed');

      fs.writeFileSync(rules, OUTSIDE_RULES);
      c = await session(s.port, 'alice@example.net');
      assert.equal((await rcpt(c, 'bob@yourdomain.com')).last, '250 2.1.5 Ok');
      assert.equal((await rcpt(c, 'carol@elsewhere.test')).code, 551);
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});
