// `mta milter` on the wire, with a raw milter client playing the MTA:
// negotiation, the replies of each step, end-of-message modifications with
// Postfix's header indexes, and what malformed input gets.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cstr, uint32 } from '../../src/milter/wire.js';
import { MilterClient } from './milter-client.js';
import { onConfig, startTestFront, type TestFront } from './front-fixture.js';

const POLICY = `
${onConfig('example.org')}
#{
  rcpt: [
    rule "broken" || if ctx::rcpt() == address("broken@example.org") { throw "lookup failed"; } else { next() },
    rule "local only" || if ctx::rcpt().domain == "example.org" { next() } else { reject("550 5.7.1 not here") },
  ],
  preq: [
    action "edit headers" || {
      msg::set_header("Subject", "[checked] hello");
      msg::rm_header("X-Old");
      msg::prepend_header("X-Top", "first");
      msg::append_header("X-Bottom", "last");
    },
  ],
}
`;

const ONLY_RCPT = `
fn on_config(config) { config.server.domain = "example.org"; config }
#{ rcpt: [ rule "any" || next() ] }
`;

const NR_CONN = 0x1000;
const NR_HELO = 0x2000;

/** A client through connect and helo (answered only when negotiated so). */
async function connected(port: number): Promise<MilterClient> {
  const c = await MilterClient.connect(port);
  const steps = (await c.negotiate())!.data.readUInt32BE(8);
  c.send('C', ...c.connectInfo('client.example', '203.0.113.5'));
  if ((steps & NR_CONN) === 0) assert.equal((await c.read())!.cmd, 'c');
  c.send('H', cstr('client.example'));
  if ((steps & NR_HELO) === 0) assert.equal((await c.read())!.cmd, 'c');
  return c;
}

/** A client through connect, helo and mail, ready for recipients. */
async function inTransaction(port: number): Promise<MilterClient> {
  const c = await connected(port);
  c.send('M', cstr('<a@remote.example>'));
  assert.equal((await c.read())!.cmd, 'c');
  return c;
}

