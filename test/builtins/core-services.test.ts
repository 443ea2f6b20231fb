import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { coreBuiltins, formatCsv, parseCsv, servicesOf } from '../../src/builtins/core/index.js';
import type { HostCall } from '../../src/builtins/host.js';
import { VslError, type Value } from '../../src/vsl/values/value.js';
import { ServiceHandle } from '../../src/vsl/values/wire.js';
import { makeHostCall, type HostCallInit } from '../helpers/host-call.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'core-services-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The load-time call creating services: declared in a file in `dir`. */
function loadCall(init: HostCallInit = {}) {
  return makeHostCall({ stage: 'connect', txn: null, fileDir: dir, ...init });
}

function ruleCall(init: HostCallInit = {}) {
  return makeHostCall({ stage: 'rcpt', fileDir: dir, ...init });
}

function fnOf(name: string) {
  const b = coreBuiltins.find((x) => x.name === name);
  assert.ok(b, `${name} is registered`);
  return b;
}

function create(c: HostCall, name: string, ...args: Value[]): ServiceHandle {
  const h = fnOf(name).fn(c, args);
  assert.ok(h instanceof ServiceHandle);
  return h;
}

function opts(o: Record<string, Value>): Map<string, Value> {
  return new Map(Object.entries(o));
}

async function method(c: HostCall, h: ServiceHandle, name: string, ...args: Value[]): Promise<Value> {
  return await fnOf('sys::service_call').fn(c, [h, name, args]);
}

function isVsl(re: RegExp) {
  return (e: unknown) => e instanceof VslError && re.test(e.message);
}

