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

/** Whether a string or key anywhere in `value` holds U+0000 (what PostgreSQL text and jsonb refuse). */
function holdsNul(value: unknown): boolean {
  let nul = false;
  JSON.stringify(value, (key, v: unknown) => {
    if (key.includes('\u0000') || (typeof v === 'string' && v.includes('\u0000'))) nul = true;
    return v;
  });
  return nul;
}

interface StandInOptions {
  refuseRowsWith?: string;
  /** Refuse what PostgreSQL refuses: rows and dead letters holding U+0000. */
  refuseNul?: boolean;
  holdFirstTask?: Promise<void>;
  /** Called before each ask; what it returns (a promise) is awaited before the ask applies, a throw fails it. */
  beforeAsk?: (user: string, events: ActivityEvent[]) => Promise<void> | void;
  askTimeoutMs?: number;
}

/** In-memory processed_events and dead letters, per-user applied events, and queued hand-offs, with hooks. */
function standIns(opts: StandInOptions = {}) {
  const rows = new Map<string, unknown>();
  const dead: DeadLetter[] = [];
  const applied = new Map<string, string[]>();
  const tasks: EnrichTask[] = [];
  const inserts: number[] = [];
  const handOffs: QueuedBatch[] = [];
  const metrics = new PipelineMetrics();
  const deps = {
    pool: {
      async run(task: EnrichTask) {
        tasks.push(task);
        if (tasks.length === 1 && opts.holdFirstTask) await opts.holdFirstTask;
        return enrich(task);
      },
    },
    store: {
      kind: 'sqlite' as const,
      async insert(batch: RowBatch) {
        if (opts.refuseRowsWith && batch.rowsJson.includes(opts.refuseRowsWith)) throw new Error('value too long for the column (test)');
        if (opts.refuseNul && holdsNul(JSON.parse(batch.rowsJson))) throw new Error('unsupported Unicode escape sequence (test)');
        inserts.push(batch.rowCount);
        const fresh = new Set<string>();
        for (const r of JSON.parse(batch.rowsJson) as { id: string }[]) {
          if (rows.has(r.id)) continue;
          rows.set(r.id, r);
          fresh.add(r.id);
        }
        return fresh;
      },
      async deadLetter(entries: readonly DeadLetter[]) {
        if (opts.refuseNul && entries.some((e) => holdsNul(e))) throw new Error('unsupported Unicode escape sequence in a dead letter (test)');
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
      // Like the actor: applies each id once, whenever the ask arrives.
      async record(user: string, events: ActivityEvent[]) {
        await opts.beforeAsk?.(user, events);
        const list = applied.get(user) ?? [];
        for (const e of events) if (!list.includes(e.id)) list.push(e.id);
        if (events.length) applied.set(user, list);
      },
      async summary(): Promise<never> {
        throw new Error('not used');
      },
      async ping() {},
    },
    metrics,
    log: testLog,
    groupsInFlight: 1,
    askTimeoutMs: opts.askTimeoutMs ?? 5000,
    async handOff(batch: QueuedBatch) {
      handOffs.push(batch);
    },
  };
  const processor = createBatchProcessor(deps as Parameters<typeof createBatchProcessor>[0]);
  /** Delivers the queued hand-offs as a queue would (attempts up to `attempts`), until none is left. */
  async function deliverHandOffs(attempts = 3): Promise<void> {
    for (let rounds = 0; handOffs.length && rounds < 50; rounds++) {
      const entry = handOffs.shift()!;
      const batchId = `h${nextBatch++}`;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        try {
          await processor([entry], { batchId, attempt, redelivered: attempt > 1, final: attempt === attempts });
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100)); // the queue's backoff
        }
      }
    }
  }
  return { processor, rows, dead, applied, tasks, inserts, metrics, handOffs, deliverHandOffs };
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

