// Replacing a file so that readers see the old content or the new one,
// never a mix: write a temporary file beside it, flush, rename over.

import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export interface AtomicWriteOptions {
  /** Permissions of a new file (an existing file keeps its own). */
  mode: number;
  /** Create missing parent directories with this mode. */
  mkdirMode?: number;
}

export async function writeFileAtomically(file: string, data: Buffer | string, opts: AtomicWriteOptions): Promise<void> {
  if (opts.mkdirMode !== undefined) await fsp.mkdir(path.dirname(file), { recursive: true, mode: opts.mkdirMode });
  const old = await fsp.stat(file).catch(() => null);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fsp.open(tmp, 'wx', old ? old.mode & 0o777 : opts.mode);
  try {
    // The open mode is filtered by the umask; an existing file's mode is kept exactly.
    if (old) await fh.chmod(old.mode & 0o777);
    // Running as root, a replaced file keeps its owner (a csv file owned by a service user stays so).
    if (old && process.getuid?.() === 0) await fh.chown(old.uid, old.gid);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