function csvFile(name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

describe('csv format', () => {
  test('parses RFC 4180 quoting, trims fields and skips blank lines', () => {
    const text = 'a , b,c\r\n\r\n"x, y"," he said ""hi"" ",  "multi\nline"  \n   \nlast,\n';
    assert.deepEqual(parseCsv(text), [
      ['a', 'b', 'c'],
      ['x, y', ' he said "hi" ', 'multi\nline'],
      ['last', ''],
    ]);
    assert.deepEqual(parseCsv('a;b\n', ';'), [['a', 'b']]);
    assert.deepEqual(parseCsv('a\tb c\n', '\t'), [['a', 'b c']]);
  });

  test('an unterminated quote or junk after a quoted field is an error naming the line', () => {
    assert.throws(() => parseCsv('ok\n"open,field\n'), /line 2: unterminated quoted field/);
    assert.throws(() => parseCsv('ok\nok\n"a"b,c\n'), /line 3: unexpected "b"/);
  });

  test('formatting quotes only what needs it and reads back the same', () => {
    const records = [['plain', 'with,comma', 'with "quote"', ' padded ', '', 'two\nlines']];
    const text = formatCsv(records);
    assert.equal(text, 'plain,"with,comma","with ""quote"""," padded ","","two\nlines"\n');
    assert.deepEqual(parseCsv(text), records);
  });
});

describe('csv services', () => {
  test('sys::service("db:csv", …) reads the file relative to the declaring file; get finds the first record by key', async () => {
    csvFile('users.csv', 'alice, "Alice, A.", admin\nbob,Bob,user\nalice,second,ignored\n');
    const load = loadCall();
    const h = create(load, 'sys::service', 'db:csv', opts({ connector: 'users.csv' }));
    assert.equal(h.kind, 'csv');
    assert.ok(servicesOf(load.env).get(h.id), 'registered by id, in the process state on the HostEnv');
    const c = ruleCall();
    assert.deepEqual(await method(c, h, 'get', 'alice'), ['alice', 'Alice, A.', 'admin']);
    assert.deepEqual(await method(c, h, 'get', 'carol'), []);
  });

  test('set appends a record and rm deletes every record with the key, replacing the file', async () => {
    const file = csvFile('rw.csv', 'k1,v1\nk2,v2\nk1,again\n');
    const before = fs.statSync(file).ino;
    const h = create(loadCall(), 'csv', opts({ connector: 'rw.csv', access: 'O_RDWR' }));
    const c = ruleCall();
    assert.equal(await method(c, h, 'set', ['k3', 'a "quoted", value']), undefined);
    assert.notEqual(fs.statSync(file).ino, before, 'replaced by rename, not rewritten in place');
    assert.deepEqual(await method(c, h, 'get', 'k3'), ['k3', 'a "quoted", value']);
    assert.equal(await method(c, h, 'rm', 'k1'), true);
    assert.equal(await method(c, h, 'rm', 'k1'), false);
    assert.deepEqual(await method(c, h, 'get', 'k1'), []);
    assert.equal(fs.readFileSync(file, 'utf8'), 'k2,v2\nk3,"a ""quoted"", value"\n');
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('rw.csv')), ['rw.csv'], 'no temporary file left');
  });

  test('concurrent writes to one file are all kept', async () => {
    csvFile('many.csv', '');
    const h = create(loadCall(), 'csv', opts({ connector: 'many.csv', access: 'O_WRONLY' }));
    const c = ruleCall();
    await Promise.all(Array.from({ length: 20 }, (_, i) => method(c, h, 'set', [`k${i}`, BigInt(i)])));
    assert.equal(parseCsv(fs.readFileSync(path.join(dir, 'many.csv'), 'utf8')).length, 20);
  });

  test('a writable table may start without a file; a read-only one may not', async () => {
    const h = create(loadCall(), 'csv', opts({ connector: 'new/../created.csv', access: 'O_RDWR' }));
    await method(ruleCall(), h, 'set', ['a', 'b']);
    assert.equal(fs.readFileSync(path.join(dir, 'created.csv'), 'utf8'), 'a,b\n');
    assert.throws(() => create(loadCall(), 'csv', opts({ connector: 'missing.csv' })), isVsl(/^csv: cannot read .*missing\.csv: no such file/));
  });

  test('access modes are enforced: O_RDONLY refuses writes, O_WRONLY refuses reads', async () => {
    csvFile('ro.csv', 'a,b\n');
    const ro = create(loadCall(), 'csv', opts({ connector: 'ro.csv' }));
    const wo = create(loadCall(), 'csv', opts({ connector: 'ro.csv', access: 'O_WRONLY' }));
    const c = ruleCall();
    await assert.rejects(method(c, ro, 'set', ['x']), isVsl(/^csv\.set: .*read-only \(access O_RDONLY\)/));
    await assert.rejects(method(c, ro, 'rm', 'a'), isVsl(/^csv\.rm: .*read-only/));
    await assert.rejects(method(c, wo, 'get', 'a'), isVsl(/^csv\.get: .*write-only/));
    assert.equal(fs.readFileSync(path.join(dir, 'ro.csv'), 'utf8'), 'a,b\n');
  });

  test('refresh "always" sees changes made by others; refresh "no" keeps what it read at load', async () => {
    const file = csvFile('refresh.csv', 'k,old\n');
    const always = create(loadCall(), 'csv', opts({ connector: 'refresh.csv', refresh: 'always' }));
    const never = create(loadCall(), 'csv', opts({ connector: 'refresh.csv', refresh: 'no', delimiter: ',' }));
    fs.writeFileSync(file, 'k,new,longer\n');
    const c = ruleCall();
    assert.deepEqual(await method(c, always, 'get', 'k'), ['k', 'new', 'longer']);
    assert.deepEqual(await method(c, never, 'get', 'k'), ['k', 'old']);
    // Declaring it again (a policy reload) reads the file again.
    const reloaded = create(loadCall(), 'csv', opts({ connector: 'refresh.csv', refresh: 'no', delimiter: ',' }));
    assert.equal(reloaded.id, never.id, 'same declaration, same id');
    assert.deepEqual(await method(c, never, 'get', 'k'), ['k', 'new', 'longer']);
  });

  test('a custom delimiter is used for reading and writing', async () => {
    const file = csvFile('semi.csv', 'a;b,c\n');
    const h = create(loadCall(), 'csv', opts({ connector: 'semi.csv', access: 'O_RDWR', delimiter: ';' }));
    const c = ruleCall();
    assert.deepEqual(await method(c, h, 'get', 'a'), ['a', 'b,c']);
    await method(c, h, 'set', ['x;y', 'z']);
    assert.equal(fs.readFileSync(file, 'utf8'), 'a;b,c\n"x;y";z\n');
  });

  test('in dry-run mode csv writes are reported and not made; reads still happen', async () => {
    const file = csvFile('dry.csv', 'k,v\n');
    const h = create(loadCall(), 'csv', opts({ connector: 'dry.csv', access: 'O_RDWR' }));
    const c = ruleCall({ dryRun: true });
    await method(c, h, 'set', ['n', 'm']);
    assert.equal(await method(c, h, 'rm', 'k'), true);
    assert.deepEqual(await method(c, h, 'get', 'k'), ['k', 'v']);
    assert.equal(fs.readFileSync(file, 'utf8'), 'k,v\n');
    assert.equal(c.logs.filter((l) => /would run/.test(String(l.msg))).length, 2);
  });

  test('bad declarations are errors: unknown kind, unknown option, bad access, no connector, bad file', () => {
    csvFile('bad.csv', '"unterminated\n');
    const c = loadCall();
    assert.throws(() => create(c, 'sys::service', 'db:mysql', opts({ connector: 'x' })), isVsl(/^service: unknown service kind 'db:mysql'/));
    assert.throws(() => create(c, 'sys::service', 'smtp', opts({})), isVsl(/unknown service kind/));
    assert.throws(() => create(c, 'csv', opts({ connector: 'users.csv', acces: 'O_RDWR' })), isVsl(/^csv: unknown option 'acces'/));
    assert.throws(() => create(c, 'csv', opts({ connector: 'users.csv', access: 'rw' })), isVsl(/'access' must be "O_RDONLY", "O_WRONLY", "O_RDWR"/));
    assert.throws(() => create(c, 'csv', opts({ connector: 'users.csv', refresh: 'sometimes' })), isVsl(/'refresh' must be/));
    assert.throws(() => create(c, 'csv', opts({ connector: 'users.csv', delimiter: '::' })), isVsl(/'delimiter' must be one character/));
    assert.throws(() => create(c, 'csv', opts({ access: 'O_RDWR' })), isVsl(/'connector' is required/));
    assert.throws(() => create(c, 'csv', 'users.csv' as Value), isVsl(/expects a map of options/));
    assert.throws(() => create(c, 'csv', opts({ connector: 'bad.csv' })), isVsl(/^csv: .*bad\.csv: line 1: unterminated quoted field/));
  });

  test('methods are checked: unknown method, wrong arguments, stale handle', async () => {
    csvFile('m.csv', 'a,b\n');
    const h = create(loadCall(), 'csv', opts({ connector: 'm.csv', access: 'O_RDWR' }));
    const c = ruleCall();
    await assert.rejects(method(c, h, 'run'), isVsl(/^csv\.run: a csv service has no method 'run'/));
    await assert.rejects(method(c, h, 'get'), isVsl(/^csv\.get: expected 1 argument/));
    await assert.rejects(method(c, h, 'set', 'not an array'), isVsl(/^csv\.set: expects a non-empty array/));
    await assert.rejects(method(c, h, 'get', [] as Value), isVsl(/key must be a string/));
    await assert.rejects(method(c, new ServiceHandle('nope', 'csv'), 'get', 'a'), isVsl(/no longer exists/));
  });
});

