// `mta relay-test` (issue "Hardening", must-show 1): against the real
// server over a socket and in-process against the same policies — the
// doe-family example refuses every probe, a policy accepting every
// recipient shows its holes, and nothing is ever queued.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { relayTestCommand } from '../../src/cli/relay-test.js';
import { controlProbe, relayProbes } from '../../src/tools/relaytest/probes.js';
import { makeTestCertificate } from '../helpers/tls-cert.js';
import { DOE_FAMILY, policyText, startFullServer } from './full-server.js';

interface JsonProbe {
  id: string;
  mail_from: string;
  rcpt_to: string;
  step: string;
  reply: string;
  verdict: string;
}

interface JsonReport {
  target: string;
  local_domain: string;
  notes: string[];
  control: JsonProbe;
  probes: JsonProbe[];
  summary: { total: number; refused: number; accepted: number; inconclusive: number; open_relay: boolean };
  exit_code: number;
}

async function relayTest(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io = { stdin: process.stdin, stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } };
  const code = await relayTestCommand(argv, io);
  return { code, out, err };
}

async function relayTestJson(argv: string[]): Promise<{ code: number; report: JsonReport }> {
  const r = await relayTest([...argv, '--json', '--helo', 'prober.example.net']);
  assert.equal(r.err, '', r.err);
  return { code: r.code, report: JSON.parse(r.out) as JsonReport };
}

const byId = (report: JsonReport): Map<string, JsonProbe> => new Map(report.probes.map((p) => [p.id, p]));

const OPEN_POLICY = policyText('  rcpt: [ rule "open" || accept() ],');

/** Probes the server's own path parser refuses whatever the policy says (SPEC §4.4). */
const REFUSED_BY_THE_PARSER: Record<string, string> = {
  'percent-hack': '554 5.7.1 Relay access denied',
  'percent-hack-quoted': '554 5.7.1 Relay access denied',
  'quoted-at': '554 5.7.1 Relay access denied',
  'escaped-at-quoted': '554 5.7.1 Relay access denied',
  'bang-path': '554 5.7.1 Relay access denied',
  'bang-path-reversed': '554 5.7.1 Relay access denied',
  'fullwidth-at': '554 5.7.1 Relay access denied',
  'small-at': '554 5.7.1 Relay access denied',
  'fullwidth-percent': '554 5.7.1 Relay access denied',
  'escaped-at': '501 5.1.3 Bad recipient address syntax',
  'double-at': '501 5.1.3 Bad recipient address syntax',
  'trailing-dot': '501 5.1.3 Bad recipient address syntax',
  'bang-path-no-domain': '554 5.7.1 Relay access denied',
  'percent-hack-no-domain': '554 5.7.1 Relay access denied',
};

