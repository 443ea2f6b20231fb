// The `file:<path>` authentication backend (SPEC §7.3): `user:hash` lines,
// `#` comments, hashes as PHC strings of scrypt (node:crypto) or argon2id
// (the argon2 package). Verification is constant-time, an unknown user costs
// what a real user's check costs (see dummyFor), and the file is re-read
// when its identity, size or times change.

import { createHash, createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';

// The argon2 native module is loaded only when an argon2 hash is used.
const require = createRequire(import.meta.url);
const argon2 = (): typeof import('argon2') => require('argon2') as typeof import('argon2');

/** A problem in a passwd file, positioned for `mta check` (1-based line and column). */
export interface PasswdDiagnostic {
  file: string;
  line: number;
  col: number;
  severity: 'error' | 'warning';
  message: string;
}

export type ParsedHash =
  | { alg: 'scrypt'; ln: number; r: number; p: number; salt: Buffer; hash: Buffer }
  | { alg: 'argon2id'; m: number; t: number; p: number; salt: Buffer; hash: Buffer; phc: string };

// Bounds keep a hostile or mistyped file from costing unbounded memory or CPU.
const SCRYPT_MAX_MEMORY = 256 * 1024 * 1024;
const ARGON2_MAX_KIB = 1024 * 1024;
const HASH_FORMS = 'expected $scrypt$ln=…,r=…,p=…$salt$hash or $argon2id$v=19$m=…,t=…,p=…$salt$hash';

/** Default scrypt cost for new hashes: N = 2^15, r = 8, p = 1 (32 MiB). */
export const SCRYPT_DEFAULTS = { ln: 15, r: 8, p: 1, saltBytes: 16, hashBytes: 32 };
/** Default argon2id cost for new hashes (the argon2 package's defaults). */
export const ARGON2_DEFAULTS = { m: 65536, t: 3, p: 4 };

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

function b64decode(text: string): Buffer | null {
  return B64.test(text) ? Buffer.from(text, 'base64') : null;
}

/** PHC base64: standard alphabet, no padding. */
function b64encode(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '');
}

/** `k=v,k=v` with exactly the expected keys (any order), decimal values. */
function parseParams(text: string, keys: string[]): Record<string, number> | string {
  const out: Record<string, number> = {};
  for (const part of text.split(',')) {
    const m = /^([a-z]+)=(\d{1,10})$/.exec(part);
    if (!m) return `bad parameter '${part}'`;
    if (!keys.includes(m[1]!)) return `unknown parameter '${m[1]}'`;
    if (m[1]! in out) return `parameter '${m[1]}' given twice`;
    out[m[1]!] = Number(m[2]);
  }
  const missing = keys.filter((k) => !(k in out));
  if (missing.length > 0) return `missing parameter ${missing.join(', ')}`;
  return out;
}

/** Parses a PHC string; returns a message when it is not one we can verify. */
export function parsePhc(phc: string): ParsedHash | string {
  const parts = phc.split('$');
  if (parts[0] !== '') return `not a PHC string: ${HASH_FORMS}`;
  if (parts[1] === 'scrypt') {
    if (parts.length !== 5) return `malformed scrypt hash: ${HASH_FORMS}`;
    const params = parseParams(parts[2]!, ['ln', 'r', 'p']);
    if (typeof params === 'string') return `scrypt: ${params}`;
    const { ln, r, p } = params as { ln: number; r: number; p: number };
    if (ln < 1 || ln > 24 || r < 1 || r > 64 || p < 1 || p > 16) return 'scrypt: parameters out of range';
    if (128 * 2 ** ln * r > SCRYPT_MAX_MEMORY) return 'scrypt: parameters need more than 256 MiB';
    const salt = b64decode(parts[3]!);
    const hash = b64decode(parts[4]!);
    if (!salt || salt.length < 8) return 'scrypt: salt must be base64 of at least 8 bytes';
    if (!hash || hash.length < 16 || hash.length > 128) return 'scrypt: hash must be base64 of 16 to 128 bytes';
    return { alg: 'scrypt', ln, r, p, salt, hash };
  }
  if (parts[1] === 'argon2id') {
    if (parts.length !== 6) return `malformed argon2id hash: ${HASH_FORMS}`;
    if (parts[2] !== 'v=19') return 'argon2id: only version v=19 is supported';
    const params = parseParams(parts[3]!, ['m', 't', 'p']);
    if (typeof params === 'string') return `argon2id: ${params}`;
    const { m, t, p } = params as { m: number; t: number; p: number };
    if (p < 1 || p > 64 || t < 1 || t > 64 || m < 8 * p || m > ARGON2_MAX_KIB) {
      return 'argon2id: parameters out of range';
    }
    const salt = b64decode(parts[4]!);
    const hash = b64decode(parts[5]!);
    if (!salt || salt.length < 8) return 'argon2id: salt must be base64 of at least 8 bytes';
    if (!hash || hash.length < 16 || hash.length > 128) return 'argon2id: hash must be base64 of 16 to 128 bytes';
    return { alg: 'argon2id', m, t, p, salt, hash, phc };
  }
  return `unsupported hash scheme '${parts[1] ?? ''}': ${HASH_FORMS}`;
}