describe('cmd services', () => {
  const enabled: HostCallInit = { configure: (cfg) => { cfg.vsl.allow_cmd = true; } };

  test('are refused unless vsl.allow_cmd', () => {
    assert.throws(() => create(loadCall(), 'cmd', opts({ command: '/bin/true' })), isVsl(/^cmd::build: cmd services are disabled: set vsl\.allow_cmd$/));
    assert.throws(() => create(loadCall(), 'sys::service', 'cmd', opts({ command: '/bin/true' })), isVsl(/cmd services are disabled: set vsl\.allow_cmd/));
  });

  test('run() reports the exit code: /bin/true gives 0, /bin/false gives 1', async () => {
    const t = create(loadCall(enabled), 'cmd', opts({ command: '/bin/true' }));
    const f = create(loadCall(enabled), 'sys::service', 'cmd', opts({ command: 'false' }));
    const c = ruleCall(enabled);
    assert.deepEqual(await method(c, t, 'run'), new Map<string, Value>([['has_code', true], ['code', 0n], ['has_signal', false], ['signal', undefined]]));
    assert.deepEqual(await method(c, f, 'run'), new Map<string, Value>([['has_code', true], ['code', 1n], ['has_signal', false], ['signal', undefined]]));
  });

  test('a command running past its timeout is killed, with what it started', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    const h = create(loadCall(enabled), 'cmd', opts({
      command: '/bin/sh',
      args: ['-c', `sleep 30 & echo $! > ${pidFile}; wait`],
      timeout: '300ms',
    }));
    const c = ruleCall(enabled);
    const r = (await method(c, h, 'run')) as Map<string, Value>;
    assert.equal(r.get('has_code'), false);
    assert.equal(r.get('code'), undefined);
    assert.equal(r.get('has_signal'), true);
    assert.equal(r.get('signal'), BigInt(os.constants.signals.SIGKILL));
    assert.ok(c.logs.some((l) => l.level === 'warn' && /killed after 300 ms/.test(String(l.msg))));
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    // The group was killed: the background sleep is gone (or a zombie about to be reaped by init).
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      try {
        const stat = fs.readFileSync(`/proc/${grandchild}/stat`, 'utf8');
        alive = !/\) Z /.test(stat);
      } catch {
        alive = false;
      }
      if (alive) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(alive, false, 'background child killed');
  });

  test('the environment is only PATH=/usr/bin:/bin', async () => {
    process.env.CORE_SERVICES_SECRET = 'leak';
    try {
      const h = create(loadCall(enabled), 'cmd', opts({
        command: '/bin/sh',
        args: ['-c', 'test "$PATH" = /usr/bin:/bin && test -z "$CORE_SERVICES_SECRET" && test -z "$HOME"'],
      }));
      const r = (await method(ruleCall(enabled), h, 'run')) as Map<string, Value>;
      assert.equal(r.get('code'), 0n);
    } finally {
      delete process.env.CORE_SERVICES_SECRET;
    }
  });

  test('run(args) replaces the declared arguments; output goes to the debug log only', async () => {
    const h = create(loadCall(enabled), 'cmd', opts({ command: '/bin/sh', args: ['-c', 'exit 3'] }));
    const c = ruleCall(enabled);
    assert.equal(((await method(c, h, 'run')) as Map<string, Value>).get('code'), 3n);
    const r = (await method(c, h, 'run', ['-c', 'echo out; echo err >&2; exit 4'])) as Map<string, Value>;
    assert.equal(r.get('code'), 4n);
    const rec = c.logs.find((l) => l.level === 'debug' && typeof l.output === 'string' && l.code === 4);
    assert.ok(rec, 'debug record with the output');
    assert.match(String(rec.output), /out/);
    assert.match(String(rec.output), /err/);
  });

  test('only the first 4 KiB of output are kept', async () => {
    const h = create(loadCall(enabled), 'cmd', opts({ command: '/bin/sh', args: ['-c', 'head -c 100000 /dev/zero | tr "\\0" x'] }));
    const c = ruleCall(enabled);
    await method(c, h, 'run');
    const rec = c.logs.find((l) => typeof l.output === 'string');
    assert.equal(String(rec!.output).length, 4096);
  });

  test('in dry-run mode the command is reported and not run', async () => {
    const marker = path.join(dir, 'ran');
    const h = create(loadCall(enabled), 'cmd', opts({ command: '/bin/sh', args: ['-c', `touch ${marker}`] }));
    const c = ruleCall({ ...enabled, dryRun: true });
    const r = (await method(c, h, 'run')) as Map<string, Value>;
    assert.equal(r.get('has_code'), true);
    assert.equal(fs.existsSync(marker), false);
    assert.ok(c.logs.some((l) => /would run \/bin\/sh/.test(String(l.msg))));
  });

  test('user and group: the command runs as that user (needs root)', async (t) => {
    if (process.getuid?.() !== 0) {
      assert.throws(() => create(loadCall(enabled), 'cmd', opts({ command: '/bin/true', user: 'nobody' })), isVsl(/require running as root/));
      return;
    }
    const nobody = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('nobody:'));
    if (!nobody) return t.skip('no nobody user');
    const uid = nobody.split(':')[2];
    const h = create(loadCall(enabled), 'cmd', opts({ command: '/bin/sh', args: ['-c', `test "$(id -u)" = ${uid} && test "$(id -G)" = "$(id -g)"`], user: 'nobody' }));
    assert.equal(((await method(ruleCall(enabled), h, 'run')) as Map<string, Value>).get('code'), 0n);
    assert.throws(() => create(loadCall(enabled), 'cmd', opts({ command: '/bin/true', user: 'no-such-user-here' })), isVsl(/unknown user/));
    assert.throws(() => create(loadCall(enabled), 'cmd', opts({ command: '/bin/true', group: 'no-such-group-here' })), isVsl(/unknown group/));
  });

  test('bad declarations are errors: missing or unknown command, bad timeout, bad args', () => {
    const c = loadCall(enabled);
    assert.throws(() => create(c, 'cmd', opts({})), isVsl(/'command' is required/));
    assert.throws(() => create(c, 'cmd', opts({ command: '/no/such/program' })), isVsl(/is not an executable file/));
    assert.throws(() => create(c, 'cmd', opts({ command: 'no-such-program-xyz' })), isVsl(/not found in \/usr\/bin:\/bin/));
    assert.throws(() => create(c, 'cmd', opts({ command: '/bin/true', timeout: 'soon' })), isVsl(/'timeout': invalid duration/));
    assert.throws(() => create(c, 'cmd', opts({ command: '/bin/true', args: '-q' })), isVsl(/'args' must be an array/));
    assert.throws(() => create(c, 'cmd', opts({ command: '/bin/true', shell: true })), isVsl(/unknown option 'shell'/));
  });

  test('service creation is not I/O (it runs at load); method calls are', () => {
    for (const n of ['sys::service', 'csv', 'cmd']) assert.equal(fnOf(n).io, false, n);
    assert.equal(fnOf('sys::service_call').io, true);
  });
});
