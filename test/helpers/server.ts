// The real server (src/server.ts startServer) for end-to-end tests: a policy
// from a directory (copied from an example, or written by the test), a
// listener on 127.0.0.1 port 0, a temporary queue directory, and a logger
// whose JSON lines the test can read back.
//
//   const s = await startTestServer({ files: { 'main.vsl': '#{}' }, set: ['server.relay_networks=[]'] });
//   try {
//     const c = await s.client();                   // connected, greeting read
//     ...
//     const [m] = await s.spooled();                // what reached the spool
//     assert.equal(m.record.recipients.length, 1);
//   } finally {
//     await s.stop();                               // server, queue and policy dirs removed
//   }
//
// The spool is read straight from the directory (queue.dir/<place>/<id>.json
// and .eml), not through src/queue/, so a test sees exactly what a crash or
// `mta queue` would find on disk.

import fs from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import type { EnvelopeRecord } from '../../src/queue/envelope.js';
import { ROOT } from './paths.js';
import { SmtpClient, type ConnectOptions, type SmtpReply } from './smtp-client.js';

/** The repository root (for examples/, bench/ and src/), also when the tests run from dist/test/. */
export const REPO_ROOT = ROOT;

export interface TestServerOptions {
  /** Copy this directory (e.g. examples/doe-family) into a temporary policy directory first. */
  copyFrom?: string;
  /** Files to write into the policy directory (after the copy: they replace copied files). */
  files?: Record<string, string>;
  /** The policy file inside the directory (default main.vsl). */
  main?: string;
  /** `--set key=value` overrides. */
  set?: string[];
  /** Deliver queued mail (default false: messages stay in active/). */
  deliver?: boolean;
  /** Log level of the server (default info). */
  logLevel?: string;
}

export interface SpooledMessage {
  id: string;
  /** `active`, `deferred`, `dead` or `quarantine/<name>`. */
  place: string;
  record: EnvelopeRecord;
  eml: string;
}

export interface TestServer {
  server: RunningServer;
  port: number;
  policyDir: string;
  mainPath: string;
  queueDir: string;
  /** Every log line written so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Connects and reads the greeting. */
  client(opts?: ConnectOptions): Promise<SmtpClient>;
  /** Connects without reading anything. */
  connect(opts?: ConnectOptions): Promise<SmtpClient>;
  /** Every message in the spool, oldest first by id. */
  spooled(): Promise<SpooledMessage[]>;
  stop(): Promise<void>;
}

/** Makes a temporary directory; the caller removes it. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Copies the regular files of `from` into `to` (one level, as the examples are). */
export function copyDir(from: string, to: string): void {
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    if (e.isFile()) fs.copyFileSync(path.join(from, e.name), path.join(to, e.name));
  }
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }
}

/** Reads every message of a spool directory: `<place>/<id>.json` with its `<id>.eml`. */
export async function readSpool(queueDir: string): Promise<SpooledMessage[]> {
  const places: string[] = ['active', 'deferred', 'dead'];
  try {
    for (const q of await readdir(path.join(queueDir, 'quarantine'))) places.push(`quarantine/${q}`);
  } catch {
    // no quarantine directory yet
  }
  const out: SpooledMessage[] = [];
  for (const place of places) {
    let names: string[];
    try {
      names = await readdir(path.join(queueDir, place));
    } catch {
      continue;
    }
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      const id = n.slice(0, -5);
      const record = JSON.parse(await readFile(path.join(queueDir, place, n), 'utf8')) as EnvelopeRecord;
      const eml = await readFile(path.join(queueDir, place, `${id}.eml`), 'latin1');
      out.push({ id, place, record, eml });
    }
  }
  return out;
}

/** The header block of a message (up to the first empty line), unfolded: `[name, value]` in order. */
export function headerFields(eml: string): Array<[string, string]> {
  const end = eml.indexOf('\r\n\r\n');
  const block = end < 0 ? eml : eml.slice(0, end);
  const fields: Array<[string, string]> = [];
  for (const line of block.split('\r\n')) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      const last = fields[fields.length - 1]!;
      last[1] += line;
    } else {
      const colon = line.indexOf(':');
      if (colon > 0) fields.push([line.slice(0, colon), line.slice(colon + 1)]);
    }
  }
  // Unfolding (RFC 5322 §2.2.3) removes the CRLFs only; then trim the value.
  return fields.map(([n, v]) => [n, v.replace(/\s+/g, ' ').trim()]);
}

/** Every value of header `name` (case-insensitive), unfolded, in order. */
export function headerValues(eml: string, name: string): string[] {
  return headerFields(eml)
    .filter(([n]) => n.toLowerCase() === name.toLowerCase())
    .map(([, v]) => v);
}

/** The recipients of a spooled envelope, as `local@domain`. */
export function recipientsOf(m: SpooledMessage): string[] {
  return m.record.recipients.map((r) => `${r.address.local}@${r.address.domain}`);
}

