// Bounded crash test of the spool (SPEC §10: a message acknowledged is a
// message kept). Run with:
//
//   npx tsx scripts/crash-test.ts [--rounds 10] [--writers 8] [--dir DIR] [--keep]
//
// Each round starts a writer process that enqueues messages with several
// enqueues in flight and prints `OK <id>` after each one resolved (the
// moment the SMTP front sends its 250), kills it with SIGKILL after a random
// number of acknowledgements, then recovers the spool and checks that every
// acknowledged message is present, complete and in exactly one place, and
// that the spool is consistent. Rounds accumulate in one spool. Exit code 0
// when every round passed, 1 otherwise.
//
// This is the queue-level part. Once the SMTP front exists, a second mode
// will run a real server as the child and count the 250s an SMTP client got.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSpool } from '../src/queue/fsck.js';
import { newQueueId } from '../src/queue/id.js';
import { ACTIVE, Spool } from '../src/queue/spool.js';

/** Content and size follow from the id, so the checker can verify a message without a log. */
function messageFor(id: string): Buffer {
  const h = createHash('sha256').update(id).digest('hex');
  const size = 100 + (parseInt(h.slice(0, 8), 16) % 200_000);
  const line = `${h}${h}`.slice(0, 76);
  const lines: string[] = [];
  for (let n = 0; n * 78 < size; n++) lines.push(line);
  return Buffer.from(`Message-ID: <${id}@crash.test>\r\nSubject: crash ${id}\r\n\r\n${lines.join('\r\n')}\r\n`);
}

async function writer(dir: string, writers: number): Promise<void> {
  const spool = await Spool.open(dir);
  const session = {
    id: 'crash', listener: 'smtp' as const, client_ip: '127.0.0.1', client_port: 1, server_ip: '127.0.0.1', server_port: 25,
    server_name: 'crash.test', connected_at: new Date().toISOString(), tls: null, helo: 'crash.test', esmtp: true,
    auth: null, reverse_name: null, remembered: null,
  };
  const loop = async () => {
    for (;;) {
      const id = newQueueId();
      await spool.enqueue({
        id,
        mailFrom: { local: 'a', domain: 'crash.test', raw: '<a@crash.test>', isNull: false },
        rcpts: [{ address: { local: 'b', domain: 'crash.test', raw: '<b@crash.test>', isNull: false }, transport: { kind: 'default' } }],
        data: messageFor(id),
        session,
        txnRemembered: null,
      });
      process.stdout.write(`OK ${id}\n`); // synchronous on a pipe (Linux)
    }
  };
  await Promise.all(Array.from({ length: writers }, loop));
}

interface Round {
  acknowledged: number;
  recovered: number;
  removedTmp: number;
  corrupt: number;
  problems: string[];
}

async function round(dir: string, writers: number, acknowledged: Set<string>): Promise<Round> {
  const killAfter = 1 + Math.floor(Math.random() * 100);
  const self = fileURLToPath(import.meta.url);
  const proc = spawn(process.execPath, [...process.execArgv, self, '--child', dir, '--writers', String(writers)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buffered = '';
  let count = 0;
  const take = (text: string) => {
    for (const l of text.split('\n')) {
      if (!l.startsWith('OK ')) continue;
      acknowledged.add(l.slice(3));
      count++;
    }
  };
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const deadline = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  proc.stdout.on('data', (c: Buffer) => {
    buffered += c.toString();
    const cut = buffered.lastIndexOf('\n');
    if (cut >= 0) {
      take(buffered.slice(0, cut));
      buffered = buffered.slice(cut + 1);
    }
    if (count >= killAfter) proc.kill('SIGKILL');
  });
  await exited;
  clearTimeout(deadline);
  take(buffered);

  const spool = await Spool.open(dir);
  const report = await spool.recover();
  const check = await checkSpool(spool);
  const problems = [...check.problems];
  if (count < killAfter) problems.push(`writer stopped after ${count} acknowledgements, before being killed`);
  for (const id of acknowledged) {
    const where = check.messages.get(id);
    if (where !== 'active') {
      problems.push(`acknowledged ${id} is ${where ?? 'missing'}`);
      continue;
    }
    const { message } = await spool.read(ACTIVE, id);
    if (!message.equals(messageFor(id))) problems.push(`acknowledged ${id} is not the message that was written`);
  }
  const leftovers = await fs.readdir(path.join(dir, 'tmp'));
  if (leftovers.length) problems.push(`tmp/ not cleaned: ${leftovers.length} files`);
  return { acknowledged: count, recovered: report.active.length, removedTmp: report.removedTmp, corrupt: report.corrupt.length, problems };
}

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const writers = Math.max(1, Number(option(args, '--writers', '8')));
  const childDir = option(args, '--child', '');
  if (childDir) {
    await writer(childDir, writers);
    return 0;
  }
  const rounds = Math.min(1000, Math.max(1, Number(option(args, '--rounds', '10'))));
  const dir = option(args, '--dir', '') || (await fs.mkdtemp(path.join(os.tmpdir(), 'mta-crash-')));
  const acknowledged = new Set<string>();
  let failed = false;
  try {
    for (let i = 1; i <= rounds; i++) {
      const r = await round(dir, writers, acknowledged);
      const status = r.problems.length ? 'FAIL' : 'ok';
      process.stdout.write(
        `round ${i}: ${status}: ${r.acknowledged} acknowledged, ${r.recovered} queued after recovery, ${r.removedTmp} temporary files removed, ${r.corrupt} moved aside\n`,
      );
      for (const p of r.problems.slice(0, 20)) process.stdout.write(`  ${p}\n`);
      if (r.problems.length) failed = true;
    }
    process.stdout.write(`${failed ? 'FAILED' : 'passed'}: ${acknowledged.size} acknowledged messages over ${rounds} rounds (${dir})\n`);
  } finally {
    if (!args.includes('--keep')) await fs.rm(dir, { recursive: true, force: true });
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`crash-test: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
