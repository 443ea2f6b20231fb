// The SASL credentials of the AUTH in progress, handed to the authenticate
// stage (SPEC §7.3: auth::credentials()).
//
// StageRunner.run() (src/mail/types.ts) has no parameter for them; the
// policy runner (src/policy/runner.ts) takes them as an optional fifth
// argument, `{ credentials }`, and the front passes them that way — never
// on the session, so they cannot leak through a serialisation of it. The
// password is wiped once the stage is over (SPEC §5.5).

import type { MessageView } from '../mail/types.js';
import type { Session, Stage, StageOutcome, StageRunner, Transaction } from '../mail/types.js';

export interface AuthCredentials {
  type: 'Verify';
  mechanism: string;
  authid: string;
  authpass: string;
  anonymous_token: string;
}

/** What a stage evaluation gets besides session, transaction and message. */
export interface StageExtra {
  credentials?: AuthCredentials;
}

type RunWithExtra = (stage: Stage, session: Session, txn: Transaction | null, message: MessageView | null, extra?: StageExtra) => Promise<StageOutcome>;

/** Runs a stage, passing `extra` to runners that take it (a runner that does not simply ignores it). */
export function runStage(runner: StageRunner, stage: Stage, session: Session, txn: Transaction | null, message: MessageView | null, extra?: StageExtra): Promise<StageOutcome> {
  const run = runner.run.bind(runner) as RunWithExtra;
  return extra === undefined ? run(stage, session, txn, message) : run(stage, session, txn, message, extra);
}

/** Runs `fn` with the credentials, then wipes the password (`authpass == ""` after the stage). */
export async function withCredentials<T>(creds: AuthCredentials, fn: (extra: StageExtra) => Promise<T>): Promise<T> {
  try {
    return await fn({ credentials: creds });
  } finally {
    creds.authpass = '';
  }
}
