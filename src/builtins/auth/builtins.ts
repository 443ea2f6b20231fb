// auth::unix_users() and its v1 name authenticate() (SPEC §7.3): check the
// credentials of the AUTH in progress against server.auth.backend.
// accept() when valid; next() when the password is wrong or the user
// unknown; a runtime error when the backend cannot answer (unreachable,
// unconfigured), which the authenticate stage turns into 454 (SPEC §5.2).

import type { Config } from '../../config/schema.js';
import { makeStatus } from '../../vsl/values/status.js';
import { fnError } from '../../vsl/values/value.js';
import type { HostBuiltin, HostCall, HostFn } from '../host.js';
import { createAuthBackend, type AuthBackend } from './backend.js';

/** The AUTH exchange under evaluation (mechanism, user, password). */
export interface AuthCredentials {
  mechanism: string;
  authid: string;
  authpass: string;
}

/**
 * The credentials the front read for this AUTH. HostCall does not declare
 * them yet (the lead adds the field); until then they travel as
 * `call.credentials`.
 */
export function credentialsOf(call: HostCall): AuthCredentials | undefined {
  const creds = (call as HostCall & { credentials?: AuthCredentials }).credentials;
  if (!creds || typeof creds.authid !== 'string' || typeof creds.authpass !== 'string') return undefined;
  return creds;
}

// One backend per configuration object: a reload brings a new Config and so
// a new backend, while calls under one configuration share the file cache.
const backends = new WeakMap<Config, AuthBackend>();

function backendFor(call: HostCall): AuthBackend {
  const config = call.env.config;
  let backend = backends.get(config);
  if (!backend) {
    backend = createAuthBackend(config.server.auth.backend, config, { baseDir: call.env.policyDir });
    backends.set(config, backend);
  }
  return backend;
}

function unixUsers(fn: string): HostFn {
  return async (call) => {
    const creds = credentialsOf(call);
    if (!creds) throw fnError(fn, 'no AUTH credentials in progress');
    let valid: boolean;
    try {
      // An invalid backend string is a configuration fault: also a runtime error.
      valid = await backendFor(call).verify(creds.authid, creds.authpass);
    } catch (err) {
      throw fnError(fn, (err as Error).message);
    }
    // Never log the password; the user name helps the administrator.
    call.log.debug({ rule: call.rule, authid: creds.authid, valid }, 'credential check');
    return valid ? makeStatus('accept') : makeStatus('next');
  };
}

export const authBuiltins: HostBuiltin[] = [
  { name: 'auth::unix_users', fn: unixUsers('auth::unix_users'), from: 'authenticate', io: true, arity: 0 },
  { name: 'authenticate', fn: unixUsers('authenticate'), from: 'authenticate', io: true, arity: 0 },
];