/** A capturing log destination: every JSON line parsed into `logs`. */
export function captureLog(level: string): { log: ReturnType<typeof createLogger>; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString('utf8');
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { log: createLogger({ level, format: 'json', destination }), logs };
}

export async function startTestServer(opts: TestServerOptions): Promise<TestServer> {
  const policyDir = tempDir('vsl-e2e-policy-');
  const queueDir = tempDir('vsl-e2e-queue-');
  // State files (greylist, rate limits) go here, never to the default /var/lib/mta.
  const dataDir = tempDir('vsl-e2e-data-');
  const cleanup = (): void => {
    for (const d of [policyDir, queueDir, dataDir]) fs.rmSync(d, { recursive: true, force: true });
  };
  if (opts.copyFrom) copyDir(opts.copyFrom, policyDir);
  if (opts.files) writeFiles(policyDir, opts.files);
  const mainPath = path.join(policyDir, opts.main ?? 'main.vsl');
  const level = opts.logLevel ?? 'info';
  const { log, logs } = captureLog(level);
  let server: RunningServer;
  try {
    server = await startServer({
      mainPath,
      overrides: { listen: ['127.0.0.1:0'], queueDir, set: [`vsl.data_dir=${JSON.stringify(dataDir)}`, ...(opts.set ?? [])], logLevel: level },
      log,
      deliver: opts.deliver ?? false,
      watch: false,
    });
  } catch (e) {
    cleanup();
    throw e;
  }
  const port = server.listeners[0]!.port;
  const clients: SmtpClient[] = [];
  const connect = async (o: ConnectOptions = {}): Promise<SmtpClient> => {
    const c = await SmtpClient.connect(port, o);
    clients.push(c);
    return c;
  };
  let stopped = false;
  return {
    server,
    port,
    policyDir,
    mainPath,
    queueDir,
    logs,
    connect,
    async client(o = {}) {
      const c = await connect(o);
      await c.greeting();
      return c;
    },
    spooled: () => readSpool(queueDir),
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of clients) c.destroy();
      await server.stop(500);
      cleanup();
    },
  };
}

/** EHLO, MAIL, the RCPTs, one at a time; returns every reply (EHLO first). */
export async function transaction(c: SmtpClient, from: string, rcpts: string[], helo = 'client.example'): Promise<SmtpReply[]> {
  const out = [await c.ehlo(helo), await c.command(`MAIL FROM:<${from}>`)];
  for (const r of rcpts) out.push(await c.command(`RCPT TO:<${r}>`));
  return out;
}

/** A small message with the headers a test may want to look for. */
export function sampleMessage(from: string, to: string, subject = 'e2e test'): string {
  return [
    `From: <${from}>`,
    `To: <${to}>`,
    `Subject: ${subject}`,
    'Date: Sat, 22 Nov 2025 10:00:00 +0000',
    `Message-ID: <${Math.random().toString(36).slice(2)}@e2e.test>`,
    '',
    'Hello from the end-to-end tests.',
    '',
  ].join('\r\n');
}

/** DATA, the 354, the body and the end-of-data reply. */
export async function sendData(c: SmtpClient, body: string): Promise<{ data: SmtpReply; end: SmtpReply }> {
  const data = await c.command('DATA');
  if (data.code !== 354) return { data, end: data };
  return { data, end: await c.data(body) };
}

/** The queue id in `250 2.0.0 Ok: queued as <id>`. */
export function queuedId(reply: SmtpReply): string {
  const m = /queued as (\S+)/.exec(reply.last);
  if (!m) throw new Error(`not a queued reply: ${reply.last}`);
  return m[1]!;
}

/** A TCP port on 127.0.0.1 where nothing listens (bound briefly, then released). */
export async function unusedTcpPort(): Promise<number> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A server started by startServerIn: the real server plus what the test needs to read. */
export interface RunningIn {
  server: RunningServer;
  port: number;
  dir: string;
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * The real server on 127.0.0.1:0 running `<policyDir>/main.vsl` in place
 * (no copy), with a temporary queue and its JSON log records in `logs`.
 * `ownsDir` removes the policy directory at stop.
 */
export async function startServerIn(policyDir: string, opts: { set?: string[]; watch?: boolean; ownsDir?: boolean } = {}): Promise<RunningIn> {
  const queueDir = tempDir('vsl-test-queue-');
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const server = await startServer({
    mainPath: path.join(policyDir, 'main.vsl'),
    overrides: { listen: ['127.0.0.1:0'], queueDir, set: opts.set ?? [] },
    log,
    deliver: false,
    watch: opts.watch ?? false,
  });
  return {
    server,
    port: server.listeners[0]!.port,
    dir: policyDir,
    logs,
    async stop() {
      await server.stop(500);
      fs.rmSync(queueDir, { recursive: true, force: true });
      if (opts.ownsDir) fs.rmSync(policyDir, { recursive: true, force: true });
    },
  };
}
