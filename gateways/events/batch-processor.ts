// What the queue workers do with batches: take the batches that are waiting together as one group,
// enrich the group in one pool task, insert its rows in one statement (idempotent on id), apply the
// new events to the user actors, dead-letter the invalid ones, count each batch. A group that fails
// is retried batch by batch at once, so one bad batch fails alone; a batch that fails on its own is
// retried by the queue, and on its last attempt its events are kept as dead letters.

import type { ActivityEvent, ActivitySummary } from '../../actors/user-activity.js';
import { currentTrace, inChildSpan, inConsumerSpan, inTrace, type Logger } from '../../runtime/index.js';
import type { EnrichResult, EnrichTask } from './enrichment.js';
import type { PipelineMetrics } from './metrics.js';
import type { BatchProcessor, Delivery, QueuedBatch } from './queue.js';
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
  /** Groups being processed at once (default 2); batches arriving meanwhile wait to form the next. */
  groupsInFlight?: number;
  /** A group takes waiting batches up to this many events (default 2,000; one batch always fits). */
  maxGroupEvents?: number;
}

/** The batch's events as dead letters (parsed here: only on this rare path does the main thread parse). */
function deadLettersOf(batch: QueuedBatch, error: string, attempts: number): DeadLetter[] {
  let events: unknown;
  try {
    events = JSON.parse(batch.events);
  } catch {
    return [{ id: null, event: batch.events, error, attempts }];
  }
  if (!Array.isArray(events)) return [{ id: null, event: batch.events, error, attempts }];
  return events
    .map((event: { id?: unknown }) => ({ id: typeof event?.id === 'string' ? event.id : null, event, error, attempts }));
}

/** How many finished batch ids are remembered so a batch is counted once in the metrics. */
const COUNTED_BATCHES_KEPT = 10_000;

interface Waiting {
  batch: QueuedBatch;
  /** The entry's delivery, with an id of the batch's own when the entry holds several. */
  delivery: Delivery;
  /** Ends the batch's part of the queue worker's call: done (no error), or retry later (the error). */
  settle(err?: unknown): void;
}

