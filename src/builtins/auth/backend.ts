// Chooses the credential checker named by `server.auth.backend` (SPEC §7.3):
// `saslauthd:<socket>` or `file:<path>`. A backend answers valid / invalid;
// anything else (unreachable, unconfigured, unreadable) is a thrown error,
// which the AUTH built-in reports as a runtime error (454 upstream).

import { isAbsolute, resolve } from 'node:path';
import type { Config } from '../../config/schema.js';
import { PasswdFileBackend } from './passwd-file.js';
import { SASLAUTHD_TIMEOUT_MS, saslauthdVerify } from './saslauthd.js';

export interface AuthBackend {
  /** What the backend is, for logs (`file:/etc/mta/passwd`). */
  readonly description: string;
  /** true: valid credentials; false: wrong password or unknown user. Throws when it cannot tell. */
  verify(user: string, password: string): Promise<boolean>;
}

export interface AuthBackendOptions {
  /** Directory a relative `file:` path resolves against (the policy directory). */
  baseDir?: string;
  /** saslauthd answer deadline. */
  saslauthdTimeoutMs?: number;
}

/** Checks the syntax of a backend string; returns a message, or null when it is fine. */
export function checkAuthBackendSpec(spec: string): string | null {
  const m = /^(saslauthd|file):(.+)$/.exec(spec);
  if (!m) return `server.auth.backend: expected "saslauthd:<socket>" or "file:<path>", got '${spec}'`;
  if (m[1] === 'saslauthd' && !isAbsolute(m[2]!)) {
    return `server.auth.backend: the saslauthd socket must be an absolute path, got '${m[2]}'`;
  }
  return null;
}

export function createAuthBackend(
  spec: string | null,
  config: Config,
  opts: AuthBackendOptions = {},
): AuthBackend {
  if (spec === null || spec.trim() === '') {
    const fail = async (): Promise<boolean> => {
      throw new Error('no authentication backend configured (set server.auth.backend)');
    };
    return { description: 'none', verify: fail };
  }
  const problem = checkAuthBackendSpec(spec);
  if (problem) throw new Error(problem);
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const target = spec.slice(colon + 1);

  if (kind === 'saslauthd') {
    const { saslauthd_service: service, saslauthd_realm: realm } = config.server.auth;
    const timeoutMs = opts.saslauthdTimeoutMs ?? SASLAUTHD_TIMEOUT_MS;
    return {
      description: spec,
      verify: (user, password) => saslauthdVerify(target, { login: user, password, service, realm }, timeoutMs),
    };
  }
  const path = isAbsolute(target) ? target : resolve(opts.baseDir ?? process.cwd(), target);
  const file = new PasswdFileBackend(path);
  return { description: `file:${path}`, verify: (user, password) => file.verify(user, password) };
}