function scryptAsync(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function scryptOptions(ln: number, r: number, p: number): ScryptOptions {
  const N = 2 ** ln;
  return { N, r, p, maxmem: 128 * N * r * (p + 1) + 1024 * 1024 };
}

/** Whether `password` matches the parsed hash. Constant-time in the comparison. */
export async function verifyHash(h: ParsedHash, password: string): Promise<boolean> {
  if (h.alg === 'scrypt') {
    const derived = await scryptAsync(password, h.salt, h.hash.length, scryptOptions(h.ln, h.r, h.p));
    return timingSafeEqual(derived, h.hash);
  }
  // argon2.verify recomputes with the string's parameters and compares in constant time.
  return argon2().verify(h.phc, password);
}

/** A new scrypt PHC string for `password`. */
export async function hashScrypt(password: string, cost = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(cost.saltBytes);
  const hash = await scryptAsync(password, salt, cost.hashBytes, scryptOptions(cost.ln, cost.r, cost.p));
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64encode(salt)}$${b64encode(hash)}`;
}

/** A new argon2id PHC string for `password`, with parameters written m, t, p as SPEC §7.3 shows. */
export async function hashArgon2id(password: string, cost = ARGON2_DEFAULTS): Promise<string> {
  const phc = await argon2().hash(password, {
    type: argon2().argon2id,
    memoryCost: cost.m,
    timeCost: cost.t,
    parallelism: cost.p,
  });
  const parsed = parsePhc(phc.replace(/\$m=(\d+),p=(\d+),t=(\d+)\$/, '$m=$1,t=$3,p=$2$'));
  if (typeof parsed === 'string' || parsed.alg !== 'argon2id') throw new Error(`argon2: unexpected hash format: ${parsed}`);
  return parsed.phc;
}

/** The algorithm and parameters of a hash: what its verification costs. */
export function costOf(h: ParsedHash): string {
  const lengths = `salt=${h.salt.length},hash=${h.hash.length}`;
  return h.alg === 'scrypt' ? `scrypt ln=${h.ln},r=${h.r},p=${h.p},${lengths}` : `argon2id m=${h.m},t=${h.t},p=${h.p},${lengths}`;
}

/** A hash of the same kind and cost as `like`, matching no password. */
function dummyLike(like: ParsedHash): ParsedHash {
  const salt = randomBytes(like.salt.length);
  const hash = randomBytes(like.hash.length);
  if (like.alg === 'argon2id') {
    const phc = `$argon2id$v=19$m=${like.m},t=${like.t},p=${like.p}$${b64encode(salt)}$${b64encode(hash)}`;
    return { ...like, salt, hash, phc };
  }
  return { ...like, salt, hash };
}

const DEFAULT_DUMMY: ParsedHash = { alg: 'scrypt', ln: SCRYPT_DEFAULTS.ln, r: SCRYPT_DEFAULTS.r, p: SCRYPT_DEFAULTS.p, salt: randomBytes(16), hash: randomBytes(32) };

/**
 * What an unknown user is verified against, so that the check costs what a
 * real user's does whatever mix of algorithms and costs the file holds:
 * one dummy hash per user of the file (same algorithm and parameters,
 * random salt and hash, shared between users of equal cost), and a name
 * maps to one of them by a keyed hash of the name. So the same unknown
 * name always costs the same (a repeated probe sees no spread a real user
 * would not have), and costs are drawn in the proportions of the file (an
 * unknown name is as likely to cost like an argon2id user as a real name
 * is). The key is a digest of the file's text: the same in every worker
 * process, and not computable without the file (its salts are random).
 */
class UnknownUserDummies {
  private readonly key: Buffer;
  /** One entry per usable user, in file order; entries of equal cost share one dummy. */
  private readonly byUser: ParsedHash[];

  constructor(text: string, users: Iterable<UserEntry>) {
    this.key = createHash('sha256').update(text).digest();
    const shared = new Map<string, ParsedHash>();
    this.byUser = [];
    for (const e of users) {
      if (!e.hash || e.error) continue;
      const cost = costOf(e.hash);
      let d = shared.get(cost);
      if (!d) shared.set(cost, (d = dummyLike(e.hash)));
      this.byUser.push(d);
    }
  }

  for(user: string): ParsedHash {
    if (this.byUser.length === 0) return DEFAULT_DUMMY;
    const pick = createHmac('sha256', this.key).update(user, 'utf8').digest().readUInt32BE(0);
    return this.byUser[pick % this.byUser.length]!;
  }
}

interface UserEntry {
  line: number;
  hash: ParsedHash | null;
  /** Why the entry cannot be used (malformed hash, duplicate user). */
  error: string | null;
}

export interface ParsedPasswdFile {
  users: Map<string, UserEntry>;
  diagnostics: PasswdDiagnostic[];
}

const USER_NAME_BAD = /[\s:\x00-\x1f\x7f]/;

/** Whether `user` can be written to a passwd file. */
export function validUserName(user: string): boolean {
  return user !== '' && !USER_NAME_BAD.test(user) && !user.startsWith('#');
}

/** Parses passwd file text; every problem is reported with its line and column. */
export function parsePasswdText(text: string, file: string): ParsedPasswdFile {
  const users = new Map<string, UserEntry>();
  const diagnostics: PasswdDiagnostic[] = [];
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    const line = raw.replace(/\r$/, '').replace(/[ \t]+$/, '');
    const report = (col: number, message: string) => {
      diagnostics.push({ file, line: lineNo, col, severity: 'error', message });
    };
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      report(1, colon === 0 ? 'empty user name' : `expected user:hash`);
      return;
    }
    const user = line.slice(0, colon);
    if (!validUserName(user)) {
      report(1, `invalid user name '${user}' (no spaces, colons or control characters)`);
      return;
    }
    const parsed = parsePhc(line.slice(colon + 1));
    if (typeof parsed === 'string') report(colon + 2, parsed);
    const earlier = users.get(user);
    if (earlier) {
      const message = `duplicate user '${user}' (first at line ${earlier.line})`;
      report(1, message);
      // Ambiguous: the user cannot log in until one entry is removed.
      earlier.error ??= message;
      return;
    }
    users.set(user, {
      line: lineNo,
      hash: typeof parsed === 'string' ? null : parsed,
      error: typeof parsed === 'string' ? parsed : null,
    });
  });
  return { users, diagnostics };
}

function permissionWarning(file: string, st: Stats): PasswdDiagnostic[] {
  return (st.mode & 0o004) !== 0
    ? [{ file, line: 1, col: 1, severity: 'warning', message: 'password file is readable by every user (chmod o-r)' }]
    : [];
}

/** Problems of a passwd file, for `mta check` (an unreadable file is one error at 1:1). */
export function validatePasswdFile(path: string): PasswdDiagnostic[] {
  let text: string;
  let st: Stats;
  try {
    st = statSync(path);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return [{ file: path, line: 1, col: 1, severity: 'error', message: `cannot read password file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }];
  }
  return [...parsePasswdText(text, path).diagnostics, ...permissionWarning(path, st)];
}

