// `mta test` (SPEC §11.3): transcripts played against a policy in-process,
// through the real SMTP front over in-memory connections — no port, no
// network, no delivery. Every example ships transcripts for its allow and
// deny paths and they pass; the directives (@client @listener @tls @dns
// @user @set @time @advance @expect) do what the format says; a failure
// names expected and actual and the rule that decided, with file:line; a
// broken transcript is reported at its line; a policy that loops forever is
// stopped by the rule deadline.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { testCommand, watchSuite } from '../../src/cli/test.js';
import type { CliIo } from '../../src/cli/io.js';
import { ROOT } from '../helpers/paths.js';


function memoryIo(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdin: new PassThrough(), stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } },
    out: () => out,
    err: () => err,
  };
}

async function mtaTest(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const m = memoryIo();
  const code = await testCommand(argv, m.io);
  return { code, out: m.out(), err: m.err() };
}

/** TAP lines that are test points. */
function points(tap: string): string[] {
  return tap.split('\n').filter((l) => /^(not )?ok \d+ - /.test(l));
}

// A policy using what transcripts can control: DNS (a HELO that must
// resolve), the clock (a date header, greylisting), credentials, TLS (the
// policy names certificate files that do not exist here: the test
// certificate stands in), quarantine.
const FEATURE_POLICY = `
fn on_config(config) {
  config.server.name = "mx.feature.test";
  config.server.domain = "feature.test";
  config.server.relay_networks = [];
  config.server.tls.certificate = "/etc/mta/no-such-cert.pem";
  config.server.tls.private_key = "/etc/mta/no-such-key.pem";
  config
}

#{
  helo: [
    rule "helo must resolve" || {
      try { dns::lookup(ctx::helo()); next() } catch { reject("550 5.7.1 helo does not resolve") }
    },
  ],
  authenticate: [
    rule "users" || auth::unix_users(),
  ],
  mail: [
    rule "stamp" || { msg::append_header("X-Checked-On", time::date()); next() },
  ],
  rcpt: [
    rule "quarantine suspects" || if ctx::rcpt().local_part == "suspect" { quarantine("review") } else { next() },
    rule "greylist" || if auth::is_authenticated() { next() } else { greylist::check(#{ delay: "5m" }) },
    rule "relay" || check_rcpt_relay(rg4("10.0.0.0/8")),
  ],
}
`;

const FEATURE_TRANSCRIPT = `# DNS stubs, a frozen clock, greylisting across sessions.
@dns client.example.org A 198.51.100.7
@time 2030-01-02T03:04:05Z
@client 198.51.100.7
S: 220 mx.feature.test
C: EHLO unknown.example.org
S: 550 5.7.1 helo does not resolve
C: EHLO client.example.org
S: 250
C: MAIL FROM:<a@example.org>
S: 250
C: RCPT TO:<bob@feature.test>
S: 451 4.7.1 Greylisted
C: QUIT
S: 221
---
@advance 1m
@client 198.51.100.7
S: 220
C: EHLO client.example.org
C: MAIL FROM:<a@example.org>
C: RCPT TO:<bob@feature.test>
S: 250
S: 250
S: 451 4.7.1
---
@advance 5m
@client 198.51.100.7
S: 220
C: EHLO client.example.org
S: 250
C: MAIL FROM:<a@example.org>
S: 250
C: RCPT TO:<bob@feature.test>
S: 250 2.1.5
C: DATA
S: 354
C: Subject: one
C:
C: x
C: .
S: 250 2.0.0 Ok: queued as
@expect queued 1
@expect rcpt bob@feature.test
@expect header X-Checked-On: 2030-01-02
C: QUIT
S: 221
---
# The submission listener wants AUTH before MAIL, and AUTH wants TLS.
@user ann pw-ann
@listener submission
@client 203.0.113.20
S: 220
C: EHLO client.example.org
S: 250
C: AUTH PLAIN AGFubgBwdy1hbm4=
S!: 235
C: MAIL FROM:<ann@feature.test>
S: 530
C: STARTTLS
S: 220
C: EHLO client.example.org
S: 250
C: AUTH PLAIN AGFubgBwdy1hbm4=
S: 235
C: MAIL FROM:<ann@feature.test>
S: 250
C: RCPT TO:<friend@example.net>
S: 250
C: RCPT TO:<suspect@feature.test>
S: 250
C: DATA
S: 354
C: Subject: two
C:
C: x
C: .
S: 250
@expect queued 1
@expect quarantined review 1
@expect rcpt friend@example.net
@expect rcpt suspect@feature.test
@expect header Received: from client.example.org (unknown [203.0.113.20]) by mx.feature.test with ESMTPSA
---
# Implicit TLS from the first byte; a wrong password.
@tls
@client 203.0.113.20
S: 220
C: EHLO client.example.org
S: 250
C: AUTH PLAIN AGFubgB3cm9uZw==
S: 535
C: QUIT
S: 221
---
# A configuration override reloads the policy: relay from 203.0.113.0/24.
@set server.relay_networks=["203.0.113.0/24"]
@client 203.0.113.21
S: 220
C: EHLO client.example.org
S: 250
C: MAIL FROM:<x@example.org>
S: 250
C: RCPT TO:<y@example.net>
S!: 554
`;

