// DATA as a stream (issue 16, items 1 and 4): the header block is parsed in
// one pass whatever its folding, `header_size_max` is enforced while the
// bytes arrive, and the body goes to a temporary file of the spool behind a
// small buffer, so unfinished transfers cost disk, not memory.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeaderBlockParser, splitHeaderBlock } from '../../src/smtp/header-block.js';
import { DataCollector } from '../../src/smtp/message.js';
import { policyText, spawnServer, startFullServer, type FullServer, type SpawnedServer } from '../hardening/full-server.js';
import { headerValues, sendData, transaction } from '../helpers/server.js';
import { tempDir } from '../helpers/server.js';

const RCPT = 'jane@doe-family.com';

describe('the header block parser', () => {
  const message = Buffer.from(
    'Received: from a\r\n  by b\r\nSubject: one\r\n\tfolded twice\r\n   and thrice\r\nX-Empty:\r\n\r\nbody line\r\n.\r\nlast\r\n',
  );

  test('reads the same fields and body whatever the chunking of the data', () => {
    const whole = splitHeaderBlock(message);
    assert.deepEqual(whole.fields.map((f) => f.name), ['Received', 'Subject', 'X-Empty']);
    assert.equal(whole.fields[1]!.raw.toString(), 'Subject: one\r\n\tfolded twice\r\n   and thrice');
    assert.equal(whole.body.toString(), 'body line\r\n.\r\nlast\r\n');
    for (const size of [1, 2, 3, 5, 7, 16]) {
      const p = new HeaderBlockParser(0);
      let body: Buffer[] = [];
      for (let i = 0; i < message.length; i += size) {
        const piece = message.subarray(i, i + size);
        if (p.ended) body.push(piece);
        else {
          const rest = p.push(piece);
          if (rest !== null) body = [rest];
        }
      }
      assert.deepEqual(p.fields().map((f) => f.raw.toString()), whole.fields.map((f) => f.raw.toString()), `chunks of ${size}`);
      assert.equal(Buffer.concat(body).toString(), whole.body.toString(), `chunks of ${size}`);
      assert.equal(p.headerBytes, whole.headerBytes);
    }
  });

  test('ends the block at a line that is neither a field nor a continuation, keeping that line as body', () => {
    const r = splitHeaderBlock(Buffer.from('Subject: x\r\nnot a header line\r\nmore\r\n'));
    assert.deepEqual(r.fields.map((f) => f.name), ['Subject']);
    assert.equal(r.body.toString(), 'not a header line\r\nmore\r\n');
  });

  test('gives up keeping the block once it passes the limit, before its end arrives', () => {
    const p = new HeaderBlockParser(1000);
    assert.equal(p.push(Buffer.from('Subject: x\r\n')), null);
    for (let i = 0; i < 300 && !p.tooBig; i++) p.push(Buffer.from(' a\r\n'));
    assert.equal(p.tooBig, true, 'refused while still open');
    assert.equal(p.heldBytes, 0, 'nothing kept');
  });

  test('counts a line that may still become a field against the limit', () => {
    const p = new HeaderBlockParser(1000);
    p.push(Buffer.from('X'.repeat(1500)));
    assert.equal(p.tooBig, true);
  });

  test('a long first body line without a blank line before it is body, not header', () => {
    const p = new HeaderBlockParser(1000);
    const rest = p.push(Buffer.from(`Subject: x\r\n${'b '.repeat(800)}`));
    assert.equal(p.tooBig, false);
    assert.equal(p.headerBytes, 12);
    assert.ok(rest !== null && rest.toString().startsWith('b b'));
  });
});

