// One test body for every processed-events store (the rivetkit / BullMQ way: one suite, a factory
// per backend): idempotent batched inserts, rows as stored, dead letters, and the read API's pages.

import type { ExecutionContext, TestFn } from 'ava';
import { randomUUID } from 'node:crypto';
import type { EventQuery, ProcessedEventRow, ProcessedEventStore } from '../../../gateways/events/store.js';

export interface StoreFactory {
  name: string;
  /** A fresh, empty store of its own; released by the test's teardown. */
  open(t: ExecutionContext): Promise<ProcessedEventStore>;
}

interface TestRow {
  id: string;
  type: string;
  source: string;
  user_id: string | null;
  processed_data: Record<string, unknown>;
  created_at: string;
  received_at: number;
}

const T0 = Date.parse('2026-11-22T10:00:00.000Z');

/** Whole seconds: the brief's MySQL TIMESTAMP keeps no fraction, and the suite is the same for all. */
function row(over: Partial<TestRow> = {}, second = 0): TestRow {
  return {
    id: randomUUID(),
    type: 'user_action',
    source: 'web',
    user_id: 'ann',
    processed_data: { action: 'click', _enriched: { category: 'engagement' } },
    created_at: new Date(T0 + second * 1000).toISOString(),
    received_at: T0 + second * 1000,
    ...over,
  };
}

function batch(rows: TestRow[], processedAt = T0 + 3_600_000) {
  return { rowsJson: JSON.stringify(rows), rowCount: rows.length, processedAt };
}

/** Every page of a query, following next cursors as the HTTP layer does (limit + 1 per read). */
async function allPages(store: ProcessedEventStore, query: Omit<EventQuery, 'after'>): Promise<ProcessedEventRow[][]> {
  const pages: ProcessedEventRow[][] = [];
  let after: EventQuery['after'];
  for (let i = 0; i < 1000; i++) {
    const rows = await store.list({ ...query, ...(after ? { after } : {}), limit: query.limit + 1 });
    const page = rows.slice(0, query.limit);
    pages.push(page);
    if (rows.length <= query.limit) return pages;
    const last = page[page.length - 1]!;
    after = { created_at: last.created_at, id: last.id };
  }
  throw new Error('pagination did not end');
}

const newestFirst = (a: ProcessedEventRow, b: ProcessedEventRow) => (a.created_at === b.created_at ? (a.id < b.id ? 1 : -1) : a.created_at < b.created_at ? 1 : -1);