describe('mta relay-test HOST:PORT against the real server', () => {
  test('the doe-family example refuses every relay probe from an outside client: exit 0, control accepted', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY() });
    try {
      const { code, report } = await relayTestJson([`127.0.0.1:${s.port}`]);
      assert.equal(code, 0);
      assert.equal(report.local_domain, 'doe-family.com', 'guessed from the greeting mx.doe-family.com');
      assert.ok(report.probes.length >= 35, `${report.probes.length} probes`);
      for (const p of report.probes) assert.equal(p.verdict, 'refused', `${p.id}: ${p.step}: ${p.reply}`);
      assert.deepEqual(report.summary, { total: report.probes.length, refused: report.probes.length, accepted: 0, inconclusive: 0, open_relay: false });
      assert.equal(report.control.verdict, 'ACCEPTED', 'postmaster@doe-family.com is taken: the client is not simply blocked');
      const p = byId(report);
      // Each class, with the reply that refused it.
      assert.deepEqual([p.get('third-party')!.step, p.get('third-party')!.reply], ['rcpt', '554 5.7.1 Relay access denied']);
      assert.deepEqual([p.get('null-sender')!.step, p.get('null-sender')!.reply], ['rcpt', '554 5.7.1 Relay access denied']);
      assert.deepEqual([p.get('spoofed-local-sender')!.step, p.get('spoofed-local-sender')!.reply], ['mail', '554 5.7.1 Relay access denied'], 'check_mail_relay');
      for (const id of ['source-route', 'source-route-two-hops', 'ip-literal', 'ipv6-literal', 'loopback-literal', 'lookalike-suffix', 'lookalike-glued', 'lookalike-subdomain', 'case-upper', 'case-mixed', 'fullwidth-domain']) {
        assert.deepEqual([p.get(id)!.step, p.get(id)!.reply], ['rcpt', '554 5.7.1 Relay access denied'], id);
      }
      for (const [id, reply] of Object.entries(REFUSED_BY_THE_PARSER)) assert.equal(p.get(id)!.reply, reply, id);
      assert.deepEqual(await s.spooled(), [], 'a relay test never sends DATA');
    } finally {
      await s.stop();
    }
  });

  test('the text report prints each probe, its reply and its verdict, and the result', async () => {
    const s = await startFullServer({ policy: DOE_FAMILY() });
    try {
      const { code, out } = await relayTest([`127.0.0.1:${s.port}`, '--local-domain', 'doe-family.com', '--helo', 'prober.example.net']);
      assert.equal(code, 0);
      assert.match(out, /^refused +percent-hack +MAIL <relaytest@example\.net> {2}RCPT <relaytest%example\.org@doe-family\.com>\n {10}rcpt: 554 5\.7\.1 Relay access denied$/m);
      assert.match(out, /^control: MAIL <relaytest@example\.net> RCPT <postmaster@doe-family\.com>: accepted \(rcpt: 250 2\.1\.5 Ok\)$/m);
      assert.match(out, /^result: no open relay found: all \d+ probes refused$/m);
    } finally {
      await s.stop();
    }
  });

  test('a policy accepting every recipient is reported as an open relay, hole by hole: exit 1', async () => {
    const s = await startFullServer({ policy: OPEN_POLICY });
    try {
      const { code, report } = await relayTestJson([`127.0.0.1:${s.port}`]);
      assert.equal(code, 1);
      assert.equal(report.summary.open_relay, true);
      const p = byId(report);
      const holes = ['third-party', 'null-sender', 'spoofed-local-sender', 'source-route', 'source-route-two-hops', 'ip-literal', 'ipv6-literal', 'loopback-literal', 'lookalike-suffix', 'lookalike-glued', 'lookalike-subdomain', 'case-upper', 'case-mixed', 'fullwidth-domain'];
      for (const id of holes) assert.deepEqual([p.get(id)!.verdict, p.get(id)!.step, p.get(id)!.reply], ['ACCEPTED', 'rcpt', '250 2.1.5 Ok'], id);
      // Routing in the local part never reaches the policy: refused even here.
      for (const [id, reply] of Object.entries(REFUSED_BY_THE_PARSER)) assert.deepEqual([p.get(id)!.verdict, p.get(id)!.reply], ['refused', reply], id);
      assert.equal(report.summary.accepted, report.probes.filter((x) => x.verdict === 'ACCEPTED').length);
      assert.deepEqual(await s.spooled(), [], 'holes are found without sending mail');
      const text = await relayTest([`127.0.0.1:${s.port}`]);
      assert.equal(text.code, 1);
      assert.match(text.out, /^ACCEPTED +third-party +MAIL <relaytest@example\.net> {2}RCPT <relaytest@example\.org>\n {10}rcpt: 250 2\.1\.5 Ok$/m);
      assert.match(text.out, /^result: OPEN RELAY: \d+ of \d+ probes accepted \(third-party, null-sender, /m);
    } finally {
      await s.stop();
    }
  });

  test('without rcpt rules the built-in relay guard refuses every probe (relay_networks emptied)', async () => {
    const s = await startFullServer({ policy: policyText('', 'config.server.relay_networks = [];') });
    try {
      const { code, report } = await relayTestJson([`127.0.0.1:${s.port}`]);
      for (const p of report.probes) assert.equal(p.verdict, 'refused', `${p.id}: ${p.reply}`);
      assert.equal(code, 0);
    } finally {
      await s.stop();
    }
  });

  test('with the default relay_networks the loopback client may relay, and the test says so', async () => {
    const s = await startFullServer({ policy: policyText('') });
    try {
      const { code, report } = await relayTestJson([`127.0.0.1:${s.port}`]);
      assert.equal(code, 1);
      assert.equal(byId(report).get('third-party')!.verdict, 'ACCEPTED');
    } finally {
      await s.stop();
    }
  });

  test('--starttls finds a hole that only TLS clients see; without it the probes stay in plaintext', async () => {
    const cert = await makeTestCertificate('mx.doe-family.com');
    const tlsOnly = policyText('  rcpt: [ rule "open under tls" || if ctx::is_secured() { accept() } else { reject("530 5.7.0 Must issue a STARTTLS command first") } ],');
    const s = await startFullServer({ policy: tlsOnly, set: [`server.tls.certificate=${JSON.stringify(cert.certPath)}`, `server.tls.private_key=${JSON.stringify(cert.keyPath)}`] }).catch(async (e: unknown) => {
      await cert.cleanup();
      throw e;
    });
    try {
      const plain = await relayTestJson([`127.0.0.1:${s.port}`]);
      assert.equal(plain.code, 0);
      assert.equal(byId(plain.report).get('third-party')!.reply, '530 5.7.0 Must issue a STARTTLS command first');
      const secure = await relayTestJson([`127.0.0.1:${s.port}`, '--starttls']);
      assert.equal(secure.code, 1);
      assert.deepEqual([byId(secure.report).get('third-party')!.verdict, byId(secure.report).get('third-party')!.reply], ['ACCEPTED', '250 2.1.5 Ok']);
      assert.ok(secure.report.notes.includes('each probe upgrades with STARTTLS before MAIL'));
    } finally {
      await s.stop();
      await cert.cleanup();
    }
  });

  test('a server answering 4xx (greylisting) is inconclusive, not a pass: exit 3', async () => {
    const s = await startFullServer({ policy: policyText('  rcpt: [ rule "grey" || reject("451 4.7.1 try again later") ],') });
    try {
      const { code, report } = await relayTestJson([`127.0.0.1:${s.port}`]);
      assert.equal(code, 3);
      assert.equal(byId(report).get('third-party')!.verdict, 'deferred');
      assert.equal(report.summary.accepted, 0);
    } finally {
      await s.stop();
    }
  });
});

