import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { createAuthBackend } from '../../src/builtins/auth/backend.js';
import { authBuiltins, type AuthCredentials } from '../../src/builtins/auth/builtins.js';
import { createFailureTracker, failureTrackerOptions } from '../../src/builtins/auth/failures.js';
import { hashArgon2id, hashScrypt, parsePhc, validatePasswdFile } from '../../src/builtins/auth/passwd-file.js';
import { saslauthdVerify } from '../../src/builtins/auth/saslauthd.js';
import type { Clock } from '../../src/host/ports.js';
import { passwdCommand } from '../../src/cli/passwd.js';
import type { Status } from '../../src/vsl/values/status.js';
import { VslError } from '../../src/vsl/values/value.js';
import { makeHostCall, type TestHostCall } from '../helpers/host-call.js';
import { startSaslauthd, type TestSaslauthd } from '../helpers/saslauthd.js';

// Cheap hash parameters for fixtures; `mta passwd` tests use the defaults.
const CHEAP_SCRYPT = { ln: 10, r: 8, p: 1, saltBytes: 16, hashBytes: 32 };
const CHEAP_ARGON2 = { m: 1024, t: 1, p: 1 };

const unixUsers = authBuiltins.find((b) => b.name === 'auth::unix_users')!;
const v1Authenticate = authBuiltins.find((b) => b.name === 'authenticate')!;

function config(set: (c: Config) => void = () => {}): Config {
  const c = defaultConfig('mx.example.test');
  set(c);
  return c;
}

function authCall(backend: string | null, creds: AuthCredentials | undefined, set: (c: Config) => void = () => {}): TestHostCall {
  const call = makeHostCall({
    stage: 'authenticate',
    configure: (c) => {
      c.server.auth.backend = backend;
      set(c);
    },
  });
  (call as TestHostCall & { credentials?: AuthCredentials }).credentials = creds;
  return call;
}

const plain = (authid: string, authpass: string): AuthCredentials => ({ mechanism: 'PLAIN', authid, authpass });

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vsl-mta-auth-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('saslauthd backend (real saslauthd)', () => {
  let sasl: TestSaslauthd | null = null;
  before(async () => {
    sasl = await startSaslauthd({ alice: 'correct horse', 'carol@EXAMPLE.ORG': 'realm password' });
  });
  after(async () => {
    await sasl?.stop();
  });
  const skip = 'saslauthd is not installed (apt-get install sasl2-bin)';

  test('the right password is valid', async (t) => {
    if (!sasl) return t.skip(skip);
    const backend = createAuthBackend(`saslauthd:${sasl.socket}`, config());
    assert.equal(await backend.verify('alice', 'correct horse'), true);
  });

  test('a wrong password is invalid', async (t) => {
    if (!sasl) return t.skip(skip);
    const backend = createAuthBackend(`saslauthd:${sasl.socket}`, config());
    assert.equal(await backend.verify('alice', 'wrong'), false);
  });

  test('an unknown user is invalid', async (t) => {
    if (!sasl) return t.skip(skip);
    const backend = createAuthBackend(`saslauthd:${sasl.socket}`, config());
    assert.equal(await backend.verify('mallory', 'correct horse'), false);
  });

  test('service and realm from server.auth are sent to saslauthd', async (t) => {
    if (!sasl) return t.skip(skip);
    const backend = createAuthBackend(
      `saslauthd:${sasl.socket}`,
      config((c) => {
        c.server.auth.saslauthd_service = 'smtp-test';
        c.server.auth.saslauthd_realm = 'EXAMPLE.ORG';
      }),
    );
    assert.equal(await backend.verify('carol', 'realm password'), true);
    assert.ok(sasl.logins.includes('carol@EXAMPLE.ORG'), `logins seen: ${sasl.logins.join(', ')}`);
    assert.match(sasl.log(), /\[user=carol@EXAMPLE\.ORG\] \[service=smtp-test\] \[realm=EXAMPLE\.ORG\]/);
    // The same user without the realm is someone else.
    const noRealm = createAuthBackend(`saslauthd:${sasl.socket}`, config());
    assert.equal(await noRealm.verify('carol', 'realm password'), false);
  });

  test('a password with a NUL byte is invalid without asking saslauthd', async (t) => {
    if (!sasl) return t.skip(skip);
    const before = sasl.logins.length;
    const backend = createAuthBackend(`saslauthd:${sasl.socket}`, config());
    assert.equal(await backend.verify('alice', 'correct horse\0junk'), false);
    assert.equal(sasl.logins.length, before);
  });

  test('auth::unix_users and authenticate() return accept for valid and next for invalid credentials', async (t) => {
    if (!sasl) return t.skip(skip);
    const ok = (await unixUsers.fn(authCall(`saslauthd:${sasl.socket}`, plain('alice', 'correct horse')), [])) as Status;
    assert.equal(ok.kind, 'accept');
    const bad = (await v1Authenticate.fn(authCall(`saslauthd:${sasl.socket}`, plain('alice', 'nope')), [])) as Status;
    assert.equal(bad.kind, 'next');
  });

  test('a missing saslauthd socket is an error, not an invalid password', async () => {
    const backend = createAuthBackend(`saslauthd:${join(dir, 'no-such-mux')}`, config());
    await assert.rejects(backend.verify('alice', 'x'), /saslauthd at .*no-such-mux: ENOENT/);
    await assert.rejects(
      async () => unixUsers.fn(authCall(`saslauthd:${join(dir, 'no-such-mux')}`, plain('alice', 'x')), []),
      (e: unknown) => e instanceof VslError && /^auth::unix_users: saslauthd at/.test(e.message),
    );
  });

  test('a saslauthd that never answers is an error after the timeout', async () => {
    const path = join(dir, 'silent-mux');
    const silent: Server = createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(path, () => r()));
    try {
      await assert.rejects(
        saslauthdVerify(path, { login: 'a', password: 'b', service: 'smtp', realm: '' }, 200),
        /no answer within 200 ms/,
      );
    } finally {
      silent.close();
    }
  });

  test('an answer other than OK or NO is an error', async () => {
    const path = join(dir, 'odd-mux');
    const odd: Server = createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end(Buffer.from([0, 4, ...Buffer.from('WHAT')])));
    });
    await new Promise<void>((r) => odd.listen(path, () => r()));
    try {
      await assert.rejects(saslauthdVerify(path, { login: 'a', password: 'b', service: 'smtp', realm: '' }), /unexpected answer "WHAT"/);
    } finally {
      odd.close();
    }
  });
});

