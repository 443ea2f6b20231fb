// A small domain, end to end, with real parts started by the test:
//
//   vsl-mta (`mta run`, a child process that drops root to the mail user)
//     MX listener        mail from outside, no AUTH
//     submission         STARTTLS, then AUTH, then relaying
//   two local users      jane: maildir written by vsl-mta
//                        john: LMTP into a real Dovecot (own config, loopback)
//   aliases              postmaster@ → jane
//   next hop             an SMTP server that refuses one address with 550
//
// What must hold: mail from outside reaches both users; mail jane submits to
// the refused address brings a bounce into jane's maildir; postmaster@
// reaches jane; delivered files belong to the mail user; submitted mail got
// a Message-ID.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashScrypt } from '../../src/builtins/auth/passwd-file.js';
import { dovecotAvailable, startDovecot, type TestDovecot } from '../helpers/dovecot.js';
import { freePort } from '../helpers/redis.js';
import { REPO_ROOT } from '../helpers/server.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { type SmtpSink, startSmtpSink } from '../helpers/smtp-sink.js';
import { createSystemUser, type SystemUser } from '../helpers/system-user.js';
import { makeTestCertificate, type TestCertificate } from '../helpers/tls-cert.js';

const DOMAIN = 'small.test';
const REFUSED = 'gone@example.net';
const b64 = (s: string) => Buffer.from(s).toString('base64');

function policy(o: { dir: string; user: string; mx: number; submission: number; cert: TestCertificate; lmtp: string; nextHop: string }): string {
  return `fn on_config(config) {
  config.server.name = "mx.${DOMAIN}";
  config.server.domain = "${DOMAIN}";
  config.server.user = "${o.user}";
  config.server.relay_networks = [];
  config.server.interfaces.addr = ["127.0.0.1:${o.mx}"];
  config.server.interfaces.addr_submission = ["127.0.0.1:${o.submission}"];
  config.server.tls.certificate = "${o.cert.certPath}";
  config.server.tls.private_key = "${o.cert.keyPath}";
  config.server.auth.backend = "file:passwd";
  config.queue.dir = "${o.dir}/queue";
  config.vsl.data_dir = "${o.dir}/data";
  config.delivery.maildir = "${o.dir}/mail/{local_part}/Maildir";
  config.delivery.lmtp = "${o.lmtp}";
  config.delivery.default = "${o.nextHop}";
  config.delivery.aliases = "aliases";
  config.delivery.retry = ["1s"];
  config
}
#{
  rcpt: [
    rule "relay rcpt" || check_rcpt_relay(rg4("192.0.2.0/24")),
    action "mailboxes" || {
      if in_domain(ctx::rcpt()) && ctx::rcpt().local_part == "john" { transport::lmtp(ctx::rcpt()); }
      if in_domain(ctx::rcpt()) && ctx::rcpt().local_part != "john" { transport::maildir(ctx::rcpt()); }
    },
  ],
  authenticate: [ rule "auth" || authenticate() ],
}
`;
}

