// What a stage's status does before queueing (SPEC §5.2, §5.4, §5.7): the
// one place that turns a Verdict into an SMTP reply, a close, an acceptance
// and a remembered status. Pure: the SMTP front performs the result.
//
// Every cell of the §5.2 table is a branch below; test/policy/apply.test.ts
// walks the whole table.

import type { Remembered, Reply, StatusKind, Verdict } from '../mail/types.js';
import { alignEnhanced, makeReply } from '../mail/reply.js';


/** The stages that run before queueing, while the client waits for a reply. */
export type FrontStage = 'connect' | 'helo' | 'authenticate' | 'mail' | 'rcpt' | 'preq';

export interface ApplyContext {
  /** `vsl.error_status`: what a failed stage does (SPEC §5.7). */
  errorStatus: 'tempfail' | 'deny';
  /**
   * The reply the stage gives when it succeeds without a code of its own:
   * the greeting, the HELO reply or the whole multi-line EHLO reply,
   * `235 2.7.0 …`, `250 2.1.0 Ok`, `250 2.1.5 Ok`, `250 2.0.0 Ok: queued as <id>`.
   */
  normal: Reply;
}

export interface Applied {
  /** The reply to send. */
  reply: Reply;
  /** Close the connection once the reply is sent. */
  close: boolean;
  /**
   * The command took effect: the greeting stands (connect), the HELO is
   * recorded, AUTH succeeded, the transaction starts, the recipient is added,
   * the message is queued. Always false when the reply is not 2xx.
   */
  accept: boolean;
  /**
   * Status to remember (SPEC §5.4): for the session when decided at connect
   * or helo, for the transaction at mail, rcpt and preq. Never at
   * authenticate, never for an error, never again for a remembered verdict.
   */
  remember: Remembered | null;
  /** preq: the quarantine the message is stored in instead of being delivered. */
  quarantine: string | null;
  /** What the status amounted to, for the log (`accept` with a 5xx reply is a `reject`). */
  effective: StatusKind | 'error';
}


// Replies fixed by SPEC §5.1, §5.2 and §4.5.
export const REPLY_DENY_DEFAULT = makeReply(554, '5.7.1', 'permanent problems with the remote server');
export const REPLY_REJECT_DEFAULT = makeReply(550, '5.7.1', 'Command rejected by policy');
export const REPLY_AUTH_SUCCESS = makeReply(235, '2.7.0', 'Authentication succeeded');
export const REPLY_AUTH_INVALID = makeReply(535, '5.7.8', 'Authentication credentials invalid');
export const REPLY_AUTH_TEMPFAIL = makeReply(454, '4.7.0', 'Temporary authentication failure');
export const REPLY_TEMPFAIL_CONNECT = makeReply(421, '4.3.0', 'Temporary local problem, try again later');
export const REPLY_TEMPFAIL = makeReply(451, '4.3.0', 'Temporary local problem, try again later');


function withCode(reply: Reply, code: number): Reply {
  return alignEnhanced({ ...reply, code });
}

function isSuccess(reply: Reply | null): boolean {
  return reply === null || (reply.code >= 200 && reply.code < 300);
}

function isRefusal(reply: Reply): boolean {
  return reply.code >= 400 && reply.code < 600;
}

/**
 * A greeting may only be 220, 421 or 554 (RFC 5321 §4.2.5, SPEC §5.2 note),
 * so a code chosen at connect keeps its class and text but takes one of those.
 */
function greetingCode(reply: Reply): Reply {
  if (reply.code >= 200 && reply.code < 300) return withCode(reply, 220);
  if (reply.code >= 400 && reply.code < 500) return withCode(reply, 421);
  return withCode(reply, 554);
}

/** The success reply of a stage when the status carried code `c` (SPEC §5.2 `accept(c)` row). */
function successReply(stage: FrontStage, c: Reply | null, normal: Reply): Reply {
  if (c === null) return normal;
  switch (stage) {
    case 'connect':
      return greetingCode(c);
    case 'helo': {
      // EHLO: the code replaces the first line only, the capabilities stay.
      // Every line of a reply shares one enhanced code, so the code's own
      // enhanced code moves into its text rather than onto the capability lines.
      const first = c.lines.map((l) => (c.enhanced === '' ? l : `${c.enhanced} ${l}`));
      return { code: 250, enhanced: '', lines: [...first, ...normal.lines.slice(1)] };
    }
    case 'authenticate':
      // RFC 4954: success is 235 whatever 2xx the rule chose.
      return withCode(c, 235);
    default:
      return alignEnhanced(c);
  }
}

