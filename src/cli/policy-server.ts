// `mta policy-server --config main.vsl --listen HOST:PORT|unix:PATH`: the
// policy as a Postfix SMTPD access policy service (src/policy-service/).

import { startPolicyServer } from '../policy-service/server.js';
import type { CliIo } from './io.js';
import { FRONT_OPTIONS, frontCommand } from './milter.js';

export const POLICY_SERVER_HELP = `usage: mta policy-server --config main.vsl --listen HOST:PORT|unix:PATH [options]

Serves the policy to Postfix's check_policy_service (the SMTPD access policy
delegation protocol). protocol_state selects the stage (CONNECT, EHLO/HELO,
MAIL, RCPT, END-OF-MESSAGE); the requests of one instance share the session,
so the first one also runs the stages before it. Answers DUNNO (next), OK
(accept), HOLD (quarantine), the policy's 5xx reply, or DEFER_IF_PERMIT for
4xx replies and errors.

${FRONT_OPTIONS}`;

export function policyServerCommand(argv: string[], io: CliIo): Promise<number> {
  return frontCommand('policy-server', POLICY_SERVER_HELP, startPolicyServer, argv, io);
}
