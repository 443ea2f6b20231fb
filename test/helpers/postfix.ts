// A private Postfix instance for tests and benchmarks: its own configuration
// directory (main.cf, master.cf), queue and data directories under a
// temporary directory, smtpd on a free loopback port, no chroot, delivery of
// everything to `relayhost` (a capture server of the test) or to `discard:`.
// The system Postfix is never touched. Needs root (as CI runs) and the
// Debian postfix package.
//
//   const sink = await startSmtpSink();
//   const pf = await startPostfix({ relayhost: sink.address, main: { smtpd_milters: `inet:127.0.0.1:${port}` } });
//   try {
//     const c = await SmtpClient.connect(pf.port);  ...
//   } finally {
//     await pf.stop();
//   }

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fromRoot } from './paths.js';
import { freePort } from './redis.js';

const run = promisify(execFile);

export const POSTFIX = '/usr/sbin/postfix';

/** Why Postfix tests cannot run here, or null when they can. */
export function postfixUnavailable(): string | null {
  if (!fs.existsSync(POSTFIX)) return 'postfix is not installed (apt-get install postfix)';
  if (process.getuid?.() !== 0) return 'a private Postfix instance needs root';
  return null;
}

export interface PostfixOptions {
  /** `host:port` every message is relayed to; omitted: messages are discarded after acceptance. */
  relayhost?: string;
  /** Further main.cf settings (they replace the defaults below). */
  main?: Record<string, string>;
}

export interface PostfixInstance {
  /** The smtpd port on 127.0.0.1. */
  port: number;
  dir: string;
  configDir: string;
  /** The main.cf as written, for comparison with the documentation. */
  mainCf: string;
  /** The PID of the master process (its children are smtpd, cleanup, qmgr…). */
  masterPid(): number | null;
  /** The maillog so far. */
  log(): string;
  stop(): Promise<void>;
}

