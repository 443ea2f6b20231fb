// Wires the scheduler's RunStage to the policy's StageRunner
// (src/policy/types.ts): a queued message's record becomes the Session and
// Transaction the postq and delivery rules see, and its file the message.

import type { StageRunner } from '../policy/types.js';
import { sessionFromRecord, transactionFromRecord } from '../queue/envelope.js';
import { messageView } from '../queue/message.js';
import type { RunStage } from './message-run.js';

export function runStageWith(runner: StageRunner): RunStage {
  return (stage, record, message) => runner.run(stage, sessionFromRecord(record), transactionFromRecord(record), messageView(message));
}
