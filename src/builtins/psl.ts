// Organisational domains by the public suffix list (tldts): the registrable
// domain, one label below the public suffix. DMARC uses it for relaxed
// alignment and record discovery (RFC 7489 §3.2); scripts get it through
// utils::get_root_domain (SPEC §7.11, v1 get_root_domain).
//
// The private section of the list counts too: foo.github.io and
// bar.github.io are different organisations, not one.

import { domainToASCII } from 'node:url';
import { createRequire } from 'node:module';

// The public suffix list (~11 MB in memory) is loaded on first use.
const require = createRequire(import.meta.url);
let getDomainFn: typeof import('tldts').getDomain | null = null;
function getDomain(...args: Parameters<typeof import('tldts').getDomain>): ReturnType<typeof import('tldts').getDomain> {
  getDomainFn ??= (require('tldts') as typeof import('tldts')).getDomain;
  return getDomainFn(...args);
}
import type { HostBuiltin } from './host.js';
import { argText, checkArity } from './dns/call-args.js';

const TLDTS_OPTIONS = { allowPrivateDomains: true, allowIcannDomains: true } as const;

/** Lower-case A-label form, trailing dot removed ('' when it cannot be converted). */
export function asciiDomain(domain: string): string {
  let d = domain.trim().toLowerCase().replace(/\.$/, '');
  if (/[^\x00-\x7f]/.test(d)) d = domainToASCII(d);
  return d;
}

/**
 * The registrable domain of `domain` (`a.b.example.co.uk` → `example.co.uk`),
 * or null when there is none: a public suffix itself, a single label, an IP
 * or a malformed name.
 */
export function registrableDomain(domain: string): string | null {
  const d = asciiDomain(domain);
  if (d === '') return null;
  return getDomain(d, TLDTS_OPTIONS);
}

/** The organisational domain for DMARC: the registrable domain, or the name itself when it has none. */
export function organizationalDomain(domain: string): string {
  return registrableDomain(domain) ?? asciiDomain(domain);
}

/** get_root_domain(d): the registrable domain, or `d` (lower-case) when it has none, as vSMTP did. */
function getRootDomain(fn: string): HostBuiltin {
  return {
    name: fn,
    from: 'connect',
    io: false,
    arity: 1,
    fn(_call, args) {
      checkArity(fn, args, 1, 1);
      let d = argText(fn, 'domain', args[0]);
      // An address (object or text) stands for its domain.
      const at = d.lastIndexOf('@');
      if (at >= 0) d = d.slice(at + 1);
      return organizationalDomain(d);
    },
  };
}

export const pslBuiltins: HostBuiltin[] = [getRootDomain('utils::get_root_domain'), getRootDomain('get_root_domain')];