describe('file backend', () => {
  let n = 0;
  const fileWith = (text: string): string => {
    const p = join(dir, `passwd-${++n}`);
    writeFileSync(p, text, { mode: 0o600 });
    return p;
  };

  test('scrypt and argon2id entries verify their passwords and refuse others', async () => {
    const path = fileWith(
      [
        '# users of example.org',
        `alice:${await hashScrypt('alice pw', CHEAP_SCRYPT)}`,
        '',
        `  # an indented comment`,
        `bob@example.org:${await hashArgon2id('bob pw', CHEAP_ARGON2)}`,
      ].join('\n') + '\n',
    );
    const backend = createAuthBackend(`file:${path}`, config());
    assert.equal(await backend.verify('alice', 'alice pw'), true);
    assert.equal(await backend.verify('alice', 'bob pw'), false);
    assert.equal(await backend.verify('bob@example.org', 'bob pw'), true);
    assert.equal(await backend.verify('bob@example.org', 'Bob pw'), false);
  });

  test('an unknown user is invalid, also with the password of another user', async () => {
    const path = fileWith(`alice:${await hashScrypt('alice pw', CHEAP_SCRYPT)}\n`);
    const backend = createAuthBackend(`file:${path}`, config());
    assert.equal(await backend.verify('mallory', 'alice pw'), false);
    assert.equal(await backend.verify('Alice', 'alice pw'), false);
    assert.equal(await backend.verify('# users', 'alice pw'), false);
  });

  test('the file is re-read when it changes', async () => {
    const path = fileWith(`alice:${await hashScrypt('old', CHEAP_SCRYPT)}\n`);
    const backend = createAuthBackend(`file:${path}`, config());
    assert.equal(await backend.verify('carol', 'carol pw'), false);
    writeFileSync(path, `alice:${await hashScrypt('old', CHEAP_SCRYPT)}\ncarol:${await hashScrypt('carol pw', CHEAP_SCRYPT)}\n`);
    assert.equal(await backend.verify('carol', 'carol pw'), true);
  });

  test('a relative file path resolves against the policy directory', async () => {
    const path = fileWith(`alice:${await hashScrypt('pw', CHEAP_SCRYPT)}\n`);
    const backend = createAuthBackend(`file:${path.slice(dir.length + 1)}`, config(), { baseDir: dir });
    assert.equal(backend.description, `file:${path}`);
    assert.equal(await backend.verify('alice', 'pw'), true);
  });

  test('malformed lines are reported with file, line and column', async () => {
    const good = await hashScrypt('pw', CHEAP_SCRYPT);
    const path = fileWith(
      [
        '# comment',
        `alice:${good}`,
        'no colon here',
        'bob:$md5$abc',
        `alice:${good}`,
        'carol:$scrypt$ln=15,r=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA',
        `dave:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$!!!`,
        `bad user:${good}`,
      ].join('\n') + '\n',
    );
    const diags = validatePasswdFile(path);
    assert.deepEqual(
      diags.map((d) => [d.file, d.line, d.col, d.severity]),
      [
        [path, 3, 1, 'error'],
        [path, 4, 5, 'error'],
        [path, 5, 1, 'error'],
        [path, 6, 7, 'error'],
        [path, 7, 6, 'error'],
        [path, 8, 1, 'error'],
      ],
    );
    assert.match(diags[0]!.message, /expected user:hash/);
    assert.match(diags[1]!.message, /unsupported hash scheme 'md5'/);
    assert.match(diags[2]!.message, /duplicate user 'alice' \(first at line 2\)/);
    assert.match(diags[3]!.message, /scrypt: missing parameter p/);
    assert.match(diags[4]!.message, /argon2id: hash must be base64/);
    assert.match(diags[5]!.message, /invalid user name 'bad user'/);
  });

  test('a user whose line is malformed or duplicated cannot log in: the check is an error naming file:line', async () => {
    const good = await hashScrypt('pw', CHEAP_SCRYPT);
    const path = fileWith(`alice:${good}\nbob:$md5$abc\nalice:${good}\ncarol:${good}\n`);
    const backend = createAuthBackend(`file:${path}`, config());
    await assert.rejects(backend.verify('bob', 'pw'), new RegExp(`${path}:2: unsupported hash scheme`));
    await assert.rejects(backend.verify('alice', 'pw'), new RegExp(`${path}:1: duplicate user 'alice'`));
    assert.equal(await backend.verify('carol', 'pw'), true);
  });

  test('a clean file gives no diagnostics; a world-readable one a warning; a missing one an error', async () => {
    const path = fileWith(`alice:${await hashScrypt('pw', CHEAP_SCRYPT)}\n# end\n`);
    assert.deepEqual(validatePasswdFile(path), []);
    chmodSync(path, 0o644);
    assert.deepEqual(validatePasswdFile(path).map((d) => d.severity), ['warning']);
    const missing = validatePasswdFile(join(dir, 'absent'));
    assert.equal(missing.length, 1);
    assert.match(missing[0]!.message, /cannot read password file: ENOENT/);
  });

  test('a missing password file is an error when checking, not an invalid password', async () => {
    const backend = createAuthBackend(`file:${join(dir, 'absent')}`, config());
    await assert.rejects(backend.verify('alice', 'pw'), /password file .*absent: ENOENT/);
  });

  test('PHC parsing accepts argon2 parameters in any order and bounds the cost', () => {
    const salt = 'c2FsdHNhbHRzYWx0';
    const hash = 'aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA';
    assert.equal(typeof parsePhc(`$argon2id$v=19$m=1024,p=1,t=2$${salt}$${hash}`), 'object');
    assert.match(parsePhc(`$argon2id$v=19$m=99999999,t=2,p=1$${salt}$${hash}`) as string, /out of range/);
    assert.match(parsePhc(`$argon2i$v=19$m=1024,t=2,p=1$${salt}$${hash}`) as string, /unsupported hash scheme 'argon2i'/);
    assert.match(parsePhc(`$scrypt$ln=22,r=8,p=1$${salt}$${hash}`) as string, /more than 256 MiB/);
  });
});

