// The Node implementation of the runtime Platform (src/vsl/values/platform.ts).
// Only host code imports this file; the sandbox installs its own platform.

import { domainToASCII } from 'node:url';
import { setPlatform, type Platform } from './values/platform.js';

/**
 * IDNA through WHATWG URL host parsing. That parser also percent-decodes and
 * reads numeric hosts as IPv4 (`0x7f.1` → `127.0.0.1`); domain callers in
 * src/vsl/values/address.ts reject such input before and after conversion.
 */
export const nodePlatform: Platform = {
  toASCII(domain: string): string {
    const ascii = domainToASCII(domain);
    if (ascii === '') throw new Error(`invalid international domain name '${domain}'`);
    return ascii;
  },
};

/** Installs nodePlatform for this process. */
export function installNodePlatform(): void {
  setPlatform(nodePlatform);
}
