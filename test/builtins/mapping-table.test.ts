// mapping::check (SPEC §8.4): the ORIG_SEND_ACCESS sample table of the
// Messaging Server relay-blocking article (examples/msgsrv/mappings), the
// probe strings, pattern wildcards and escapes, template flags, $D delays
// through an injected clock, and malformed files.

import { fromRoot } from '../helpers/paths.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import type { Clock } from '../../src/host/ports.js';
import { legacyBuiltins } from '../../src/builtins/legacy/builtins.js';
import { evaluateMapping, findEntry, mailAccessProbe, parseMappingFile, patternMatches, portAccessProbe, probeFor, sendAccessProbe, type AccessTableName, type MappingFile } from '../../src/builtins/legacy/mapping-table.js';
import type { LegacyProbe } from '../../src/builtins/legacy/probe.js';
import type { Config } from '../../src/config/schema.js';
import type { MailAddress } from '../../src/mail/types.js';
import { Status } from '../../src/vsl/values/status.js';
import { makeHostCall } from '../helpers/host-call.js';

const MAPPINGS = fromRoot('examples/msgsrv/mappings');

const silent = pino({ level: 'silent' });

function recordingClock(): Clock & { waits: number[] } {
  const waits: number[] = [];
  return { waits, now: () => 0, sleep: async (ms) => void waits.push(ms) };
}

function addr(local: string, domain: string, raw = `<${local}@${domain}>`): MailAddress {
  return { local, domain, raw, isNull: false };
}

function probe(over: Partial<LegacyProbe> = {}): LegacyProbe {
  return {
    clientIp: '203.0.113.9',
    clientPort: 40123,
    serverIp: '192.0.2.25',
    serverPort: 25,
    helo: 'client.example.net',
    sender: addr('alice', 'example.net'),
    recipient: addr('bob', 'yourdomain.com'),
    authenticated: false,
    relayNetworks: ['127.0.0.0/8', '192.168.1.0/24'],
    localDomains: { domain: 'yourdomain.com', virtual: ['other.example'] },
    recipientDelimiter: '+',
    pipeliningViolation: false,
    ...over,
  };
}

function parsed(text: string): MappingFile {
  const r = parseMappingFile(text, 'mappings');
  assert.deepEqual(r.diagnostics, [], 'the test table parses cleanly');
  return r.value;
}

const sample = parsed(readFileSync(MAPPINGS, 'utf8'));

async function check(file: MappingFile, table: AccessTableName, p: LegacyProbe, clock = recordingClock()) {
  return evaluateMapping(file, table, probeFor(table, p), { clock, log: silent });
}

/** The four explicitly routed forms of an internal address, as a client would write them. */
const ROUTED: MailAddress[] = [
  addr('bob', 'yourdomain.com', '<@relay.yourdomain.com,@gw.example.net:bob@yourdomain.com>'),
  addr('bob%elsewhere.test', 'yourdomain.com'),
  addr('gw.example.net!bob', 'yourdomain.com'),
  addr('"bob@elsewhere.test"', 'yourdomain.com'),
];

