// Regular expressions written by policy authors (regexp:/pcre: access maps,
// `/re/` in smtpd_check_rules) and matched on the host against text from the
// network. V8's RegExp backtracks: `/^([a-z0-9]+)+$/` against 32 characters
// ending in `!` takes seconds on the event loop, stalling every session of
// the process. These run in RE2 instead, whose matching time is linear in
// the text whatever the pattern. RE2 cannot express backreferences or
// lookaround; such a pattern is refused when the file is loaded, with a
// message saying what to rewrite, never run in V8.

import RE2 from 're2';

/** A compiled pattern; RE2 follows the RegExp interface (`exec`, `test`, groups). */
export type LinearRegex = RE2;

/** What RE2 refuses and how to say it to the author. */
function explain(source: string, reason: string): string {
  const what = /\\[1-9]|\\k</.test(source)
    ? 'a backreference'
    : /\(\?<?[=!]/.test(source)
      ? 'lookaround ((?=…), (?!…), (?<=…), (?<!…))'
      : null;
  if (what !== null) {
    return `regular expression /${source}/ uses ${what}, which the linear-time matcher (RE2) cannot run: rewrite it without (for example as two patterns, or a plain alternative)`;
  }
  return `invalid regular expression /${source}/: ${reason}`;
}

/**
 * Compiles `source` with RegExp-style flags (`i`, `m`) for linear-time
 * matching; a string is the diagnostic when it cannot be.
 */
export function compileLinearRegex(source: string, flags: string): LinearRegex | string {
  try {
    // Checked by V8 first: its syntax is what the files are written in, and its messages are familiar.
    new RegExp(source, flags);
  } catch (err) {
    return `invalid regular expression /${source}/: ${err instanceof Error ? err.message : String(err)}`;
  }
  try {
    return new RE2(source, flags);
  } catch (err) {
    return explain(source, err instanceof Error ? err.message : String(err));
  }
}