describe('mta relay-test --config (in-process)', () => {
  /** Socket and in-process results, probe by probe: step, reply and verdict. */
  async function bothWays(policy: string): Promise<{ socket: JsonReport; inProcess: JsonReport; codes: [number, number] }> {
    const s = await startFullServer({ policy });
    try {
      const a = await relayTestJson([`127.0.0.1:${s.port}`, '--local-domain', 'doe-family.com']);
      const b = await relayTestJson(['--config', s.mainPath, '--offline']);
      return { socket: a.report, inProcess: b.report, codes: [a.code, b.code] };
    } finally {
      await s.stop();
    }
  }

  const row = (p: JsonProbe): string => `${p.id} ${p.step} ${p.verdict} ${p.reply}`;

  test('doe-family: every probe refused from 203.0.113.9, with the replies the server gives over a socket', async () => {
    const { socket, inProcess, codes } = await bothWays(DOE_FAMILY());
    assert.deepEqual(codes, [0, 0]);
    assert.match(inProcess.target, /client 203\.0\.113\.9$/);
    assert.deepEqual(inProcess.probes.map(row), socket.probes.map(row));
    assert.equal(inProcess.control.verdict, 'ACCEPTED');
  });

  test('the open policy: the same holes in-process as over the socket, exit 1', async () => {
    const { socket, inProcess, codes } = await bothWays(OPEN_POLICY);
    assert.deepEqual(codes, [1, 1]);
    assert.deepEqual(inProcess.probes.map(row), socket.probes.map(row));
  });

  test('a client inside doe-family internal_net may relay: --client 192.168.1.10 shows the holes', async () => {
    const { code, report } = await relayTestJson(['--config', DOE_FAMILY(), '--offline', '--client', '192.168.1.10']);
    assert.equal(code, 1);
    assert.equal(byId(report).get('third-party')!.verdict, 'ACCEPTED');
    assert.equal(byId(report).get('percent-hack')!.verdict, 'refused', 'the parser refuses routing for everyone');
  });
});

