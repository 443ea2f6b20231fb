// Everything one transcript file runs against, with no network and no ports
// (SPEC §11.3): the policy (loaded with the file's `@set` overrides), the
// real SMTP front serving in-memory sockets, a stub resolver fed by `@dns`,
// a memory state store, a test clock (`@time`, `@advance`), `@user`
// credentials, and a sink keeping accepted messages in memory. The world
// lives for one file: state, DNS stubs, users and messages carry from one
// session to the next and are gone at its end.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { allBuiltins } from '../../builtins/registry.js';
import type { HostBuiltin } from '../../builtins/host.js';
import type { HostEnv } from '../../host/ports.js';
import { createFailureTracker, failureTrackerOptions } from '../../builtins/auth/failures.js';
import { hashScrypt } from '../../builtins/auth/passwd-file.js';
import { parseDuration } from '../../config/units.js';
import { createSmtpFront, type SmtpFront } from '../../smtp/front.js';
import { formatDiagnostic } from '../../vsl/diagnostics.js';
import { offlineEnv, TestClock, type StubRecord } from '../../policy/env.js';
import { loadPolicy, type PolicyVersion } from '../../policy/load.js';
import { PolicyRunner } from '../../policy/runner.js';
import { LISTENER_PORTS, TranscriptClient, type ReceivedReply } from './client.js';
import { MemorySink } from './messages.js';
import type { TranscriptSession } from './parse.js';
import { writeTestCertificate } from './test-cert.js';

/** The policy did not load for a session: the diagnostics as `mta check` prints them. */
export class PolicyLoadFailure extends Error {
  constructor(readonly diagnostics: string[]) {
    super('the policy did not load');
  }
}

export interface WorldOptions {
  mainPath: string;
  builtins?: HostBuiltin[];
  hostname?: string;
}

type LogEntry = Record<string, unknown>;

/** Cheap scrypt for test credentials: these hashes only live in a temp file for one run. */
const TEST_HASH_COST = { ln: 4, r: 8, p: 1, saltBytes: 16, hashBytes: 32 };

export class TranscriptWorld {
  readonly clock = new TestClock(Date.now());
  readonly records: StubRecord[] = [];
  readonly sink = new MemorySink();
  /** Every file a loaded policy version was built from (for `--watch`). */
  readonly policyFiles = new Set<string>();
  private readonly sets: string[] = [];
  private readonly users = new Map<string, string>();
  private usersFile: string | null = null;
  private usersVersion = 0;
  private readonly versions = new Map<string, PolicyVersion>();
  private current: PolicyVersion | null = null;
  /** Whether the policy's own on_config configures TLS: then every session gets the test certificate. */
  private policyHasTls = false;
  private env: HostEnv | null = null;
  private front: SmtpFront | null = null;
  private readonly logs: LogEntry[] = [];
  private readonly log: Logger;
  private readonly runner: PolicyRunner;
  private tmp: string | null = null;
  private cert: { certPath: string; keyPath: string } | null = null;
  private sessions = 0;

