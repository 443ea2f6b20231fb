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
import { dataFileValidators } from '../policy/load.js';

// mta check and every load validate the legacy data files a policy names by literal.
dataFileValidators.set('smtpd_check_rules', (dir, spec) => validateDataFileAt('smtpd_check_rules', dir, spec));
dataFileValidators.set('mapping', (dir, spec) => validateDataFileAt('mapping', dir, spec));
dataFileValidators.set('access', (dir, spec) => validateDataFileAt('access', dir, spec));

export function allBuiltins(): HostBuiltin[] {
  return [
    ...dnsBuiltins, ...dnsblBuiltins, ...spfBuiltins, ...dkimBuiltins, ...dmarcBuiltins, ...pslBuiltins,
    ...authBuiltins, ...greylistBuiltins, ...ratelimitBuiltins, ...legacyBuiltins, ...coreBuiltins,
  ];
}
