// Case-insensitive `*` / `?` globs of smtpd_check_rules (SPEC §8.3).
//
// Matched with the classic two-pointer algorithm (backtrack to the last `*`)
// rather than a RegExp: the text comes from the network and a pattern such as
// `*a*a*a*b` compiled to a backtracking regex could take exponential time.
// This runs in O(pattern × text) at worst.

/** A glob ready to match: lower-cased once. */
export interface Glob {
  source: string;
  lower: string;
  hasWildcard: boolean;
}

export function compileGlob(source: string): Glob {
  return { source, lower: source.toLowerCase(), hasWildcard: /[*?]/.test(source) };
}

/** Whether `text` matches the glob as a whole, ignoring case. `*` is any run, `?` one character. */
export function globMatch(glob: Glob, text: string): boolean {
  const p = glob.lower;
  const s = text.toLowerCase();
  if (!glob.hasWildcard) return p === s;
  let pi = 0;
  let si = 0;
  let starP = -1;
  let starS = 0;
  while (si < s.length) {
    const pc = p[pi];
    if (pc === '*') {
      starP = pi++;
      starS = si;
    } else if (pc !== undefined && (pc === '?' || pc === s[si])) {
      pi++;
      si++;
    } else if (starP >= 0) {
      // Let the last `*` absorb one more character and retry from there.
      pi = starP + 1;
      si = ++starS;
    } else {
      return false;
    }
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}