describe('auth::unix_users configuration errors', () => {
  test('without server.auth.backend the check is a runtime error', async () => {
    await assert.rejects(
      async () => unixUsers.fn(authCall(null, plain('alice', 'pw')), []),
      (e: unknown) => e instanceof VslError && /^auth::unix_users: no authentication backend configured/.test(e.message),
    );
  });

  test('an invalid backend string is a runtime error', async () => {
    await assert.rejects(async () => unixUsers.fn(authCall('ldap://x', plain('alice', 'pw')), []), /auth::unix_users: server.auth.backend: expected/);
  });

  test('without credentials in progress the check is a runtime error', async () => {
    await assert.rejects(async () => unixUsers.fn(authCall('file:/nonexistent', undefined), []), /auth::unix_users: no AUTH credentials in progress/);
  });

  test('the password never appears in the log', async () => {
    const path = join(dir, 'logcheck');
    writeFileSync(path, `alice:${await hashScrypt('s3cret-value', CHEAP_SCRYPT)}\n`, { mode: 0o600 });
    const call = authCall(`file:${path}`, plain('alice', 's3cret-value'));
    assert.equal(((await unixUsers.fn(call, [])) as Status).kind, 'accept');
    assert.ok(call.logs.length > 0);
    assert.ok(!JSON.stringify(call.logs).includes('s3cret-value'));
  });

  test('both names are authenticate-stage I/O built-ins without arguments', () => {
    for (const b of [unixUsers, v1Authenticate]) assert.deepEqual([b.from, b.io, b.arity], ['authenticate', true, 0]);
  });
});