describe('ORIG_SEND_ACCESS sample table', () => {
  test('the sample file parses into one access table with every entry', () => {
    const t = sample.tables.get('ORIG_SEND_ACCESS');
    assert.ok(t);
    assert.equal(t.entries.length, 10);
  });

  test('an outside client relaying to a foreign domain is refused with 550 5.7.1 Relaying not permitted', async () => {
    const d = await check(sample, 'ORIG_SEND_ACCESS', probe({ recipient: addr('u', 'external.test') }));
    assert.equal(d.kind, 'reject');
    assert.equal(d.reply, '550 5.7.1 Relaying not permitted');
    assert.equal(d.matched?.line, 7);
  });

  test('mail from outside to a local domain passes on (next)', async () => {
    assert.equal((await check(sample, 'ORIG_SEND_ACCESS', probe())).kind, 'next');
    const virt = await check(sample, 'ORIG_SEND_ACCESS', probe({ recipient: addr('x', 'OTHER.example') }));
    assert.equal(virt.kind, 'next');
  });

  test('internal and authenticated clients may relay', async () => {
    const out = addr('u', 'external.test');
    assert.equal((await check(sample, 'ORIG_SEND_ACCESS', probe({ clientIp: '192.168.1.40', recipient: out }))).kind, 'next');
    assert.equal((await check(sample, 'ORIG_SEND_ACCESS', probe({ authenticated: true, recipient: out }))).kind, 'next');
  });

  test('the four explicit-routing forms from outside are refused with Explicit routing not allowed after $D30', async () => {
    for (const rcpt of ROUTED) {
      const clock = recordingClock();
      const d = await check(sample, 'ORIG_SEND_ACCESS', probe({ recipient: rcpt }), clock);
      assert.equal(d.kind, 'reject', rcpt.raw);
      assert.equal(d.reply, '550 5.7.1 Explicit routing not allowed', rcpt.raw);
      assert.deepEqual(clock.waits, [30_000], `${rcpt.raw} waited 30 s`);
      assert.equal(d.delayMs, 30_000);
    }
  });

  test('each routed form is caught by its own line', async () => {
    const lines = await Promise.all(ROUTED.map(async (r) => (await check(sample, 'ORIG_SEND_ACCESS', probe({ recipient: r }))).matched?.line));
    assert.deepEqual(lines, [18, 19, 20, 21]);
  });

  test('explicit routing from the internal network is not refused', async () => {
    for (const rcpt of ROUTED) {
      const clock = recordingClock();
      const d = await check(sample, 'ORIG_SEND_ACCESS', probe({ clientIp: '192.168.1.40', recipient: rcpt }), clock);
      assert.equal(d.kind, 'next', rcpt.raw);
      assert.deepEqual(clock.waits, []);
    }
  });

  test('the probe is src|sender|dst|recipient, with the recipient as received', () => {
    assert.equal(sendAccessProbe(probe({ recipient: addr('u', 'external.test') }), 'as-received'), 'tcp_local|alice@example.net|tcp_local|u@external.test');
    assert.equal(sendAccessProbe(probe(), 'as-received'), 'tcp_local|alice@example.net|l|bob@yourdomain.com');
    assert.equal(sendAccessProbe(probe({ recipient: ROUTED[0] }), 'as-received'), 'tcp_local|alice@example.net|tcp_intranet|@relay.yourdomain.com,@gw.example.net:bob@yourdomain.com');
    assert.equal(sendAccessProbe(probe({ recipient: ROUTED[0] }), 'canonical'), 'tcp_local|alice@example.net|tcp_intranet|bob@yourdomain.com');
    assert.equal(sendAccessProbe(probe({ sender: { local: '', domain: '', raw: '<>', isNull: true }, authenticated: true }), 'canonical'), 'tcp_auth||l|bob@yourdomain.com');
    assert.equal(sendAccessProbe(probe({ clientIp: '127.0.0.1' }), 'canonical'), 'tcp_intranet|alice@example.net|l|bob@yourdomain.com');
  });

  test('a | in an address cannot forge a field of the probe', async () => {
    const file = parsed('ORIG_SEND_ACCESS\n  tcp_local|*|l|*  $Y\n  tcp_local|*|tcp_local|*  $NRelaying$ not$ permitted\n');
    const forged = probe({ sender: addr('x|l|', 'evil.test'), recipient: addr('victim', 'external.test') });
    assert.equal(sendAccessProbe(forged, 'as-received'), 'tcp_local|x%7Cl%7C@evil.test|tcp_local|victim@external.test');
    assert.equal((await check(file, 'ORIG_SEND_ACCESS', forged)).kind, 'reject');
  });
});

