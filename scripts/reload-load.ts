// Hot reload under load (issue "Hot reload and policy testing tools", must
// show 3; SPEC §12). Run with `npm run test:reload-load`.
//
// Spawns the real CLI (`mta run`, default worker count: a primary and one
// worker per CPU, each reloading on its own) on a temporary policy, has
// Postfix's smtp-source send 5,000 messages over 50 parallel sessions, and
// meanwhile edits the policy 20 times: alternately in place and by
// write-then-rename, once mail flows, 300 ms apart (more than the 200 ms
// reload debounce). If smtp-source finishes before the last edit has served
// mail (a fast machine sends 5,000 in about 6 s), top-up runs of 500 messages
// keep the load going until it has; they are counted like the rest. Each
// edit changes the X-Policy-Edit header the policy stamps on messages, so the
// spool shows which versions served the mail.
//
// Passes when
//   - smtp-source exits 0: it aborts on any reply that is not the expected
//     2xx/3xx, so zero transactions failed;
//   - exactly as many messages as were sent (5,000, plus any top-up runs)
//     are in the spool, each once (distinct queue ids,
//     envelope and body, one recipient, the X-Policy-Edit header);
//   - all 20 edits were written while mail flowed, many versions served
//     mail and the last one did too, and every server process ended on the
//     same, last version;
//   - nothing was logged as an error, except a reload that caught an
//     in-place save half-written (it is retried once the file is complete;
//     the count is printed).
// The policy holds every message in quarantine "reload-load" (SPEC §5.1), so
// nothing is delivered and the spool count is the count of accepted mail.
//
// Needs smtp-source (Debian/Ubuntu: `apt-get install postfix`; /usr/sbin is
// searched too). Takes 20–40 s on a 2-core machine (smtp-source itself
// 8–15 s); bounded by LOAD_TIMEOUT_S (default 600 s). LOAD_MESSAGES,
// LOAD_SESSIONS, LOAD_EDITS, LOAD_WORKERS, LOAD_EDIT_GAP_MS (at least 250)
// and LOAD_TOPUP change the defaults (5000, 50, 20, the CLI's, 300, 500).

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (this file runs from scripts/ with tsx, or from dist/scripts/ once built). */
function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'src', 'cli', 'main.ts'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('reload-load: the project root (package.json, src/cli/main.ts) was not found');
}
const ROOT = projectRoot();
const MESSAGES = Number(process.env.LOAD_MESSAGES ?? 5000);
const SESSIONS = Number(process.env.LOAD_SESSIONS ?? 50);
const EDITS = Number(process.env.LOAD_EDITS ?? 20);
const TIMEOUT_S = Number(process.env.LOAD_TIMEOUT_S ?? 600);
const QUARANTINE = 'reload-load';
/** Longest gap between two edits; never shorter than the reload debounce (200 ms, SPEC §12) allows. */
const EDIT_GAP_MS = Math.max(250, Number(process.env.LOAD_EDIT_GAP_MS ?? 300));
/** Size of a top-up run, and how many may follow the main one. */
const TOPUP = Number(process.env.LOAD_TOPUP ?? 500);
const MAX_TOPUPS = 20;

function policy(edit: number): string {
  return `// reload-load policy, edit ${edit}
fn on_config(config) {
  config.server.name = "mx.reload-load.test";
  config.server.domain = "reload-load.test";
  config.server.relay_networks = ["127.0.0.0/8"];
  // ${SESSIONS} parallel sessions from one address.
  config.server.smtp.client_count_max_per_ip = ${Math.max(100, SESSIONS * 2)};
  config.server.smtp.client_count_max = ${Math.max(256, SESSIONS * 4)};
  config
}

#{
  mail: [
    rule "stamp edit" || { msg::append_header("X-Policy-Edit", "${edit}"); next() },
  ],
  rcpt: [
    rule "local only" || check_rcpt_relay(rg4("127.0.0.0/8")),
    rule "edit ${edit}" || next(),
  ],
  preq: [
    rule "hold" || quarantine("${QUARANTINE}"),
  ],
}
`;
}

function findSmtpSource(): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    const p = path.join(dir, 'smtp-source');
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

interface LogLine {
  level?: number;
  msg?: string;
  reload?: string;
  version?: string;
  [k: string]: unknown;
}

