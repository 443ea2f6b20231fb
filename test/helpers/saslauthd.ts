// Starts a real saslauthd for a test, with no global state touched.
//
// saslauthd's sasldb mechanism only reads /etc/sasldb2 (on Debian neither
// -O nor anything else points it elsewhere), and the shadow/PAM mechanisms
// need system users. So the daemon runs with the `rimap` mechanism, which
// checks each login by an IMAP LOGIN against a server we choose: the helper
// runs a small IMAP responder on 127.0.0.1 that knows the test accounts.
// Everything between our client and saslauthd — socket, wire format,
// service and realm — is the real daemon's. With `-r`, saslauthd appends
// the realm to the login it checks ("user@REALM"), which makes the realm we
// send observable; the service appears in saslauthd's debug log (`-d`).
//
// The daemon runs in the foreground in its own process group, with its
// socket in a private temporary directory; stop() ends both servers and
// removes the directory. Returns null when saslauthd is not installed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestSaslauthd {
  /** The UNIX socket to give to `saslauthd:` backends. */
  socket: string;
  /** Logins (as saslauthd passed them on, realm appended) the IMAP side saw. */
  logins: string[];
  /** saslauthd's debug output so far (one line per decision, with service and realm). */
  log(): string;
  stop(): Promise<void>;
}

/** The saslauthd binary (PATH first, then Debian's /usr/sbin), or null. */
export function saslauthdBinary(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v saslauthd'], { encoding: 'utf8' });
  const path = found.status === 0 ? found.stdout.trim() : '';
  if (path) return path;
  return existsSync('/usr/sbin/saslauthd') ? '/usr/sbin/saslauthd' : null;
}

/** Reads one IMAP quoted string at `s[i]` (a `"`); returns the text and the index after it. */
function readQuoted(s: string, i: number): [string, number] | null {
  if (s[i] !== '"') return null;
  let out = '';
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') out += s[++j] ?? '';
    else if (s[j] === '"') return [out, j + 1];
    else out += s[j];
  }
  return null;
}

/** An IMAP server that answers LOGIN from `accounts` (login → password) and LOGOUT. */
function startImap(accounts: Record<string, string>, logins: string[]): Promise<{ server: Server; port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.write('* OK test IMAP ready\r\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const m = /^(\S+) (\S+) ?(.*)$/.exec(line);
        if (!m) continue;
        const [, tag, cmd, rest] = m as unknown as [string, string, string, string];
        if (/^login$/i.test(cmd)) {
          const user = readQuoted(rest, 0);
          const pass = user ? readQuoted(rest, user[1] + 1) : null;
          if (user) logins.push(user[0]);
          const ok = user && pass && Object.hasOwn(accounts, user[0]) && accounts[user[0]] === pass[0];
          sock.write(ok ? `${tag} OK LOGIN completed\r\n` : `${tag} NO LOGIN failed\r\n`);
        } else if (/^logout$/i.test(cmd)) {
          sock.write(`* BYE\r\n${tag} OK LOGOUT completed\r\n`);
          sock.end();
        } else sock.write(`${tag} BAD unknown command\r\n`);
      }
    });
  });
  (server as Server & { sockets?: Set<Socket> }).sockets = sockets;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ path });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts saslauthd (rimap) backed by `accounts`: keys are logins as the
 * IMAP side sees them, i.e. "user@REALM" when a realm is sent.
 */
export async function startSaslauthd(accounts: Record<string, string>): Promise<TestSaslauthd | null> {
  const binary = saslauthdBinary();
  if (!binary) return null;
  const logins: string[] = [];
  const imap = await startImap(accounts, logins);
  const dir = mkdtempSync(join(tmpdir(), 'vsl-mta-saslauthd-'));
  const child = spawn(
    binary,
    ['-a', 'rimap', '-O', `127.0.0.1/${imap.port}`, '-r', '-m', dir, '-n', '1', '-d'],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d.toString()));
  child.stderr!.on('data', (d) => (output += d.toString()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      // The daemon forks its worker into the same (own) process group.
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 3000);
      await exited(child);
      clearTimeout(timer);
    }
    for (const s of (imap.server as Server & { sockets: Set<Socket> }).sockets) s.destroy();
    await new Promise<void>((r) => imap.server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  };

  const socket = join(dir, 'mux');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && child.exitCode === null) {
    if (existsSync(socket) && (await socketAnswers(socket))) {
      return { socket, logins, log: () => output, stop };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`saslauthd did not start:\n${output}`);
}
