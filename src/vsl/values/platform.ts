// Host services the pure runtime cannot provide by itself. Today that is IDNA
// (UTS #46 ToASCII): the QuickJS sandbox has no Intl and no URL parser, so the
// host installs an implementation (src/vsl/host-platform.ts in Node; inside
// the sandbox, one that calls out to the host).

export interface Platform {
  /**
   * Converts a domain to its A-label form (lower-case ASCII). Throws on a
   * name that cannot be converted. Callers validate the result's syntax
   * themselves (src/vsl/values/address.ts), so an implementation may be lax.
   */
  toASCII(domain: string): string;
}

/** Without IDN support: ASCII names are lower-cased, anything else throws. */
export const asciiOnlyPlatform: Platform = {
  toASCII(domain: string): string {
    for (let i = 0; i < domain.length; i++) {
      if (domain.charCodeAt(i) > 0x7f) throw new Error('IDN conversion unavailable');
    }
    return domain.toLowerCase();
  },
};

let current: Platform = asciiOnlyPlatform;
let generation = 0;

/** Installs the platform used by every later conversion (once, at startup). */
export function setPlatform(p: Platform): void {
  current = p;
  generation++;
}

/** Changes whenever the platform does: memoised conversions compare it. */
export function platformGeneration(): number {
  return generation;
}

export function platform(): Platform {
  return current;
}
