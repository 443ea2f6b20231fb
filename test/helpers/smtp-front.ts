// Starts a real SMTP front (src/smtp/front.ts) on 127.0.0.1 port 0 with a
// scripted runner (fake-runner.ts), an fsync'ing sink (fsync-sink.ts), a
// logger whose lines the test can read and a clock whose sleeps are
// recorded instead of waited. Used by the test/smtp tests.
//
//   const h = await startFront({ script: { rcpt: reject('550 5.1.1 no') } });
//   const c = await h.client();            // connected, greeting read
//   ...
//   await h.close();
//
// or, closing it however the test ends:
//
//   await withFront({ script: ... }, async (h) => { ... });

import { Writable } from 'node:stream';
import type { Clock } from '../../src/host/ports.js';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/logger.js';
import type { ListenerKind, Stage } from '../../src/mail/types.js';
import { createSmtpFront, type SmtpFront } from '../../src/smtp/front.js';
import type { AuthFailureTracker } from '../../src/smtp/context.js';
import type { MessageSink } from '../../src/smtp/sink.js';
import { FakeRunner, type StageScript } from './fake-runner.js';
import { FsyncSink } from './fsync-sink.js';
import { SmtpClient, type ConnectOptions } from './smtp-client.js';
import { makeTestCertificate, type TestCertificate } from './tls-cert.js';

export interface HarnessOptions {
  script?: Partial<Record<Stage, StageScript>>;
  /** Stages that "have rules" when it differs from the script's keys. */
  rules?: Stage[];
  /** Adjusts the test configuration. */
  config?: (c: Config) => void;
  /** Makes a certificate and configures it (STARTTLS, submissions). */
  tls?: boolean;
  listeners?: ListenerKind[];
  authFailures?: AuthFailureTracker;
  /** Another sink than the test FsyncSink (the real queue, say); `sink` then stays empty. */
  sink?: MessageSink;
}

export interface Harness {
  front: SmtpFront;
  runner: FakeRunner;
  sink: FsyncSink;
  config: Config;
  ports: Partial<Record<ListenerKind, number>>;
  /** Port of the first listener. */
  port: number;
  /** Every log line written, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Raw log output. */
  logText(): string;
  /** Sleeps asked of the clock (ms), in order. */
  sleeps: number[];
  cert: TestCertificate | null;
  /** Connects and reads the greeting (asserting nothing). */
  client(opts?: ConnectOptions & { listener?: ListenerKind }): Promise<SmtpClient>;
  /** Connects without reading anything. */
  connect(opts?: ConnectOptions & { listener?: ListenerKind }): Promise<SmtpClient>;
  close(graceMs?: number): Promise<void>;
}

/** The configuration tests start from: loopback listener, no privileged networks, no error delay. */
export function testConfig(): Config {
  const c = defaultConfig('mx.test.example');
  c.server.domain = 'test.example';
  c.server.virtual = ['virtual.example'];
  c.server.relay_networks = [];
  c.server.interfaces.addr = ['127.0.0.1:0'];
  c.server.smtp.error.delay = '0s';
  c.logs.level = 'debug';
  return c;
}

export async function startFront(opts: HarnessOptions = {}): Promise<Harness> {
  const config = testConfig();
  const listeners = opts.listeners ?? ['smtp'];
  config.server.interfaces.addr = listeners.includes('smtp') ? ['127.0.0.1:0'] : [];
  config.server.interfaces.addr_submission = listeners.includes('submission') ? ['127.0.0.1:0'] : [];
  config.server.interfaces.addr_submissions = listeners.includes('submissions') ? ['127.0.0.1:0'] : [];
  const cert = opts.tls ? await makeTestCertificate() : null;
  if (cert) {
    config.server.tls.certificate = cert.certPath;
    config.server.tls.private_key = cert.keyPath;
  }
  opts.config?.(config);

  let text = '';
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString('utf8');
      text += s;
      for (const line of s.split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger({ level: config.logs.level, format: 'json', destination });
  const sleeps: number[] = [];
  const clock: Clock = {
    now: () => Date.now(),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  };
  const runner = new FakeRunner(opts.script ?? {}, opts.rules);
  const sink = await FsyncSink.create();
  const front = createSmtpFront({ config, runner, sink: opts.sink ?? sink, log, clock, authBackendFailures: opts.authFailures ?? null });
  const bound = await front.listen();
  const ports: Partial<Record<ListenerKind, number>> = {};
  for (const b of bound) ports[b.kind] ??= b.port;

  const connect = (o: ConnectOptions & { listener?: ListenerKind } = {}): Promise<SmtpClient> => {
    const kind = o.listener ?? listeners[0]!;
    return SmtpClient.connect(ports[kind]!, { ...o, tls: o.tls ?? kind === 'submissions' });
  };
  let closed = false;
  return {
    front,
    runner,
    sink,
    config,
    ports,
    port: bound[0]!.port,
    logs,
    logText: () => text,
    sleeps,
    cert,
    connect,
    async client(o = {}) {
      const c = await connect(o);
      await c.greeting();
      return c;
    },
    async close(graceMs = 200) {
      if (closed) return;
      closed = true;
      await front.close(graceMs);
      await sink.cleanup();
      await cert?.cleanup();
    },
  };
}

/**
 * Starts a front, runs `use` with it and closes it afterwards, whether `use`
 * returned or threw (a failing test leaves no listener behind).
 *
 *   await withFront({ script: { rcpt: next() } }, async (h) => { ... });
 */
export async function withFront<T>(opts: HarnessOptions, use: (h: Harness) => Promise<T>): Promise<T> {
  const h = await startFront(opts);
  try {
    return await use(h);
  } finally {
    await h.close();
  }
}
