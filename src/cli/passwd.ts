// `mta passwd FILE USER [--argon2]`: adds or replaces USER's line in a
// `file:` authentication backend (SPEC §7.3). The password comes from
// stdin: typed twice without echo on a terminal, or the first line when
// piped. The file is replaced atomically (temporary file in the same
// directory, fsync, rename, directory fsync) so the running server never
// reads half a file; other lines and comments are kept as they are.
//
// Exit codes: 0 done, 1 failure (I/O, empty or mismatched password), 2 usage.

import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, chown, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { hashArgon2id, hashScrypt, validUserName } from '../builtins/auth/passwd-file.js';

export interface PasswdIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = `usage: mta passwd [--argon2] FILE USER

Adds USER to the password file FILE (server.auth.backend = "file:FILE"), or
replaces its password. The password is read from standard input: typed twice
without echo on a terminal, or the first line when piped.

  --argon2   hash with argon2id instead of scrypt (the default)
  --help     show this help
`;

export async function passwdCommand(argv: string[], io: PasswdIo): Promise<number> {
  let argon2 = false;
  const positional: string[] = [];
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (arg === '--argon2') argon2 = true;
    else if (arg.startsWith('-') && arg !== '-') {
      io.stderr.write(`mta passwd: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else positional.push(arg);
  }
  if (positional.length !== 2) {
    io.stderr.write(`mta passwd: expected FILE and USER\n${USAGE}`);
    return 2;
  }
  const [file, user] = positional as [string, string];
  if (!validUserName(user)) {
    io.stderr.write(`mta passwd: invalid user name '${user}' (no spaces, colons or control characters, not starting with #)\n`);
    return 2;
  }

  let password: string | null;
  try {
    password = await readPassword(io);
  } catch (err) {
    io.stderr.write(`mta passwd: ${(err as Error).message}\n`);
    return 1;
  }
  if (password === null || password === '') {
    io.stderr.write('mta passwd: empty password, nothing changed\n');
    return 1;
  }

  try {
    const hash = argon2 ? await hashArgon2id(password) : await hashScrypt(password);
    const added = await writeEntry(file, user, hash);
    io.stdout.write(`${added ? 'added' : 'updated'} ${user} in ${file}\n`);
    return 0;
  } catch (err) {
    io.stderr.write(`mta passwd: ${file}: ${(err as Error).message}\n`);
    return 1;
  }
}

/** The password from stdin, or null when stdin ended without one. */
async function readPassword(io: PasswdIo): Promise<string | null> {
  if (io.stdin.isTTY && io.stdin.setRawMode) {
    const answers = await readHidden(io, ['Password: ', 'Retype password: ']);
    if (answers === null) return null;
    const [first, second] = answers as [string, string];
    if (first !== second) throw new Error('passwords do not match, nothing changed');
    return first;
  }
  return readFirstLine(io.stdin);
}

/** First line of a piped stdin (without its CR LF / LF); the rest is ignored. */
function readFirstLine(stdin: NodeJS.ReadableStream): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let text = '';
    let seen = false;
    const done = (value: string | null) => {
      stdin.removeListener('data', onData);
      stdin.removeListener('end', onEnd);
      stdin.removeListener('error', onError);
      stdin.pause();
      resolve(value);
    };
    const onData = (chunk: Buffer | string) => {
      seen = true;
      text += chunk.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) done(text.slice(0, nl).replace(/\r$/, ''));
    };
    const onEnd = () => done(seen ? text.replace(/\r$/, '') : null);
    const onError = (err: Error) => reject(err);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onError);
    stdin.resume();
  });
}

/**
 * One line per prompt typed on the terminal with echo off (raw mode, so we
 * handle backspace ourselves). Input typed or pasted ahead is kept for the
 * next prompt. Ctrl-C aborts; Ctrl-D on an empty line gives null.
 */
function readHidden(io: PasswdIo, prompts: string[]): Promise<string[] | null> {
  const { stdin, stderr } = io;
  const answers: string[] = [];
  let typed = '';
  let afterCr = false;
  stdin.setRawMode!(true);
  stderr.write(prompts[0]!);
  return new Promise((resolve, reject) => {
    const finish = (err: Error | null, value: string[] | null = null) => {
      stdin.removeListener('data', onData);
      stdin.removeListener('end', onEnd);
      stdin.setRawMode!(false);
      stdin.pause();
      if (err) reject(err);
      else resolve(value);
    };
    const onEnd = () => finish(null, null);
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString('utf8')) {
        // CR LF is one Enter.
        const skip = afterCr && ch === '\n';
        afterCr = ch === '\r';
        if (skip) continue;
        if (ch === '\r' || ch === '\n') {
          stderr.write('\n');
          answers.push(typed);
          typed = '';
          if (answers.length === prompts.length) return finish(null, answers);
          stderr.write(prompts[answers.length]!);
        } else if (ch === '\u0003') {
          stderr.write('\n');
          return finish(new Error('interrupted, nothing changed'));
        } else if (ch === '\u0004') {
          if (typed === '') {
            stderr.write('\n');
            return finish(null, null);
          }
        } else if (ch === '\u007f' || ch === '\b') {
          typed = [...typed].slice(0, -1).join('');
        } else typed += ch;
      }
    };
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.resume();
  });
}

/** Writes USER:HASH into FILE atomically; true when the user is new. */
async function writeEntry(file: string, user: string, hash: string): Promise<boolean> {
  // Replace the file a symlink points to, not the link.
  let target = file;
  let existing: string | null = null;
  let mode = 0o600;
  let owner: { uid: number; gid: number } | null = null;
  try {
    target = await realpath(file);
    existing = await readFile(target, 'utf8');
    const st = await stat(target);
    mode = st.mode & 0o777;
    owner = { uid: st.uid, gid: st.gid };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }

  const lines = existing === null || existing === '' ? [] : existing.replace(/\n$/, '').split('\n');
  const entry = `${user}:${hash}`;
  let found = false;
  const out: string[] = [];
  for (const line of lines) {
    const isComment = line.trim() === '' || line.trimStart().startsWith('#');
    const colon = line.indexOf(':');
    if (!isComment && colon > 0 && line.slice(0, colon) === user) {
      // The first line of the user is replaced; later duplicates go away.
      if (!found) out.push(entry);
      found = true;
    } else out.push(line);
  }
  if (!found) out.push(entry);

  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.writeFile(`${out.join('\n')}\n`, 'utf8');
    // Keep the mode and owner of a file that existed (the server may read it as another user).
    if (owner) {
      await chown(tmp, owner.uid, owner.gid).catch(() => {});
      await chmod(tmp, mode);
    }
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
  return !found;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  } finally {
    await handle.close();
  }
}
