// fs::write(dir) and fs::dump(dir) (SPEC §7.10, v1 `write`, `dump`): copies
// of the message under `vsl.data_dir`, the only place a policy may write
// files (§13). `<dir>/<id>.eml` holds the message as it stands (this
// evaluation's header edits included); `<dir>/<id>.json` the context and the
// message. Files are written to a temporary name and renamed, so a reader
// never sees half a file. In `mta test` / `mta explain` nothing is written.

import fs from 'node:fs';
import path from 'node:path';
import { addressText } from '../../mail/types.js';
import { textOf } from '../../vsl/values/objects.js';
import { fnError, type Value } from '../../vsl/values/value.js';
import { typeName } from '../dns/call-args.js';
import type { HostBuiltin, HostCall } from '../host.js';
import { contextRecord as renderContext } from '../../vsl/values/context-record.js';
import { currentRecipients } from './addresses.js';
import { writeFileAtomically } from './atomic.js';
import { builtin } from './define.js';
import { currentMessage } from './headers.js';

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * The directory a rule names, checked (SPEC §7.10: relative, segments of
 * `[A-Za-z0-9._-]`, no `..`) and resolved under the data directory.
 */
export function dataSubdir(fn: string, dataDir: string, v: Value | undefined): string {
  const dir = v === undefined ? undefined : textOf(v);
  if (dir === undefined) throw fnError(fn, `directory must be a string, got ${typeName(v)}`);
  const segments = dir.split('/');
  const bad = dir === '' || segments.some((s) => !SEGMENT.test(s) || s === '.' || s === '..');
  if (bad) throw fnError(fn, `invalid directory ${JSON.stringify(dir)}: relative path of [A-Za-z0-9._-] segments expected, without '..'`);
  return path.join(path.resolve(dataDir), ...segments);
}

// ---------------------------------------------------------------- file() confinement

/**
 * The directories `file()` may read from (SPEC §13: no file-system access
 * outside validated built-ins): the policy's directory and `vsl.data_dir`,
 * each with its symbolic links resolved. A root that does not exist yet
 * (a fresh data_dir) is taken as written.
 */
export function readableRoots(policyDir: string, dataDir: string): string[] {
  return [...new Set([policyDir, dataDir].map((d) => realOrResolved(d)))];
}

function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function isUnder(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel));
}

/** Why the data file at `absPath` may not be read (outside every root, after symlinks), or null when it may. */
export function outsideReadableRoots(absPath: string, roots: string[]): string | null {
  const real = realOrResolved(absPath);
  if (roots.some((r) => isUnder(r, real))) return null;
  const shown = real === path.resolve(absPath) ? real : `${path.resolve(absPath)} (-> ${real})`;
  return `${shown} is outside the directories a policy may read (${roots.join(', ')}): move the file under the policy's directory or vsl.data_dir`;
}

/**
 * The path `file()` reads for `requested` (already resolved against the
 * naming file's directory): its real path, so that a symbolic link inside
 * a root cannot lead out of it. Throws a runtime error of `fn` when it is
 * outside every root; a file that does not exist is returned as is (the
 * read then reports it missing).
 */
export function confinedReadPath(fn: string, requested: string, roots: string[]): string {
  const problem = outsideReadableRoots(requested, roots);
  if (problem !== null) throw fnError(fn, problem);
  return realOrResolved(requested);
}

function txnId(call: HostCall, fn: string): string {
  if (!call.txn) throw fnError(fn, 'there is no transaction');
  // Transaction ids come from the server, but a path is built from it: check anyway.
  if (!SEGMENT.test(call.txn.id) || call.txn.id.startsWith('.')) throw fnError(fn, `unusable transaction id ${JSON.stringify(call.txn.id)}`);
  return call.txn.id;
}

/** The context as `ctx::to_string()` shows it (SPEC §4.2), for fs::dump. */
export function contextRecord(call: HostCall): Record<string, unknown> {
  const s = call.session;
  const t = call.txn;
  return renderContext({
    stage: call.stage,
    session: {
      id: s.id, clientIp: s.clientIp, clientPort: s.clientPort, serverIp: s.serverIp, serverPort: s.serverPort, serverName: s.serverName,
      connectedAtMs: s.connectedAt.getTime(), secured: s.tls !== null, helo: s.helo, authid: s.auth?.authid ?? null,
    },
    txn: t ? { id: t.id, mailFrom: addressText(t.mailFrom), mailAtMs: t.mailAt.getTime(), rcpts: currentRecipients(call).map(addressText) } : null,
  });
}

async function store(call: HostCall, fn: string, file: string, data: () => Buffer | string): Promise<Value> {
  if (call.dryRun) {
    call.log.info({ file }, `${fn}: would write ${file}`);
    return undefined;
  }
  try {
    await writeFileAtomically(file, data(), { mode: 0o640, mkdirMode: 0o750 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw fnError(fn, `cannot write ${file}: ${e.code ?? e.message}`);
  }
  call.log.debug({ file }, `${fn}: wrote ${file}`);
  return undefined;
}

async function fsWrite(call: HostCall, [dir]: Value[]): Promise<Value> {
  const fn = 'fs::write';
  const base = dataSubdir(fn, call.env.config.vsl.data_dir, dir);
  const file = path.join(base, `${txnId(call, fn)}.eml`);
  const message = currentMessage(call, fn);
  return store(call, fn, file, () => message);
}

async function fsDump(call: HostCall, [dir]: Value[]): Promise<Value> {
  const fn = 'fs::dump';
  const base = dataSubdir(fn, call.env.config.vsl.data_dir, dir);
  const file = path.join(base, `${txnId(call, fn)}.json`);
  const message = currentMessage(call, fn).toString('utf8');
  return store(call, fn, file, () => `${JSON.stringify({ context: contextRecord(call), message }, null, 2)}\n`);
}

export const fsBuiltins: HostBuiltin[] = [
  builtin({ name: 'fs::write', from: 'preq', io: true, arity: 1, fn: fsWrite }),
  builtin({ name: 'fs::dump', from: 'preq', io: true, arity: 1, fn: fsDump }),
];