describe('mta passwd', () => {
  function io(input: string | Readable) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d) => (out += d));
    stderr.on('data', (d) => (err += d));
    const stdin = typeof input === 'string' ? Readable.from([input]) : input;
    return { io: { stdin, stdout, stderr }, out: () => out, err: () => err };
  }

  test('creates the file with a scrypt entry, mode 0600, that the backend accepts', async () => {
    const path = join(dir, 'new-passwd');
    const t = io('first password\nignored second line\n');
    assert.equal(await passwdCommand([path, 'alice'], t.io), 0);
    assert.match(t.out(), /added alice/);
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^alice:\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\n$/);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const backend = createAuthBackend(`file:${path}`, config());
    assert.equal(await backend.verify('alice', 'first password'), true);
    assert.equal(await backend.verify('alice', 'ignored second line'), false);
  });

  test('replaces an entry in place, keeping comments and other users, with --argon2', async () => {
    const path = join(dir, 'replace-passwd');
    const bobLine = `bob:${await hashScrypt('bob pw', CHEAP_SCRYPT)}`;
    writeFileSync(path, `# header\nalice:${await hashScrypt('old', CHEAP_SCRYPT)}\n${bobLine}\n`, { mode: 0o640 });
    const backend = createAuthBackend(`file:${path}`, config());
    assert.equal(await backend.verify('alice', 'old'), true);

    const t = io('new pw\r\n');
    assert.equal(await passwdCommand(['--argon2', path, 'alice'], t.io), 0);
    assert.match(t.out(), /updated alice/);
    const lines = readFileSync(path, 'utf8').split('\n');
    assert.equal(lines[0], '# header');
    assert.match(lines[1]!, /^alice:\$argon2id\$v=19\$m=65536,t=3,p=4\$/);
    assert.equal(lines[2], bobLine);
    assert.equal(lines.length, 4);
    // An existing file keeps its mode (the server may read it through its group).
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.equal(await backend.verify('alice', 'old'), false);
    assert.equal(await backend.verify('alice', 'new pw'), true);
    assert.equal(await backend.verify('bob', 'bob pw'), true);
    assert.deepEqual(validatePasswdFile(path), []);
  });

  test('only the line of exactly that user is replaced', async () => {
    const path = join(dir, 'prefix-passwd');
    const aliceX = `alicex:${await hashScrypt('x', CHEAP_SCRYPT)}`;
    writeFileSync(path, `${aliceX}\nalice\n`, { mode: 0o600 });
    assert.equal(await passwdCommand([path, 'alice'], io('pw\n').io), 0);
    const lines = readFileSync(path, 'utf8').split('\n');
    assert.deepEqual(lines.slice(0, 2), [aliceX, 'alice']);
    assert.match(lines[2]!, /^alice:\$scrypt\$/);
  });

  test('reads the password twice without echo on a terminal', async () => {
    const path = join(dir, 'tty-passwd');
    const stdin = new PassThrough() as PassThrough & { isTTY: boolean; setRawMode: (raw: boolean) => void };
    const modes: boolean[] = [];
    stdin.isTTY = true;
    stdin.setRawMode = (raw) => void modes.push(raw);
    const t = io(stdin);
    const done = passwdCommand([path, 'alice'], t.io);
    stdin.write('tyop\x7f\x7fpo-pw\r');
    stdin.write('typo-pw\r');
    assert.equal(await done, 0);
    assert.deepEqual(modes, [true, false]);
    assert.equal(t.err(), 'Password: \nRetype password: \n');
    assert.equal(await createAuthBackend(`file:${path}`, config()).verify('alice', 'typo-pw'), true);
  });

  test('mismatched passwords on a terminal change nothing and exit 1', async () => {
    const path = join(dir, 'tty-mismatch');
    const stdin = new PassThrough() as PassThrough & { isTTY: boolean; setRawMode: (raw: boolean) => void };
    stdin.isTTY = true;
    stdin.setRawMode = () => {};
    const t = io(stdin);
    const done = passwdCommand([path, 'alice'], t.io);
    stdin.write('one\rtwo\r');
    assert.equal(await done, 1);
    assert.match(t.err(), /passwords do not match/);
    assert.throws(() => statSync(path), /ENOENT/);
  });

  test('usage errors exit 2, an empty password exits 1, --help exits 0', async () => {
    const path = join(dir, 'usage-passwd');
    let t = io('pw\n');
    assert.equal(await passwdCommand([path], t.io), 2);
    assert.match(t.err(), /usage: mta passwd/);
    t = io('pw\n');
    assert.equal(await passwdCommand(['--sha1', path, 'alice'], t.io), 2);
    t = io('pw\n');
    assert.equal(await passwdCommand([path, 'bad:user'], t.io), 2);
    t = io('\n');
    assert.equal(await passwdCommand([path, 'alice'], t.io), 1);
    t = io('');
    assert.equal(await passwdCommand([path, 'alice'], t.io), 1);
    assert.throws(() => statSync(path), /ENOENT/);
    t = io('');
    assert.equal(await passwdCommand(['--help'], t.io), 0);
    assert.match(t.out(), /--argon2/);
  });

  test('a file in a missing directory is an error exit 1', async () => {
    const t = io('pw\n');
    assert.equal(await passwdCommand([join(dir, 'no', 'such', 'dir', 'passwd'), 'alice'], t.io), 1);
    assert.match(t.err(), /ENOENT/);
  });
});

