// The arguments of MAIL and RCPT: `FROM:<path> [params]`, `TO:<path> [params]`
// (RFC 5321 §4.1.2, SPEC §4.4). The path is parsed by
// src/vsl/runtime/address.ts (parsePathArgument); this file checks the
// keyword and reads the ESMTP parameters after the path.

import type { Reply } from '../mail/types.js';
import { R } from './replies.js';

/**
 * Checks the `FROM:` / `TO:` keyword and returns what follows it (the path
 * and its parameters, for parsePathArgument). A space after the colon is
 * tolerated, as most servers do.
 */
export function afterKeyword(args: string, keyword: 'FROM' | 'TO'): { ok: true; rest: string } | { ok: false; reply: Reply } {
  const prefix = `${keyword}:`;
  if (args.slice(0, prefix.length).toUpperCase() !== prefix) {
    return { ok: false, reply: R.badArguments(`Syntax: ${keyword === 'FROM' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>'}`) };
  }
  return { ok: true, rest: args.slice(prefix.length).replace(/^ +/, '') };
}

export type Params = { ok: true; params: Map<string, string | true> } | { ok: false; reply: Reply };

const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
// esmtp-value: printable US-ASCII except "=" and SP.
const VALUE = /^[\x21-\x3c\x3e-\x7e]+$/;

/** `KEY[=VALUE]` words; bad syntax or a repeated keyword is `501 5.5.4`. */
export function parseParams(text: string): Params {
  const params = new Map<string, string | true>();
  if (text.trim() === '') return { ok: true, params };
  for (const word of text.trim().split(/ +/)) {
    const eq = word.indexOf('=');
    const key = (eq < 0 ? word : word.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? true : word.slice(eq + 1);
    if (!KEYWORD.test(key) || (value !== true && !VALUE.test(value))) return { ok: false, reply: R.badArguments() };
    if (params.has(key)) return { ok: false, reply: R.badArguments(`Duplicate parameter ${key}`) };
    params.set(key, value);
  }
  return { ok: true, params };
}

export interface MailParams {
  smtputf8: boolean;
  body: '7BIT' | '8BITMIME' | null;
  size: number | null;
}

/**
 * The MAIL parameters this server implements (those its EHLO advertises:
 * SIZE, BODY, SMTPUTF8, plus AUTH= which RFC 4954 has servers accept and
 * this one ignores). Anything else is `555 5.5.4 Unsupported parameter`.
 */
export function mailParams(text: string, sizeLimit: number): { ok: true; value: MailParams } | { ok: false; reply: Reply } {
  const parsed = parseParams(text);
  if (!parsed.ok) return parsed;
  const value: MailParams = { smtputf8: false, body: null, size: null };
  for (const [key, v] of parsed.params) {
    switch (key) {
      case 'SIZE':
        if (v === true || !/^\d{1,20}$/.test(v)) return { ok: false, reply: R.badArguments('Bad SIZE parameter') };
        value.size = Number(v);
        if (sizeLimit > 0 && value.size > sizeLimit) return { ok: false, reply: R.tooBig };
        break;
      case 'BODY': {
        const body = v === true ? '' : v.toUpperCase();
        if (body !== '7BIT' && body !== '8BITMIME') return { ok: false, reply: R.badArguments('Bad BODY parameter') };
        value.body = body;
        break;
      }
      case 'SMTPUTF8':
        if (v !== true) return { ok: false, reply: R.badArguments('SMTPUTF8 takes no value') };
        value.smtputf8 = true;
        break;
      case 'AUTH':
        break;
      default:
        return { ok: false, reply: R.unsupportedParameter };
    }
  }
  return { ok: true, value };
}

/** RCPT takes no parameters here (no DSN is advertised). */
export function rcptParams(text: string): { ok: true } | { ok: false; reply: Reply } {
  const parsed = parseParams(text);
  if (!parsed.ok) return parsed;
  if (parsed.params.size > 0) return { ok: false, reply: R.unsupportedParameter };
  return { ok: true };
}