describe('other tables and templates', () => {
  test('PORT_ACCESS refusals deny (close) and use a coded text as-is', async () => {
    const file = parsed('PORT_ACCESS\n  TCP|*|25|$(198.51.100.0/24)|*  $N500$ 5.7.1$ go$ away\n  TCP|*|*|*|*  $Y\n');
    assert.equal(portAccessProbe(probe()), 'TCP|192.0.2.25|25|203.0.113.9|40123');
    const d = await check(file, 'PORT_ACCESS', probe({ clientIp: '198.51.100.77' }));
    assert.equal(d.kind, 'deny');
    assert.equal(d.reply, '500 5.7.1 go away');
    assert.equal((await check(file, 'PORT_ACCESS', probe())).kind, 'accept');
  });

  test('SEND_ACCESS sees the canonical recipient, ORIG_SEND_ACCESS the one received', async () => {
    const file = parsed('SEND_ACCESS\n  *|*|*|@*  $N\nORIG_SEND_ACCESS\n  *|*|*|@*  $N\n');
    const p = probe({ recipient: ROUTED[0] });
    assert.equal((await check(file, 'SEND_ACCESS', p)).kind, 'next');
    assert.equal((await check(file, 'ORIG_SEND_ACCESS', p)).kind, 'reject');
  });

  test('MAIL_ACCESS probes the port probe, SMTP/<helo>, then the send probe', async () => {
    assert.equal(
      mailAccessProbe(probe()),
      'TCP|192.0.2.25|25|203.0.113.9|40123|SMTP/client.example.net|tcp_local|alice@example.net|l|bob@yourdomain.com',
    );
    const file = parsed('MAIL_ACCESS\n  TCP|*|SMTP/%.example.net|*  $N|Bad$ helo\n');
    assert.equal((await check(file, 'MAIL_ACCESS', probe())).reply, '550 5.7.1 Bad helo');
    assert.equal((await check(file, 'MAIL_ACCESS', probe({ helo: 'a.b.example.net' }))).kind, 'next', '% does not cross a dot');
  });

  test('$N and $F without text refuse with 550 5.7.1 Access denied; $Y accepts; no flag continues', async () => {
    const file = parsed('SEND_ACCESS\n  *|a@*  $N\n  *|b@*  $F\n  *|c@*  $Y\n  *|d@*  |just$ text\n');
    const send = (local: string) => check(file, 'SEND_ACCESS', probe({ sender: addr(local, 'x.test') }));
    assert.equal((await send('a')).reply, '550 5.7.1 Access denied');
    assert.equal((await send('b')).kind, 'reject');
    assert.equal((await send('c')).kind, 'accept');
    assert.equal((await send('d')).kind, 'next');
    assert.equal((await send('e')).kind, 'next');
  });

  test('a text starting with a 4xx code is used as-is', async () => {
    const file = parsed('SEND_ACCESS\n  *  $N|451$ 4.7.1$ try$ later\n');
    assert.equal((await check(file, 'SEND_ACCESS', probe())).reply, '451 4.7.1 try later');
  });

  test('the first matching entry wins', async () => {
    const file = parsed('SEND_ACCESS\n  *|*|l|*  $Y\n  *  $N\n');
    assert.equal((await check(file, 'SEND_ACCESS', probe())).kind, 'accept');
    assert.equal((await check(file, 'SEND_ACCESS', probe({ recipient: addr('u', 'ext.test') }))).kind, 'reject');
  });

  test('a table the file lacks is an error, not a silent pass', async () => {
    await assert.rejects(check(sample, 'SEND_ACCESS', probe()), /no table SEND_ACCESS/);
  });
});

describe('patterns', () => {
  const tokens = (pattern: string) => {
    const r = parseMappingFile(`T_ACCESS\nSEND_ACCESS\n  ${pattern}  $Y\n`, 'f');
    assert.deepEqual(r.diagnostics, []);
    return r.value.tables.get('SEND_ACCESS')!.entries[0]!.tokens;
  };
  const m = (pattern: string, s: string) => patternMatches(tokens(pattern), s.toLowerCase());

  test('* matches any run, including empty and across | and .', () => {
    assert.ok(m('a*b', 'ab'));
    assert.ok(m('a*b', 'a.x|y.b'));
    assert.ok(!m('a*b', 'a.x|y.bc'));
    assert.ok(m('*', ''));
  });

  test('% matches a run without dots', () => {
    assert.ok(m('%@example.com', 'bob@example.com'));
    assert.ok(!m('%@example.com', 'b.ob@example.com'));
    assert.ok(m('x%.y', 'x.y'));
  });

  test('$(a.b.c.d/n) matches an IP address in that prefix', () => {
    assert.ok(m('TCP|*|*|$(192.168.0.0/16)|*', 'tcp|192.0.2.1|25|192.168.44.3|5000'));
    assert.ok(!m('TCP|*|*|$(192.168.0.0/16)|*', 'tcp|192.0.2.1|25|192.169.44.3|5000'));
    assert.ok(m('$(10.1.2.3)', '10.1.2.3'));
    assert.ok(!m('$(10.1.2.3)', '10.1.2.34'));
    assert.ok(m('$(2001:db8::/32)|*', '2001:db8::5|x'));
  });

  test('$ escapes the next character; matching ignores case', () => {
    assert.ok(m('a$ b', 'a b'));
    assert.ok(m('100$%', '100%'));
    assert.ok(!m('100$%', '100x'));
    assert.ok(m('$*', '*'));
    assert.ok(!m('$*', 'x'));
    assert.ok(m('$$', '$'));
    assert.ok(m('TCP_LOCAL|*', 'tcp_local|x'));
  });

  test('template escapes: $ space, $$ and $| in the text', async () => {
    const file = parsed('SEND_ACCESS\n  *  $N|5.7.1$ a$$b$|c\n');
    assert.equal((await check(file, 'SEND_ACCESS', probe())).reply, '550 5.7.1 5.7.1 a$b|c');
  });

  test('a pattern with many stars against a long probe stays fast (no backtracking blow-up)', () => {
    const toks = tokens('*a*a*a*a*a*a*a*a*a*a*a*a*b');
    assert.ok(!patternMatches(toks, 'a'.repeat(5000)));
    const entry = findEntry({ name: 'X', line: 1, entries: [{ line: 1, pattern: '', tokens: toks, template: { accept: true, refuse: false, delaySec: null, text: null } }] }, `${'a'.repeat(100)}b`);
    assert.ok(entry);
  });
});