describe('failed AUTH attempts per client', () => {
  function clock(): Clock & { t: number } {
    const c = { t: 1_700_000_000_000, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
    return c;
  }

  test('the delay grows 0, 1s, 2s, 4s, 8s and stays at 8s', () => {
    const tracker = createFailureTracker({ windowMs: 900_000, maxFailures: 10, clock: clock() });
    const delays = [tracker.delayFor('192.0.2.1')];
    for (let i = 0; i < 6; i++) {
      tracker.recordFailure('192.0.2.1');
      delays.push(tracker.delayFor('192.0.2.1'));
    }
    assert.deepEqual(delays, [0, 1000, 2000, 4000, 8000, 8000, 8000]);
    assert.equal(tracker.delayFor('192.0.2.2'), 0);
  });

  test('a client is refused once failures_per_ip_max failures fall within the window', () => {
    const c = clock();
    const tracker = createFailureTracker(failureTrackerOptions(config((cfg) => {
      cfg.server.auth.failures_per_ip_max = 3;
      cfg.server.auth.failure_window = '10m';
    }), c));
    tracker.recordFailure('192.0.2.1');
    c.t += 5 * 60_000;
    tracker.recordFailure('192.0.2.1');
    assert.equal(tracker.isBlocked('192.0.2.1'), false);
    tracker.recordFailure('192.0.2.1');
    assert.equal(tracker.isBlocked('192.0.2.1'), true);
    // The first failure leaves the window: two remain.
    c.t += 5 * 60_000;
    assert.equal(tracker.isBlocked('192.0.2.1'), false);
    assert.equal(tracker.failures('192.0.2.1'), 2);
    c.t += 10 * 60_000;
    assert.equal(tracker.failures('192.0.2.1'), 0);
    assert.equal(tracker.delayFor('192.0.2.1'), 0);
  });

  test('a success forgets the failures; IPv6 clients count per /64; mapped IPv4 as IPv4', () => {
    const tracker = createFailureTracker({ windowMs: 900_000, maxFailures: 2, clock: clock() });
    tracker.recordFailure('192.0.2.1');
    tracker.recordSuccess('192.0.2.1');
    assert.equal(tracker.failures('192.0.2.1'), 0);
    tracker.recordFailure('2001:db8:1:2::10');
    tracker.recordFailure('2001:db8:1:2::20');
    assert.equal(tracker.isBlocked('2001:db8:1:2::30'), true);
    assert.equal(tracker.isBlocked('2001:db8:1:3::10'), false);
    tracker.recordFailure('::ffff:192.0.2.9');
    assert.equal(tracker.failures('192.0.2.9'), 1);
  });

  test('the table forgets the least recently active client beyond its bound', () => {
    const tracker = createFailureTracker({ windowMs: 900_000, maxFailures: 5, clock: clock(), maxClients: 2 });
    tracker.recordFailure('192.0.2.1');
    tracker.recordFailure('192.0.2.2');
    tracker.recordFailure('192.0.2.3');
    assert.deepEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((ip) => tracker.failures(ip)), [0, 1, 1]);
  });
});
