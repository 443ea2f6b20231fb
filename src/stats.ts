// Server counters and the per-stage policy time histogram (issue: p99 policy
// time per stage from the server's own timing). Each process keeps its own;
// `mta run` merges them across workers and writes <queue.dir>/stats.json on
// SIGUSR2, which `npm run bench` reads.

import { metrics } from './metrics/metrics.js';

/** Upper bounds of the latency buckets, in microseconds (roughly ×1.25 steps up to 10 s). */
export const BUCKETS_US: number[] = (() => {
  const b: number[] = [];
  for (let v = 10; v < 10_000_000; v = Math.ceil(v * 1.25)) b.push(v);
  b.push(Infinity);
  return b;
})();

export interface Histogram {
  counts: number[];
  total: number;
  sumUs: number;
}

function newHistogram(): Histogram {
  return { counts: new Array<number>(BUCKETS_US.length).fill(0), total: 0, sumUs: 0 };
}

export interface StatsSnapshot {
  pid: number;
  accepted: number;
  connections: number;
  stages: Record<string, Histogram>;
}

export class ServerStats {
  accepted = 0;
  connections = 0;
  private readonly stages = new Map<string, Histogram>();

  recordStage(stage: string, ms: number): void {
    metrics.policyTime(stage, ms);
    let h = this.stages.get(stage);
    if (!h) this.stages.set(stage, (h = newHistogram()));
    const us = ms * 1000;
    let i = 0;
    while (us > BUCKETS_US[i]!) i++;
    h.counts[i]!++;
    h.total++;
    h.sumUs += us;
  }

  snapshot(): StatsSnapshot {
    return { pid: process.pid, accepted: this.accepted, connections: this.connections, stages: Object.fromEntries(this.stages) };
  }
}

export function mergeSnapshots(list: StatsSnapshot[]): Omit<StatsSnapshot, 'pid'> & { processes: number } {
  const stages: Record<string, Histogram> = {};
  for (const s of list) {
    for (const [k, h] of Object.entries(s.stages)) {
      const m = (stages[k] ??= newHistogram());
      h.counts.forEach((c, i) => (m.counts[i]! += c));
      m.total += h.total;
      m.sumUs += h.sumUs;
    }
  }
  return {
    processes: list.length,
    accepted: list.reduce((a, s) => a + s.accepted, 0),
    connections: list.reduce((a, s) => a + s.connections, 0),
    stages,
  };
}

/** The q-quantile (0..1) of a histogram, in microseconds (the bucket's upper bound). */
export function quantileUs(h: Histogram, q: number): number {
  if (h.total === 0) return 0;
  const target = Math.ceil(h.total * q);
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    seen += h.counts[i]!;
    if (seen >= target) return BUCKETS_US[i]!;
  }
  return Infinity;
}
