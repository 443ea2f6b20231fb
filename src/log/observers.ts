// Who else wants to know about the events the log records: the metrics
// layer counts stage decisions, accepted messages, delivery attempts and
// dropped log lines from here. log/ sits below metrics/ in the layering
// (docs/architecture.md), so metrics/ registers itself rather than being
// called by name.

export interface LogObserver {
  stageDecision?(stage: string, status: string): void;
  messageAccepted?(): void;
  deliveryAttempt?(transport: string, status: string): void;
  logLinesDropped?(n: number): void;
}

const observers: LogObserver[] = [];

export function observeLog(o: LogObserver): void {
  observers.push(o);
}

/** Tells every observer; one that throws does not stop the others or the log line. */
export function notify<K extends keyof LogObserver>(event: K, ...args: Parameters<NonNullable<LogObserver[K]>>): void {
  for (const o of observers) {
    try {
      (o[event] as ((...a: unknown[]) => void) | undefined)?.(...args);
    } catch {
      // a counter must never break logging
    }
  }
}
