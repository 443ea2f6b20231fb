// Stage outcomes as milter replies: what the MTA is told after each step.
// The stage machine decides (src/policy/stage-machine.ts); this only encodes.

import type { Applied } from '../policy/apply.js';
import type { Reply } from '../mail/types.js';
import { cstr, packet, REPLY } from './wire.js';

/**
 * SMFIR_REPLYCODE text: `ddd d.d.d text`, lines joined `ddd-…\r\n`. Postfix
 * refuses a reply whose fifth character is not the code's class, so a reply
 * without an enhanced code gets `x.0.0`; `%` is doubled as Sendmail expects.
 */
export function replyCodeText(reply: Reply): string {
  const cls = String(reply.code)[0]!;
  const enhanced = reply.enhanced !== '' && reply.enhanced[0] === cls ? reply.enhanced : `${cls}.0.0`;
  const lines = reply.lines.length === 0 ? [''] : reply.lines;
  return lines
    .map((l, i) => `${reply.code}${i === lines.length - 1 ? ' ' : '-'}${enhanced} ${l.replace(/[\r\n]+/g, ' ').replace(/%/g, '%%')}`.trimEnd())
    .join('\r\n');
}

/** A refusal (4xx or 5xx) with the policy's exact code and text. */
export function refusalPacket(reply: Reply): Buffer {
  return packet(REPLY.REPLYCODE, cstr(replyCodeText(reply)));
}

export const CONTINUE = packet(REPLY.CONTINUE);
export const TEMPFAIL = packet(REPLY.TEMPFAIL);

/**
 * The reply to a step whose stage was decided. A taken command continues,
 * faccept included: SMFIR_ACCEPT would stop the MTA from calling for the
 * later recipients, which the relay guard must still see (SPEC §5.6); the
 * remembered faccept decides the later stages without running their rules.
 */
export function stageReply(applied: Applied): Buffer {
  return applied.accept ? CONTINUE : refusalPacket(applied.reply);
}
