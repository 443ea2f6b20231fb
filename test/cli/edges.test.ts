// The rough edges of the command line, one row each, run through the real
// bin/mta.js: each row names the behaviour, the command, and what its exit
// status, stdout and stderr must (and must not) show. The cases that need a
// process kept alive (`mta test --watch`) follow the table.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Spool, ACTIVE, DEAD } from '../../src/queue/spool.js';
import { enqueueTestMessage } from '../helpers/delivery-fixtures.js';
import { REPO_ROOT, tempDir } from '../helpers/server.js';

const MTA = path.join(REPO_ROOT, 'bin/mta.js');
const DOE = path.join(REPO_ROOT, 'examples/doe-family/main.vsl');

interface Row {
  behaviour: string;
  argv: (dir: string) => string[];
  code: number;
  stdout?: RegExp;
  /** A function when the text depends on the setup (the busy port). */
  stderr?: RegExp | (() => RegExp);
  /** Text stderr must not contain (a stack trace, a raw errno). */
  notStderr?: RegExp;
  /** stderr has exactly this many lines (one clear line). */
  stderrLines?: number;
}

const FILES: Record<string, string> = {
  'typo.vsl': '#{ mail: [ rule "r" || chek_mail_relay("192.0.2.0/24") ] }\n',
  'two-bad-keys.vsl': [
    'fn on_config(config) {',
    '  config.server.name = "mx.test";',
    '  config.server.smtp.timeout = 5;',
    '  config.server.smtp.rcpt_count_max = "many";',
    '  config',
    '}',
    '#{}',
    '',
  ].join('\n'),
  'no-cert.vsl': [
    'fn on_config(config) {',
    '  config.server.tls.certificate = "/nonexistent/vsl-mta/cert.pem";',
    '  config.server.tls.private_key = "/nonexistent/vsl-mta/key.pem";',
    '  config',
    '}',
    '#{}',
    '',
  ].join('\n'),
};

let busyPort = 0;
let busy: net.Server;

const ROWS: Row[] = [
  { behaviour: 'mta run --help prints the options of run, not the general help', argv: () => ['run', '--help'], code: 0, stdout: /^usage: mta \[run\] --config main\.vsl[\s\S]*--workers N/ },
  { behaviour: 'an unknown --log-level is a usage error, not a stack trace', argv: (d) => ['run', '--config', DOE, '--log-level', 'loud', '--queue-dir', d], code: 2, stderr: /--log-level is one of trace, debug, info, warn, error/, notStderr: /internal error|\n\s+at .*:\d+:\d+\)/ },
  { behaviour: 'mta explain refuses a --client that is not an IP address', argv: () => ['explain', '--config', DOE, '--client', 'notanip', '--offline'], code: 2, stderr: /--client expects an IP address, got 'notanip'/ },
  { behaviour: 'mta check takes --set and reports a bad override on the command line, not at line 1', argv: () => ['check', DOE, '--set', 'server.smtp.timeout=5'], code: 1, stderr: /^command line: error: --set server\.smtp\.timeout=5: server\.smtp\.timeout: expected a string/m, notStderr: /main\.vsl:1:/ },
  { behaviour: 'mta check accepts a good --set', argv: () => ['check', DOE, '--set', 'server.smtp.timeout=2m'], code: 0 },
  { behaviour: 'an unknown function gets a "did you mean"', argv: (d) => ['check', path.join(d, 'typo.vsl')], code: 1, stderr: /unknown function 'chek_mail_relay'[\s\S]*did you mean check_mail_relay\?/ },
  { behaviour: 'both type errors of on_config are reported, each at the line that sets the key', argv: (d) => ['check', path.join(d, 'two-bad-keys.vsl')], code: 1, stderr: /two-bad-keys\.vsl:3:\d+: error: server\.smtp\.timeout: expected a string, got int[\s\S]*two-bad-keys\.vsl:4:\d+: error: server\.smtp\.rcpt_count_max: expected an int, got string/ },
  { behaviour: 'mta check fails a policy whose TLS certificate does not exist, at the line naming it', argv: (d) => ['check', path.join(d, 'no-cert.vsl')], code: 1, stderr: /no-cert\.vsl:2:\d+: error: server\.tls\.certificate: cannot read \/nonexistent\/vsl-mta\/cert\.pem: no such file/ },
  { behaviour: 'mta run with a missing TLS certificate exits 1 with the load error, not a raw ENOENT', argv: (d) => ['run', '--config', path.join(d, 'no-cert.vsl'), '--listen', '127.0.0.1:0', '--queue-dir', path.join(d, 'q-run'), '--workers', '0'], code: 1, stderr: /server\.tls\.certificate: cannot read/, notStderr: /ENOENT/ },
  { behaviour: 'mta queue without a subcommand prints its usage', argv: () => ['queue'], code: 2, stderr: /usage: mta queue list/, notStderr: /no queue directory/ },
  { behaviour: 'an empty quarantine list says there is no quarantined message', argv: (d) => ['queue', 'quarantine', 'list', '--queue-dir', path.join(d, 'queue')], code: 0, stdout: /^no quarantined messages$/m, },
  { behaviour: 'mta queue list shows the reply that failed a dead message', argv: (d) => ['queue', 'list', '--queue-dir', path.join(d, 'queue')], code: 0, stdout: /dead.*550 5\.1\.1 <bob@example\.net>: no such user/, },
  { behaviour: 'a listener address in use stops mta run at once with one line naming it (one process)', argv: (d) => ['run', '--config', DOE, '--listen', `127.0.0.1:${busyPort}`, '--queue-dir', path.join(d, 'q-bind0'), '--workers', '0'], code: 1, stderr: () => new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${busyPort}`), stderrLines: 1 },
  { behaviour: 'a listener address in use stops mta run at once with one line naming it (two workers)', argv: (d) => ['run', '--config', DOE, '--listen', `127.0.0.1:${busyPort}`, '--queue-dir', path.join(d, 'q-bind2'), '--workers', '2'], code: 1, stderr: () => new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${busyPort}`), stderrLines: 1 },
  { behaviour: 'an invalid --listen stops mta run at once with one line naming it (two workers)', argv: (d) => ['run', '--config', DOE, '--listen', 'no-port-here', '--queue-dir', path.join(d, 'q-bad'), '--workers', '2'], code: 1, stderr: /no-port-here/, stderrLines: 1 },
  { behaviour: 'mta config --changed prints what on_config set, postconf -n style', argv: () => ['config', '--config', DOE, '--changed'], code: 0, stdout: /^server\.domain = "doe-family\.com"$/m },
  { behaviour: 'mta config --json prints every key', argv: () => ['config', '--config', DOE, '--json'], code: 0, stdout: /"server\.smtp\.session_timeout": "30m"/ },
];

