// `mta test [PATH…] [--config main.vsl] [--watch]` (SPEC §11.3): plays
// transcript files against the policy in-process — the real SMTP front over
// in-memory sockets, stub DNS, memory state, no network, no ports, no
// delivery — and prints TAP. Format: docs/testing.md.

import fs from 'node:fs';
import path from 'node:path';
import { displayPath, runTranscriptFile, type TestPoint } from '../tools/transcript/run.js';
import type { CliIo } from './io.js';
import { parseArgs, single, UsageError } from './args.js';

export const TEST_HELP = `usage: mta test [PATH...] [--config main.vsl] [--watch]

Plays transcript files (*.smtp) against the policy, in-process: the real SMTP
front over in-memory connections, DNS answered from @dns stubs (NXDOMAIN
otherwise), a memory state store and a test clock. Nothing is delivered and
no port is opened. Output is TAP; see docs/testing.md for the format.

  PATH              a transcript, or a directory searched for *.smtp files
                    (default: tests/ beside main.vsl)
  --config FILE     the policy (default: the nearest main.vsl at or above
                    PATH, else ./main.vsl)
  --watch           run again whenever a transcript, the policy, its imports
                    or its data files change (Ctrl-C to stop)

Exit status: 0 when every test passes, 1 when one fails or nothing was found,
2 usage error.
`;

export interface SuiteOptions {
  mainPath: string;
  files: string[];
  io: CliIo;
}

export interface SuiteResult {
  passed: number;
  failed: number;
  /** The transcripts and every file the policy was built from: what --watch watches. */
  watched: string[];
}

function tapLine(n: number, p: TestPoint): string {
  const where = `${p.file}:${p.line}`;
  const head = p.ok ? `ok ${n} - ${where}` : `not ok ${n} - ${where}: ${p.message ?? 'failed'}`;
  const detail = (p.detail ?? []).map((d) => `  # ${d}`);
  return [head, ...detail].join('\n');
}

/** Runs the transcripts one file after another and prints TAP as it goes. */
export async function runSuite(o: SuiteOptions): Promise<SuiteResult> {
  const out = o.io.stdout;
  let n = 0;
  let failed = 0;
  const watched = new Set<string>([path.resolve(o.mainPath), ...o.files.map((f) => path.resolve(f))]);
  out.write('TAP version 13\n');
  for (const file of o.files) {
    out.write(`# ${displayPath(file)}\n`);
    const r = await runTranscriptFile(file, {
      mainPath: o.mainPath,
      onPoint: (p) => {
        n++;
        if (!p.ok) failed++;
        out.write(`${tapLine(n, p)}\n`);
      },
    });
    for (const f of r.policyFiles) watched.add(path.resolve(f));
  }
  out.write(`1..${n}\n`);
  if (n === 0) {
    out.write('# no test points: no transcript was found, or they check nothing\n');
    failed++;
  }
  out.write(`# pass ${n - (n === 0 ? 0 : failed)}\n# fail ${failed}\n`);
  return { passed: n - failed, failed, watched: [...watched] };
}

/** The *.smtp files under PATHs (directories searched recursively, sorted). */
export function findTranscripts(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    const st = fs.statSync(p);
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p).sort()) {
        const full = path.join(p, name);
        const s = fs.statSync(full);
        if (s.isDirectory()) walk(full);
        else if (name.endsWith('.smtp')) out.push(full);
      }
    } else {
      out.push(p);
    }
  };
  for (const p of paths) walk(p);
  return [...new Set(out)];
}