// The services smtpd needs to receive, queue and pass mail on; all unchrooted.
function masterCf(port: number): string {
  const rows = [
    [`127.0.0.1:${port}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd'],
    ['pickup', 'unix', 'n', '-', 'n', '60', '1', 'pickup'],
    ['cleanup', 'unix', 'n', '-', 'n', '-', '0', 'cleanup'],
    ['qmgr', 'unix', 'n', '-', 'n', '300', '1', 'qmgr'],
    ['rewrite', 'unix', '-', '-', 'n', '-', '-', 'trivial-rewrite'],
    ['bounce', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['defer', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['trace', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['verify', 'unix', '-', '-', 'n', '-', '1', 'verify'],
    ['flush', 'unix', 'n', '-', 'n', '1000?', '0', 'flush'],
    ['proxymap', 'unix', '-', '-', 'n', '-', '-', 'proxymap'],
    ['smtp', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['relay', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['showq', 'unix', 'n', '-', 'n', '-', '-', 'showq'],
    ['error', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['retry', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['discard', 'unix', '-', '-', 'n', '-', '-', 'discard'],
    ['anvil', 'unix', '-', '-', 'n', '-', '1', 'anvil'],
    ['scache', 'unix', '-', '-', 'n', '-', '1', 'scache'],
    ['postlog', 'unix-dgram', 'n', '-', 'n', '-', '1', 'postlogd'],
  ];
  return rows.map((r) => r.join('  ')).join('\n') + '\n';
}

function mainCf(dir: string, o: PostfixOptions): string {
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(dir, 'queue'),
    data_directory: path.join(dir, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    myhostname: 'mx.postfix.test',
    mydestination: '',
    mynetworks: '127.0.0.0/8',
    // Tests and benchmarks play clients from other addresses and logged-in users.
    smtpd_authorized_xclient_hosts: '127.0.0.0/8',
    smtpd_peername_lookup: 'no',
    smtp_dns_support_level: 'disabled',
    smtp_tls_security_level: 'none',
    smtpd_tls_security_level: 'none',
    maillog_file: path.join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    default_process_limit: '200',
    smtpd_client_connection_count_limit: '0',
    smtpd_client_event_limit_exceptions: '127.0.0.0/8',
    // A milter or policy service that is down must not hold a test for minutes.
    milter_connect_timeout: '10s',
    milter_command_timeout: '10s',
    milter_default_action: 'tempfail',
    ...(o.relayhost !== undefined ? { relayhost: `[${o.relayhost.replace(/:(\d+)$/, ']:$1')}` } : { default_transport: 'discard', relay_transport: 'discard' }),
    ...o.main,
  };
  return Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`postfix did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startPostfix(o: PostfixOptions = {}): Promise<PostfixInstance> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsl-postfix-'));
  const configDir = path.join(dir, 'etc');
  fs.mkdirSync(configDir);
  fs.mkdirSync(path.join(dir, 'queue'));
  fs.mkdirSync(path.join(dir, 'data'));
  fs.chmodSync(dir, 0o755);
  fs.chownSync(path.join(dir, 'data'), Number((await run('id', ['-u', 'postfix'])).stdout.trim()), 0);
  const port = await freePort();
  const main = mainCf(dir, o);
  fs.writeFileSync(path.join(configDir, 'main.cf'), main);
  fs.writeFileSync(path.join(configDir, 'master.cf'), masterCf(port));
  const pidFile = path.join(dir, 'queue', 'pid', 'master.pid');
  const masterPid = (): number | null => {
    try {
      const n = Number(fs.readFileSync(pidFile, 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  };
  const stop = async (): Promise<void> => {
    const pid = masterPid();
    await run(POSTFIX, ['-c', configDir, 'stop']).catch(() => undefined);
    // The master waits for its children; kill what is left by its process group.
    if (pid !== null) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await run(POSTFIX, ['-c', configDir, 'start']);
    await waitForPort(port, 20_000);
  } catch (err) {
    const log = fs.existsSync(path.join(dir, 'maillog')) ? fs.readFileSync(path.join(dir, 'maillog'), 'utf8') : '';
    await stop();
    const e = err as Error & { stderr?: string };
    throw new Error(`postfix -c ${configDir} start failed: ${e.message}\n${e.stderr ?? ''}\n${log}`);
  }
  return {
    port,
    dir,
    configDir,
    mainCf: main,
    masterPid,
    log: () => {
      try {
        return fs.readFileSync(path.join(dir, 'maillog'), 'utf8');
      } catch {
        return '';
      }
    },
    stop,
  };
}

/** The ports docs/postfix.md uses in its examples, replaced by the test's. */
const DOCUMENTED_PORT = { milter: 8891, 'policy-server': 10040 } as const;

/**
 * The main.cf settings docs/postfix.md gives for a front (the fenced block
 * after `<!-- tested: milter -->` or `<!-- tested: policy-server -->`), with
 * the front's real port, so the tests run exactly what the page says.
 */
export function documentedSettings(which: 'milter' | 'policy-server', port: number): Record<string, string> {
  const doc = fs.readFileSync(fromRoot('docs', 'postfix.md'), 'utf8');
  const m = new RegExp(`<!-- tested: ${which} -->\\s*\`\`\`\\n([\\s\\S]*?)\`\`\``).exec(doc);
  if (m === null) throw new Error(`docs/postfix.md has no tested ${which} block`);
  const settings: Record<string, string> = {};
  let last: string | null = null;
  for (const line of m[1]!.split('\n')) {
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    if (/^\s/.test(line) && last !== null) {
      settings[last] = `${settings[last]} ${line.trim()}`.trim();
      continue;
    }
    const eq = line.indexOf('=');
    last = line.slice(0, eq).trim();
    settings[last] = line.slice(eq + 1).trim();
  }
  const from = `127.0.0.1:${DOCUMENTED_PORT[which]}`;
  for (const k of Object.keys(settings)) settings[k] = settings[k]!.split(from).join(`127.0.0.1:${port}`);
  return settings;
}
