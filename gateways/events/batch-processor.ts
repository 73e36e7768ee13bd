// What a queue worker does with one batch: enrich it in the pool, insert its rows (idempotent on id),
// apply the new events to the user actors, count it; on the last failed attempt, dead-letter it.

import type { ActivityEvent, ActivitySummary } from '../../actors/user-activity.js';
import type { Logger } from '../../runtime/index.js';
import type { EnrichResult, EnrichTask } from './enrichment.js';
import type { PipelineMetrics } from './metrics.js';
import type { BatchProcessor, QueuedBatch } from './queue.js';
import type { DeadLetter, ProcessedEventStore } from './store.js';

/** The user actors, as the pipeline sees them (the actor system in a node, a stand-in in unit tests). */
export interface UserActivity {
  /** Resolves once the actor has committed the events (idempotent by id). */
  record(userId: string, events: ActivityEvent[]): Promise<void>;
  summary(userId: string): Promise<ActivitySummary>;
  ping(): Promise<void>;
}

export interface EnrichmentPool {
  run(task: EnrichTask): Promise<EnrichResult>;
}

export interface BatchProcessorDeps {
  pool: EnrichmentPool;
  store: ProcessedEventStore;
  activity: UserActivity;
  metrics: PipelineMetrics;
  log: Logger;
  now?: () => number;
}

/** The batch's events as dead letters (parsed here: only on this rare path does the main thread parse). */
function deadLettersOf(batch: QueuedBatch, error: string, attempts: number, skip: ReadonlySet<string>): DeadLetter[] {
  let events: unknown;
  try {
    events = JSON.parse(batch.events);
  } catch {
    return [{ id: null, event: batch.events, error, attempts }];
  }
  if (!Array.isArray(events)) return [{ id: null, event: batch.events, error, attempts }];
  return events
    .map((event: { id?: unknown }) => ({ id: typeof event?.id === 'string' ? event.id : null, event, error, attempts }))
    .filter((d) => d.id === null || !skip.has(d.id));
}

/** How many finished batch ids are remembered so a batch is counted once in the metrics. */
const COUNTED_BATCHES_KEPT = 10_000;

export function createBatchProcessor(deps: BatchProcessorDeps): BatchProcessor {
  const now = deps.now ?? Date.now;
  // A batch can finish twice in one process: BullMQ redelivers a job whose lock lapsed (a long
  // event-loop stall) while the first delivery still runs. Rows and actors are idempotent; the
  // counters must be too.
  const counted = new Set<string>();
  const countOnce = (batchId: string): boolean => {
    if (counted.has(batchId)) return false;
    counted.add(batchId);
    if (counted.size > COUNTED_BATCHES_KEPT) counted.delete(counted.values().next().value!);
    return true;
  };
  return async (batch, delivery) => {
    deps.metrics.activeWorkers++;
    const deadLettered = new Set<string>();
    try {
      const enriched = await deps.pool.run({ events: batch.events, receivedAt: batch.receivedAt });
      if (enriched.rejected.length) {
        // Retrying cannot make an invalid event valid: dead-letter it at once.
        await deps.store.deadLetter(enriched.rejected.map((r) => ({ ...r, attempts: delivery.attempt })));
        for (const r of enriched.rejected) if (r.id) deadLettered.add(r.id);
        if (countOnce(`${delivery.batchId}:rejected`)) deps.metrics.deadLettered(enriched.rejected.length);
      }
      const processedAt = now();
      const latencyMs = Math.max(0, processedAt - batch.receivedAt);
      const inserted = await deps.store.insert({
        rowsJson: enriched.rowsJson,
        rowCount: enriched.rowCount,
        processingTimeMs: latencyMs,
        processedAt: new Date(processedAt).toISOString(),
      });

      // Only rows this delivery inserted are new to the actors, so a repeated id sent by a client
      // is never counted twice. A redelivered batch may have inserted rows and then died before
      // the actors committed: it re-sends all, and the actors drop ids they already applied.
      const asks: Promise<void>[] = [];
      for (const [user, events] of enriched.activity) {
        const fresh = delivery.redelivered ? events : events.filter((e) => inserted.has(e.id));
        if (fresh.length) asks.push(deps.activity.record(user, fresh));
      }
      await Promise.all(asks);

      if (countOnce(delivery.batchId)) deps.metrics.completed(enriched.rowCount, latencyMs);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      if (!delivery.final) {
        deps.log.warn({ attempt: delivery.attempt, events: batch.count, err: error }, 'event batch failed, will retry');
        throw err;
      }
      const dead = deadLettersOf(batch, error, delivery.attempt, deadLettered);
      await deps.store.deadLetter(dead);
      if (countOnce(delivery.batchId)) deps.metrics.deadLettered(dead.length);
      deps.log.error({ attempt: delivery.attempt, events: dead.length, err: error }, 'event batch failed its last attempt; events kept as dead letters');
    } finally {
      deps.metrics.activeWorkers--;
    }
  };
}
