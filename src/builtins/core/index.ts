// The core host built-ins (SPEC §7.2, §7.4–§7.6, §7.10 fs::, §7.12): message
// and envelope edits, transports, files under vsl.data_dir, services, and
// log/env/user_exist. v1 names reach these through HOST_ALIASES
// (src/vsl/catalog.ts); v1-only names without a v2 twin
// (`rewrite_mail_from`) are registered here under their own name.

import type { HostBuiltin } from '../host.js';
import { envelopeBuiltins } from './envelope.js';
import { fsBuiltins } from './fs.js';
import { messageBuiltins } from './message.js';
import { miscBuiltins } from './misc.js';
import { relayBuiltins } from './relay.js';
import { serviceBuiltins } from './services.js';
import { transportBuiltins } from './transport.js';

export const coreBuiltins: HostBuiltin[] = [
  ...messageBuiltins,
  ...envelopeBuiltins,
  ...transportBuiltins,
  ...fsBuiltins,
  ...serviceBuiltins,
  ...miscBuiltins,
  ...relayBuiltins,
];

export { applyHeaderEffects, currentHeaders, foldHeader } from './message.js';
export { parseForwardTarget, type RelayTarget } from './transport.js';
export { servicesOf, ServiceRegistry, type Service } from './services.js';
export { contextRecord, dataSubdir } from './fs.js';
export { parseCsv, formatCsv } from './csv.js';
