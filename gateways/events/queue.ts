// The event-batch queue: where an accepted request's events wait, durably, until a worker has
// stored them. One interface, two implementations: BullMQ (with --redis) and SQLite (embedded).

/** What one accepted request puts in the queue. */
export interface QueuedBatch {
  /** When the gateway received the request (epoch ms); the start of the 202-to-row latency. */
  receivedAt: number;
  /** How many events `events` holds. */
  count: number;
  /**
   * The accepted events (AcceptedEvent[]) as JSON: serialized once at the door and parsed only in
   * the enrichment pool, so the main thread neither clones nor re-parses them per batch.
   */
  events: string;
  /**
   * The EVENT_FORMAT under which the door checked `events` with acceptEvent. When it is this node's
   * own, the pool re-checks only their shape; when absent or another (a batch from another version,
   * or written by hand), every event is checked again in full.
   */
  checked?: number;
  /**
   * The W3C traceparent of the request's span when it was sampled (tracing on): the worker that
   * takes the batch goes on with that trace.
   */
  traceparent?: string;
  /**
   * Set on a hand-off, which the workers queue themselves: `events` then holds
   * `[userId, ActivityEvent[]][]` as JSON, events whose rows are stored and whose user actors did not
   * answer in time. A worker only tells those actors all of them (they drop ids already applied); a
   * hand-off is counted in no metric but the depth, and is never dead-lettered.
   */
  handOff?: true;
}

/** How this delivery of a batch relates to earlier ones. */
export interface Delivery {
  /** The queue's id for the batch (BullMQ job id, SQLite row), the same on every delivery. */
  batchId: string;
  /** 1 for the first time a worker takes the batch. */
  attempt: number;
  /** An earlier delivery started (and failed or crashed): part of the batch may already be applied. */
  redelivered: boolean;
  /** No retry follows if this one throws. */
  final: boolean;
}

/**
 * Processes the batches of one queue entry: one request's, or several that the door queued together.
 * Resolving means done (the queue forgets the entry); throwing means retry after a backoff, unless
 * `delivery.final`, in which case the queue keeps the entry as failed.
 */
export type BatchProcessor = (batches: readonly QueuedBatch[], delivery: Delivery) => Promise<void>;

export interface RetryPolicy {
  /** Deliveries in all, the first included. */
  attempts: number;
  /** Exponential: the wait before delivery n+1 is backoffMs * 2^(n-1). */
  backoffMs: number;
}

export interface EventBatchQueue {
  readonly kind: 'bullmq' | 'sqlite';
  /** Resolves only once the batch is durably queued: the gateway answers 202 after this. */
  enqueue(batch: QueuedBatch): Promise<void>;
  /** Starts taking batches, at most `concurrency` at a time. */
  start(processor: BatchProcessor, concurrency: number): void;
  /** Events queued and not yet finished (in flight included). */
  depth(): Promise<number>;
  /** Throws, with a reason a person can act on, when the queue's backing store does not answer. */
  ping(): Promise<void>;
  /** Waits until nothing is waiting or in flight (true), or until the deadline (false). */
  drained(timeoutMs: number): Promise<boolean>;
  /** Stops taking batches and waits for those in flight; what is still queued stays queued. */
  close(): Promise<void>;
}

export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  return policy.backoffMs * 2 ** Math.max(0, attempt - 1);
}