describe('the data collector', () => {
  const limits = { maxBytes: 0, maxHeaderBytes: 1 << 20, maxReceived: 50 };

  test('spills the body past its buffer into the file it is given and hands that file over at the end', async () => {
    const dir = tempDir('vsl-data-spill-');
    try {
      const file = path.join(dir, 'body.tmp');
      const c = new DataCollector(limits, () => file);
      const line = Buffer.from(`${'x'.repeat(998)}\r\n`);
      await c.push(Buffer.from('Subject: big\r\n\r\n'));
      for (let i = 0; i < 1000; i++) await c.push(line);
      const r = await c.finish();
      assert.ok(r.ok);
      const body = r.parsed.body;
      assert.ok(!Buffer.isBuffer(body), 'the body is in a file');
      assert.equal(body.size, 1000 * line.length);
      assert.equal(fs.readFileSync(body.path).length, body.size);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('removes the body file when the message is refused', async () => {
    const dir = tempDir('vsl-data-spill-');
    try {
      const file = path.join(dir, 'body.tmp');
      const c = new DataCollector({ ...limits, maxBytes: 200_000 }, () => file);
      await c.push(Buffer.from('Subject: big\r\n\r\n'));
      for (let i = 0; i < 300; i++) await c.push(Buffer.from(`${'x'.repeat(998)}\r\n`));
      const r = await c.finish();
      assert.deepEqual(r, { ok: false, problem: 'too-big' });
      assert.equal(fs.existsSync(file), false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('headers over a real socket', () => {
  let s: FullServer;
  before(async () => {
    s = await startFullServer({ policy: policyText(''), set: ['server.smtp.header_size_max=65536'] });
  });
  after(() => s.stop());

  test('a field folded over 10,000 lines is queued whole', async () => {
    const c = await s.client();
    await transaction(c, 'a@example.org', [RCPT]);
    const folded = `X-Long: start\r\n${' a\r\n'.repeat(10_000)}`;
    const { end } = await sendData(c, `${folded}Subject: after\r\n\r\nbody\r\n`);
    assert.equal(end.code, 250, end.last);
    const m = (await s.spooled()).at(-1)!;
    assert.equal(headerValues(m.eml, 'Subject')[0], 'after');
    assert.ok(m.eml.includes(folded), 'the folded field is stored byte for byte');
    c.destroy();
  });

  test('a header block over header_size_max is refused with 552 after the dot, and the session goes on', async () => {
    const before = (await s.spooled()).length;
    const c = await s.client();
    await transaction(c, 'a@example.org', [RCPT]);
    const { end } = await sendData(c, `X-Long: start\r\n${' a\r\n'.repeat(100_000)}\r\n${'body\r\n'.repeat(10_000)}`);
    assert.equal(end.code, 552);
    assert.match(end.last, /5\.3\.4 Message header size exceeds fixed maximum size/);
    assert.equal((await c.command('NOOP')).code, 250);
    assert.equal((await s.spooled()).length, before, 'nothing queued');
    c.destroy();
  });
});

/** Resident memory of a process, in MB. */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Bytes of the message bodies being received in the spool's tmp/. */
function spilledBytes(queueDir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const name of fs.readdirSync(path.join(queueDir, 'tmp'))) {
    if (!name.endsWith('.body.tmp')) continue;
    files++;
    try {
      bytes += fs.statSync(path.join(queueDir, 'tmp', name)).size;
    } catch {
      // removed meanwhile
    }
  }
  return { files, bytes };
}

/** A raw connection in DATA mode: the commands pipelined, the 354 read. */
function openData(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let seen = '';
    const onData = (d: Buffer): void => {
      seen += d.toString('latin1');
      if (/^354 /m.test(seen)) {
        sock.removeListener('data', onData);
        sock.on('data', () => undefined);
        resolve(sock);
      } else if (/^[45]\d\d /m.test(seen)) reject(new Error(`refused: ${seen}`));
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(`EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<${RCPT}>\r\nDATA\r\n`);
  });
}

function write(sock: net.Socket, data: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => sock.write(data, (err) => (err ? reject(err) : resolve())));
}

describe('unfinished DATA transfers', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, () => {
  const CONNECTIONS = 100;
  const MIB_EACH = 9;
  let srv: SpawnedServer;
  let policyDir: string;
  before(async () => {
    policyDir = tempDir('vsl-data-rss-');
    fs.writeFileSync(path.join(policyDir, 'main.vsl'), policyText(''));
    srv = await spawnServer(path.join(policyDir, 'main.vsl'), [
      'server.smtp.client_count_max_per_ip=1000',
      'server.smtp.client_count_max=1000',
    ]);
  });
  after(async () => {
    await srv.stop();
    fs.rmSync(policyDir, { recursive: true, force: true });
  });

  test(`${CONNECTIONS} clients each sending ${MIB_EACH} MiB without the final dot are held on disk, not in memory`, async () => {
    const pid = srv.child.pid!;
    const baseline = rssMb(pid);
    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < CONNECTIONS; i++) clients.push(await openData(srv.port));
      const opened = rssMb(pid);
      const piece = Buffer.from(`${'y'.repeat(1022)}\r\n`.repeat(64)); // 64 KiB of lines
      let peak = baseline;
      await Promise.all(
        clients.map(async (c, i) => {
          await write(c, `Subject: unfinished ${i}\r\n\r\n`);
          for (let n = 0; n < MIB_EACH * 16; n++) {
            await write(c, piece);
            if (n % 16 === 0) peak = Math.max(peak, rssMb(pid));
          }
        }),
      );
      // Everything written has been read by the server, all but what the kernel still buffers.
      const expected = CONNECTIONS * MIB_EACH * 1024 * 1024;
      for (let i = 0; i < 300 && spilledBytes(srv.queueDir).bytes < expected * 0.9; i++) await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, rssMb(pid));
      const spilled = spilledBytes(srv.queueDir);
      assert.equal(spilled.files, CONNECTIONS, 'one body file per transfer');
      assert.ok(spilled.bytes >= expected * 0.9, `bodies on disk: ${spilled.bytes} of ${expected} bytes`);
      const growth = peak - baseline;
      process.stdout.write(`# RSS baseline ${baseline.toFixed(0)} MB, ${CONNECTIONS} connections in DATA ${opened.toFixed(0)} MB, peak ${peak.toFixed(0)} MB, growth ${growth.toFixed(0)} MB for ${CONNECTIONS} × ${MIB_EACH} MiB unfinished\n`);
      assert.ok(growth < 300, `RSS grew by ${growth.toFixed(0)} MB`);
    } finally {
      for (const c of clients) c.destroy();
    }
    // The clients left: their bodies are discarded.
    for (let i = 0; i < 100 && spilledBytes(srv.queueDir).files > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(spilledBytes(srv.queueDir).files, 0, 'body files removed when the transfers were abandoned');
  });
});
