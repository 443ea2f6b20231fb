// One running vsl-mta: the policy (with hot reload), the SMTP front, the
// durable queue and the delivery scheduler, wired together. `mta run` calls
// startServer; tests call it directly with listen overrides.
//
//   socket → smtp/ front ──runner──▶ policy version (sandbox)
//                 │ enqueue (fsync) ▶ queue/ spool ──▶ delivery/ scheduler
//   reload/ manager swaps the policy version; the front re-reads TLS files.

import cluster from 'node:cluster';
import path from 'node:path';
import type { Logger } from 'pino';
import { startPolicyRuntime, type PolicyRuntime } from './reload/runtime.js';
import { PolicyManager } from './reload/manager.js';
import type { ConfigOverrides } from './policy/load.js';
import { createSmtpFront, type ListenerAddress, type SmtpFront } from './smtp/front.js';
import { Spool } from './queue/spool.js';
import { Scheduler } from './delivery/scheduler.js';
import { afterQueueStages, runStageWith } from './policy/after-queue.js';
import { transportByRcptRules } from './delivery/recipient-transport.js';
import { dropPrivileges, giveSpoolTo } from './privileges/drop.js';
import { createFailureTracker, failureTrackerOptions } from './builtins/auth/failures.js';
import { PrimaryLink, serveSharedLimits } from './smtp/shared-limits.js';
import { runSandboxesInThreads } from './sandbox/sandbox.js';
import type { Config } from './config/schema.js';
import type { ServerStats } from './stats.js';

export interface ServerOptions {
  mainPath: string;
  overrides: ConfigOverrides;
  log: Logger;
  /** Deliver queued mail (the default); off for front-only benchmarks and tests. */
  deliver?: boolean;
  /** Watch the policy files for changes (the default). */
  watch?: boolean;
  /** Counters and stage timings of this process. */
  stats?: ServerStats;
  /** startDelivery: resolves once the workers' listeners are bound; privileges are dropped and delivery starts then. */
  listening?: Promise<void>;
  /** Record deliveries instead of making them (the differential tests of explain against the server). */
  capture?: import('./delivery/message-run.js').DeliveryCapture;
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

/** The policy side of this process, built as the milter and policy-server build theirs (src/reload/runtime.ts). */
function startPolicy(opts: ServerOptions): Promise<PolicyRuntime> {
  return startPolicyRuntime({
    mainPath: opts.mainPath,
    overrides: opts.overrides,
    log: opts.log,
    checkTlsFiles: true,
    extraFiles: (config) => [config.server.tls.certificate, config.server.tls.private_key].filter((f): f is string => typeof f === 'string'),
    ...(opts.stats ? { stats: opts.stats } : {}),
  });
}

/**
 * A server in one process: front, spool and (unless `deliver: false`) the
 * delivery scheduler. `mta run --workers 0`, and what tests start.
 */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log;
  // A long rule must not hold the sockets of every other session (src/sandbox/thread.ts).
  runSandboxesInThreads(true);
  const runtime = await startPolicy(opts);
  const { policy, env, runner } = runtime;
  const config = (): Config => policy.current().config;
  const spool = await Spool.open(config().queue.dir, { log });
  const stats = opts.stats;
  if (stats) spool.on('enqueued', () => stats.accepted++);
  let scheduler: Scheduler | null = null;
  if (opts.deliver !== false) {
    scheduler = new Scheduler({ spool, config, resolver: env().resolver, stages: afterQueueStages(runStageWith(runner)), log, capture: opts.capture, chooseTransport: transportByRcptRules(runner, config, log), policyDir: path.dirname(opts.mainPath) });
  }
  // Worker processes share the connection slots and AUTH counts through the
  // primary (which runs startDelivery); one process keeps its own.
  const primary = cluster.isWorker ? new PrimaryLink(() => failureTrackerOptions(config())) : null;
  const front = createSmtpFront({
    config: config(),
    runner,
    sink: spool,
    log,
    authBackendFailures: primary ?? createFailureTracker(failureTrackerOptions(config())),
    clientSlots: primary ?? undefined,
  });
  let listeners: ListenerAddress[];
  try {
    if (opts.deliver !== false) await giveSpoolTo(config(), log);
    listeners = await front.listen();
  } catch (e) {
    await runtime.close();
    throw e;
  }
  try {
    // Bound: root is no longer needed (src/privileges/drop.ts).
    dropPrivileges(config(), log);
    await scheduler?.start();
  } catch (e) {
    await front.close(0);
    await runtime.close();
    primary?.close();
    throw e;
  }
  policy.onSwap((next) => {
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
        primary?.close();
        await scheduler?.stop();
        await runtime.close();
      })();
      return stopping;
    },
  };
}

export interface DeliveryProcess {
  policy: PolicyManager;
  spool: Spool;
  scheduler: Scheduler;
  stop(): Promise<void>;
}

/**
 * The delivery half alone: the scheduler with the postq and delivery stages.
 * With `--workers N` the primary process runs this while N worker processes
 * run the SMTP front (startServer with deliver: false); it also holds the
 * server-wide connection slots and AUTH counts the workers ask for. Keeping delivery out
 * of the front processes keeps its file-system work off their thread pool
 * and event loop, so a backlog being delivered does not slow SMTP replies.
 */
export async function startDelivery(opts: ServerOptions): Promise<DeliveryProcess> {
  const log = opts.log;
  const runtime = await startPolicy(opts);
  const { policy, env, runner } = runtime;
  const config = (): Config => policy.current().config;
  const spool = await Spool.open(config().queue.dir, { log });
  const scheduler = new Scheduler({ spool, config, resolver: env().resolver, stages: afterQueueStages(runStageWith(runner)), log, chooseTransport: transportByRcptRules(runner, config, log), policyDir: path.dirname(opts.mainPath) });
  await giveSpoolTo(config(), log);
  // Root is kept until the workers' listeners are bound (the primary binds them for the cluster).
  const started = (opts.listening ?? Promise.resolve()).then(() => dropPrivileges(config(), log)).then(() => scheduler.start());
  if (opts.listening) {
    started.catch((e: Error) => {
      log.fatal({ err: e.message }, `delivery cannot start: ${e.message}`);
      log.flush?.();
      process.exit(1);
    });
  } else await started;
  // The workers' connection slots and AUTH counts (src/smtp/shared-limits.ts).
  const stopSharedLimits = serveSharedLimits(log);
  if (opts.watch !== false) policy.watch();
  let stopping: Promise<void> | null = null;
  return {
    policy, spool, scheduler,
    stop() {
      stopping ??= (async () => {
        stopSharedLimits();
        await scheduler.stop();
        await runtime.close();
      })();
      return stopping;
    },
  };
}
