// The spooled message as header fields plus body, for the post-queue stages:
// a MessageView for rules to read (src/builtins/host.ts), and the header
// edits a stage may commit (SPEC §7.5). Fields are kept as raw bytes, so a
// field nobody edits is written back byte for byte.

import type { MessageView } from '../mail/types.js';
import type { StageEffect } from '../mail/types.js';
import { applyHeaderEffect, applyMessageEdit, isHeaderName, isMessageEffect, sameHeaderName, type HeaderBlock } from '../mail/effects.js';

interface Field {
  /** Name as written (empty for a malformed line without a colon). */
  name: string;
  /** The whole field: first line and continuation lines, each ending CRLF. */
  raw: Buffer;
}

interface Split {
  fields: Field[];
  /** Everything from the blank line that ends the header on (may be empty). */
  rest: Buffer;
}

/** Splits a message into header fields and the rest (blank line + body). */
function split(message: Buffer): Split {
  // The header ends at the first empty line.
  let end = -1;
  if (message.length >= 2 && message[0] === 0x0d && message[1] === 0x0a) end = 0;
  else {
    const i = message.indexOf('\r\n\r\n');
    end = i < 0 ? message.length : i + 2;
  }
  const fields: Field[] = [];
  let pos = 0;
  // Where the last field starts: a continuation line only extends its view
  // of the message (recopying the field per line made a field folded over
  // many lines cost quadratic time on the delivery side).
  let lastStart = 0;
  while (pos < end) {
    let nl = message.indexOf('\n', pos);
    if (nl < 0 || nl >= end) nl = end - 1;
    const line = message.subarray(pos, nl + 1);
    const first = line[0];
    if ((first === 0x20 || first === 0x09) && fields.length > 0) {
      fields[fields.length - 1]!.raw = message.subarray(lastStart, nl + 1);
    } else {
      lastStart = pos;
      const text = line.toString('latin1');
      const colon = text.indexOf(':');
      fields.push({ name: colon > 0 ? text.slice(0, colon).trim() : '', raw: line });
    }
    pos = nl + 1;
  }
  return { fields, rest: message.subarray(end) };
}

function join(s: Split): Buffer {
  return Buffer.concat([...s.fields.map((f) => f.raw), s.rest]);
}

/** The field's value: after the colon, unfolded and trimmed (UTF-8). */
function fieldValue(f: Field): string {
  const text = f.raw.toString('utf8');
  const colon = text.indexOf(':');
  return text
    .slice(colon + 1)
    .replace(/\r?\n(?=[ \t])/g, '')
    .replace(/\r?\n$/, '')
    .trim();
}

export function checkHeaderName(name: string): void {
  if (!isHeaderName(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
}

function checkHeaderValue(value: string): void {
  if (/[\r\n]/.test(value)) throw new Error('header value contains CR or LF');
}

/**
 * `Name: value` folded at whitespace so lines stay within 78 columns where
 * possible (SPEC §7.5); a word longer than a line is left whole.
 */
export function foldField(name: string, value: string): Buffer {
  checkHeaderName(name);
  checkHeaderValue(value);
  const words = value.split(/(?<=\S)(?=[ \t])/); // each word keeps its leading blank
  const lines: string[] = [];
  let line = `${name}:`;
  let first = true;
  for (const w of words) {
    const word = first ? ` ${w.replace(/^[ \t]+/, '')}` : w;
    first = false;
    if (line.length + word.length > 78 && line.trim().length > name.length + 1) {
      lines.push(line);
      line = /^[ \t]/.test(word) ? word : ` ${word}`;
    } else {
      line += word;
    }
  }
  lines.push(line);
  return Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
}

function same(a: string, b: string): boolean {
  return sameHeaderName(a, b);
}

/** A spooled message's header fields as a HeaderBlock (folding at 78 columns, names and values checked). */
function fieldsBlock(s: Split): HeaderBlock {
  const field = (name: string, value: string) => {
    checkHeaderValue(value);
    return { name, raw: foldField(name, value) };
  };
  return {
    get: (name) => {
      const f = s.fields.find((x) => same(x.name, name));
      return f === undefined ? null : fieldValue(f);
    },
    append: (name, value) => void s.fields.push(field(name, value)),
    prepend: (name, value) => void s.fields.unshift(field(name, value)),
    set(name, value) {
      const i = s.fields.findIndex((f) => same(f.name, name));
      if (i >= 0) s.fields[i] = field(s.fields[i]!.name, value);
      else s.fields.push(field(name, value));
    },
    rename(name, newName) {
      checkHeaderName(newName);
      for (const f of s.fields) {
        if (!same(f.name, name)) continue;
        const text = f.raw.toString('latin1');
        f.raw = Buffer.concat([Buffer.from(newName, 'latin1'), f.raw.subarray(text.indexOf(':'))]);
        f.name = newName;
      }
    },
    remove: (name) => void (s.fields = s.fields.filter((f) => !same(f.name, name))),
  };
}

/** Whether an effect edits the message (as opposed to the envelope). */
export { isMessageEffect };

/**
 * Applies header and From:/To: edits in order and returns the new message.
 * Throws on an invalid header name or value. The body is never touched.
 */
export function applyMessageEffects(message: Buffer, effects: StageEffect[]): Buffer {
  const s = split(message);
  const block = fieldsBlock(s);
  for (const e of effects) {
    if (e.kind === 'header') {
      checkHeaderName(e.name);
      applyHeaderEffect(block, e);
    } else if (e.kind === 'msg_from' || e.kind === 'msg_rcpt') applyMessageEdit(block, e);
  }
  return join(s);
}

/** A read-only view of a spooled message for rules (from preq on). */
export function messageView(message: Buffer): MessageView {
  let cached: Array<{ name: string; raw: string; value: string }> | null = null;
  return {
    headers() {
      cached ??= split(message).fields.map((f) => ({ name: f.name, raw: f.raw.toString('utf8'), value: fieldValue(f) }));
      return cached.map((h) => ({ ...h }));
    },
    raw() {
      return message;
    },
  };
}

/** The header block (without the blank line), for DSNs and `mta queue show`. */
export function headerBlock(message: Buffer): Buffer {
  return Buffer.concat(split(message).fields.map((f) => f.raw));
}

/** The first value of a header field, or null. */
export function headerValue(message: Buffer, name: string): string | null {
  const f = split(message).fields.find((x) => same(x.name, name));
  return f ? fieldValue(f) : null;
}

/** Prepends trace fields (Return-Path, Delivered-To) for local delivery. */
export function prependFields(message: Buffer, fields: Array<[string, string]>): Buffer {
  return Buffer.concat([...fields.map(([n, v]) => foldField(n, v)), message]);
}