export function storeSuite(test: TestFn, factory: StoreFactory): void {
  const name = factory.name;

  test(`${name}: a batch is inserted in one call, and ids already stored are skipped and not reported`, async (t) => {
    const store = await factory.open(t);
    const first = [row({}, 1), row({ user_id: null, type: 'sensor_data', source: 'iot_device' }, 2), row({}, 3)];
    t.deepEqual([...(await store.insert(batch(first)))].sort(), first.map((r) => r.id).sort());
    t.is(await store.count(), 3);
    t.is((await store.insert(batch(first))).size, 0, 'the same batch again inserts nothing');
    const fresh = row({}, 4);
    const overlap = await store.insert(batch([first[1]!, fresh, first[0]!]));
    t.deepEqual([...overlap], [fresh.id]);
    t.is(await store.count(), 4);
    t.is((await store.insert(batch([]))).size, 0);
  });

  test(`${name}: a row is stored as given: nullable user, nested JSON, UTC time, processing time from receipt`, async (t) => {
    const store = await factory.open(t);
    const hostile = `'; DROP TABLE processed_events; -- "\\ 𝄞 é`;
    const a = row({ user_id: hostile, processed_data: { deep: { list: [1, 'two', null, { x: true }] }, quote: `"'\\`, emoji: '🎉' }, received_at: T0 + 3_600_000 - 1234 }, 5);
    const b = row({ user_id: null, type: 'system_log', source: 'system', processed_data: {}, received_at: T0 + 3_600_000 + 99_999 }, 6);
    await store.insert(batch([a, b], T0 + 3_600_000));
    const got = await store.get(a.id);
    t.truthy(got);
    t.is(got!.id, a.id);
    t.is(got!.type, 'user_action');
    t.is(got!.source, 'web');
    t.is(got!.user_id, hostile);
    t.deepEqual(got!.processed_data, a.processed_data);
    t.is(got!.created_at, '2026-11-22T10:00:05.000Z');
    t.is(got!.processed_at, '2026-11-22T11:00:00.000Z');
    t.is(got!.processing_time_ms, 1234);
    const gb = await store.get(b.id);
    t.is(gb!.user_id, null);
    t.is(gb!.processing_time_ms, 0, 'a receipt after the write (clock skew) counts as 0, not negative');
    t.deepEqual(gb!.processed_data, {});
    t.is(await store.get(randomUUID()), undefined);
    t.deepEqual((await store.rows([a.id, randomUUID()])).map((r) => r.id), [a.id]);
    t.is((await store.rows()).length, 2);
  });

  test(`${name}: dead letters keep the event (object or raw text), the error and the attempts, in order`, async (t) => {
    const store = await factory.open(t);
    const id = randomUUID();
    await store.deadLetter([
      { id, event: { id, type: 'user_action', nested: { a: [1, 2] } }, error: 'disk on fire', attempts: 5 },
      { id: null, event: '[{"truncated', error: 'Unexpected end of JSON input', attempts: 1 },
    ]);
    await store.deadLetter([{ id: null, event: 42, error: 'x'.repeat(100_000), attempts: 1 }]);
    await store.deadLetter([]);
    const dead = await store.deadLetters();
    t.is(dead.length, 3);
    t.deepEqual(dead[0]!.event, { id, type: 'user_action', nested: { a: [1, 2] } });
    t.is(dead[0]!.id, id);
    t.is(dead[0]!.error, 'disk on fire');
    t.is(dead[0]!.attempts, 5);
    t.is(dead[1]!.id, null);
    t.is(dead[1]!.event, '[{"truncated');
    t.is(dead[2]!.event, 42);
    t.true(dead[2]!.error.startsWith('xxx'));
    t.false(Number.isNaN(Date.parse(dead[0]!.failed_at)));
  });

  test(`${name}: pages come newest first by (created_at, id), and the cursor walks every row once`, async (t) => {
    const store = await factory.open(t);
    // 5 rows per second over 9 seconds: ties on created_at must be ordered by id across page ends.
    const all: TestRow[] = [];
    for (let s = 0; s < 9; s++) for (let i = 0; i < 5; i++) all.push(row({ user_id: i % 2 ? 'bob' : 'ann', type: i === 4 ? 'sensor_data' : 'user_action' }, s));
    await store.insert(batch(all.slice(0, 20)));
    await store.insert(batch(all.slice(20)));
    const stored = await store.rows();
    const expected = [...stored].sort(newestFirst).map((r) => r.id);

    for (const limit of [1, 4, 7, 45, 100]) {
      const pages = await allPages(store, { limit });
      t.deepEqual(pages.flat().map((r) => r.id), expected, `limit ${limit}`);
      t.true(pages.every((p) => p.length <= limit));
      t.is(pages.length, Math.max(1, Math.ceil(45 / limit)));
    }
    const ann = (await allPages(store, { user_id: 'ann', limit: 4 })).flat();
    t.deepEqual(ann.map((r) => r.id), expected.filter((id) => stored.find((r) => r.id === id)!.user_id === 'ann'));
    const sensors = (await allPages(store, { type: 'sensor_data', limit: 2 })).flat();
    t.is(sensors.length, 9);
    t.true(sensors.every((r) => r.type === 'sensor_data'));
    const annSensors = (await allPages(store, { user_id: 'ann', type: 'sensor_data', limit: 3 })).flat();
    t.is(annSensors.length, 9);
    t.deepEqual((await store.list({ user_id: 'bob', type: 'sensor_data', limit: 10 })).length, 0);

    // since is inclusive, until exclusive; both on whole seconds 2..4 here.
    const window = await store.list({ since: '2026-11-22T10:00:02.000Z', until: '2026-11-22T10:00:05.000Z', limit: 1000 });
    t.is(window.length, 15);
    t.true(window.every((r) => r.created_at >= '2026-11-22T10:00:02.000Z' && r.created_at < '2026-11-22T10:00:05.000Z'));
    const annWindow = (await allPages(store, { user_id: 'ann', since: '2026-11-22T10:00:07.500Z', limit: 2 })).flat();
    t.is(annWindow.length, 3, 'the one second 8 has three of ann');
    t.deepEqual(await store.list({ until: '2026-11-22T09:00:00.000Z', limit: 10 }), []);
    // Bounds far outside what a MySQL TIMESTAMP holds are still just bounds.
    t.is((await store.list({ since: '0001-01-01T00:00:00.000Z', until: '9999-12-31T23:59:59.999Z', limit: 1000 })).length, 45);
    t.is((await store.list({ after: { created_at: '9999-12-31T23:59:59.999Z', id: randomUUID() }, limit: 1000 })).length, 45);
  });

  test(`${name}: user_id matches exactly: case, trailing spaces and SQL-ish text are not other users`, async (t) => {
    const store = await factory.open(t);
    const users = ['Ann', 'ann', 'ann ', "ann' OR '1'='1", '%', 'a_n'];
    await store.insert(batch(users.map((u, i) => row({ user_id: u }, i))));
    for (const u of users) {
      const got = await store.list({ user_id: u, limit: 10 });
      t.deepEqual(got.map((r) => r.user_id), [u], JSON.stringify(u));
    }
    t.deepEqual(await store.list({ user_id: 'nobody', limit: 10 }), []);
  });
}
