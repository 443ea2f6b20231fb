// The worker thread of SandboxThread (thread.ts): builds its copy of the
// policy sandbox, then evaluates the stages the main thread sends. Host
// built-ins run on the main thread: a synchronous one blocks this thread
// until the answer is on the answer port, an I/O one is a message answered
// later while the guest waits (as on the main thread).

import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { CompiledPolicy } from '../vsl/compiler.js';
import { PolicySandbox, type WireHost } from './sandbox.js';
import { LOAD_EVAL_ID, runToWire, type FromThread, type ThreadData, type ToThread } from './thread.js';

/** A synchronous host call the main thread does not answer within this is a fault of the call. */
const SYNC_ANSWER_TIMEOUT_MS = 60_000;

const { setup, flag, answers } = workerData as ThreadData;
const port = parentPort!;
const flagWord = new Int32Array(flag);
const pendingAsync = new Map<number, (answer: string) => void>();
let nextReq = 1;

const send = (m: FromThread): void => port.postMessage(m);
const evalIdOf = (state: unknown): number => (state as { evalId?: number } | null)?.evalId ?? LOAD_EVAL_ID;

const host: WireHost = {
  wireSync(state, ruleIndex, name, argsJson, posId) {
    Atomics.store(flagWord, 0, 0);
    send({ t: 'sync', evalId: evalIdOf(state), ruleIndex, name, argsJson, posId });
    const giveUp = Date.now() + SYNC_ANSWER_TIMEOUT_MS;
    for (;;) {
      Atomics.wait(flagWord, 0, 0, 1000);
      const got = receiveMessageOnPort(answers);
      if (got !== undefined) return got.message as string;
      if (Date.now() > giveUp) return JSON.stringify({ fatal: `${name}: the host did not answer` });
    }
  },
  wireAsync(state, ruleIndex, name, argsJson, posId) {
    const reqId = nextReq++;
    return new Promise<string>((resolve) => {
      pendingAsync.set(reqId, resolve);
      send({ t: 'async', reqId, evalId: evalIdOf(state), ruleIndex, name, argsJson, posId });
    });
  },
};

async function main(): Promise<void> {
  let sandbox: PolicySandbox;
  try {
    sandbox = await PolicySandbox.create(setup.compiled as CompiledPolicy, setup.limits, host);
    sandbox.loadState = { evalId: LOAD_EVAL_ID };
    sandbox.setServer(setup.serverInfo);
    const init = sandbox.init(setup.order, setup.main);
    if (!init.ok) throw new Error(`policy no longer initialises (${init.error.kind})`);
  } catch (e) {
    send({ t: 'failed', message: (e as Error).message });
    return;
  }
  port.on('message', (m: ToThread) => {
    if (m.t === 'async-answer') {
      const resolve = pendingAsync.get(m.reqId);
      pendingAsync.delete(m.reqId);
      resolve?.(m.answer);
      return;
    }
    sandbox.evaluate(m.stage, m.context, { evalId: m.id }).then(
      (run) => send({ t: 'done', id: m.id, run: runToWire(run), broken: sandbox.broken }),
      (err: Error) => send({ t: 'done', id: m.id, run: { ok: false, index: 0, error: { message: err.message, at: null, chain: [], fatal: 'internal' }, trace: [] }, broken: true }),
    );
  });
  send({ t: 'ready' });
}

void main();
