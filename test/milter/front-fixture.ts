// Starts `mta milter` or `mta policy-server` in-process on 127.0.0.1 port 0
// with a policy directory (a copy of an example and/or files written by the
// test) and a logger whose JSON lines the test reads back. Shared by the
// milter and policy-service tests.

import fs from 'node:fs';
import path from 'node:path';
import { smtpDraft } from '../../src/cli/milter.js';
import { startMilter } from '../../src/milter/server.js';
import { startPolicyServer } from '../../src/policy-service/server.js';
import type { FrontServer } from '../../src/reload/front-process.js';
import { captureLog, copyDir, tempDir, writeFiles } from '../helpers/server.js';
import { fromRoot } from '../helpers/paths.js';
import { documentedSettings, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

/** The on_config a test policy starts with: the server's name and its one local domain. */
export function onConfig(domain: string): string {
  return `fn on_config(config) {
  config.server.name = "mx.${domain}";
  config.server.domain = "${domain}";
  config
}
`;
}

export interface TestFront {
  front: FrontServer;
  /** The TCP port; 0 on a unix socket. */
  port: number;
  policyDir: string;
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startTestFront(kind: 'milter' | 'policy-server', o: { copyFrom?: string; files?: Record<string, string>; set?: string[]; watch?: boolean; listen?: string }): Promise<TestFront> {
  const policyDir = tempDir('vsl-front-policy-');
  const dataDir = tempDir('vsl-front-data-');
  if (o.copyFrom !== undefined) copyDir(fromRoot(o.copyFrom), policyDir);
  if (o.files) writeFiles(policyDir, o.files);
  const { log, logs } = captureLog('info');
  const start = kind === 'milter' ? startMilter : startPolicyServer;
  let front: FrontServer;
  try {
    front = await start({
      mainPath: path.join(policyDir, 'main.vsl'),
      overrides: { set: [`vsl.data_dir="${dataDir}"`, ...(o.set ?? [])] },
      log,
      listen: o.listen ?? '127.0.0.1:0',
      watch: o.watch ?? false,
      newDraft: smtpDraft,
    });
  } catch (e) {
    fs.rmSync(policyDir, { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    front,
    port: front.port ?? 0,
    policyDir,
    logs,
    async stop() {
      await front.stop(100);
      fs.rmSync(policyDir, { recursive: true, force: true });
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface Dialog {
  /** The client address Postfix is told about with XCLIENT. */
  client: string;
  /** A SASL login name, set with XCLIENT LOGIN (the session counts as authenticated). */
  login?: string;
  from: string;
  to: string[];
  /** The message; omitted: the dialog stops after the recipients. */
  message?: string;
}

export interface DialogReplies {
  mail: string;
  rcpts: string[];
  data: string | null;
}

/** One SMTP transaction through Postfix, as a client at `client` would have it. */
export async function throughPostfix(port: number, d: Dialog): Promise<DialogReplies> {
  const c = await SmtpClient.connect(port, { timeoutMs: 15_000 });
  try {
    await c.greeting();
    await c.ehlo('client.example');
    const attrs = [`ADDR=${d.client}`, 'NAME=[UNAVAILABLE]', ...(d.login !== undefined ? [`LOGIN=${d.login}`] : [])];
    const x = await c.command(`XCLIENT ${attrs.join(' ')}`);
    if (x.code !== 220) throw new Error(`XCLIENT refused: ${x.last}`);
    await c.ehlo('client.example');
    const mail = (await c.command(`MAIL FROM:<${d.from}>`)).last;
    const rcpts: string[] = [];
    for (const r of d.to) rcpts.push((await c.command(`RCPT TO:<${r}>`)).last);
    let data: string | null = null;
    if (d.message !== undefined && mail.startsWith('250') && rcpts.some((r) => r.startsWith('250'))) {
      const go = await c.command('DATA');
      data = go.code === 354 ? (await c.data(d.message)).last : go.last;
    }
    await c.quit().catch(() => undefined);
    return { mail, rcpts, data };
  } finally {
    c.destroy();
  }
}

export interface BehindPostfix {
  front: TestFront;
  /** The capture server Postfix delivers to. */
  sink: SmtpSink;
  postfix: PostfixInstance;
  stop(): Promise<void>;
}

/** A front, and a private Postfix configured for it as docs/postfix.md says, delivering to a capture server. */
export async function startBehindPostfix(kind: 'milter' | 'policy-server', o: Parameters<typeof startTestFront>[1]): Promise<BehindPostfix> {
  const front = await startTestFront(kind, o);
  let sink: SmtpSink | null = null;
  try {
    sink = await startSmtpSink();
    const postfix = await startPostfix({ relayhost: sink.address, main: documentedSettings(kind, front.port) });
    const s = sink;
    return {
      front, sink: s, postfix,
      async stop() {
        await postfix.stop();
        await s.close();
        await front.stop();
      },
    };
  } catch (e) {
    await sink?.close();
    await front.stop();
    throw e;
  }
}
