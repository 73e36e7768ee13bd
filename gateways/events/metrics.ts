// The pipeline's own counters behind GET /metrics (exactly the contract's eight keys), counted where
// things happen so that they add up: received = processed + failed + still queued.

export interface MetricsSnapshot {
  events_received: number;
  events_processed: number;
  events_failed: number;
  average_processing_latency_ms: number;
  current_queue_depth: number;
  active_workers: number;
  events_per_second: number;
  uptime_seconds: number;
}

/** Events/s is measured over this trailing window, in whole seconds. */
const RATE_WINDOW_S = 10;

export class PipelineMetrics {
  readonly #now: () => number;
  readonly #startedAt: number;
  received = 0;
  processed = 0;
  failed = 0;
  #latencySumMs = 0;
  /** Batches being processed right now by this node's queue workers. */
  activeWorkers = 0;
  /** Processed events per second, a ring of RATE_WINDOW_S + 1 buckets keyed by whole second. */
  readonly #buckets = new Float64Array(RATE_WINDOW_S + 1);
  readonly #bucketSecond = new Float64Array(RATE_WINDOW_S + 1).fill(-1);

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#startedAt = now();
  }

  accepted(n: number): void {
    this.received += n;
  }

  /** `events` finished, each `latencyMs` from receipt to stored row (the rows' processing_time_ms). */
  completed(events: number, latencyMs: number): void {
    this.processed += events;
    this.#latencySumMs += events * latencyMs;
    const second = Math.floor(this.#now() / 1000);
    const i = second % this.#buckets.length;
    if (this.#bucketSecond[i] !== second) {
      this.#bucketSecond[i] = second;
      this.#buckets[i] = 0;
    }
    this.#buckets[i]! += events;
  }

  deadLettered(n: number): void {
    this.failed += n;
  }

  /** Processed events per second over the last RATE_WINDOW_S complete seconds (or since start). */
  rate(): number {
    const now = this.#now();
    const current = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < this.#buckets.length; i++) {
      const s = this.#bucketSecond[i]!;
      if (s >= current - RATE_WINDOW_S && s < current) sum += this.#buckets[i]!;
    }
    const window = Math.min(RATE_WINDOW_S, Math.max(1, Math.floor((now - this.#startedAt) / 1000)));
    return round(sum / window, 2);
  }

  snapshot(queueDepth: number): MetricsSnapshot {
    return {
      events_received: this.received,
      events_processed: this.processed,
      events_failed: this.failed,
      average_processing_latency_ms: this.processed ? round(this.#latencySumMs / this.processed, 3) : 0,
      current_queue_depth: queueDepth,
      active_workers: this.activeWorkers,
      events_per_second: this.rate(),
      uptime_seconds: round((this.#now() - this.#startedAt) / 1000, 3),
    };
  }
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