async function waitFor<T>(what: string, probe: () => T | null | undefined, ms = 20_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    const v = probe();
    if (v !== null && v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The messages in a maildir's new/, by file path. */
function inbox(maildir: string): Array<{ file: string; text: string }> {
  const dir = path.join(maildir, 'new');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).map((n) => ({ file: path.join(dir, n), text: fs.readFileSync(path.join(dir, n), 'utf8') }));
}

/** One SMTP transaction; returns the end-of-data reply. */
async function send(c: SmtpClient, from: string, to: string[], message: string): Promise<string> {
  assert.equal((await c.command(`MAIL FROM:<${from}>`)).code, 250);
  for (const t of to) assert.equal((await c.command(`RCPT TO:<${t}>`)).code, 250, t);
  assert.equal((await c.command('DATA')).code, 354);
  return (await c.data(message)).last;
}

describe('a small domain: MX and submission for two local users, one by maildir and one by LMTP into Dovecot', { skip: !dovecotAvailable() && 'needs root, dovecot-core and dovecot-lmtpd' }, () => {
  let mailUser: SystemUser;
  let dovecot: TestDovecot;
  let nextHop: SmtpSink;
  let cert: TestCertificate;
  let dir: string;
  let mta: ChildProcess;
  let output = '';
  let mx = 0;
  let submission = 0;
  const janeBox = () => path.join(dir, 'mail', 'jane', 'Maildir');

  before(async () => {
    mailUser = createSystemUser('mtavmail')!;
    dovecot = (await startDovecot(['john'], mailUser))!;
    nextHop = await startSmtpSink({ script: { rcpt: (ctx) => (ctx.address === REFUSED ? { code: 550, text: '5.1.1 <gone@example.net>: no such user' } : 'accept') } });
    cert = await makeTestCertificate(`mx.${DOMAIN}`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'small-domain-'));
    fs.chmodSync(dir, 0o755); // the mail user reads the policy after the drop
    for (const f of [cert.dir, cert.certPath, cert.keyPath]) fs.chownSync(f, mailUser.uid, mailUser.gid); // TLS files are re-read on reload
    fs.mkdirSync(path.join(dir, 'mail'));
    fs.chownSync(path.join(dir, 'mail'), mailUser.uid, mailUser.gid);
    fs.writeFileSync(path.join(dir, 'passwd'), `jane:${await hashScrypt('jane-secret')}\n`, { mode: 0o600 });
    fs.chownSync(path.join(dir, 'passwd'), mailUser.uid, mailUser.gid);
    fs.writeFileSync(path.join(dir, 'aliases'), 'postmaster: jane\nabuse: postmaster\n');
    mx = await freePort();
    submission = await freePort();
    fs.writeFileSync(
      path.join(dir, 'main.vsl'),
      policy({ dir, user: mailUser.name, mx, submission, cert, lmtp: `unix:${dovecot.socket}`, nextHop: nextHop.address }),
    );
    mta = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'mta.js'), '--config', path.join(dir, 'main.vsl'), '--workers', '0', '--log-format', 'json'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    mta.stdout!.on('data', (d) => (output += d));
    mta.stderr!.on('data', (d) => (output += d));
    await waitFor(`the server to run as ${mailUser.name}: ${output}`, () => (output.includes(`running as ${mailUser.name}`) ? true : null));
  });

  after(async () => {
    if (mta && mta.exitCode === null) {
      const exited = new Promise((r) => mta.once('exit', r));
      mta.kill('SIGTERM');
      await exited;
    }
    await nextHop?.close();
    await dovecot?.stop();
    await cert?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    mailUser?.remove();
  });

  test('mail from outside to the MX reaches jane (maildir) and john (LMTP into Dovecot)', async () => {
    const c = await SmtpClient.connect(mx);
    await c.greeting();
    await c.ehlo('client.example.net');
    const reply = await send(c, 'alice@example.net', [`jane@${DOMAIN}`, `john@${DOMAIN}`], 'From: <alice@example.net>\r\nSubject: hello family\r\n\r\nhi\r\n');
    assert.match(reply, /^250 /);
    await c.quit();
    const jane = await waitFor('the message in jane\'s maildir', () => inbox(janeBox()).find((m) => m.text.includes('Subject: hello family')));
    const john = await waitFor('the message in john\'s Dovecot maildir', () => inbox(dovecot.maildir('john')).find((m) => m.text.includes('Subject: hello family')));
    for (const m of [jane, john]) {
      const st = fs.statSync(m.file);
      assert.deepEqual([st.uid, st.gid], [mailUser.uid, mailUser.gid], `${m.file} belongs to ${mailUser.name}`);
    }
    assert.match(jane.text, new RegExp(`^Delivered-To: jane@${DOMAIN.replace('.', '\\.')}$`, 'm'));
  });

  test('postmaster@ reaches its alias, jane', async () => {
    const c = await SmtpClient.connect(mx);
    await c.greeting();
    await c.ehlo('client.example.net');
    assert.match(await send(c, 'alice@example.net', [`postmaster@${DOMAIN}`], 'Subject: to the postmaster\r\n\r\nhi\r\n'), /^250 /);
    await c.quit();
    const m = await waitFor('the postmaster message in jane\'s maildir', () => inbox(janeBox()).find((x) => x.text.includes('Subject: to the postmaster')));
    assert.equal(fs.statSync(m.file).uid, mailUser.uid);
  });

  test('submission: AUTH only after STARTTLS; submitted mail gets a Message-ID; a 550 from the next hop bounces into jane\'s maildir', async () => {
    const c = await SmtpClient.connect(submission);
    await c.greeting();
    const plain = await c.ehlo('jane-laptop.example');
    assert.ok(!plain.texts.some((t) => t.startsWith('AUTH')), 'no AUTH offered before TLS');
    assert.equal((await c.command('STARTTLS')).code, 220);
    await c.startTls({ servername: `mx.${DOMAIN}` });
    const secure = await c.ehlo('jane-laptop.example');
    assert.ok(secure.texts.some((t) => t.startsWith('AUTH')), 'AUTH offered under TLS');
    assert.equal((await c.command(`AUTH PLAIN ${b64('\0jane\0jane-secret')}`)).code, 235);
    // One to an address the next hop accepts, one to one it refuses with 550.
    assert.match(await send(c, `jane@${DOMAIN}`, ['friend@example.net'], 'From: <jane@small.test>\r\nSubject: submitted\r\n\r\nhi\r\n'), /^250 /);
    assert.match(await send(c, `jane@${DOMAIN}`, [REFUSED], 'From: <jane@small.test>\r\nSubject: to a gone address\r\n\r\nhi\r\n'), /^250 /);
    await c.quit();

    await nextHop.waitForMessages(1);
    const submitted = nextHop.messages.find((m) => m.data.toString().includes('Subject: submitted'))!;
    assert.match(submitted.data.toString(), new RegExp(`^Message-ID: <[^@>\\s]+@mx\\.small\\.test>\\r$`, 'm'), 'a Message-ID was added');
    assert.match(submitted.data.toString(), /^Date: /m, 'so was a Date');

    const bounce = await waitFor('the bounce in jane\'s maildir', () => inbox(janeBox()).find((m) => m.text.includes('Undelivered Mail Returned to Sender')));
    assert.match(bounce.text, /^Return-Path: <>$/m);
    assert.match(bounce.text, /^Final-Recipient: rfc822; gone@example\.net$/m);
    assert.match(bounce.text, /^Diagnostic-Code: smtp; 550 5\.1\.1 <gone@example\.net>: no such user$/m);
    assert.equal(fs.statSync(bounce.file).uid, mailUser.uid, 'the bounce belongs to the mail user too');
    assert.ok(!nextHop.messages.some((m) => m.mailFrom === ''), 'the bounce did not go to the next hop');
  });
});
