// The policy side of a running process: the hot-reloading PolicyManager, the
// long-lived host services (resolver, state store) that outlive policy
// versions, and the PolicyRunner on top. `mta run` (src/server.ts), `mta
// milter` and `mta policy-server` build it the same way, so a policy
// behaves alike behind every front (SPEC §12 for the reload rules).

import type { Logger } from 'pino';
import { allBuiltins } from '../builtins/registry.js';
import type { HostEnv } from '../host/ports.js';
import type { Config } from '../config/schema.js';
import { serverEnv } from '../policy/env.js';
import type { ConfigOverrides } from '../policy/load.js';
import { relayGuardConfig } from '../policy/relay-guard.js';
import { PolicyRunner } from '../policy/runner.js';
import type { EditableMessage } from '../mail/effects.js';
import { makeReply } from '../mail/reply.js';
import type { Header, Reply } from '../mail/types.js';
import type { StageMachineEnv } from '../policy/stage-machine.js';
import { newQueueId } from '../queue/id.js';
import { PolicyManager } from './manager.js';

export interface PolicyRuntimeOptions {
  mainPath: string;
  overrides: ConfigOverrides;
  log: Logger;
  /** Extra files whose change triggers a reload (TLS certificate and key). */
  extraFiles?: (config: Config) => string[];
  /** Refuse a version whose TLS certificate or key cannot be read (mta run; the fronts have no TLS). */
  checkTlsFiles?: boolean;
  stats?: { recordStage(stage: string, ms: number): void };
}

export interface PolicyRuntime {
  policy: PolicyManager;
  /** The host services; built once the first configuration is known. */
  env(): HostEnv;
  runner: PolicyRunner;
  config(): Config;
  /** Closes the policy versions and the state store. */
  close(): Promise<void>;
}

/** Loads the policy with hot reload and one HostEnv for the life of the process. */
export async function startPolicyRuntime(opts: PolicyRuntimeOptions): Promise<PolicyRuntime> {
  let env: HostEnv | null = null;
  const policy = await PolicyManager.start({
    mainPath: opts.mainPath,
    overrides: opts.overrides,
    load: {
      builtins: allBuiltins(),
      ...(opts.checkTlsFiles ? { checkTlsFiles: true } : {}),
      env: (config) => {
        // The resolver and state store outlive policy versions.
        if (!env) env = serverEnv(config, opts.mainPath, opts.log);
        else env = { ...env, config };
        return env;
      },
    },
    log: opts.log,
    ...(opts.extraFiles ? { extraFiles: opts.extraFiles } : {}),
  });
  opts.log.level = policy.current().config.logs.level;
  policy.onSwap((next) => {
    opts.log.level = next.config.logs.level;
  });
  const runner = new PolicyRunner({ current: () => policy.current(), byId: (id) => policy.byId(id), log: opts.log, ...(opts.stats ? { stats: opts.stats } : {}) });
  return {
    policy,
    env: () => env!,
    runner,
    config: () => policy.current().config,
    async close() {
      policy.close();
      await env?.state.close().catch(() => undefined);
    },
  };
}

/**
 * The stage machine's view of a runtime for fronts that keep no SMTP
 * settings of their own (milter, policy service): the relay guard and
 * `vsl.error_status` of the current configuration, recomputed on reload.
 */
export function stageMachineEnv(rt: Pick<PolicyRuntime, 'runner' | 'policy'>): StageMachineEnv {
  const compute = (c: Config): ReturnType<StageMachineEnv['settings']> => ({ relay: relayGuardConfig(c.server), errorStatus: c.vsl.error_status });
  let current = compute(rt.policy.current().config);
  rt.policy.onSwap((next) => {
    current = compute(next.config);
  });
  return { runner: rt.runner, settings: () => current };
}

/** One header field as raw bytes (`Name: value` with its folds, no final CRLF). */
export interface RawField {
  name: string;
  raw: Buffer;
}

/** The message a preq stage edits, with its fields as objects: untouched ones stay the same objects. */
export type DraftMessage = EditableMessage & { fields: RawField[] };

/**
 * Builds the draft of a message from the headers a front prepends, the
 * fields it received and the body. The SMTP front's MessageDraft, handed
 * down by the command that starts the front (fronts do not import each other).
 */
export type DraftFactory = (prefix: Header[], fields: RawField[], body: Buffer) => DraftMessage;

/** What a front that another MTA calls needs to decide stages: the stage machine's env, names, ids, a clock, drafts. */
export interface DecisionContext {
  env: StageMachineEnv;
  /** `server.name` and `server.domain` of the current configuration. */
  server(): { name: string; domain: string };
  log: Logger;
  newId(): string;
  now(): number;
  newDraft: DraftFactory;
}

export function decisionContext(rt: PolicyRuntime, log: Logger, newDraft: DraftFactory): DecisionContext {
  return { env: stageMachineEnv(rt), server: () => rt.config().server, log, newId: () => newQueueId(), now: () => Date.now(), newDraft };
}

/**
 * The success replies the stages are decided with, as `mta run` gives them.
 * The calling MTA sends its own; these appear in the decision log lines.
 */
export const NORMAL_REPLY = {
  greeting: (name: string): Reply => makeReply(220, '', `${name} Service ready`),
  helo: (name: string): Reply => makeReply(250, '', name),
  mail: makeReply(250, '2.1.0', 'Ok'),
  rcpt: makeReply(250, '2.1.5', 'Ok'),
  queued: (id: string): Reply => makeReply(250, '2.0.0', `Ok: queued as ${id}`),
};