class Server {
  readonly logs: LogLine[] = [];
  private partial = '';
  private exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => this.read(s));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => process.stderr.write(`[mta] ${s}`));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  private read(s: string): void {
    this.partial += s;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      if (line.trim() === '') continue;
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ msg: line });
      }
    }
  }

  async waitFor(pred: (l: LogLine) => boolean, ms: number, what: string): Promise<LogLine> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.logs.find(pred);
      if (found) return found;
      if (this.child.exitCode !== null) throw new Error(`the server exited (${this.child.exitCode}) while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
      await sleep(50);
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 40_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The envelopes in the quarantine (one .json per message). */
function spooled(queueDir: string): string[] {
  try {
    return fs.readdirSync(path.join(queueDir, 'quarantine', QUARANTINE)).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
}

/** Every envelope anywhere in the spool besides the quarantine (there should be none). */
function elsewhere(queueDir: string): string[] {
  const out: string[] = [];
  for (const place of ['active', 'deferred', 'dead']) {
    try {
      out.push(...fs.readdirSync(path.join(queueDir, place)).filter((n) => n.endsWith('.json')).map((n) => `${place}/${n}`));
    } catch {
      // not created
    }
  }
  return out;
}

async function main(): Promise<number> {
  const started = Date.now();
  const smtpSource = findSmtpSource();
  if (!smtpSource) {
    console.error('reload-load: smtp-source not found (install the postfix package: apt-get install postfix)');
    return 2;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mta-reload-load-'));
  const policyDir = path.join(dir, 'policy');
  const queueDir = path.join(dir, 'queue');
  fs.mkdirSync(policyDir);
  const mainPath = path.join(policyDir, 'main.vsl');
  fs.writeFileSync(mainPath, policy(0));

  const args = ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'main.ts'), 'run', '--config', mainPath,
    '--listen', '127.0.0.1:0', '--queue-dir', queueDir, '--log-format', 'json', '--log-level', 'info',
    '--set', `vsl.data_dir=${path.join(dir, 'data')}`];
  if (process.env.LOAD_WORKERS !== undefined) args.push('--workers', process.env.LOAD_WORKERS);
  const server = new Server(spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  let source: ChildProcess | null = null;
  const overall = setTimeout(() => {
    console.error(`reload-load: FAILED: still running after ${TIMEOUT_S} s`);
    (source as ChildProcess | null)?.kill('SIGKILL');
    server.child.kill('SIGKILL');
    process.exit(1);
  }, TIMEOUT_S * 1000);
  overall.unref();

  const problems: string[] = [];
  try {
    const listening = await server.waitFor((l) => /listening on [\d.]+:\d+/.test(String(l.msg)), 60_000, 'listening log line');
    const port = Number(/listening on [\d.]+:(\d+)/.exec(String(listening.msg))![1]);
    console.log(`reload-load: server on 127.0.0.1:${port}; ${MESSAGES} messages, ${SESSIONS} sessions, ${EDITS} policy edits`);

    // The load: one smtp-source run of MESSAGES messages over SESSIONS
    // sessions. The edits are paced by time (each more than the debounce
    // after the previous one), the load by the machine's speed; a fast
    // machine can finish 5,000 messages before the 20th edit has served mail
    // (CI once did, in 6.4 s). So when the run ends early, top-up runs of
    // TOPUP messages keep the load going until the last edit has been
    // accepted under, and every message of every run is accounted for.
    const sourceStart = Date.now();
    const runSource = (count: number): Promise<{ code: number | null; output: string }> => {
      source = spawn(smtpSource, ['-s', String(SESSIONS), '-m', String(count), '-l', '2048', '-M', 'client.reload-load.test',
        '-f', 'sender@client.reload-load.test', '-t', 'user@reload-load.test', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      source.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      source.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      return new Promise((resolve) => source!.once('exit', (code) => resolve({ code, output })));
    };
    const editsSeen = new Map<string, number>();
    const scanned = new Set<string>();
    let unreadable = 0;
    /** Reads the envelopes and bodies spooled since the last scan: which edit stamped each. */
    const scanSpool = (): string[] => {
      const files = spooled(queueDir);
      for (const f of files) {
        if (scanned.has(f)) continue;
        scanned.add(f);
        const id = f.slice(0, -5);
        try {
          const record = JSON.parse(fs.readFileSync(path.join(queueDir, 'quarantine', QUARANTINE, f), 'utf8')) as { recipients?: unknown[] };
          const eml = fs.readFileSync(path.join(queueDir, 'quarantine', QUARANTINE, `${id}.eml`), 'latin1');
          if (record.recipients?.length !== 1) unreadable++;
          const m = /^X-Policy-Edit: (\d+)\r?$/m.exec(eml);
          if (m) editsSeen.set(m[1]!, (editsSeen.get(m[1]!) ?? 0) + 1);
          else unreadable++;
        } catch {
          unreadable++;
        }
      }
      return files;
    };

    let edits = 0;
    let editsDoneAt = 0;
    let loadDone = false;
    let sent = 0;
    const runs: string[] = [];
    const load = (async () => {
      let count = MESSAGES;
      for (let run = 0; ; run++) {
        const { code, output } = await runSource(count);
        sent += count;
        runs.push(`${count}`);
        if (code !== 0) problems.push(`smtp-source (run ${run + 1}, ${count} messages) exited ${code}: ${output.trim().split('\n').slice(-5).join(' | ')}`);
        if (code !== 0) break;
        scanSpool();
        if (edits === EDITS && editsSeen.has(String(EDITS))) break;
        if (run >= MAX_TOPUPS) break;
        count = TOPUP;
      }
      loadDone = true;
    })();

    // The edits: once mail flows, one every EDIT_GAP_MS (more than the
    // debounce), so that each is a change of its own; a process still
    // compiling the previous one may coalesce two, by design (SPEC §12).
    const reloadsOk = (): number => server.logs.filter((l) => l.reload === 'ok').length;
    while (spooled(queueDir).length < MESSAGES * 0.02 && !loadDone) await sleep(50);
    while (edits < EDITS && !loadDone) {
      edits++;
      const text = policy(edits);
      if (edits % 2 === 1) {
        fs.writeFileSync(mainPath, text);
      } else {
        const tmp = path.join(policyDir, '.main.vsl.tmp');
        fs.writeFileSync(tmp, text);
        fs.renameSync(tmp, mainPath);
      }
      await sleep(EDIT_GAP_MS);
    }
    editsDoneAt = spooled(queueDir).length;
    await load;
    const sourceSeconds = (Date.now() - sourceStart) / 1000;
    if (edits < EDITS) problems.push(`only ${edits} of ${EDITS} policy edits happened while the messages were sent`);

    // 250 is sent after the message is on disk: the spool is complete now.
    const files = scanSpool();
    const ids = new Set(files.map((f) => f.slice(0, -5)));
    if (files.length !== sent) problems.push(`${files.length} messages in the spool, expected ${sent}`);
    if (ids.size !== files.length) problems.push('duplicate queue ids in the spool');
    const stray = elsewhere(queueDir);
    if (stray.length > 0) problems.push(`${stray.length} messages outside the quarantine (e.g. ${stray[0]})`);
    if (unreadable > 0) problems.push(`${unreadable} spooled messages lack their envelope, body, recipient or X-Policy-Edit header`);
    // Sessions ran on many versions, the last one included: the reloads reached live traffic.
    if (editsSeen.size < Math.ceil(EDITS / 2)) problems.push(`messages carry only ${editsSeen.size} distinct policy edits; the reloads did not reach the sessions`);
    if (edits === EDITS && !editsSeen.has(String(EDITS))) problems.push(`no message was accepted under the last edit, even after ${MAX_TOPUPS} top-up runs`);
    // Every process (the primary and each worker reload on their own) ends on
    // the last edit's version: the version of the last reload logged, once
    // every process agrees (a slow one may coalesce edits, never miss the last).
    const processOf = (l: LogLine): string => (l.worker === undefined ? 'primary' : `worker ${String(l.worker)}`);
    const oks = (): LogLine[] => server.logs.filter((l) => l.reload === 'ok');
    const processes = new Set(oks().map(processOf));
    const lastOf = (p: string): string | undefined => oks().filter((l) => processOf(l) === p).pop()?.version;
    const versions = (): Set<string | undefined> => new Set([...processes].map(lastOf));
    const settle = Date.now() + 10_000;
    while ((versions().size !== 1 || oks().pop()?.version !== [...versions()][0]) && Date.now() < settle) await sleep(100);
    if (versions().size !== 1) problems.push(`the processes ended on different policy versions: ${[...processes].map((p) => `${p} ${lastOf(p)}`).join(', ')}`);
    // An in-place save can be read half-written; the manager then keeps the
    // old version and reloads once the file is complete. Reported, not fatal:
    // the convergence check above is what must hold.
    const reloadFailures = server.logs.filter((l) => l.reload === 'failed');
    const errors = server.logs.filter((l) => (l.level ?? 0) >= 50 && l.reload !== 'failed');
    if (errors.length > 0) problems.push(`${errors.length} error log lines, first: ${errors[0]!.msg}`);

    console.log(`reload-load: smtp-source runs of ${runs.join(' + ')} messages in ${sourceSeconds.toFixed(1)} s (${(sent / sourceSeconds).toFixed(0)} msg/s)${runs.length > 1 ? `; ${runs.length - 1} top-up run(s) kept the load going until the last edit served mail` : ''}`);
    console.log(`reload-load: ${edits} edits, ${reloadsOk()} successful reloads in ${processes.size} process(es), ${reloadFailures.length} torn reads of an in-place save (retried), ${files.length} messages spooled, ${editsSeen.size} policy edits seen in messages`);
    console.log(`reload-load: the ${edits} edits, ${EDIT_GAP_MS} ms apart, were written by the time ${editsDoneAt} of ${sent} messages were spooled`);
    console.log(`reload-load: messages per edit: ${[...editsSeen].sort((a, b) => Number(a[0]) - Number(b[0])).map(([e, n]) => `${e}:${n}`).join(' ')}`);
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    (source as ChildProcess | null)?.kill('SIGKILL');
    const exit = await server.stop();
    if (exit !== 0 && problems.length === 0) problems.push(`the server exited ${exit} on SIGTERM`);
    clearTimeout(overall);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const total = ((Date.now() - started) / 1000).toFixed(1);
  if (problems.length > 0) {
    for (const p of problems) console.error(`reload-load: FAILED: ${p}`);
    console.error(`reload-load: FAILED after ${total} s`);
    return 1;
  }
  console.log(`reload-load: PASSED in ${total} s`);
  return 0;
}

main().then((code) => process.exit(code), (e: unknown) => {
  console.error(`reload-load: FAILED: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
