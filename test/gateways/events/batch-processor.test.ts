// The batch processor on its own, with the real enrichment run in-process and in-memory stand-ins
// for the store and the user actors: batches waiting together form one group (one pool task, one
// insert), an id repeated across a group is stored and applied once, and a batch that spoils its
// group fails alone.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import type { ActivityEvent } from '../../../actors/user-activity.js';
import { createBatchProcessor } from '../../../gateways/events/batch-processor.js';
import { acceptEvent, EVENT_FORMAT, type AcceptedEvent } from '../../../gateways/events/event.js';
import { enrich, type EnrichTask } from '../../../gateways/events/enrichment.js';
import { PipelineMetrics } from '../../../gateways/events/metrics.js';
import type { Delivery, QueuedBatch } from '../../../gateways/events/queue.js';
import type { DeadLetter, RowBatch } from '../../../gateways/events/store.js';
import { testLog } from './helpers.js';

function accepted(user: string, id = randomUUID()): AcceptedEvent {
  const { event } = acceptEvent({ id, type: 'user_action', source: 'web', user_id: user, data: { action: 'click' } }, Date.now());
  return event!;
}

/** A queued batch; `checked: null` for one not checked at the door (another version, or by hand). */
function queued(events: unknown[], checked: number | null = EVENT_FORMAT): QueuedBatch {
  return { receivedAt: Date.now(), count: events.length, events: JSON.stringify(events), ...(checked === null ? {} : { checked }) };
}

let nextBatch = 0;
function delivery(over: Partial<Delivery> = {}): Delivery {
  return { batchId: `b${nextBatch++}`, attempt: 1, redelivered: false, final: false, ...over };
}

/** In-memory processed_events and dead letters, and per-user applied events, with hooks. */
function standIns(opts: { refuseRowsWith?: string; holdFirstTask?: Promise<void> } = {}) {
  const rows = new Map<string, unknown>();
  const dead: DeadLetter[] = [];
  const applied = new Map<string, string[]>();
  const tasks: EnrichTask[] = [];
  const inserts: number[] = [];
  const metrics = new PipelineMetrics();
  const processor = createBatchProcessor({
    pool: {
      async run(task) {
        tasks.push(task);
        if (tasks.length === 1 && opts.holdFirstTask) await opts.holdFirstTask;
        return enrich(task);
      },
    },
    store: {
      kind: 'sqlite',
      async insert(batch: RowBatch) {
        if (opts.refuseRowsWith && batch.rowsJson.includes(opts.refuseRowsWith)) throw new Error('value too long for the column (test)');
        inserts.push(batch.rowCount);
        const fresh = new Set<string>();
        for (const r of JSON.parse(batch.rowsJson) as { id: string }[]) {
          if (rows.has(r.id)) continue;
          rows.set(r.id, r);
          fresh.add(r.id);
        }
        return fresh;
      },
      async deadLetter(entries) {
        dead.push(...entries);
      },
      async ping() {},
      async get() {
        return undefined;
      },
      async list() {
        return [];
      },
      async rows() {
        return [];
      },
      async count() {
        return rows.size;
      },
      async deadLetters() {
        return [];
      },
      async close() {},
    },
    activity: {
      async record(user: string, events: ActivityEvent[]) {
        const list = applied.get(user) ?? [];
        for (const e of events) if (!list.includes(e.id)) list.push(e.id);
        applied.set(user, list);
      },
      async summary() {
        throw new Error('not used');
      },
      async ping() {},
    },
    metrics,
    log: testLog,
    groupsInFlight: 1,
  });
  return { processor, rows, dead, applied, tasks, inserts, metrics };
}

test('batches that wait together are enriched in one task and inserted in one statement', async (t) => {
  let release!: () => void;
  const s = standIns({ holdFirstTask: new Promise<void>((r) => (release = r)) });
  const first = s.processor([queued([accepted('u1')])], delivery());
  const waiting = Array.from({ length: 5 }, (_, i) => s.processor([queued([accepted(`u${i}`), accepted(`v${i}`)])], delivery()));
  release();
  await Promise.all([first, ...waiting]);
  t.is(s.tasks.length, 2, 'the first batch alone, then the five that waited, together');
  t.is(s.tasks[1]!.batches.length, 5);
  t.deepEqual(s.inserts, [1, 10]);
  t.is(s.rows.size, 11);
  const m = s.metrics.snapshot(0);
  t.is(m.events_processed, 11);
  t.is(s.metrics.activeWorkers, 0);
});