  constructor(private readonly opts: WorldOptions) {
    const logs = this.logs;
    // The front logs every stage decision with its rule and file:line (src/log/logger.ts
    // logStageDecision); a failed reply check is explained from these lines.
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.trim() === '') continue;
          try {
            logs.push(JSON.parse(line) as LogEntry);
          } catch {
            // not a JSON line: nothing to learn from it
          }
        }
        cb();
      },
    });
    this.log = pino({ level: 'info' }, destination);
    this.runner = new PolicyRunner({
      current: () => this.current!,
      byId: (id) => [...this.versions.values()].find((v) => v.id === id),
      log: this.log,
      now: () => this.clock.now(),
    });
  }

  private async tempDir(): Promise<string> {
    this.tmp ??= await mkdtemp(path.join(os.tmpdir(), 'mta-test-'));
    return this.tmp;
  }

  // ------------------------------------------------------------ world changes

  addRecord(r: StubRecord): void {
    this.records.push(r);
  }

  addSet(assignment: string): void {
    this.sets.push(assignment);
  }

  addUser(name: string, password: string): void {
    this.users.set(name, password);
    this.usersFile = null; // rewritten before the next load
  }

  setTime(ms: number): void {
    this.clock.ms = ms;
  }

  advance(ms: number): void {
    this.clock.ms += ms;
  }

  // ------------------------------------------------------------ policy versions

  /** The credentials file for `@user` (scrypt PHC lines), written when the users changed. */
  private async credentialsFile(): Promise<string | null> {
    if (this.users.size === 0) return null;
    if (this.usersFile !== null) return this.usersFile;
    const dir = await this.tempDir();
    const lines: string[] = [];
    for (const [user, password] of this.users) lines.push(`${user}:${await hashScrypt(password, TEST_HASH_COST)}`);
    const file = path.join(dir, `passwd.${++this.usersVersion}`);
    await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 });
    this.usersFile = file;
    return file;
  }

  private async overrides(tls: boolean): Promise<string[]> {
    const dir = await this.tempDir();
    // fs:: writes land in a throw-away directory, never in the real vsl.data_dir.
    const out = [`vsl.data_dir=${path.join(dir, 'data')}`, ...this.sets];
    const users = await this.credentialsFile();
    if (users !== null) out.push(`server.auth.backend=file:${users}`);
    if (tls) {
      this.cert ??= await writeTestCertificate(dir);
      out.push(`server.tls.certificate=${this.cert.certPath}`, `server.tls.private_key=${this.cert.keyPath}`);
    }
    return out;
  }

  private async load(tls: boolean): Promise<PolicyVersion> {
    const set = await this.overrides(tls);
    const key = JSON.stringify(set);
    const cached = this.versions.get(key);
    if (cached) return cached;
    const mainPath = this.opts.mainPath;
    const r = await loadPolicy(mainPath, {
      builtins: this.opts.builtins ?? allBuiltins(),
      overrides: { set },
      hostname: this.opts.hostname,
      // One environment for the whole file: state and DNS stubs outlive policy versions.
      env: (config) => {
        this.env ??= offlineEnv(config, mainPath, this.log, this.records, this.clock);
        return { ...this.env, config };
      },
    });
    if (!r.ok) {
      throw new PolicyLoadFailure(r.diagnostics.filter((d) => d.severity === 'error').map((d) => formatDiagnostic(d, r.sources.get(d.pos.file))));
    }
    for (const f of r.version.files) this.policyFiles.add(f);
    this.versions.set(key, r.version);
    return r.version;
  }

  /** The version a session runs on; the front is switched to it. */
  async prepare(session: TranscriptSession): Promise<PolicyVersion> {
    const wantTls = session.tls || session.listener === 'submissions';
    let v = await this.load(wantTls || this.policyHasTls);
    if (!wantTls && !this.policyHasTls && v.config.server.tls.certificate !== null) {
      // The policy configures TLS itself: STARTTLS is offered, with the test certificate.
      this.policyHasTls = true;
      v = await this.load(true);
    }
    const previous = this.current;
    this.current = v;
    if (this.front === null) {
      this.front = createSmtpFront({
        config: v.config,
        runner: this.runner,
        sink: this.sink,
        log: this.log,
        clock: this.clock,
        authBackendFailures: createFailureTracker(failureTrackerOptions(v.config, this.clock)),
      });
    } else if (previous !== v) {
      await this.front.reload(v.config);
    }
    return v;
  }

  /** How long a reply may take: the rule deadline (a looping rule is stopped by it), plus the greeting delay, plus slack. */
  replyWaitMs(v: PolicyVersion): number {
    const c = v.config;
    return parseDuration(c.vsl.rule_timeout) + parseDuration(c.server.smtp.greeting_delay) + 5000;
  }

  // ------------------------------------------------------------ sessions

  async connect(session: TranscriptSession): Promise<WorldSession> {
    if (this.front === null) throw new Error('prepare() the session first');
    this.sessions++;
    const port = session.client.port ?? 49151 + this.sessions;
    const logFrom = this.logs.length;
    const client = await TranscriptClient.open(this.front, {
      listener: session.listener,
      clientIp: session.client.ip,
      clientPort: port,
      serverIp: session.client.ip.includes(':') ? '::1' : '127.0.0.1',
      serverPort: LISTENER_PORTS[session.listener],
      implicitTls: session.tls || session.listener === 'submissions',
    });
    return new WorldSession(client, this.logs, logFrom, port, this.front);
  }

  async close(): Promise<void> {
    await this.front?.close(500).catch(() => undefined);
    for (const v of this.versions.values()) v.dispose();
    this.versions.clear();
    await this.env?.state.close().catch(() => undefined);
    if (this.tmp !== null) await rm(this.tmp, { recursive: true, force: true });
  }
}

/** One connected session, and how its replies were decided (from the front's decision log). */
export class WorldSession {
  private conn: string | null = null;
  private cursor: number;

  constructor(
    readonly client: TranscriptClient,
    private readonly logs: LogEntry[],
    logFrom: number,
    private readonly port: number,
    private readonly front: SmtpFront,
  ) {
    this.cursor = logFrom;
  }

  /** The connection id the front gave this session (its `connected` log line carries our client port). */
  private connId(): string | null {
    if (this.conn !== null) return this.conn;
    for (let i = this.cursor; i < this.logs.length; i++) {
      const e = this.logs[i]!;
      if (e.msg === 'connected' && e.client_port === this.port && typeof e.conn === 'string') {
        this.conn = e.conn;
        this.cursor = i + 1;
        break;
      }
    }
    return this.conn;
  }

  /**
   * What decided a reply: the next stage decision of this session whose
   * reply is the one received. Protocol replies (354, syntax errors) have none.
   */
  deciderOf(reply: ReceivedReply): string | null {
    const conn = this.connId();
    if (conn === null) return null;
    for (let i = this.cursor; i < this.logs.length; i++) {
      const e = this.logs[i]!;
      if (e.conn !== conn || typeof e.stage !== 'string' || typeof e.reply !== 'string') continue;
      if (e.reply.replace(/^(\d{3})-/, '$1 ') !== reply.first) continue;
      this.cursor = i + 1;
      if (typeof e.error === 'string') return e.error;
      const rule = typeof e.rule === 'string' ? e.rule : null;
      if (rule === null) return `${e.stage} stage`;
      if (typeof e.at === 'string') return `${e.stage}: rule "${rule}" at ${e.at}`;
      return `${e.stage}: ${rule}`;
    }
    return null;
  }

  /** Closes from the client side and waits (bounded) until the server side is gone too. */
  async close(): Promise<void> {
    await this.client.close();
    const deadline = Date.now() + 2000;
    while (this.front.connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }
}