export function createBatchProcessor(deps: BatchProcessorDeps): BatchProcessor {
  const now = deps.now ?? Date.now;
  const groupsInFlight = deps.groupsInFlight ?? 2;
  const maxGroupEvents = deps.maxGroupEvents ?? 2_000;
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

  /**
   * Processes batches together; throws if any step fails, with nothing counted. `resent`: an
   * earlier try of these batches in this process may have got past the insert.
   */
  function processTogether(group: readonly Waiting[], resent: boolean): Promise<void> {
    // Traced: one span for the group, in the trace of its first sampled request, linked to the others.
    const traceparents = group.map((w) => w.batch.traceparent);
    const events = group.reduce((n, w) => n + w.batch.count, 0);
    return inConsumerSpan('events.process', traceparents, { 'events.batches': group.length, 'events.count': events }, () => applyTogether(group, resent));
  }

  async function applyTogether(group: readonly Waiting[], resent: boolean): Promise<void> {
    const traced = currentTrace(); // the group's span, kept across the awaits below
    const enriched = await inChildSpan('events.enrich', {}, () =>
      deps.pool.run({ batches: group.map((w) => ({ events: w.batch.events, receivedAt: w.batch.receivedAt, checked: w.batch.checked })) }),
    );
    const processedAt = now();
    const inserted = await inTrace(traced, () =>
      inChildSpan('events.store', { 'events.rows': enriched.rowCount }, () => deps.store.insert({ rowsJson: enriched.rowsJson, rowCount: enriched.rowCount, processedAt })),
    );

    // Only rows this delivery inserted are new to the actors, so a repeated id sent by a client
    // is never counted twice. A batch delivered again may have inserted rows and then died before
    // the actors committed: it re-sends all, and the actors drop ids they already applied.
    const byUser = new Map<string, ActivityEvent[]>();
    group.forEach((w, i) => {
      const sendAll = resent || w.delivery.redelivered;
      for (const [user, events] of enriched.batches[i]!.activity) {
        const fresh = sendAll ? events : events.filter((e) => inserted.has(e.id));
        if (fresh.length === 0) continue;
        const list = byUser.get(user);
        if (list) list.push(...fresh);
        else byUser.set(user, fresh);
      }
    });
    const asks: Promise<void>[] = [];
    inTrace(traced, () => {
      for (const [user, events] of byUser) asks.push(deps.activity.record(user, events));
    });
    await Promise.all(asks);

    // Retrying cannot make an invalid event valid: it is dead-lettered at once.
    const dead: DeadLetter[] = [];
    group.forEach((w, i) => {
      for (const r of enriched.batches[i]!.rejected) dead.push({ ...r, attempts: w.delivery.attempt });
    });
    if (dead.length) await deps.store.deadLetter(dead);

    group.forEach((w, i) => {
      const b = enriched.batches[i]!;
      if (b.rejected.length && countOnce(`${w.delivery.batchId}:rejected`)) deps.metrics.deadLettered(b.rejected.length);
      if (countOnce(w.delivery.batchId)) deps.metrics.completed(b.valid, Math.max(0, processedAt - w.batch.receivedAt));
    });
  }

  /** One batch on its own: on failure, retried by the queue, or on its last attempt dead-lettered. */
  async function processAlone(w: Waiting, resent: boolean): Promise<void> {
    try {
      await processTogether([w], resent);
      w.settle();
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const { batch, delivery } = w;
      if (!delivery.final) {
        deps.log.warn({ attempt: delivery.attempt, events: batch.count, err: error }, 'event batch failed, will retry');
        w.settle(err);
        return;
      }
      try {
        const dead = deadLettersOf(batch, error, delivery.attempt);
        await deps.store.deadLetter(dead);
        if (countOnce(delivery.batchId)) deps.metrics.deadLettered(dead.length);
        deps.log.error({ attempt: delivery.attempt, events: dead.length, err: error }, 'event batch failed its last attempt; events kept as dead letters');
        w.settle();
      } catch (deadErr) {
        w.settle(deadErr);
      }
    }
  }

  async function processGroup(group: Waiting[]): Promise<void> {
    if (group.length === 1) return processAlone(group[0]!, false);
    try {
      await processTogether(group, false);
      for (const w of group) w.settle();
    } catch (err) {
      // One batch can spoil a group (a row the store refuses): each goes again on its own, so only
      // the guilty one fails. Part of the group may have been applied: the batches re-send all.
      deps.log.debug({ batches: group.length, err: err instanceof Error ? err.message : String(err) }, 'event group failed; its batches go again one by one');
      await Promise.all(group.map((w) => processAlone(w, true)));
    }
  }

  const waiting: Waiting[] = [];
  let running = 0;
  function pump(): void {
    while (running < groupsInFlight && waiting.length) {
      const group = [waiting.shift()!];
      let events = group[0]!.batch.count;
      while (waiting.length && events + waiting[0]!.batch.count <= maxGroupEvents) {
        events += waiting[0]!.batch.count;
        group.push(waiting.shift()!);
      }
      running++;
      void processGroup(group).finally(() => {
        running--;
        pump();
      });
    }
  }

  return async (batches, delivery) => {
    deps.metrics.activeWorkers++;
    try {
      const done = batches.map(
        (batch, i) =>
          new Promise<void>((resolve, reject) => {
            const own = batches.length === 1 ? delivery : { ...delivery, batchId: `${delivery.batchId}.${i}` };
            waiting.push({ batch, delivery: own, settle: (err) => (err === undefined ? resolve() : reject(err)) });
          }),
      );
      pump();
      // The entry is retried as a whole if any of its batches must be; those done are idempotent.
      const failed = (await Promise.allSettled(done)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      deps.metrics.activeWorkers--;
    }
  };
}
