// The whole server for the hardening tests: the end-to-end helper's
// in-process server (real policy engine, real spool, delivery off, so
// accepted mail stays in active/) on 127.0.0.1 port 0, or the CLI spawned as
// a separate process.
//
//   const s = await startFullServer({ policy: DOE_FAMILY, set: ['server.smtp.timeout="1s"'] });
//   const c = await s.client();            // connected, greeting read
//   ...
//   assert.deepEqual(await s.spooled(), []);
//   await s.stop();

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type SpooledMessage, type TestServer } from '../helpers/server.js';

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

/** The in-process server of the end-to-end tests (test/helpers/server.ts), started the hardening way. */
export type FullServer = TestServer;
export type { SpooledMessage };

export interface FullServerOptions {
  /** A main.vsl path (its directory is copied), or the text of one. */
  policy: string;
  /** --set assignments, after on_config. */
  set?: string[];
  /** Other files next to the policy. */
  files?: Record<string, string>;
}

/** The whole server on 127.0.0.1 port 0, delivery off, logging only errors. */
export function startFullServer(opts: FullServerOptions): Promise<FullServer> {
  const isPath = !opts.policy.includes('\n') && opts.policy.endsWith('.vsl');
  return startTestServer({
    ...(isPath
      ? { copyFrom: path.dirname(opts.policy), main: path.basename(opts.policy), files: opts.files ?? {} }
      : { files: { 'main.vsl': opts.policy, ...opts.files } }),
    set: ['logs.level="error"', ...(opts.set ?? [])],
    logLevel: 'error',
  });
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
