// What the queue workers do with batches: take the batches that are waiting together as one group,
// enrich the group in one pool task, insert its rows in one statement (idempotent on id), dead-letter
// the invalid events, then tell the user actors, each on its own: a user whose actor does not answer
// in time has its events handed off to a queue entry of their own, so it holds back nothing else.
// A group that fails is retried batch by batch at once, a batch the store refuses event by event, so
// one bad event fails alone; a batch that fails on its own is retried by the queue, and on its last
// attempt the events that could not be stored are kept as dead letters.

import type { ActivityEvent, ActivitySummary } from '../../actors/user-activity.js';
import { currentTrace, inChildSpan, inConsumerSpan, inTrace, type Logger } from '../../runtime/index.js';
import type { EnrichResult, EnrichTask } from './enrichment.js';
import { holdsUnstorable, spelledOut, unstorableIn } from './event.js';
import type { PipelineMetrics } from './metrics.js';
import type { BatchProcessor, Delivery, QueuedBatch } from './queue.js';
import type { DeadLetter, ProcessedEventStore } from './store.js';
import { answerWithin, UserAnswers } from './user-answers.js';

/** The user actors, as the pipeline sees them (the actor system in a node, a stand-in in unit tests). */
export interface UserActivity {
  /** Resolves once the actor has committed the events (idempotent by id). */
  record(userId: string, events: ActivityEvent[]): Promise<void>;
  summary(userId: string): Promise<ActivitySummary>;
  /** Throws when a user actor does not answer within a short time. */
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
  /** Queues a hand-off durably (the event queue's enqueue): resolves once it is queued. */
  handOff(batch: QueuedBatch): Promise<void>;
  /** How long a batch waits for one user actor before handing that user's events off (default 10 s). */
  askTimeoutMs?: number;
  /** Which users did not answer lately (shared with /health); made here when absent. */
  answers?: UserAnswers;
  now?: () => number;
  /** Groups in their store stage at once (default 2); batches arriving meanwhile wait to form the next. */
  groupsInFlight?: number;
  /** A group takes waiting batches up to this many events (default 2,000; one batch always fits). */
  maxGroupEvents?: number;
}

