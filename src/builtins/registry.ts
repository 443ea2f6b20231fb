// Every host built-in, gathered in one list: what a policy can reach outside
// the sandbox (SPEC §7–§8, Appendix A). Nothing else crosses the boundary.

import type { HostBuiltin } from './host.js';
import { dnsBuiltins } from './dns/lookup.js';
import { dnsblBuiltins } from './dnsbl.js';
import { spfBuiltins } from './spf.js';
import { dkimBuiltins } from './dkim.js';
import { dmarcBuiltins } from './dmarc.js';
import { pslBuiltins } from './psl.js';
import { authBuiltins } from './auth/builtins.js';
import { greylistBuiltins } from './greylist.js';
import { ratelimitBuiltins } from './ratelimit.js';
import { legacyBuiltins } from './legacy/builtins.js';
import { coreBuiltins } from './core/index.js';
import { validateDataFileAt } from './legacy/data-files.js';

export type DataFileProblem = { file: string; line: number; col?: number; message: string; severity?: 'error' | 'warning' };

/**
 * The validator of a legacy data file kind (smtpd_check_rules, mapping,
 * access), which mta check and every load run on the files a policy names by
 * literal (SPEC §7.1); undefined for other files, which need only exist.
 */
export function dataFileValidator(kind: string): ((dir: string, spec: string) => DataFileProblem[]) | undefined {
  if (kind !== 'smtpd_check_rules' && kind !== 'mapping' && kind !== 'access') return undefined;
  return (dir, spec) => validateDataFileAt(kind, dir, spec);
}

export function allBuiltins(): HostBuiltin[] {
  return [
    ...dnsBuiltins, ...dnsblBuiltins, ...spfBuiltins, ...dkimBuiltins, ...dmarcBuiltins, ...pslBuiltins,
    ...authBuiltins, ...greylistBuiltins, ...ratelimitBuiltins, ...legacyBuiltins, ...coreBuiltins,
  ];
}
