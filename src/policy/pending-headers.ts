// The pending header list (SPEC §7.5): before DATA, header writes collect in
// a list (session-wide at connect/helo/authenticate, else the transaction's)
// that set/rm/rename act on, and that is inserted below Received: at end of
// DATA. One implementation, used by the SMTP front when it applies a stage's
// effects and by msg:: reads that must see earlier writes of the same stage.

import type { Header, StageEffect } from './types.js';

export type HeaderEffect = Extract<StageEffect, { kind: 'header' }>;

/** Header names compare case-insensitively (RFC 5322). */
export function sameHeaderName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** Applies one header edit to a pending list, in place. */
export function editPendingHeaders(list: Header[], e: HeaderEffect): void {
  switch (e.op) {
    case 'append':
      list.push({ name: e.name, value: e.value });
      return;
    case 'prepend':
      list.unshift({ name: e.name, value: e.value });
      return;
    case 'set': {
      const i = list.findIndex((h) => sameHeaderName(h.name, e.name));
      if (i < 0) list.push({ name: e.name, value: e.value });
      else list[i] = { name: e.name, value: e.value };
      return;
    }
    case 'rename':
      for (let i = 0; i < list.length; i++) if (sameHeaderName(list[i]!.name, e.name)) list[i] = { name: e.newName, value: list[i]!.value };
      return;
    case 'remove':
      for (let i = list.length - 1; i >= 0; i--) if (sameHeaderName(list[i]!.name, e.name)) list.splice(i, 1);
      return;
  }
}