/** The nearest main.vsl at or above `from` (a file or directory). */
function findPolicy(from: string): string | null {
  let dir = path.resolve(from);
  if (fs.existsSync(dir) && fs.statSync(dir).isFile()) dir = path.dirname(dir);
  for (;;) {
    const candidate = path.join(dir, 'main.vsl');
    if (fs.existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Runs the suite, then again after each change to a watched file, until `signal` aborts. */
export async function watchSuite(o: Omit<SuiteOptions, 'files'> & { paths: string[] }, signal: AbortSignal, debounceMs = 200): Promise<void> {
  let timer: NodeJS.Timeout | null = null;
  let watchers: fs.FSWatcher[] = [];
  let running: Promise<void> | null = null;
  let again = false;

  const rewatch = (files: string[]): void => {
    for (const w of watchers) w.close();
    watchers = [];
    // Directories, not files: editors that save by rename replace the file a watch holds;
    // a transcript directory also reports new *.smtp files.
    const dirs = new Map<string, { names: Set<string>; transcripts: boolean }>();
    const entry = (d: string): { names: Set<string>; transcripts: boolean } => {
      let e = dirs.get(d);
      if (!e) dirs.set(d, (e = { names: new Set(), transcripts: false }));
      return e;
    };
    for (const f of files) entry(path.dirname(f)).names.add(path.basename(f));
    for (const p of o.paths) if (fs.existsSync(p) && fs.statSync(p).isDirectory()) entry(path.resolve(p)).transcripts = true;
    for (const [dir, e] of dirs) {
      try {
        const w = fs.watch(dir, { persistent: false }, (_event, name) => {
          const n = name === null ? null : String(name);
          if (n === null || e.names.has(n) || (e.transcripts && n.endsWith('.smtp'))) schedule();
        });
        w.on('error', () => schedule());
        watchers.push(w);
      } catch {
        // a directory that went away: the next run reports the missing files
      }
    }
  };

  const runOnce = async (): Promise<void> => {
    let files: string[] = [];
    try {
      files = findTranscripts(o.paths);
    } catch (e) {
      o.io.stdout.write(`# ${(e as Error).message}\n`);
    }
    const r = await runSuite({ mainPath: o.mainPath, files, io: o.io });
    o.io.stdout.write(`# watching ${r.watched.length} file(s) for changes\n`);
    rewatch(r.watched);
  };

  const schedule = (): void => {
    if (signal.aborted) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (running) {
        again = true;
        return;
      }
      running = runOnce().finally(() => {
        running = null;
        if (again) {
          again = false;
          schedule();
        }
      });
    }, debounceMs);
  };

  running = runOnce().finally(() => {
    running = null;
  });
  // The watchers do not hold the process open (a test harness may abort the
  // signal at any time), so this timer does, until the signal aborts.
  const keepAlive = setInterval(() => undefined, 60_000);
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(keepAlive);
  if (timer) clearTimeout(timer);
  await running;
  for (const w of watchers) w.close();
}

export async function testCommand(argv: string[], io: CliIo): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { flags: ['watch', 'help'], values: ['config'] });
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`mta test: ${e.message}\n\n${TEST_HELP}`);
      return 2;
    }
    throw e;
  }
  if (args.flags.has('help')) {
    io.stdout.write(TEST_HELP);
    return 0;
  }
  let mainPath = single(args, 'config') ?? null;
  if (mainPath === null) mainPath = args.positional.length > 0 ? findPolicy(args.positional[0]!) : 'main.vsl';
  if (mainPath === null || !fs.existsSync(mainPath)) {
    io.stderr.write(`mta test: ${mainPath === null ? 'no main.vsl found above the tests' : `no such policy: ${mainPath}`}; name it with --config\n`);
    return 2;
  }
  const paths = args.positional.length > 0 ? args.positional : [path.join(path.dirname(mainPath), 'tests')];
  for (const p of paths) {
    if (!fs.existsSync(p)) {
      io.stderr.write(`mta test: no such file or directory: ${p}\n`);
      return 1;
    }
  }

  if (args.flags.has('watch')) {
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await watchSuite({ mainPath, paths, io }, ac.signal);
    } finally {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
    }
    return 0;
  }
  const r = await runSuite({ mainPath, files: findTranscripts(paths), io });
  return r.failed === 0 ? 0 : 1;
}
