// SMTP replies as plain data (SPEC §5.8): making one, aligning its enhanced
// code with its class, writing it as lines, and reading one back from text.

import type { Reply } from './types.js';

export function makeReply(code: number, enhanced: string, text: string): Reply {
  return { code, enhanced, lines: [text] };
}

/** Sets the class digit of the enhanced code to the reply's (SPEC §5.8: `451 5.7.24` is sent as `451 4.7.24`). */
export function alignEnhanced(reply: Reply): Reply {
  const cls = String(reply.code)[0]!;
  if (reply.enhanced === '' || reply.enhanced[0] === cls) return reply;
  return { ...reply, enhanced: cls + reply.enhanced.slice(1) };
}

const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f]/g;

/**
 * The lines of a reply as sent, without CRLF: every line repeats the code
 * and the enhanced code, all but the last use `-` (SPEC §5.8).
 */
export function replyLines(reply: Reply): string[] {
  const lines = reply.lines.length > 0 ? reply.lines : [''];
  return lines.map((text, i) => {
    const sep = i < lines.length - 1 ? '-' : ' ';
    const body = reply.enhanced === '' ? text : `${reply.enhanced} ${text}`;
    // an empty text still gets its separator: `334 ` (RFC 4954)
    return `${reply.code}${sep}${body.replace(CONTROLS, ' ')}`;
  });
}

/** The first line of a reply, for logs. */
export function replyText(reply: Reply): string {
  return replyLines(reply)[0]!;
}

/** A reply written as text (`501 5.1.7 Bad sender address syntax`), as src/vsl/values/address.ts gives them. */
export function replyFromString(text: string): Reply {
  const m = /^(\d{3})(?:[ -](\d\.\d{1,3}\.\d{1,3}))?(?:[ -](.*))?$/s.exec(text.trim());
  if (m === null) return makeReply(451, '4.3.0', 'Temporary local problem, try again later');
  return { code: Number(m[1]), enhanced: m[2] ?? '', lines: (m[3] ?? '').split(/\r?\n/) };
}
