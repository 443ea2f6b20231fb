// The whole server for the hardening tests: src/server.ts startServer with
// the real policy engine, the real spool (delivery off, so accepted mail
// stays in active/) on 127.0.0.1 port 0, or the CLI spawned as a separate
// process. Also reads the spool back, file by file.
//
//   const s = await startFullServer({ policy: DOE_FAMILY, set: ['server.smtp.timeout="1s"'] });
//   const c = await s.client();            // connected, greeting read
//   ...
//   assert.deepEqual(await s.spooled(), []);
//   await s.stop();

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { EnvelopeRecord } from '../../src/queue/envelope.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { SmtpClient, type ConnectOptions } from '../helpers/smtp-client.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FROM_SOURCES = import.meta.url.endsWith('.ts');
/** The CLI entry: the sources through tsx, or the compiled one (dist/test/hardening → dist/src). */
const CLI_MAIN = path.join(HERE, '..', '..', 'src', 'cli', FROM_SOURCES ? 'main.ts' : 'main.js');

/** The repository root (this file runs from test/hardening or dist/test/hardening). */
export function repoRoot(): string {
  let dir = HERE;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'examples'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('repository root not found');
}

export const DOE_FAMILY = (): string => path.join(repoRoot(), 'examples/doe-family/main.vsl');

/** The doe-family server's names, for policies written in the tests. */
export const SERVER_NAME = 'mx.doe-family.com';
export const LOCAL_DOMAIN = 'doe-family.com';

/** A policy with the doe-family names and the given stage map (`#{ … }` body). */
export function policyText(stageMap: string, onConfig = ''): string {
  return `fn on_config(config) {
  config.server.name = "${SERVER_NAME}";
  config.server.domain = "${LOCAL_DOMAIN}";
  ${onConfig}
  config
}
#{
${stageMap}
}
`;
}

export interface SpooledMessage {
  id: string;
  envelope: EnvelopeRecord;
  eml: Buffer;
}

export interface FullServer {
  server: RunningServer;
  port: number;
  queueDir: string;
  /** Connects and reads the greeting. */
  client(opts?: ConnectOptions): Promise<SmtpClient>;
  /** Connects without reading anything. */
  connect(opts?: ConnectOptions): Promise<SmtpClient>;
  /** Every message in active/ (delivery is off), oldest id first. */
  spooled(): Promise<SpooledMessage[]>;
  stop(): Promise<void>;
}

export interface FullServerOptions {
  /** A main.vsl path, or the text of one (written to a temp dir). */
  policy: string;
  /** --set assignments, after on_config. */
  set?: string[];
  /** Other files next to a policy given as text. */
  files?: Record<string, string>;
}

async function policyPath(opts: FullServerOptions, scratch: string): Promise<string> {
  if (!opts.policy.includes('\n') && opts.policy.endsWith('.vsl')) return opts.policy;
  const main = path.join(scratch, 'policy', 'main.vsl');
  fs.mkdirSync(path.dirname(main), { recursive: true });
  await writeFile(main, opts.policy);
  for (const [name, text] of Object.entries(opts.files ?? {})) await writeFile(path.join(scratch, 'policy', name), text);
  return main;
}

/** Reads active/ of a spool directory: each `<id>.json` with its `<id>.eml`. */
export async function readSpool(queueDir: string): Promise<SpooledMessage[]> {
  const dir = path.join(queueDir, 'active');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: SpooledMessage[] = [];
  for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
    const id = n.slice(0, -'.json'.length);
    out.push({
      id,
      envelope: JSON.parse(await readFile(path.join(dir, n), 'utf8')) as EnvelopeRecord,
      eml: await readFile(path.join(dir, `${id}.eml`)),
    });
  }
  return out;
}

export async function startFullServer(opts: FullServerOptions): Promise<FullServer> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-'));
  const queueDir = path.join(scratch, 'queue');
  const mainPath = await policyPath(opts, scratch);
  let server: RunningServer;
  try {
    server = await startServer({
      mainPath,
      overrides: {
        listen: ['127.0.0.1:0'],
        queueDir,
        // Errors still reach the test output; the routine lines do not.
        set: ['logs.level="error"', `vsl.data_dir=${JSON.stringify(path.join(scratch, 'data'))}`, ...(opts.set ?? [])],
      },
      log: pino({ level: 'error' }),
      deliver: false,
      watch: false,
    });
  } catch (e) {
    await rm(scratch, { recursive: true, force: true });
    throw e;
  }
  const port = server.listeners[0]!.port;
  const connect = (o: ConnectOptions = {}): Promise<SmtpClient> => SmtpClient.connect(port, o);
  return {
    server,
    port,
    queueDir,
    connect,
    async client(o = {}) {
      const c = await connect(o);
      await c.greeting();
      return c;
    },
    spooled: () => readSpool(queueDir),
    async stop() {
      await server.stop(200);
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

export interface SpawnedServer {
  child: ChildProcess;
  port: number;
  queueDir: string;
  /** SIGTERM, wait for the exit, remove the temp dir. */
  stop(): Promise<void>;
}

/**
 * Runs `mta run` as a child process (src/cli/main.ts through tsx, or the compiled main.js)
 * on 127.0.0.1 port 0 with a temp queue; resolves once it listens. One
 * process (`--workers 0`) unless extraArgs say otherwise: a crash is then
 * the process's exit, not a worker quietly replaced.
 */
export async function spawnServer(mainPath: string, set: string[] = [], extraArgs: string[] = ['--workers', '0']): Promise<SpawnedServer> {
  const root = repoRoot();
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'vsl-mta-hardening-cli-'));
  const queueDir = path.join(scratch, 'queue');
  const args = [...(FROM_SOURCES ? ['--import', 'tsx'] : []), CLI_MAIN, 'run', '--config', mainPath, '--listen', '127.0.0.1:0', '--queue-dir', queueDir, '--log-format', 'json'];
  for (const s of [`vsl.data_dir=${JSON.stringify(path.join(scratch, 'data'))}`, ...set]) args.push('--set', s);
  args.push(...extraArgs);
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d.slice(0, 10_000)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const onData = (d: string): void => {
      buf += d;
      const m = /listening on [^ ]+:(\d+) \(smtp\)/.exec(buf);
      if (m) {
        child.stdout!.removeListener('data', onData);
        // Keep draining: a full pipe would block the server's logging.
        child.stdout!.resume();
        resolve(Number(m[1]));
      }
      if (buf.length > 1_000_000) buf = buf.slice(-10_000);
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => reject(new Error(`mta run exited with ${code} before listening: ${stderr}`)));
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    child,
    port,
    queueDir,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(scratch, { recursive: true, force: true });
    },
  };
}