/** Verifies passwords against a passwd file, re-reading it when it changes. */
export class PasswdFileBackend {
  private loaded: { signature: string; file: ParsedPasswdFile; dummies: UnknownUserDummies } | null = null;
  private loading: Promise<void> | null = null;

  constructor(readonly path: string) {}

  async verify(user: string, password: string): Promise<boolean> {
    return (await this.check(user, password)).valid;
  }

  /** verify(), also saying which hash cost was paid (`costOf`): the tests compare known and unknown users by it. */
  async check(user: string, password: string): Promise<{ valid: boolean; cost: string }> {
    const { file, dummies } = await this.current();
    const entry = file.users.get(user);
    if (!entry) {
      // The work of a real user's check, so timing does not reveal who exists.
      const dummy = dummies.for(user);
      await verifyHash(dummy, password);
      return { valid: false, cost: costOf(dummy) };
    }
    if (entry.error || !entry.hash) {
      throw new Error(`${this.path}:${entry.line}: ${entry.error ?? 'unusable entry'}`);
    }
    return { valid: await verifyHash(entry.hash, password), cost: costOf(entry.hash) };
  }

  private async current(): Promise<NonNullable<PasswdFileBackend['loaded']>> {
    let st: Stats;
    try {
      st = await stat(this.path);
    } catch (err) {
      throw new Error(`password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const signature = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (this.loaded?.signature !== signature) {
      // Concurrent callers share one read.
      this.loading ??= this.load(signature).finally(() => {
        this.loading = null;
      });
      await this.loading;
    }
    return this.loaded!;
  }

  private async load(signature: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      throw new Error(`password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const file = parsePasswdText(text, this.path);
    this.loaded = { signature, file, dummies: new UnknownUserDummies(text, file.users.values()) };
  }
}
