// Micro-benchmark of one vSL stage evaluation (`npm run bench:vsl` after
// `npm run build`, or `npx tsx bench/vsl-bench.ts`).
//
// Policies: examples/doe-family/main.vsl (SPEC §1.3) and a generated policy
// of 50 rcpt rules that all answer next. For each case it prints the median
// and the 99th percentile, in microseconds, of
//   runner   PolicyRunner.run — what the SMTP front calls per command
//            (context snapshot, sandbox call, verdict validation);
//   sandbox  the policy version's evaluate() alone, with a prepared context.
//
// Options: --iterations N (default 20000), --warmup N (default 3000), --json.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadPolicy, type PolicyVersion } from '../src/policy/load.js';
import { allBuiltins } from '../src/builtins/registry.js';
import { PolicyRunner, contextData } from '../src/policy/runner.js';
import { RecordingEffects, type EvalState } from '../src/policy/host-bridge.js';
import type { MailAddress, Session, Stage, Transaction } from '../src/mail/types.js';

interface Options {
  iterations: number;
  warmup: number;
  json: boolean;
}

function options(argv: string[]): Options {
  const o: Options = { iterations: 20_000, warmup: 3_000, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--iterations') o.iterations = Number(argv[++i]);
    else if (a === '--warmup') o.warmup = Number(argv[++i]);
    else throw new Error(`unknown option ${a}; usage: vsl-bench [--iterations N] [--warmup N] [--json]`);
  }
  if (!(o.iterations > 0) || !(o.warmup >= 0)) throw new Error('--iterations and --warmup take positive numbers');
  return o;
}

/** The repository root: the nearest directory upwards holding examples/ (works from bench/ and dist/bench/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'examples', 'doe-family', 'main.vsl'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('examples/doe-family/main.vsl not found above the benchmark');
}

/** 50 rcpt rules in the shapes policies use; for the benchmark's recipient they all answer next. */
function fiftyRulePolicy(): string {
  const rules: string[] = [];
  for (let i = 0; i < 50; i++) {
    switch (i % 5) {
      case 0: rules.push(`rule "domain ${i}" || if ctx::rcpt().domain == "blocked${i}.test" { reject("550 5.7.1 blocked") } else { next() }`); break;
      case 1: rules.push(`rule "network ${i}" || if ctx::client_ip() in global::nets[${i % 3}] { deny() } else { next() }`); break;
      case 2: rules.push(`rule "local part ${i}" || if ctx::rcpt().local_part.starts_with("spam${i}") { reject() } else { next() }`); break;
      case 3: rules.push(`rule "list ${i}" || if ctx::mail_from().to_string() in global::senders { deny() } else { next() }`); break;
      default: rules.push(`rule "helper ${i}" || score(ctx::rcpt().to_string(), ${i})`); break;
    }
  }
  rules.push('rule "relay" || check_rcpt_relay(global::nets)');
  return `
const nets = [rg4("10.0.0.0/8"), rg4("172.16.0.0/12"), rg4("192.168.0.0/16")];
const senders = ["spammer@bad.test", "worse@bad.test", "evil@bad.test"];
fn score(rcpt, limit) { if rcpt.len() > limit + 100 { reject() } else { next() } }
#{
  rcpt: [
    ${rules.join(',\n    ')},
  ],
}
`;
}

function addr(text: string): MailAddress {
  const at = text.lastIndexOf('@');
  return { local: text.slice(0, at), domain: text.slice(at + 1), raw: `<${text}>`, isNull: false };
}

function session(): Session {
  return {
    id: 'bench', listener: 'smtp', clientIp: '203.0.113.9', clientPort: 40000, serverIp: '127.0.0.1', serverPort: 25,
    serverName: 'mx.bench', connectedAt: new Date(), tls: null, helo: 'client.bench.test', esmtp: true, auth: null,
    pipeliningViolation: false, remembered: null, pendingHeaders: [],
  };
}

function txn(from: string, rcpt: string | null): Transaction {
  return { id: 'BENCH1', mailFrom: addr(from), mailAt: new Date(), rcpts: [], currentRcpt: rcpt ? addr(rcpt) : null, remembered: null, pendingHeaders: [] };
}