describe('mta milter protocol', () => {
  let front: TestFront;
  let plain: TestFront;

  before(async () => {
    front = await startTestFront('milter', { files: { 'main.vsl': POLICY } });
    plain = await startTestFront('milter', { files: { 'main.vsl': ONLY_RCPT } });
  });
  after(async () => {
    await front?.stop();
    await plain?.stop();
  });

  it('negotiates the modification actions and skips the content steps when preq has no rules', async () => {
    for (const [f, skipsContent] of [[front, false], [plain, true]] as const) {
      const c = await MilterClient.connect(f.port);
      const reply = (await c.negotiate())!;
      assert.equal(reply.cmd, 'O');
      assert.equal(reply.data.readUInt32BE(0), 6);
      assert.equal(reply.data.readUInt32BE(4), 0x7f, 'headers, body, recipients, quarantine, sender');
      const steps = reply.data.readUInt32BE(8);
      assert.equal((steps & 0x20) !== 0, skipsContent, 'SMFIP_NOHDRS');
      assert.equal((steps & 0x10) !== 0, skipsContent, 'SMFIP_NOBODY');
      assert.ok((steps & 0x200) !== 0, 'SMFIP_NODATA: no stage at DATA');
      assert.ok((steps & NR_CONN) !== 0 && (steps & NR_HELO) !== 0, 'no reply awaited at connect and helo: they have no rules');
      c.destroy();
    }
  });

  it('answers a recipient refusal with the policy exact code and text', async () => {
    const c = await inTransaction(front.port);
    c.send('R', cstr('<x@example.net>'));
    const r = (await c.read())!;
    assert.equal(r.cmd, 'y');
    assert.equal(r.data.toString('utf8'), '550 5.7.1 not here\0');
    c.destroy();
  });

  it('starts a fresh transaction after an abort on the same connection', async () => {
    const c = await inTransaction(front.port);
    c.send('R', cstr('<x@example.net>'));
    assert.equal((await c.read())!.cmd, 'y');
    c.send('A');
    c.send('M', cstr('<b@remote.example>'), cstr('SIZE=100'));
    assert.equal((await c.read())!.cmd, 'c');
    c.send('R', cstr('<bob@example.org>'));
    assert.equal((await c.read())!.cmd, 'c');
    c.destroy();
  });

  it('answers a rule error with 451 4.3.0, never an accept', async () => {
    const c = await inTransaction(front.port);
    c.send('R', cstr('<broken@example.org>'));
    const r = (await c.read())!;
    assert.equal(r.cmd, 'y');
    assert.match(r.data.toString('utf8'), /^451 4\.3\.0 /);
    c.destroy();
  });

  it('sends the header changes at end of message with Postfix indexes, bottom up', async () => {
    const c = await inTransaction(front.port);
    c.send('R', cstr('<bob@example.org>'));
    assert.equal((await c.read())!.cmd, 'c');
    c.send('L', cstr('X-Old'), cstr('one'));
    c.send('L', cstr('Subject'), cstr('hello'));
    c.send('L', cstr('X-Old'), cstr('two'));
    c.send('N');
    c.send('B', Buffer.from('Hi Bob.\r\n'));
    c.send('E');
    const got: string[] = [];
    for (;;) {
      const p = (await c.read())!;
      if (p.cmd === 'c' || p.cmd === 'a' || p.cmd === 'y' || p.cmd === 't') {
        got.push(p.cmd);
        break;
      }
      const indexed = p.cmd === 'm' || p.cmd === 'i';
      const strings = p.data.subarray(indexed ? 4 : 0).toString('utf8').split('\0').slice(0, -1);
      got.push(`${p.cmd}${indexed ? ` ${p.data.readUInt32BE(0)}` : ''} ${strings.join('=')}`);
    }
    assert.deepEqual(got, [
      'm 2 X-Old=',                 // the second X-Old first, so the first keeps its index
      'm 1 Subject=[checked] hello',
      'm 1 X-Old=',
      'h X-Bottom=last',
      'i 1 X-Top=first',            // below Postfix's own Received:, above the first shown header
      'c',
    ]);
    c.destroy();
  });

  it('replies TEMPFAIL to a malformed packet and keeps the connection', async () => {
    const c = await connected(front.port);
    c.send('M', Buffer.from('<no-terminator@remote.example>'));
    assert.equal((await c.read())!.cmd, 't');
    c.send('M', cstr('<a@remote.example>'));
    assert.equal((await c.read())!.cmd, 'c');
    c.destroy();
  });

  it('closes on an oversized packet, and on an unknown command, and keeps serving other connections', async () => {
    const big = await MilterClient.connect(front.port);
    big.write(Buffer.concat([uint32(10 * 1024 * 1024), Buffer.from('B')]));
    assert.equal(await big.read(), null, 'closed');

    const unknown = await MilterClient.connect(front.port);
    await unknown.negotiate();
    unknown.send('Z', Buffer.from('?'));
    assert.equal(await unknown.read(), null, 'closed');

    const zero = await MilterClient.connect(front.port);
    zero.write(uint32(0));
    assert.equal(await zero.read(), null, 'closed');

    const next = await MilterClient.connect(front.port);
    assert.equal((await next.negotiate())!.cmd, 'O');
    next.destroy();
  });
});

describe('mta milter hot reload', () => {
  it('decides new connections with the reloaded policy; a failed reload keeps the last good one', async () => {
    const f = await startTestFront('milter', { files: { 'main.vsl': ONLY_RCPT.replace('next()', 'reject("550 5.7.1 closed for now")') } });
    try {
      const rcptReply = async (): Promise<string> => {
        const c = await inTransaction(f.port);
        c.send('R', cstr('<bob@example.org>'));
        const p = (await c.read())!;
        c.destroy();
        return p.cmd === 'y' ? p.data.toString('utf8').replace(/\0$/, '') : p.cmd;
      };
      assert.equal(await rcptReply(), '550 5.7.1 closed for now');
      fs.writeFileSync(path.join(f.policyDir, 'main.vsl'), ONLY_RCPT);
      assert.equal((await f.front.runtime.policy.reload('test')).ok, true);
      assert.equal(await rcptReply(), 'c');
      fs.writeFileSync(path.join(f.policyDir, 'main.vsl'), '#{ rcpt: [ rule "broken" || ] }');
      assert.equal((await f.front.runtime.policy.reload('test')).ok, false);
      assert.equal(await rcptReply(), 'c');
    } finally {
      await f.stop();
    }
  });
});

describe('mta milter on a unix socket', () => {
  it('listens on unix:PATH (inet: or unix: in smtpd_milters)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-milter-sock-'));
    const sock = path.join(dir, 'milter.sock');
    const f = await startTestFront('milter', { files: { 'main.vsl': ONLY_RCPT }, listen: `unix:${sock}` });
    try {
      assert.equal(f.front.address, sock);
      const c = await MilterClient.connect(sock);
      assert.equal((await c.negotiate())!.cmd, 'O');
      c.destroy();
    } finally {
      await f.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
