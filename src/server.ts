// One running vsl-mta: the policy (with hot reload), the SMTP front, the
// durable queue and the delivery scheduler, wired together. `mta run` calls
// startServer; tests call it directly with listen overrides.
//
//   socket → smtp/ front ──runner──▶ policy version (sandbox)
//                 │ enqueue (fsync) ▶ queue/ spool ──▶ delivery/ scheduler
//   reload/ manager swaps the policy version; the front re-reads TLS files.

import type { Logger } from 'pino';
import { PolicyManager } from './reload/manager.js';
import { PolicyRunner } from './policy/runner.js';
import { serverEnv } from './policy/env.js';
import { allBuiltins } from './builtins/registry.js';
import type { ConfigOverrides } from './policy/load.js';
import type { HostEnv } from './builtins/host.js';
import { createSmtpFront, type ListenerAddress, type SmtpFront } from './smtp/front.js';
import { Spool } from './queue/spool.js';
import { Scheduler } from './delivery/scheduler.js';
import { runStageWith } from './delivery/stage-adapter.js';
import { createFailureTracker, failureTrackerOptions } from './builtins/auth/failures.js';
import type { Config } from './config/schema.js';

export interface ServerOptions {
  mainPath: string;
  overrides: ConfigOverrides;
  log: Logger;
  /** Deliver queued mail (the default); off for front-only benchmarks and tests. */
  deliver?: boolean;
  /** Watch the policy files for changes (the default). */
  watch?: boolean;
}

export interface RunningServer {
  listeners: ListenerAddress[];
  policy: PolicyManager;
  front: SmtpFront;
  spool: Spool;
  scheduler: Scheduler | null;
  config(): Config;
  /** Graceful stop (SPEC §11.1). */
  stop(graceMs?: number): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log;
  // One HostEnv per process: the resolver and state store outlive policy versions.
  let env: HostEnv | null = null;
  const policy = await PolicyManager.start({
    mainPath: opts.mainPath,
    overrides: opts.overrides,
    load: {
      builtins: allBuiltins(),
      env: (config) => {
        if (!env) env = serverEnv(config, opts.mainPath, log);
        else env = { ...env, config };
        return env;
      },
    },
    log,
    extraFiles: (config) => [config.server.tls.certificate, config.server.tls.private_key].filter((f): f is string => typeof f === 'string'),
  });
  const config = (): Config => policy.current().config;
  log.level = config().logs.level;

  const spool = await Spool.open(config().queue.dir, { log });
  const runner = new PolicyRunner({ current: () => policy.current(), byId: (id) => policy.byId(id), log });
  let scheduler: Scheduler | null = null;
  if (opts.deliver !== false) {
    scheduler = new Scheduler({ spool, config, resolver: env!.resolver, runStage: runStageWith(runner), log });
    await scheduler.start();
  }
  const front = createSmtpFront({
    config: config(),
    runner,
    sink: spool,
    log,
    authBackendFailures: createFailureTracker(failureTrackerOptions(config())),
  });
  let listeners: ListenerAddress[];
  try {
    listeners = await front.listen();
  } catch (e) {
    await scheduler?.stop();
    policy.close();
    throw e;
  }
  policy.onSwap((next) => {
    log.level = next.config.logs.level;
    void front.reload(next.config).catch((e: Error) => log.error({ err: e.message }, 'applying the new configuration to the listeners failed'));
  });
  if (opts.watch !== false) policy.watch();
  for (const l of listeners) log.info({ listener: l.kind, address: l.address, port: l.port }, `listening on ${l.address}:${l.port} (${l.kind})`);
  log.info({ version: policy.current().id, policy: opts.mainPath }, 'policy loaded');

  let stopping: Promise<void> | null = null;
  return {
    listeners, policy, front, spool, scheduler, config,
    stop(graceMs = 30_000) {
      stopping ??= (async () => {
        await front.close(graceMs);
        await scheduler?.stop();
        policy.close();
        await env?.state.close().catch(() => undefined);
      })();
      return stopping;
    },
  };
}