/** The reply of a refusal: the status's code, else the stage's default for that status. */
function refusalReply(stage: FrontStage, kind: 'deny' | 'reject', c: Reply | null): Reply {
  let reply: Reply;
  if (c !== null && isRefusal(c)) reply = alignEnhanced(c);
  else if (stage === 'authenticate') reply = REPLY_AUTH_INVALID; // `c or 535`
  else reply = kind === 'deny' ? REPLY_DENY_DEFAULT : REPLY_REJECT_DEFAULT;
  return stage === 'connect' ? greetingCode(reply) : reply;
}

/** Stages whose remembered statuses persist (authenticate never remembers). */
function remembers(stage: FrontStage): boolean {
  return stage !== 'authenticate';
}

function rememberedOf(kind: Remembered['kind'], v: Verdict): Remembered {
  const r: Remembered = { kind, rule: v.rule ?? v.source, at: v.at ?? '' };
  if (kind === 'quarantine' && v.quarantine !== undefined) r.quarantine = v.quarantine;
  return r;
}

function result(reply: Reply, close: boolean, accept: boolean, effective: Applied['effective'], remember: Remembered | null = null, quarantine: string | null = null): Applied {
  return { reply, close, accept, remember, quarantine, effective };
}

/** A failed stage (SPEC §5.7), per `vsl.error_status`. */
function applyError(stage: FrontStage, ctx: ApplyContext): Applied {
  if (ctx.errorStatus === 'deny') {
    // vSMTP's behaviour: deny() with its default code, which is 535 at authenticate (SPEC §5.2 deny row).
    return result(refusalReply(stage, 'deny', null), true, false, 'error');
  }
  switch (stage) {
    case 'connect':
      return result(REPLY_TEMPFAIL_CONNECT, true, false, 'error');
    case 'authenticate':
      return result(REPLY_AUTH_TEMPFAIL, false, false, 'error');
    default:
      return result(REPLY_TEMPFAIL, false, false, 'error');
  }
}

/** A refusal: deny closes everywhere, reject/info close only at connect. */
function applyRefusal(stage: FrontStage, kind: 'deny' | 'reject', c: Reply | null, v: Verdict): Applied {
  const reply = refusalReply(stage, kind, c);
  if (kind === 'deny') {
    const remember = remembers(stage) && v.source !== 'remembered' ? rememberedOf('deny', v) : null;
    return result(reply, true, false, 'deny', remember);
  }
  return result(reply, stage === 'connect', false, v.status === 'info' ? 'info' : 'reject');
}

/**
 * Applies a stage's verdict per SPEC §5.2 (and §5.4 for what is remembered,
 * §5.7 for errors). `ctx.normal` is the stage's own success reply.
 */
export function applyVerdict(stage: FrontStage, verdict: Verdict, ctx: ApplyContext): Applied {
  if (verdict.source === 'error' || verdict.error !== undefined) return applyError(stage, ctx);
  const c = verdict.reply;
  const fresh = verdict.source !== 'remembered';

  switch (verdict.status) {
    case 'next':
      // authenticate: only accept authenticates (SPEC §5.5).
      if (stage === 'authenticate') return result(REPLY_AUTH_INVALID, false, false, 'next');
      return result(ctx.normal, false, true, 'next');

    case 'accept':
    case 'faccept': {
      // accept/faccept with a 4xx/5xx code refuse exactly as reject (SPEC §5.1).
      if (c !== null && !isSuccess(c)) return applyRefusal(stage, 'reject', c, verdict);
      if (stage === 'authenticate') {
        if (verdict.status === 'faccept') return result(REPLY_AUTH_INVALID, false, false, 'faccept');
        return result(c === null ? REPLY_AUTH_SUCCESS : successReply(stage, c, ctx.normal), false, true, 'accept');
      }
      // A remembered faccept sends the stage's normal success reply (SPEC §5.4).
      const reply = fresh ? successReply(stage, c, ctx.normal) : ctx.normal;
      const remember = verdict.status === 'faccept' && fresh ? rememberedOf('faccept', verdict) : null;
      return result(reply, false, true, verdict.status, remember);
    }

    case 'deny':
      return applyRefusal(stage, 'deny', c, verdict);

    case 'reject':
    case 'info':
      return applyRefusal(stage, 'reject', c, verdict);

    case 'quarantine': {
      if (stage === 'authenticate') return result(REPLY_AUTH_INVALID, false, false, 'quarantine');
      const remember = fresh ? rememberedOf('quarantine', verdict) : null;
      const name = stage === 'preq' ? (verdict.quarantine ?? null) : null;
      if (stage === 'preq' && name === null) {
        // A quarantine without a name cannot be stored: fail closed (runner bug).
        return applyError(stage, ctx);
      }
      return result(ctx.normal, false, true, 'quarantine', remember, name);
    }
  }
}