describe('mta test', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-test-cli-'));
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Writes a policy (main.vsl) and transcripts into a fresh directory under `dir`. */
  function project(name: string, policy: string, transcripts: Record<string, string>): { main: string; tests: string } {
    const root = path.join(dir, name);
    const tests = path.join(root, 'tests');
    fs.mkdirSync(tests, { recursive: true });
    fs.writeFileSync(path.join(root, 'main.vsl'), policy);
    for (const [n, text] of Object.entries(transcripts)) fs.writeFileSync(path.join(tests, n), text);
    return { main: path.join(root, 'main.vsl'), tests };
  }

  for (const example of ['doe-family', 'esmith', 'msgsrv', 'postfix-restrictions']) {
    test(`the ${example} example's transcripts all pass`, async () => {
      const tests = path.join(ROOT, 'examples', example, 'tests');
      const files = fs.readdirSync(tests).filter((f) => f.endsWith('.smtp'));
      assert.ok(files.length > 0, `examples/${example}/tests has transcripts`);
      const r = await mtaTest([tests]);
      assert.equal(r.code, 0, r.out + r.err);
      const p = points(r.out);
      assert.ok(p.length >= 10, 'the transcripts check something');
      assert.deepEqual(p.filter((l) => l.startsWith('not ok')), []);
      assert.match(r.out, new RegExp(`^1\\.\\.${p.length}$`, 'm'));
    });
  }

  test('the doe-family transcripts also pass against the v2 dialect of the policy', async () => {
    const r = await mtaTest(['--config', path.join(ROOT, 'examples', 'doe-family', 'main-v2.vsl'), path.join(ROOT, 'examples', 'doe-family', 'tests')]);
    assert.equal(r.code, 0, r.out + r.err);
  });

  test('the directives drive DNS, clock, credentials, TLS, overrides and the message checks; no port is opened', async () => {
    const p = project('features', FEATURE_POLICY, { 'features.smtp': FEATURE_TRANSCRIPT });
    const listen = net.Server.prototype.listen;
    const connect = net.Socket.prototype.connect;
    let sockets = 0;
    net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
      sockets++;
      return (listen as (...a: unknown[]) => net.Server).apply(this, args);
    } as typeof listen;
    net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
      sockets++;
      return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
    } as typeof connect;
    let r;
    try {
      r = await mtaTest(['--config', p.main, p.tests]);
    } finally {
      net.Server.prototype.listen = listen;
      net.Socket.prototype.connect = connect;
    }
    assert.equal(r.code, 0, r.out + r.err);
    assert.deepEqual(points(r.out).filter((l) => l.startsWith('not ok')), []);
    assert.equal(points(r.out).length, (FEATURE_TRANSCRIPT.match(/^(S!?:|@expect)/gm) ?? []).length, 'one test point per S:, S!: and @expect line');
    assert.equal(sockets, 0, 'no socket was opened');
  });

  test('a failing check shows expected, actual and the deciding rule with file:line; exit 1', async () => {
    const policy = fs.readFileSync(path.join(ROOT, 'examples', 'doe-family', 'main.vsl'), 'utf8');
    const objects = fs.readFileSync(path.join(ROOT, 'examples', 'doe-family', 'objects.vsl'), 'utf8');
    const p = project('failing', policy, {
      'relay.smtp': '@client 203.0.113.9\nS: 220\nC: EHLO c.example\nS: 250\nC: MAIL FROM:<a@example.org>\nS: 250\nC: RCPT TO:<u@example.net>\nS: 250\n@expect queued 1\n',
    });
    fs.writeFileSync(path.join(path.dirname(p.main), 'objects.vsl'), objects);
    const ruleLine = policy.split('\n').findIndex((l) => l.includes('rule "relay rcpt"')) + 1;
    const r = await mtaTest([p.tests]);
    assert.equal(r.code, 1);
    const lines = points(r.out);
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /^ok 1 - .*relay\.smtp:2$/);
    assert.match(lines[3]!, new RegExp(`^not ok 4 - .*relay\\.smtp:8: expected "250", got "554 5\\.7\\.1 Relay access denied" \\(rcpt: rule "relay rcpt" at .*main\\.vsl:${ruleLine}:\\d+\\)$`));
    assert.match(lines[4]!, /^not ok 5 - .*relay\.smtp:9: expected 1 queued message\(s\), got 0$/);
    assert.match(r.out, /^# fail 2$/m);
  });

  test('a transcript with syntax errors is reported at each file:line and not played', async () => {
    const p = project('syntax', FEATURE_POLICY, {
      'a-good.smtp': 'S: 220\nC: QUIT\nS: 221\n',
      'b-broken.smtp': 'S: 220\nC: EHLO x\nS 250\n@expect delivered 1\n@client 192.0.2.1\n',
    });
    const r = await mtaTest(['--config', p.main, p.tests]);
    assert.equal(r.code, 1);
    const lines = points(r.out);
    assert.match(lines[0]!, /^ok 1 - .*a-good\.smtp:1$/);
    assert.match(lines[1]!, /^ok 2 - .*a-good\.smtp:3$/);
    assert.match(lines[2]!, /^not ok 3 - .*b-broken\.smtp:3: syntax error: cannot read 'S 250'/);
    assert.match(lines[3]!, /^not ok 4 - .*b-broken\.smtp:4: syntax error: @expect: /);
    assert.match(lines[4]!, /^not ok 5 - .*b-broken\.smtp:5: syntax error: @client must come before the first C: or S: line/);
    assert.equal(lines.length, 5, 'nothing of the broken file was played');
  });

  test('a policy that loops forever hits the rule deadline: the check fails with that reason, the run ends', async () => {
    const p = project('loop', `fn on_config(config) { config.vsl.rule_timeout = "300ms"; config }
#{
  rcpt: [
    rule "spin" || { let n = 0; loop { n += 1; } accept() },
  ],
}
`, { 'loop.smtp': 'S: 220\nC: EHLO c.example\nC: MAIL FROM:<a@example.org>\nC: RCPT TO:<b@example.org>\nS: 250\nS: 250\nS: 250\nC: QUIT\nS: 221\n' });
    const r = await mtaTest(['--config', p.main, p.tests]);
    assert.equal(r.code, 1);
    const failed = points(r.out).filter((l) => l.startsWith('not ok'));
    assert.equal(failed.length, 1, r.out);
    assert.match(failed[0]!, /loop\.smtp:7: expected "250", got "451 4\.3\.0 [^"]*" \(rule "spin" failed at rcpt: timeout: the rule ran longer than 300ms \(.*main\.vsl:4:\d+\)\)/);
    assert.match(r.out, /^ok \d+ - .*loop\.smtp:9$/m, 'the session goes on after the deadline');
  });

  test('a policy that does not load fails every check with its diagnostics', async () => {
    const p = project('noload', '#{\n  rcpt: [ rule "x" || accept( ],\n}\n', { 't.smtp': 'S: 220\nC: QUIT\nS: 221\n' });
    const r = await mtaTest([p.tests]);
    assert.equal(r.code, 1);
    const lines = r.out.split('\n');
    assert.match(lines.find((l) => l.startsWith('not ok 1'))!, /t\.smtp:1: the policy did not load$/);
    assert.ok(lines.some((l) => /^ {2}# .*main\.vsl:2:\d+: error:/.test(l)), r.out);
    assert.equal(points(r.out).length, 2);
  });

  test('no transcripts is a failure, not a silent pass; a missing path and bad options are errors', async () => {
    const p = project('empty', FEATURE_POLICY, {});
    const r = await mtaTest(['--config', p.main, p.tests]);
    assert.equal(r.code, 1);
    assert.match(r.out, /^1\.\.0$/m);
    assert.equal((await mtaTest(['--config', p.main, path.join(dir, 'nowhere')])).code, 1);
    assert.equal((await mtaTest(['--frobnicate'])).code, 2);
  });

  test('--watch runs again when the policy changes, and stops when asked', async () => {
    const p = project('watch', FEATURE_POLICY, { 'w.smtp': '@client 203.0.113.30\nS: 220 mx.feature.test\n' });
    const m = memoryIo();
    const ac = new AbortController();
    const done = watchSuite({ mainPath: p.main, paths: [p.tests], io: m.io }, ac.signal, 50);
    const waitFor = async (pred: () => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!pred()) {
        if (Date.now() > deadline) assert.fail(`watch output so far:\n${m.out()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await waitFor(() => /# watching \d+ file/.test(m.out()));
      assert.match(m.out(), /^ok 1 - .*w\.smtp:2$/m);
      fs.writeFileSync(p.main, FEATURE_POLICY.replace('"mx.feature.test"', '"mx.renamed.test"'));
      await waitFor(() => /not ok 1 - .*w\.smtp:2: expected "220 mx\.feature\.test", got "220 mx\.renamed\.test/.test(m.out()));
      // A change to a transcript is a reason to run again too.
      fs.writeFileSync(path.join(p.tests, 'w.smtp'), '@client 203.0.113.30\nS: 220 mx.renamed.test\n');
      await waitFor(() => (m.out().match(/TAP version 13/g) ?? []).length >= 3 && /\n# fail 0\n# watching/.test(m.out().slice(m.out().lastIndexOf('TAP version 13'))));
    } finally {
      ac.abort();
      await done;
    }
  });
});