async function load(file: string): Promise<PolicyVersion> {
  const r = await loadPolicy(file, { builtins: allBuiltins(), hostname: 'mx.bench' });
  if (!r.ok) throw new Error(`${file}: ${r.diagnostics.map((d) => `${d.pos.line}:${d.pos.col}: ${d.message}`).join('; ')}`);
  return r.version;
}

interface Case {
  name: string;
  version: PolicyVersion;
  stage: Stage;
  txn: Transaction;
  /** The status the case must produce (a benchmark of a broken evaluation measures nothing). */
  expect: string;
}

interface Stats {
  median: number;
  p99: number;
}

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5) * 1000, p99: at(0.99) * 1000 };
}

async function measure(run: () => Promise<unknown>, opts: Options): Promise<Stats> {
  for (let i = 0; i < opts.warmup; i++) await run();
  const samples = new Array<number>(opts.iterations);
  for (let i = 0; i < opts.iterations; i++) {
    const t0 = performance.now();
    await run();
    samples[i] = performance.now() - t0;
  }
  return stats(samples);
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const root = repoRoot();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-bench-'));
  const log = pino({ level: 'silent' });
  const versions: PolicyVersion[] = [];
  try {
    const doe = await load(path.join(root, 'examples', 'doe-family', 'main.vsl'));
    versions.push(doe);
    fs.writeFileSync(path.join(tmp, 'main.vsl'), fiftyRulePolicy());
    const fifty = await load(path.join(tmp, 'main.vsl'));
    versions.push(fifty);

    const cases: Case[] = [
      { name: 'doe-family mail', version: doe, stage: 'mail', txn: txn('jane@example.net', null), expect: 'next' },
      { name: 'doe-family rcpt, local recipient', version: doe, stage: 'rcpt', txn: txn('jane@example.net', 'john@doe-family.com'), expect: 'next' },
      { name: 'doe-family rcpt, foreign recipient', version: doe, stage: 'rcpt', txn: txn('jane@example.net', 'someone@external.test'), expect: 'reject' },
      { name: '50 rcpt rules', version: fifty, stage: 'rcpt', txn: txn('jane@example.net', 'someone@external.test'), expect: 'reject' },
    ];

    const rows: Array<{ case: string; path: string; median_us: number; p99_us: number }> = [];
    for (const c of cases) {
      const s = session();
      const runner = new PolicyRunner({ current: () => c.version, log });
      const first = await runner.run(c.stage, s, c.txn);
      if (first.verdict.status !== c.expect || first.verdict.source === 'error') {
        throw new Error(`${c.name}: expected ${c.expect}, got ${JSON.stringify(first.verdict)}`);
      }
      const viaRunner = await measure(() => runner.run(c.stage, s, c.txn), opts);

      // The sandbox alone: the context and host state prepared once.
      const ctxData = contextData(c.stage, s, c.txn, Date.now());
      const state: EvalState = {
        stage: c.stage, session: s, txn: c.txn, message: null, effects: new RecordingEffects(), cache: new Map(),
        log, dryRun: false, rules: c.version.stages[c.stage],
      };
      const viaSandbox = await measure(() => c.version.evaluate(c.stage, ctxData, state), opts);
      rows.push({ case: c.name, path: 'runner', median_us: viaRunner.median, p99_us: viaRunner.p99 });
      rows.push({ case: c.name, path: 'sandbox', median_us: viaSandbox.median, p99_us: viaSandbox.p99 });
    }

    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ node: process.version, iterations: opts.iterations, rows }, null, 2)}\n`);
    } else {
      process.stdout.write(`vSL stage evaluation, ${opts.iterations} iterations after ${opts.warmup} warm-up (node ${process.version})\n\n`);
      process.stdout.write(`${'case'.padEnd(38)}${'path'.padEnd(9)}${'median µs'.padStart(11)}${'p99 µs'.padStart(10)}\n`);
      for (const r of rows) {
        process.stdout.write(`${r.case.padEnd(38)}${r.path.padEnd(9)}${r.median_us.toFixed(1).padStart(11)}${r.p99_us.toFixed(1).padStart(10)}\n`);
      }
    }
  } finally {
    for (const v of versions) v.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`vsl-bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