describe('malformed mapping files', () => {
  test('bad flags and other mistakes are reported with their line', () => {
    const text = [
      '  stray  $N', //                      1 entry before any table
      'SEND_ACCESS', //                      2
      '  *|a@*  $X', //                      3 unknown flag
      '  *|b@*  $N$D', //                    4 $D without seconds
      '  *|c@*  $NRelaying not', //          5 unescaped space
      '  *|d@*', //                          6 no template
      '  *|$(10.0.0/33)|*  $N', //           7 bad IP prefix
      '  *|e@*  $Y$N', //                    8 both
      'SEND_ACCESS', //                      9 defined twice
      'REVERSE', //                         10 another table: ignored
      '  anything  $Zwhatever', //          11 not validated
      'ORIG_SEND_ACCESS', //                12
      '  ok  $N', //                        13
    ].join('\n');
    const r = parseMappingFile(text, 'mappings');
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    assert.deepEqual(errors.map((d) => d.line), [1, 3, 4, 5, 6, 7, 8, 9]);
    const at = (n: number) => errors.find((d) => d.line === n)!;
    assert.match(at(3).message, /unknown flag \$X/);
    assert.equal(at(3).col, 10);
    assert.match(at(4).message, /\$D needs a number/);
    assert.match(at(5).message, /unexpected text after the template/);
    assert.match(at(6).message, /no template/);
    assert.match(at(7).message, /invalid IP prefix/);
    assert.match(at(9).message, /already defined at line 2/);
    assert.ok(r.value.tables.get('ORIG_SEND_ACCESS')!.entries.length === 1);
  });
});

describe('the mapping::check built-in', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'map-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'mappings'), readFileSync(MAPPINGS));
  writeFileSync(path.join(dir, 'ports'), 'PORT_ACCESS\n  TCP|*|*|$(203.0.113.0/24)|*  $N$D2|554$ 5.7.1$ go$ away\n');
  const builtin = legacyBuiltins.find((b) => b.name === 'mapping::check')!;
  const configure = (c: Config) => {
    c.server.domain = 'yourdomain.com';
  };

  test('is an I/O built-in taking a path and a table', () => {
    assert.equal(builtin.io, true);
    assert.equal(builtin.arity, 2);
  });

  test('ORIG_SEND_ACCESS from rcpt refuses relaying from outside and waits $D through the policy clock', async () => {
    const clock = recordingClock();
    const call = makeHostCall({
      stage: 'rcpt', fileDir: dir, configure, clock,
      session: { clientIp: '203.0.113.9' },
      txn: { currentRcpt: addr('u', 'external.test') },
    });
    const s = (await builtin.fn(call, ['mappings', 'ORIG_SEND_ACCESS'])) as Status;
    assert.ok(s instanceof Status);
    assert.equal(s.kind, 'reject');
    assert.match(s.debug(), /550 5\.7\.1 Relaying not permitted/);
    const routed = makeHostCall({
      stage: 'rcpt', fileDir: dir, configure, clock,
      session: { clientIp: '203.0.113.9' },
      txn: { currentRcpt: ROUTED[0] },
    });
    const r = (await builtin.fn(routed, ['mappings', 'orig_send_access'])) as Status;
    assert.match(r.debug(), /Explicit routing not allowed/);
    assert.deepEqual(clock.waits, [30_000]);
  });

  test('PORT_ACCESS works at connect and denies', async () => {
    const clock = recordingClock();
    const call = makeHostCall({ stage: 'connect', fileDir: dir, configure, clock, session: { clientIp: '203.0.113.9' }, txn: null });
    const s = (await builtin.fn(call, ['ports', 'PORT_ACCESS'])) as Status;
    assert.equal(s.kind, 'deny');
    assert.match(s.debug(), /554 5\.7\.1 go away/);
    assert.deepEqual(clock.waits, [2000]);
  });

  test('a recipient table before rcpt is E_TOO_EARLY; an unknown table is an error', async () => {
    const call = makeHostCall({ stage: 'connect', fileDir: dir, configure, txn: null });
    await assert.rejects(Promise.resolve(builtin.fn(call, ['mappings', 'ORIG_SEND_ACCESS'])), /E_TOO_EARLY: mapping::check\(ORIG_SEND_ACCESS\) is available from stage rcpt/);
    await assert.rejects(Promise.resolve(builtin.fn(call, ['mappings', 'REVERSE'])), /mapping::check: unknown table 'REVERSE'/);
  });
});