test('an id repeated within a group is stored once and applied to its actor once', async (t) => {
  let release!: () => void;
  const s = standIns({ holdFirstTask: new Promise<void>((r) => (release = r)) });
  const shared = randomUUID();
  const first = s.processor([queued([accepted('w')])], delivery());
  const a = s.processor([queued([accepted('dup', shared), accepted('dup', shared)])], delivery());
  const b = s.processor([queued([accepted('dup', shared), accepted('other')])], delivery());
  release();
  await Promise.all([first, a, b]);
  t.is(s.tasks[1]!.batches.length, 2);
  t.deepEqual(s.applied.get('dup'), [shared]);
  t.is([...s.rows.keys()].filter((id) => id === shared).length, 1);
  t.is(s.rows.size, 3);
});

test('a batch that spoils its group fails alone: the others are stored, it is retried, then dead-lettered', async (t) => {
  let release!: () => void;
  const s = standIns({ refuseRowsWith: 'poison', holdFirstTask: new Promise<void>((r) => (release = r)) });
  const first = s.processor([queued([accepted('warm-up')])], delivery());
  const good = [queued([accepted('g1'), accepted('g2')]), queued([accepted('g3')])];
  const bad = queued([accepted('poison'), accepted('bystander')]);
  const goodDone = good.map((b) => s.processor([b], delivery()));
  const badTry = s.processor([bad], delivery({ batchId: 'bad', attempt: 1 }));
  release();
  await Promise.all([first, ...goodDone]);
  await t.throwsAsync(badTry, { message: /value too long/ });
  t.is(s.rows.size, 4, 'the warm-up and the three good events');
  t.deepEqual([...s.applied.keys()].sort(), ['g1', 'g2', 'g3', 'warm-up']);

  // The queue delivers it again; on its last attempt its events become dead letters, not an error.
  await s.processor([bad], delivery({ batchId: 'bad', attempt: 3, redelivered: true, final: true }));
  t.is(s.dead.length, 2);
  t.true(s.dead.every((d) => d.attempts === 3 && /value too long/.test(d.error)));
  t.is(s.metrics.snapshot(0).events_failed, 2);
  t.is(s.metrics.activeWorkers, 0);
});

test('a batch checked at the door is trusted for its shape only; anything else is checked in full', async (t) => {
  const s = standIns();
  const good = accepted('shape');
  const wrongShape = { ...accepted('shape'), type: 'bogus' };
  const badTimestamp = { ...accepted('unchecked'), timestamp: 'yesterday' };
  await s.processor([queued([good, wrongShape])], delivery());
  await s.processor([queued([badTimestamp], null)], delivery());
  await s.processor([queued([{ ...badTimestamp, id: randomUUID() }], EVENT_FORMAT + 1)], delivery());
  t.true(s.rows.has(good.id));
  t.is(s.rows.size, 1);
  t.is(s.dead.length, 3);
  t.regex(s.dead[0]!.error, /type must be one of/);
  t.regex(s.dead[1]!.error, /timestamp must be an RFC 3339/);
  t.regex(s.dead[2]!.error, /timestamp must be an RFC 3339/);
});

test('an entry of several batches fails as a whole if one must retry, and its good batches count once', async (t) => {
  const s = standIns({ refuseRowsWith: 'poison' });
  const good = queued([accepted('fine'), accepted('fine')]);
  const bad = queued([accepted('poison')]);
  await t.throwsAsync(s.processor([good, bad], delivery({ batchId: 'job', attempt: 1 })), { message: /value too long/ });
  t.is(s.rows.size, 2);
  t.is(s.metrics.activeWorkers, 0);
  await s.processor([good, bad], delivery({ batchId: 'job', attempt: 2, redelivered: true, final: true }));
  t.is(s.rows.size, 2);
  t.deepEqual(s.applied.get('fine')?.length, 2);
  const m = s.metrics.snapshot(0);
  t.is(m.events_processed, 2, 'the good batch counted once over both deliveries');
  t.is(m.events_failed, 1);
});
