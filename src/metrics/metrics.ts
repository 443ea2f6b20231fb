// Prometheus metrics (prom-client), served on `server.metrics.listen` when it
// is set (src/metrics/http.ts). Every process counts into its own registry;
// with --workers the primary asks each worker for its values and serves the
// sum (src/cli/run.ts). Counting is a few additions per event, so it runs
// whether or not an endpoint is configured.
//
// Families (docs/logging.md#metrics lists them for operators):
//   mta_connections_total{listener}             accepted SMTP connections
//   mta_stage_decisions_total{stage,status}     one per logged stage decision
//   mta_policy_seconds{stage}                   script time of each stage evaluation
//   mta_messages_accepted_total                 messages queued (end-of-data 250)
//   mta_queue_messages{state}                   messages in the spool by state (read at scrape)
//   mta_delivery_attempts_total{transport,status} per recipient: sent, deferred, bounced, expired
//   mta_reloads_total{result}                   policy reloads: ok, failed
//   mta_log_lines_dropped_total                 log lines lost because the log could not be written
//   process_* and nodejs_*                      prom-client's process metrics

import client from 'prom-client';
import { observeLog } from '../log/observers.js';

export const registry = new client.Registry();

const connections = new client.Counter({ name: 'mta_connections_total', help: 'SMTP connections accepted, by listener kind', labelNames: ['listener'], registers: [registry] });
const stageDecisions = new client.Counter({ name: 'mta_stage_decisions_total', help: 'Stage decisions, by stage and effective status', labelNames: ['stage', 'status'], registers: [registry] });
const policySeconds = new client.Histogram({
  name: 'mta_policy_seconds',
  help: 'Time the policy took to decide one stage evaluation',
  labelNames: ['stage'],
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
const accepted = new client.Counter({ name: 'mta_messages_accepted_total', help: 'Messages accepted and queued', registers: [registry] });
const deliveries = new client.Counter({ name: 'mta_delivery_attempts_total', help: 'Delivery attempts per recipient, by transport and outcome', labelNames: ['transport', 'status'], registers: [registry] });
const reloads = new client.Counter({ name: 'mta_reloads_total', help: 'Policy reloads, by result (failed: the previous version stayed)', labelNames: ['result'], registers: [registry] });
const logDropped = new client.Counter({ name: 'mta_log_lines_dropped_total', help: 'Log lines dropped because the log could not be written', registers: [registry] });

/** Counts of spool messages by state; set by the process that owns delivery. */
let queueCounts: (() => Promise<Record<string, number>>) | null = null;
new client.Gauge({
  name: 'mta_queue_messages',
  help: 'Messages in the queue, by state (active, deferred, dead, quarantine:<name>)',
  labelNames: ['state'],
  registers: [registry],
  async collect() {
    if (queueCounts === null) return;
    this.reset();
    for (const [state, n] of Object.entries(await queueCounts())) this.set({ state }, n);
  },
});

let processMetrics = false;
/** Adds prom-client's process metrics (CPU, memory, event loop lag) to this process's registry. */
export function enableProcessMetrics(): void {
  if (processMetrics) return;
  processMetrics = true;
  client.collectDefaultMetrics({ register: registry });
}

export const metrics = {
  connection(listener: string): void {
    connections.inc({ listener });
  },
  stageDecision(stage: string, status: string): void {
    stageDecisions.inc({ stage, status });
  },
  policyTime(stage: string, ms: number): void {
    policySeconds.observe({ stage }, ms / 1000);
  },
  messageAccepted(): void {
    accepted.inc();
  },
  deliveryAttempt(transport: string, status: string): void {
    deliveries.inc({ transport, status });
  },
  logLinesDropped(n: number): void {
    logDropped.inc(n);
  },
  reload(ok: boolean): void {
    reloads.inc({ result: ok ? 'ok' : 'failed' });
  },
  /** The spool counts the queue gauge reports (the delivering process calls this once). */
  watchQueue(counts: () => Promise<Record<string, number>>): void {
    queueCounts = counts;
  },
};


// The events src/log/ records are counted as they are logged.
observeLog(metrics);

/** This process's values, in the form the primary sums across workers. */
export function metricsJson(): Promise<client.MetricObjectWithValues<client.MetricValue<string>>[]> {
  return registry.getMetricsAsJSON();
}

/** The exposition text of the sum of several processes' values (each from metricsJson). */
export async function aggregatedText(perProcess: Array<Awaited<ReturnType<typeof metricsJson>>>): Promise<{ contentType: string; body: string }> {
  const sum = client.AggregatorRegistry.aggregate(perProcess);
  return { contentType: registry.contentType, body: await sum.metrics() };
}