describe('mta relay-test usage and failures', () => {
  test('usage errors exit 2', async () => {
    for (const argv of [[], ['a:1', 'b:2'], ['host:99999'], ['--config', 'x.vsl', 'host:25'], ['host:25', '--client', '192.0.2.1'], ['host:25', '--from-domain', 'not a domain'], ['host:25', '--timeout', '0'], ['--config', 'x.vsl', '--starttls'], ['--bogus']]) {
      const r = await relayTest(argv);
      assert.equal(r.code, 2, JSON.stringify(argv));
      assert.match(r.err, /^mta relay-test: .*\n\nusage: mta relay-test/, JSON.stringify(argv));
    }
    const help = await relayTest(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /Exit status: 0 every probe refused, 1 a probe was accepted/);
  });

  test('an unreachable server is inconclusive: exit 3 and a message', async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const r = await relayTest([`127.0.0.1:${port}`, '--local-domain', 'doe-family.com']);
    assert.equal(r.code, 3);
    assert.match(r.err, /^mta relay-test: 127\.0\.0\.1:\d+: cannot connect: .*ECONNREFUSED/);
  });

  test('a server that never answers gives error verdicts after --timeout, and the run is inconclusive', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const r = await relayTest([`127.0.0.1:${port}`, '--timeout', '0.2']);
      assert.equal(r.code, 3);
      assert.match(r.err, /timeout: no reply within 200 ms/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  test('a hostile server cannot write control characters to the terminal, and its 250s are holes', async () => {
    // Answers everything with 250 and an escape sequence.
    const liar = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write('220 mx.liar.example ready\r\n');
      sock.on('data', (d) => {
        for (const line of d.toString('latin1').split('\r\n').filter(Boolean)) {
          if (line.startsWith('QUIT')) sock.end('221 bye\r\n');
          else sock.write('250 ok \x1b[2J\x07 sure\r\n');
        }
      });
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (liar.address() as net.AddressInfo).port;
      const r = await relayTest([`127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.doesNotMatch(r.out, /[\x00-\x08\x0b-\x1f\x7f]/, 'no control characters but newlines in the output');
      assert.match(r.out, /rcpt: 250 ok \?\[2J\? sure/);
      assert.match(r.out, /local domain liar\.example guessed from the greeting name mx\.liar\.example/);
    } finally {
      await new Promise((r) => liar.close(r));
    }
  });
});

describe('the probe list', () => {
  test('covers every class of the issue, against the given domains, without duplicates', () => {
    const probes = relayProbes({ local: 'doe-family.com', sender: 'example.net', outside: 'example.org', serverIp: '192.0.2.25' });
    const ids = probes.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ['third-party', 'null-sender', 'spoofed-local-sender', 'percent-hack', 'quoted-at', 'double-at', 'source-route', 'bang-path', 'ip-literal', 'ipv6-literal', 'lookalike-suffix', 'lookalike-glued', 'lookalike-subdomain', 'case-upper', 'case-mixed', 'trailing-dot', 'fullwidth-at', 'server-literal']) {
      assert.ok(ids.includes(id), id);
    }
    assert.equal(probes.find((p) => p.id === 'server-literal')!.rcptTo, '<relaytest@[192.0.2.25]>');
    assert.equal(probes.find((p) => p.id === 'fullwidth-at')!.smtputf8, true);
    assert.equal(probes.find((p) => p.id === 'percent-hack')!.smtputf8, false);
    assert.deepEqual(controlProbe({ local: 'doe-family.com', sender: 'example.net', outside: 'example.org' }).rcptTo, '<postmaster@doe-family.com>');
  });
});