test('a batch that spoils its group fails alone, event by event: the others are stored, the bad one retried, then dead-lettered', async (t) => {
  let release!: () => void;
  const s = standIns({ refuseRowsWith: 'poison', holdFirstTask: new Promise<void>((r) => (release = r)) });
  const first = s.processor([queued([accepted('warm-up')])], delivery());
  const good = [queued([accepted('g1'), accepted('g2')]), queued([accepted('g3')])];
  const bad = queued([accepted('poison'), accepted('bystander')]);
  const goodDone = good.map((b) => s.processor([b], delivery()));
  const badTry = s.processor([bad], delivery({ batchId: 'bad', attempt: 1 }));
  release();
  await Promise.all([first, ...goodDone]);
  await t.throwsAsync(badTry, { message: /the store refused 1 of the batch's 2 events .*value too long/ });
  t.is(s.rows.size, 5, 'the warm-up, the three good events, and the bad batch\'s good one');
  t.deepEqual([...s.applied.keys()].sort(), ['g1', 'g2', 'g3', 'warm-up']);

  // The queue delivers it again; on its last attempt the refused event becomes a dead letter, not an error.
  await s.processor([bad], delivery({ batchId: 'bad', attempt: 3, redelivered: true, final: true }));
  t.is(s.dead.length, 1);
  t.true(s.dead.every((d) => d.attempts === 3 && /value too long/.test(d.error)));
  t.deepEqual([...s.applied.keys()].sort(), ['bystander', 'g1', 'g2', 'g3', 'warm-up']);
  const m = s.metrics.snapshot(0);
  t.is(m.events_failed, 1);
  t.is(m.events_processed, 5);
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

// #20 item 1: rows stored by an attempt whose actor then failed must still be counted, once.
test('rows stored by an attempt whose actor did not answer, up to the last attempt, are counted once it answers; none is dead-lettered', async (t) => {
  let actorDown = true;
  const s = standIns({ beforeAsk: (user) => {
    if (user === 'late' && actorDown) throw new Error('ask timed out (test)');
  } });
  const batch = queued([accepted('late'), accepted('late'), accepted('fine')]);
  const ids = (JSON.parse(batch.events) as AcceptedEvent[]).map((e) => e.id);
  // Attempt 1 stores the rows, then its ask to user/late fails. The queue may retry it; by its last
  // attempt the actor still does not answer: the rows are there, the retry finds them present.
  try {
    await s.processor([batch], delivery({ batchId: 'j', attempt: 1 }));
  } catch {
    await s.processor([batch], delivery({ batchId: 'j', attempt: 2, redelivered: true, final: true })).catch(() => {});
  }
  t.is(s.rows.size, 3);
  t.deepEqual(s.applied.get('fine'), [ids[2]]);
  t.deepEqual(s.dead, [], 'stored events are not dead letters');
  actorDown = false;
  await s.deliverHandOffs();
  t.deepEqual(s.applied.get('late'), [ids[0], ids[1]], 'counted once the actor answers');
  const m = s.metrics.snapshot(0);
  t.is(m.events_processed, 3);
  t.is(m.events_failed, 0);
});

test('a retry meeting the client\'s resent copy of its events in one group has them counted', async (t) => {
  // Attempt 1 of job J1 stored the rows and failed before telling the actor; the client meanwhile
  // sent the same events again (J2). J2's first delivery and J1's retry land in one group: the
  // rows are present, so J2 tells nothing, and J1's retry must tell them.
  let release!: () => void;
  const s = standIns({ holdFirstTask: new Promise<void>((r) => (release = r)) });
  const events = [accepted('resent'), accepted('resent')];
  const copy = queued(events);
  const ids = events.map((e) => e.id);
  for (const e of events) s.rows.set(e.id, e); // what J1's attempt 1 inserted
  const warmUp = s.processor([queued([accepted('warm-up')])], delivery());
  const j2 = s.processor([copy], delivery({ batchId: 'J2' }));
  const j1 = s.processor([copy], delivery({ batchId: 'J1', attempt: 2, redelivered: true }));
  release();
  await Promise.all([warmUp, j2, j1]);
  t.is(s.tasks.at(-1)!.batches.length, 2, 'the two went as one group');
  t.deepEqual(s.applied.get('resent'), ids);
});

// #20 item 4: the workers wait per user, not per group.
test('a user actor that does not answer holds back only its own events; they are counted once it answers', async (t) => {
  let answer!: () => void;
  const slowAnswers = new Promise<void>((r) => (answer = r));
  let slowAsks = 0;
  const s = standIns({
    askTimeoutMs: 300,
    beforeAsk: async (user, events) => {
      if (user !== 'slow') return;
      if (events.length) slowAsks++; // not the probes, which tell nothing
      await slowAnswers;
    },
  });
  const first = [accepted('a'), accepted('slow')];
  const second = [accepted('b'), accepted('slow')];
  const third = [accepted('c')];
  // One at a time (one group in flight): each must finish although user/slow never answers.
  const within = (p: Promise<void>, what: string) => Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} still held back after 10 s`)), 10_000))]);
  await within(s.processor([queued(first)], delivery()), 'the first batch');
  await within(s.processor([queued(second)], delivery()), 'the second batch');
  await within(s.processor([queued(third)], delivery()), 'the third batch');
  t.deepEqual([...s.applied.keys()].sort(), ['a', 'b', 'c']);
  t.is(slowAsks, 1, 'once user/slow did not answer, later batches do not wait for it');
  t.is(s.metrics.snapshot(0).events_processed, 5);
  t.true(s.handOffs.length >= 2, 'each batch handed user/slow\'s events off');

  answer();
  await s.deliverHandOffs();
  t.deepEqual(s.applied.get('slow'), [first[1]!.id, second[1]!.id], 'each counted exactly once');
});

// #20 item 2: an event the store refuses takes no other down, and its dead letter is storable.
test('an event PostgreSQL would refuse (U+0000) is dead-lettered in an escaped form; the rest of its batch is stored and counted', async (t) => {
  const s = standIns({ refuseNul: true });
  const bad = { ...accepted('nul-user'), user_id: 'nul\u0000user', data: { action: 'click', ['k\u0000']: 'v\u0000' } };
  const good = [accepted('ok-1'), accepted('ok-2')];
  const batch = queued([good[0], bad, good[1]]); // as if checked at the door: only its shape is re-checked
  await t.throwsAsync(s.processor([batch], delivery({ batchId: 'n', attempt: 1 })), { message: /the store refused 1 of the batch's 3 events/ });
  t.deepEqual([...s.rows.keys()].sort(), good.map((e) => e.id).sort(), 'the good events are stored at once');
  await s.processor([batch], delivery({ batchId: 'n', attempt: 2, redelivered: true, final: true }));
  t.is(s.dead.length, 1);
  const d = s.dead[0]!;
  t.is(d.id, bad.id);
  t.regex(d.error, /the store refused the event: unsupported Unicode escape/);
  t.deepEqual(JSON.parse((d.event as { _escaped_json: string })._escaped_json), bad, 'the escaped form holds the event exactly');
  t.deepEqual(s.applied.get('ok-1'), [good[0]!.id]);
  t.deepEqual(s.applied.get('ok-2'), [good[1]!.id]);
  t.false(s.applied.has('nul\u0000user'));
  const m = s.metrics.snapshot(0);
  t.is(m.events_failed, 1);
  t.is(m.events_processed, 2);
});

test('a batch refused whole on its last attempt is dead-lettered in a storable form, never left with no dead letter', async (t) => {
  const s = standIns({ refuseNul: true });
  const bad = { ...accepted('x'), user_id: 'x\u0000' };
  await s.processor([queued([bad])], delivery({ batchId: 'w', attempt: 1, final: true }));
  t.is(s.dead.length, 1);
  t.is(s.metrics.snapshot(0).events_failed, 1);
  t.is(s.metrics.activeWorkers, 0);
});
