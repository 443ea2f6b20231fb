// Adapts our Resolver to the `resolver(name, rrtype)` function mailauth
// accepts, so SPF and DKIM lookups use server.dns.servers and our deadlines.
// mailauth tells failures apart by Node's c-ares error codes; DnsError codes
// are mapped back to them.

import { DnsError, type DnsErrorCode, type Resolver } from '../../host/ports.js';
import { ipFromReverseName } from './names.js';

export type MailauthResolver = (name: string, rrtype: string) => Promise<unknown[]>;

const NODE_CODES: Record<DnsErrorCode, string> = {
  NXDOMAIN: 'ENOTFOUND',
  NODATA: 'ENODATA',
  SERVFAIL: 'ESERVFAIL',
  TIMEOUT: 'ETIMEOUT',
  REFUSED: 'EREFUSED',
  FORMERR: 'EFORMERR',
  // Not a c-ares code: mailauth treats unknown codes as temporary failures.
  ERROR: 'EDNSFAIL',
};

/** An Error shaped like Node's DNS errors (`code`, `hostname`), keeping the DnsError as cause. */
export function nodeDnsError(err: DnsError): Error & { code: string; hostname: string } {
  const e = new Error(err.message, { cause: err }) as Error & { code: string; hostname: string };
  e.code = NODE_CODES[err.code];
  e.hostname = err.query;
  return e;
}

export function mailauthResolver(resolver: Resolver, timeoutMs: number): MailauthResolver {
  const o = { timeoutMs };
  const query = async (name: string, rrtype: string): Promise<unknown[]> => {
    switch (rrtype.toUpperCase()) {
      case 'TXT':
        return resolver.txt(name, o);
      case 'A':
        return (await resolver.a(name, o)).map((r) => r.address);
      case 'AAAA':
        return (await resolver.aaaa(name, o)).map((r) => r.address);
      case 'MX':
        return resolver.mx(name, o);
      case 'NS':
        return resolver.ns(name, o);
      case 'PTR': {
        const ip = ipFromReverseName(name);
        if (!ip) throw new DnsError('FORMERR', name, `not a reverse name: ${name}`);
        return resolver.ptr(ip, o);
      }
      default:
        throw new DnsError('ERROR', name, `unsupported record type ${rrtype}`);
    }
  };
  return async (name, rrtype) => {
    try {
      return await query(name, rrtype);
    } catch (err) {
      throw err instanceof DnsError ? nodeDnsError(err) : err;
    }
  };
}
