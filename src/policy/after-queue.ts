// The policy's post-queue half as the queue runner gets it
// (src/delivery/message-run.ts AfterQueueStages): a queued message's record
// becomes the Session and Transaction the postq and delivery rules see, its
// file the message, and every verdict goes through the one stage machine
// (src/policy/stage-machine.ts). Injected by whoever wires a server, so the
// delivery layer never imports the policy layer.

import type { AfterQueueStages } from '../delivery/message-run.js';
import type { StageOutcome, StageRunner } from '../mail/types.js';
import { type EnvelopeRecord, sessionFromRecord, transactionFromRecord } from '../queue/envelope.js';
import { messageView } from '../queue/message.js';
import { decideAfterQueue, rememberedAfterQueue, type DecisionObserver } from './stage-machine.js';

/** Runs the postq or delivery rules for a queued message. */
export type RunStage = (stage: 'postq' | 'delivery', record: EnvelopeRecord, message: Buffer) => Promise<StageOutcome>;

export function runStageWith(runner: StageRunner): RunStage {
  return (stage, record, message) => runner.run(stage, sessionFromRecord(record), transactionFromRecord(record), messageView(message));
}

/** The post-queue stages over `run`; `observe` sees every decision (mta explain). */
export function afterQueueStages(run: RunStage, observe?: DecisionObserver): AfterQueueStages {
  return {
    remembered: (record) => rememberedAfterQueue(record.session.remembered, record.txn_remembered),
    decide(stage, record, message, errorStatus, log) {
      const state = { session: sessionFromRecord(record), txn: transactionFromRecord(record) };
      return decideAfterQueue(() => run(stage, structuredClone(record), message), stage, state, errorStatus, log, observe);
    },
  };
}
