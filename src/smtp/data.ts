// DATA: receiving the message and everything up to the end-of-data reply
// (SPEC §4.1 preq, §4.5, §10): the checks on the bytes, the Received: and
// pending headers, the preq stage, the spool, and only then the 250.

import { rm } from 'node:fs/promises';
import { receivedHeader } from '../mail/received.js';
import type { Reply, Session } from '../mail/types.js';
import { applyMessageEdit } from '../mail/effects.js';
import { DataCollector, MessageDraft, type DataProblem } from './message.js';
import type { SmtpProtocol } from './protocol.js';
import { R } from './replies.js';
import { missingSubmissionFields } from './submission-headers.js';
import { decideStage } from '../policy/stage-machine.js';
import type { DataEnd } from './wire.js';
import { logAccepted } from '../log/summary.js';
import { addressText } from '../mail/types.js';

const PROBLEM_REPLY: Record<DataProblem, Reply> = {
  'bare-cr-lf': R.bareCrLf,
  'too-big': R.tooBig,
  nul: R.nulInMessage,
  'header-too-big': R.headerTooBig,
  'too-many-hops': R.tooManyHops,
};

/** After `DATA` passed its checks: 354, then the message is read while the command completes. */
export async function receiveMessage(p: SmtpProtocol): Promise<void> {
  const s = p.settings;
  const txnId = p.state.txn?.id;
  // The body goes to a temporary file of the spool beyond a small buffer (sinks without a spool keep it in memory).
  const spill = p.front.sink.spillPath !== undefined && txnId !== undefined ? () => p.front.sink.spillPath!(txnId) : null;
  const collector = new DataCollector({ maxBytes: s.messageSizeLimit, maxHeaderBytes: s.headerSizeMax, maxReceived: s.maxReceived }, spill);
  p.inData = true;
  const ended = p.wire.receiveData((chunk) => collector.push(chunk));
  await p.wire.reply(R.dataGo);
  // The parser reads the message once this command returns; the end of
  // data is handled when the final dot arrives.
  void finishData(p, ended, collector);
}

async function finishData(p: SmtpProtocol, ended: Promise<DataEnd>, collector: DataCollector): Promise<void> {
  const how = await ended;
  if (how === 'aborted') {
    // The client left or timed out mid-DATA: nothing reaches the spool.
    p.log.info({ bytes: collector.bytes, queue_id: p.state.txn?.id }, 'DATA aborted, message discarded');
    await collector.discard();
    p.state.endTransaction();
    p.inData = false;
    return;
  }
  p.wire.setBusy(true);
  try {
    await endOfData(p, collector);
  } catch (err) {
    p.log.error({ err }, 'end of data failed');
    if (!p.wire.gone) await p.wire.reply(R.tempFail);
  } finally {
    // The transaction ends at end of DATA, whatever the reply (SPEC §4.3).
    p.state.endTransaction();
    p.inData = false;
    p.wire.setBusy(false);
    p.wire.dataDone();
  }
}

/** A copy of the session for the spool: the front keeps changing its own. */
function snapshot(session: Session): Session {
  return structuredClone(session);
}

async function endOfData(p: SmtpProtocol, collector: DataCollector): Promise<void> {
  const { state, front, settings: s } = p;
  const txn = state.txn;
  const txx = state.txx;
  if (txn === null || txx === null) throw new Error('end of data without a transaction');
  const checked = await collector.finish().catch(async (err: unknown) => {
    await collector.discard();
    throw err;
  });
  if (!checked.ok) {
    p.log.info({ queue_id: txn.id, problem: checked.problem, bytes: collector.bytes }, 'message refused');
    await p.wire.reply(PROBLEM_REPLY[checked.problem]);
    return;
  }
  const session = state.session;
  const received = receivedHeader(session, { serverName: s.serverName, id: txn.id, date: new Date(front.clock.now()) });
  // Received: first, then pending headers in call order, then the client's (SPEC §7.5, §10).
  const draft = MessageDraft.assemble([received, ...session.pendingHeaders, ...txn.pendingHeaders], checked.parsed);
  for (const h of missingSubmissionFields({ session, relayNetworks: s.relay.relayNetworks, present: draft.headers(), id: txn.id, serverName: s.serverName, now: new Date(front.clock.now()) })) draft.append(h.name, h.value);
  for (const edit of txx.messageEdits) if (edit.kind === 'msg_from' || edit.kind === 'msg_rcpt') applyMessageEdit(draft, edit);
  try {
    await queueAfterPreq(p, draft);
  } finally {
    // A spilled body has been copied into the spool (or the message was not queued).
    if (!Buffer.isBuffer(draft.body)) await rm(draft.body.path, { force: true });
  }
}

async function queueAfterPreq(p: SmtpProtocol, draft: MessageDraft): Promise<void> {
  const { state, front } = p;
  const txn = state.txn!;
  const session = state.session;
  const { applied } = await decideStage(front, state, p.log, 'preq', R.queued(txn.id), draft);
  if (!applied.accept) {
    // Refused at preq: the message is discarded.
    await p.replyApplied(applied);
    return;
  }
  if (txn.rcpts.length === 0) {
    p.log.info({ queue_id: txn.id }, 'no recipient left after preq: message accepted and dropped');
    await p.replyApplied(applied);
    return;
  }
  if (p.wire.gone) {
    // Nobody is left to receive the 250: the client will send it again.
    p.log.info({ queue_id: txn.id }, 'client left before the end-of-data reply, message not queued');
    return;
  }
  const size = draft.size;
  try {
    await front.sink.enqueue({
      id: txn.id,
      mailFrom: txn.mailFrom,
      rcpts: txn.rcpts.map((r) => ({ address: r.address, transport: r.transport })),
      ...(Buffer.isBuffer(draft.body) ? { data: draft.raw() } : { data: draft.head(), bodyFile: draft.body }),
      session: snapshot(session),
      txnRemembered: session.remembered ?? txn.remembered,
      ...(applied.quarantine !== null ? { quarantine: applied.quarantine } : {}),
    });
  } catch (err) {
    p.log.error({ err, queue_id: txn.id }, 'spool failed, message not accepted');
    await p.wire.reply(R.tempFail);
    return;
  }
  logAccepted(p.log, { queueId: txn.id, sender: addressText(txn.mailFrom), size, nrcpt: txn.rcpts.length, quarantine: applied.quarantine });
  await p.replyApplied(applied);
}