/** A dead letter as every store can keep it: text PostgreSQL or MySQL would refuse is escaped. */
export function storableDeadLetter(d: DeadLetter): DeadLetter {
  const id = typeof d.id === 'string' && d.id.length <= 36 && !unstorableIn(d.id) ? d.id : null;
  // JSON.stringify writes U+0000 and unpaired surrogates as \u escapes: the text itself is storable.
  const event = holdsUnstorable(d.event) ? { _escaped_json: JSON.stringify(d.event) } : d.event;
  return { id, event, error: spelledOut(d.error), attempts: d.attempts };
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

/** A group past its store stage: what each user actor is to be told, and how each batch is counted. */
interface Stored {
  group: readonly Waiting[];
  tell: Map<string, ActivityEvent[]>;
  /** Counts the batch in the metrics (once per batch id); called when the batch is done. */
  finish: (() => void)[];
  /** The group's trace, for the asks. */
  traced: ReturnType<typeof currentTrace>;
}

type UserEvents = [string, ActivityEvent[]][];

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A hand-off's events, as queued by handOffOf; throws when they are not that. */
function parseHandOff(text: string): UserEvents {
  const pairs = JSON.parse(text) as unknown;
  if (!Array.isArray(pairs) || !pairs.every((p) => Array.isArray(p) && typeof p[0] === 'string' && Array.isArray(p[1]))) {
    throw new Error('a hand-off entry does not hold [userId, events][]');
  }
  return pairs as UserEvents;
}

export function createBatchProcessor(deps: BatchProcessorDeps): BatchProcessor {
  const now = deps.now ?? Date.now;
  const groupsInFlight = deps.groupsInFlight ?? 2;
  const maxGroupEvents = deps.maxGroupEvents ?? 2_000;
  const askTimeoutMs = deps.askTimeoutMs ?? 10_000;
  const answers = deps.answers ?? new UserAnswers({ probe: (user) => deps.activity.record(user, []), askTimeoutMs });
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
   * Inserts a lone batch's rows one by one, after the store refused them together: the rows it takes
   * are stored, the others come back with the store's reason. When it refuses every row, that is
   * more likely the store than the rows: `first` is thrown.
   */
  async function insertOneByOne(rowsJson: string, processedAt: number, first: unknown): Promise<{ inserted: Set<string>; refused: Map<string, string> }> {
    const rows = JSON.parse(rowsJson) as { id: string }[];
    const inserted = new Set<string>();
    const refused = new Map<string, string>();
    for (const row of rows) {
      try {
        for (const id of await deps.store.insert({ rowsJson: JSON.stringify([row]), rowCount: 1, processedAt })) inserted.add(id);
      } catch (err) {
        refused.set(row.id, messageOf(err));
      }
    }
    if (refused.size === rows.length) throw first;
    return { inserted, refused };
  }

  /**
   * The store stage of batches taken together: enrich, insert, dead-letter the invalid events.
   * Throws if a step fails (nothing is counted then). `resent`: an earlier try of these batches in
   * this process may have got past the insert.
   */
  function storeTogether(group: readonly Waiting[], resent: boolean): Promise<Stored> {
    // Traced: one span for the group, in the trace of its first sampled request, linked to the others.
    const traceparents = group.map((w) => w.batch.traceparent);
    const events = group.reduce((n, w) => n + w.batch.count, 0);
    return inConsumerSpan('events.process', traceparents, { 'events.batches': group.length, 'events.count': events }, () => storeInSpan(group, resent));
  }

  async function storeInSpan(group: readonly Waiting[], resent: boolean): Promise<Stored> {
    const traced = currentTrace(); // the group's span, kept across the awaits below
    const enriched = await inChildSpan('events.enrich', {}, () =>
      deps.pool.run({ batches: group.map((w) => ({ events: w.batch.events, receivedAt: w.batch.receivedAt, checked: w.batch.checked })) }),
    );
    const processedAt = now();
    const alone = group.length === 1 ? group[0]! : undefined;
    let inserted: Set<string>;
    let refused: Map<string, string> | undefined;
    try {
      inserted = await inTrace(traced, () =>
        inChildSpan('events.store', { 'events.rows': enriched.rowCount }, () => deps.store.insert({ rowsJson: enriched.rowsJson, rowCount: enriched.rowCount, processedAt })),
      );
    } catch (err) {
      // A group goes again batch by batch; a batch, event by event, so that one event the store
      // refuses takes no other down with it.
      if (!alone || enriched.rowCount <= 1) throw err;
      ({ inserted, refused } = await insertOneByOne(enriched.rowsJson, processedAt, err));
      if (!alone.delivery.final) {
        const [id, why] = refused.entries().next().value!;
        throw new Error(`the store refused ${refused.size} of the batch's ${enriched.rowCount} events (${id}: ${why}); the others are stored; the batch is retried, and on its last attempt the refused events become dead letters`);
      }
    }

    // Who tells an actor of an event: the delivery whose insert stored its row, and any delivery
    // that may follow one which stored rows and then failed before every actor committed (a retry,
    // a redelivery after a lapsed lock, a batch resent after its group failed). That includes a
    // retry that meets a client's resent copy of its events in one group: each batch holding an id
    // speaks for it, and each actor is asked once per id. The actors drop ids already applied.
    const tell = new Map<string, Map<string, ActivityEvent>>();
    group.forEach((w, i) => {
      const all = resent || w.delivery.redelivered;
      for (const [user, list] of enriched.batches[i]!.activity) {
        for (const e of list) {
          if (refused?.has(e.id) || (!all && !inserted.has(e.id))) continue;
          let byId = tell.get(user);
          if (!byId) tell.set(user, (byId = new Map()));
          if (!byId.has(e.id)) byId.set(e.id, e);
        }
      }
    });

    // Retrying cannot make an invalid event valid: it is dead-lettered at once. An event the store
    // refused on this last attempt joins it.
    const dead: DeadLetter[] = [];
    group.forEach((w, i) => {
      for (const r of enriched.batches[i]!.rejected) dead.push({ ...r, attempts: w.delivery.attempt });
    });
    if (refused?.size) {
      // The queued events, for the dead letters as queued (ids are stored lowercase).
      const left = new Map(refused);
      for (const d of deadLettersOf(alone!.batch, '', alone!.delivery.attempt)) {
        const id = d.id?.toLowerCase();
        const why = id !== undefined ? left.get(id) : undefined;
        if (why === undefined) continue;
        left.delete(id!);
        dead.push({ ...d, error: `the store refused the event: ${why}` });
      }
      for (const [id, why] of left) dead.push({ id, event: { id }, error: `the store refused the event: ${why}`, attempts: alone!.delivery.attempt });
    }
    if (dead.length) await deps.store.deadLetter(dead.map(storableDeadLetter));
    group.forEach((w, i) => {
      const gone = enriched.batches[i]!.rejected.length + (refused?.size ?? 0);
      if (gone && countOnce(`${w.delivery.batchId}:dead`)) deps.metrics.deadLettered(gone);
    });

    return {
      group,
      tell: new Map(Array.from(tell, ([user, byId]) => [user, [...byId.values()]])),
      finish: group.map((w, i) => () => {
        const valid = enriched.batches[i]!.valid - (refused?.size ?? 0);
        if (countOnce(w.delivery.batchId)) deps.metrics.completed(Math.max(0, valid), Math.max(0, processedAt - w.batch.receivedAt));
      }),
      traced,
    };
  }

  /**
   * Asks each user actor on its own, waiting at most askTimeoutMs for each; a user that did not
   * answer lately is not asked at all. Returns the users (and their events) that did not answer.
   */
  async function tellUsers(tell: ReadonlyMap<string, ActivityEvent[]>): Promise<UserEvents> {
    const late: UserEvents = [];
    await Promise.all(
      Array.from(tell, async ([user, events]) => {
        if (answers.unanswered(user)) {
          late.push([user, events]);
          return;
        }
        try {
          await answerWithin(askTimeoutMs, `user/${user}`, deps.activity.record(user, events));
          answers.answered(user);
        } catch (err) {
          answers.failed(user, messageOf(err));
          late.push([user, events]);
        }
      }),
    );
    return late;
  }

  function handOffOf(late: UserEvents): QueuedBatch {
    return { receivedAt: now(), count: late.reduce((n, [, events]) => n + events.length, 0), events: JSON.stringify(late), handOff: true };
  }

  /** The tell stage of a stored group, outside the group's slot; settles every batch of the group. */
  async function tellAndFinish(s: Stored): Promise<void> {
    try {
      const late = await inTrace(s.traced, () => tellUsers(s.tell));
      // Queued before the batches are done: a crash in between delivers the batches again.
      if (late.length) {
        await deps.handOff(handOffOf(late));
        deps.log.debug({ users: late.length, events: late.reduce((n, [, e]) => n + e.length, 0) }, 'user actors did not answer in time; their events were handed off');
      }
    } catch (err) {
      deps.log.warn({ batches: s.group.length, err: messageOf(err) }, 'events of user actors that did not answer could not be handed off; the batches are retried');
      for (const w of s.group) w.settle(err);
      return;
    }
    for (const f of s.finish) f();
    for (const w of s.group) w.settle();
  }

  /** One batch's store stage on its own: on failure retried by the queue, or on its last attempt dead-lettered. */
  async function storeAlone(w: Waiting, resent: boolean): Promise<Stored | undefined> {
    try {
      return await storeTogether([w], resent);
    } catch (err) {
      const error = messageOf(err);
      const { batch, delivery } = w;
      if (!delivery.final) {
        deps.log.warn({ attempt: delivery.attempt, events: batch.count, err: error }, 'event batch failed, will retry');
        w.settle(err);
        return undefined;
      }
      try {
        const dead = deadLettersOf(batch, error, delivery.attempt);
        await deps.store.deadLetter(dead.map(storableDeadLetter));
        if (countOnce(delivery.batchId)) deps.metrics.deadLettered(dead.length);
        deps.log.error({ attempt: delivery.attempt, events: dead.length, err: error }, 'event batch failed its last attempt; events kept as dead letters');
        w.settle();
      } catch (deadErr) {
        w.settle(deadErr);
      }
      return undefined;
    }
  }

  /** The store stage of a group, under its slot; each stored part goes on to its tell stage at once. */
  async function storeGroup(group: Waiting[]): Promise<void> {
    let stored: (Stored | undefined)[];
    if (group.length === 1) stored = [await storeAlone(group[0]!, false)];
    else {
      try {
        stored = [await storeTogether(group, false)];
      } catch (err) {
        // One batch can spoil a group (a row the store refuses): each goes again on its own, so only
        // the guilty one fails. Part of the group may have been applied: the batches tell all.
        deps.log.debug({ batches: group.length, err: messageOf(err) }, 'event group failed; its batches go again one by one');
        stored = await Promise.all(group.map((w) => storeAlone(w, true)));
      }
    }
    for (const s of stored) if (s) void tellAndFinish(s);
  }

  /**
   * A hand-off: events already stored whose actors did not answer. It waits for nobody else and is
   * never dead-lettered: while actors still do not answer it fails (the queue retries it with its
   * backoff), and on its last attempt it hands their events off again.
   */
  async function processHandOff(w: Waiting): Promise<void> {
    let users: UserEvents;
    try {
      users = parseHandOff(w.batch.events);
    } catch (err) {
      // Not one this code wrote: nothing can be told from it; it is kept, not dropped.
      try {
        await deps.store.deadLetter([storableDeadLetter({ id: null, event: w.batch.events, error: `unreadable hand-off: ${messageOf(err)}`, attempts: w.delivery.attempt })]);
        w.settle();
      } catch (deadErr) {
        w.settle(deadErr);
      }
      return;
    }
    const late = await tellUsers(new Map(users));
    if (late.length === 0) return w.settle();
    const first = late[0]![0];
    if (!w.delivery.final) {
      return w.settle(new Error(`${late.length} of ${users.length} user actors did not answer (user/${first} first); their events are told again after a backoff`));
    }
    try {
      await deps.handOff(handOffOf(late));
      w.settle();
    } catch (err) {
      w.settle(err);
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
      void storeGroup(group).finally(() => {
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
            const w: Waiting = { batch, delivery: own, settle: (err) => (err === undefined ? resolve() : reject(err)) };
            if (batch.handOff) void processHandOff(w);
            else waiting.push(w);
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