describe('mta command-line edges', () => {
  const dir = tempDir('vsl-cli-edges-');

  before(async () => {
    for (const [name, text] of Object.entries(FILES)) fs.writeFileSync(path.join(dir, name), text);
    busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    busyPort = (busy.address() as net.AddressInfo).port;
    // One dead message whose recipient was refused (what `queue list` must show).
    const spool = await Spool.open(path.join(dir, 'queue'));
    const id = await enqueueTestMessage(spool, 'alice@example.org', ['bob@example.net']);
    const r = await spool.readRecord(ACTIVE, id);
    Object.assign(r.recipients[0]!, { state: 'failed', last_error: '550 5.1.1 <bob@example.net>: no such user', status: '5.1.1' });
    r.dead_reason = 'delivery failed for 1 recipient(s)';
    await spool.writeRecord(ACTIVE, r);
    await spool.move(id, ACTIVE, DEAD);
  });

  after(() => {
    busy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const row of ROWS) {
    test(row.behaviour, () => {
      const argv = row.argv(dir);
      // A generous bound: the bug being guarded against kept the process up for good.
      const r = spawnSync(process.execPath, [MTA, ...argv], { cwd: dir, encoding: 'utf8', timeout: 15_000 });
      const shown = `mta ${argv.join(' ')}\nstatus ${r.status} ${r.signal ?? ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
      assert.equal(r.signal, null, `exited by itself\n${shown}`);
      assert.equal(r.status, row.code, shown);
      if (row.stdout) assert.match(r.stdout, row.stdout, shown);
      if (row.stderr) assert.match(r.stderr, typeof row.stderr === 'function' ? row.stderr() : row.stderr, shown);
      if (row.notStderr) assert.doesNotMatch(r.stderr, row.notStderr, shown);
      if (row.stderrLines !== undefined) assert.equal(r.stderr.trim().split('\n').length, row.stderrLines, shown);
    });
  }
});

describe('mta test --watch', () => {
  test('stays alive and reruns the transcripts when one is edited', async () => {
    const dir = tempDir('vsl-cli-watch-');
    fs.writeFileSync(path.join(dir, 'main.vsl'), '#{}\n');
    fs.mkdirSync(path.join(dir, 'tests'));
    const transcript = path.join(dir, 'tests', 'a.smtp');
    fs.writeFileSync(transcript, '@client 192.0.2.1\nS: 220\nC: EHLO c.test\nS: 250\n');
    const child = spawn(process.execPath, [MTA, 'test', 'tests', '--config', 'main.vsl', '--watch'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const runs = (): number => out.split('# watching').length - 1;
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (const deadline = Date.now() + 20_000; !ok(); ) {
        assert.equal(child.exitCode, null, `mta test --watch exited while waiting for ${what}:\n${out}`);
        assert.ok(Date.now() < deadline, `${what} did not happen:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await waitFor('the first run', () => runs() >= 1);
      assert.match(out, /^ok 1 /m);
      fs.appendFileSync(transcript, 'C: NOOP\nS: 250\n');
      await waitFor('a second run after the edit', () => runs() >= 2);
      assert.match(out.split('# watching')[1]!, /^ok 2 /m, 'the edited transcript ran with its new step');
      assert.equal(child.exitCode, null, 'still watching');
    } finally {
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (c) => r(c))));
      fs.rmSync(dir, { recursive: true, force: true });
      assert.equal(code, 0, 'SIGTERM ends the watch with status 0');
    }
  });
});
