// `sys::clear_relay()` (stdlib only): the relay control written in vSL,
// check_rcpt_relay, says it let the recipient through, so a rcpt stage that
// ends in `next` is not handed to the relay guard (SPEC §5.6). The built-ins
// in src/builtins/legacy/ record the same effect directly.

import type { HostBuiltin } from '../host.js';
import { builtin } from './define.js';

export const relayBuiltins: HostBuiltin[] = [
  builtin({
    name: 'sys::clear_relay',
    from: 'rcpt',
    io: false,
    arity: 0,
    fn: (call) => {
      if (call.stage === 'rcpt') call.effects.record({ kind: 'relay_cleared' });
      return undefined;
    },
  }),
];
