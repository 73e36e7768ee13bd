// End to end, on both backends: HTTP to stored rows and user aggregates, idempotent ids, metrics
// that add up, the worker pool under concurrent load, retries and dead letters, health.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { EVENT_FORMAT } from '../../../gateways/events/event.js';
import type { ProcessedEventStore } from '../../../gateways/events/store.js';
import { BACKENDS, get, post, startEvents, until, userAction } from './helpers.js';

for (const backend of BACKENDS) {
  test(`${backend}: events go from HTTP to stored rows and to the user's aggregates`, async (t) => {
    const h = await startEvents(t, backend);
    const user = `u-${randomUUID().slice(0, 8)}`;
    const one = await post(`${h.url}/events`, { type: 'user_action', source: 'mobile', user_id: user, timestamp: '2026-11-22T10:00:00+01:00', data: { action: 'login', metadata: { app: '2.1' } } });
    t.is(one.status, 202);
    t.regex(one.body.id, /^[0-9a-f-]{36}$/);
    const batch = await post(`${h.url}/events/batch`, {
      events: [
        userAction(user, 'purchase', { value: 19.99 }),
        userAction(user, 'purchase', { value: 0.01 }),
        userAction(user, 'click'),
        { type: 'sensor_data', source: 'iot_device', data: { celsius: 21.5, humidity: 40 } },
        { type: 'system_log', source: 'system', data: { level: 'ERROR', message: 'disk full' } },
      ],
    });
    t.is(batch.status, 202);
    t.is(batch.body.ids.length, 5);
    const ids = [one.body.id, ...batch.body.ids];
    await until('rows stored', async () => (await h.pipeline.store.rows(ids)).length === 6);
    const rows = await h.pipeline.store.rows(ids);
    const login = rows.find((r) => r.id === one.body.id)!;
    t.is(login.user_id, user);
    t.is(login.source, 'mobile');
    t.is(login.created_at, '2026-11-22T09:00:00.000Z');
    t.true(login.processing_time_ms >= 0);
    t.deepEqual((login.processed_data as any).metadata, { app: '2.1' });
    t.is((login.processed_data as any)._enriched.category, 'engagement');
    const sensor = rows.find((r) => r.type === 'sensor_data')!;
    t.is(sensor.user_id, null);
    t.deepEqual((sensor.processed_data as any)._enriched.readings, { count: 2, min: 21.5, max: 40 });
    t.is((rows.find((r) => r.type === 'system_log')!.processed_data as any)._enriched.severity, 'high');

    await until('the aggregates', async () => (await get(`${h.url}/users/${user}/summary`)).body.events === 4);
    const summary = (await get(`${h.url}/users/${user}/summary`)).body;
    t.deepEqual(summary.by_action, { login: 1, purchase: 2, click: 1 });
    t.is(summary.purchase_total, 20);
    t.is(summary.user_id, user);
  });

  test(`${backend}: a repeated id is accepted every time and stored and counted once`, async (t) => {
    const h = await startEvents(t, backend);
    const user = `u-${randomUUID().slice(0, 8)}`;
    const event = userAction(user, 'purchase', { value: 5 });
    for (let i = 0; i < 3; i++) t.is((await post(`${h.url}/events`, event)).status, 202);
    t.is((await post(`${h.url}/events/batch`, { events: [event, event] })).status, 202);
    await until('all processed', async () => (await h.pipeline.metrics()).events_processed === 5);
    t.is(await h.pipeline.store.count(), 1);
    const summary = (await get(`${h.url}/users/${user}/summary`)).body;
    t.is(summary.events, 1);
    t.is(summary.purchase_total, 5);
  });

  test(`${backend}: metrics count what was sent, and the average latency is the rows' average`, async (t) => {
    const h = await startEvents(t, backend);
    const m0 = (await get(`${h.url}/metrics`)).body;
    t.deepEqual(Object.keys(m0).sort(), [
      'active_workers',
      'average_processing_latency_ms',
      'current_queue_depth',
      'events_failed',
      'events_per_second',
      'events_processed',
      'events_received',
      'uptime_seconds',
    ]);
    t.is(m0.events_received, 0);
    // Rejected requests are not received events.
    t.is((await post(`${h.url}/events`, { type: 'nope' })).status, 400);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await post(`${h.url}/events/batch`, { events: Array.from({ length: 10 + i }, (_, j) => userAction(`m-${j % 5}`)) });
      ids.push(...r.body.ids);
    }
    const sent = ids.length;
    await until('all processed', async () => (await h.pipeline.metrics()).events_processed === sent);
    const m = (await get(`${h.url}/metrics`)).body;
    t.is(m.events_received, sent);
    t.is(m.events_processed, sent);
    t.is(m.events_failed, 0);
    t.is(m.current_queue_depth, 0);
    t.is(m.active_workers, 0);
    const rows = await h.pipeline.store.rows(ids);
    const avg = rows.reduce((s, r) => s + r.processing_time_ms, 0) / rows.length;
    t.is(m.average_processing_latency_ms, Math.round(avg * 1000) / 1000);
    t.true(m.uptime_seconds > 0);
    t.true(m.events_per_second >= 0);
  });

  test(`${backend}: the worker pool processes many concurrent batches, each event once`, async (t) => {
    const h = await startEvents(t, backend, { queueWorkers: 6, poolThreads: 2 });
    const users = Array.from({ length: 20 }, (_, i) => `c-${i}-${randomUUID().slice(0, 6)}`);
    const ids: string[] = [];
    let maxActive = 0;
    const watch = setInterval(() => void h.pipeline.metrics().then((m) => (maxActive = Math.max(maxActive, m.active_workers))), 5);
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const r = await post(`${h.url}/events/batch`, { events: Array.from({ length: 50 }, (_, j) => userAction(users[(i + j) % users.length]!)) });
        t.is(r.status, 202);
        ids.push(...r.body.ids);
      }),
    );
    await until('all stored', async () => (await h.pipeline.metrics()).events_processed === 2000);
    clearInterval(watch);
    t.is(await h.pipeline.store.count(), 2000);
    t.true(maxActive <= 6);
    let total = 0;
    for (const u of users) total += (await get(`${h.url}/users/${u}/summary`)).body.events;
    t.is(total, 2000);
  });

  test(`${backend}: a failing event is retried, then kept as a dead letter and counted as failed; the rest of its batch is stored`, async (t) => {
    let insertCalls = 0;
    const poison = 'poison-user';
    const h = await startEvents(t, backend, {
      retry: { attempts: 3, backoffMs: 10 },
      wrapStore: (store: ProcessedEventStore) =>
        Object.assign(Object.create(store) as ProcessedEventStore, {
          insert: async (rows: Parameters<ProcessedEventStore['insert']>[0]) => {
            insertCalls++;
            if (rows.rowsJson.includes(poison)) throw new Error('disk on fire');
            // fail the first attempt of every other batch once: retried and then stored
            if (insertCalls === 1) throw new Error('transient');
            return store.insert(rows);
          },
          deadLetter: store.deadLetter.bind(store),
          rows: store.rows.bind(store),
          count: store.count.bind(store),
          deadLetters: store.deadLetters.bind(store),
          ping: store.ping.bind(store),
          close: store.close.bind(store),
        }),
    });
    const good = await post(`${h.url}/events/batch`, { events: [userAction('fine'), userAction('fine')] });
    await until('good stored', async () => (await h.pipeline.metrics()).events_processed === 2);
    const bad = await post(`${h.url}/events/batch`, { events: [userAction(poison), userAction('bystander')] });
    t.is(bad.status, 202);
    await until('failed counted', async () => (await h.pipeline.metrics()).events_failed === 1);
    // Only the event the store refuses is a dead letter: the bystander of its batch is stored and counted.
    const dead = await h.pipeline.store.deadLetters();
    t.deepEqual(dead.map((d) => d.id), [bad.body.ids[0]]);
    t.deepEqual(dead.map((d) => (d.event as { id: string }).id), [bad.body.ids[0]]);
    t.true(dead.every((d) => d.error === 'the store refused the event: disk on fire' && d.attempts === 3));
    t.is((await h.pipeline.store.rows(good.body.ids)).length, 2);
    t.is((await h.pipeline.store.rows([bad.body.ids[1]])).length, 1);
    await until('processed counted', async () => (await h.pipeline.metrics()).events_processed === 3);
    t.is((await get(`${h.url}/users/bystander/summary`)).body.events, 1);
    const m = await h.pipeline.metrics();
    t.is(m.events_received, 4);
    t.is(m.events_failed, 1);
    t.is(m.current_queue_depth, 0);
  });

  test(`${backend}: events in the queue that are not valid are dead-lettered at once, the rest stored`, async (t) => {
    const h = await startEvents(t, backend);
    const good: Record<string, unknown> = { ...userAction('q'), timestamp: '2026-11-22T10:00:00.000Z' };
    const badId = randomUUID();
    await h.pipeline.queue.enqueue({ receivedAt: Date.now(), count: 3, events: JSON.stringify([good, { id: badId, type: 'bogus', timestamp: '2026-11-22T10:00:00.000Z' }, 42]) });
    await h.pipeline.queue.enqueue({ receivedAt: Date.now(), count: 1, events: '[{"truncated' });
    await until('all settled', async () => {
      const m = await h.pipeline.metrics();
      return m.events_processed === 1 && m.events_failed === 3;
    });
    const dead = await h.pipeline.store.deadLetters();
    t.is(dead.length, 3);
    t.true(dead.every((d) => d.attempts === 1), 'no retries for what can never be valid');
    t.is(dead.find((d) => d.id === badId)?.error.includes('type must be one of'), true);
    t.is(dead.filter((d) => d.id === null).length, 2);
    t.is((await h.pipeline.store.rows([good.id as string])).length, 1);
  });

  // #20 item 2: an event that fails after its 202 ends as a counted dead letter, never vanishes, and
  // never takes down the valid events of its batch; its dead letter is stored even where the event
  // itself cannot be (PostgreSQL jsonb refuses U+0000 and unpaired surrogates).
  test(`${backend}: U+0000 in a queued entry the pool checks in full: dead-lettered at once and counted, the rest stored and counted`, async (t) => {
    const h = await startEvents(t, backend);
    const user = `nul-${randomUUID().slice(0, 8)}`;
    const at = '2026-11-22T10:00:00.000Z';
    const good = [{ ...(userAction(user) as { id: string }), timestamp: at }, { ...(userAction(user) as { id: string }), timestamp: at }];
    const bad = [
      { ...(userAction(user) as { id: string }), timestamp: at, user_id: 'nul\u0000user' },
      { ...(userAction(user) as { id: string }), timestamp: at, data: { action: 'click', ['k\u0000']: 'v', s: 'lone \ud800' } },
    ];
    // As an older version queued it (checked under format 1): every event is validated again.
    await h.pipeline.queue.enqueue({ receivedAt: Date.now(), count: 4, events: JSON.stringify([good[0], ...bad, good[1]]), checked: 1 });
    await until('all settled', async () => {
      const m = await h.pipeline.metrics();
      return m.events_processed === 2 && m.events_failed === 2;
    });
    t.is((await h.pipeline.store.rows(good.map((e) => e.id as string))).length, 2);
    const dead = await h.pipeline.store.deadLetters();
    t.deepEqual(dead.map((d) => d.id).sort(), bad.map((e) => e.id).sort());
    t.true(dead.every((d) => d.attempts === 1 && /holds (U\+0000|an unpaired UTF-16 surrogate)/.test(d.error)), dead.map((d) => d.error).join(' | '));
    for (const d of dead) {
      const kept = d.event as { _escaped_json: string };
      t.deepEqual(JSON.parse(kept._escaped_json), bad.find((e) => e.id === d.id), 'the event is kept exactly, escaped');
    }
    await until('the aggregate', async () => (await get(`${h.url}/users/${user}/summary`)).body.events === 2);
  });

  if (backend === 'cluster') {
    test(`${backend}: U+0000 past the door: PostgreSQL refuses that event alone; it ends a counted dead letter, its batch stored and counted`, async (t) => {
      const h = await startEvents(t, backend, { retry: { attempts: 3, backoffMs: 10 } });
      const user = `nul-${randomUUID().slice(0, 8)}`;
      const at = '2026-11-22T10:00:00.000Z';
      const good = [{ ...(userAction(user) as { id: string }), timestamp: at }, { ...(userAction(user) as { id: string }), timestamp: at }];
      const bad = { ...(userAction(user) as { id: string }), timestamp: at, user_id: 'nul\u0000user' };
      // Claims this node's format, so only its shape is checked again: the store is the last line.
      await h.pipeline.queue.enqueue({ receivedAt: Date.now(), count: 3, events: JSON.stringify([good[0], bad, good[1]]), checked: EVENT_FORMAT });
      await until('all settled', async () => {
        const m = await h.pipeline.metrics();
        return m.events_processed === 2 && m.events_failed === 1;
      });
      t.is((await h.pipeline.store.rows(good.map((e) => e.id as string))).length, 2);
      const dead = await h.pipeline.store.deadLetters();
      t.is(dead.length, 1);
      t.is(dead[0]!.id, bad.id);
      t.is(dead[0]!.attempts, 3);
      t.regex(dead[0]!.error, /the store refused the event: .*(Unicode|0x00)/);
      t.deepEqual(JSON.parse((dead[0]!.event as { _escaped_json: string })._escaped_json), bad);
      await until('the aggregate', async () => (await get(`${h.url}/users/${user}/summary`)).body.events === 2);
      t.is((await h.pipeline.metrics()).current_queue_depth, 0);
    });
  }

  // #20: /health says when user actors do not answer (it said ok while every recordEvents ask timed out).
  test(`${backend}: /health names the actors when most asks to them fail, and is ok again once they answer`, async (t) => {
    let down = false;
    const h = await startEvents(t, backend, {
      askTimeoutMs: 300,
      wrapActivity: (activity) => ({
        ...activity,
        async record(user, events) {
          if (down) await new Promise((r) => setTimeout(r, 1000)); // no answer within the ask timeout
          return activity.record(user, events);
        },
      }),
    });
    // Polled: on a loaded machine a first probe can miss its deadline.
    await until('healthy at first', async () => (await get(`${h.url}/health`)).status === 200);
    down = true;
    const users = Array.from({ length: 5 }, (_, i) => `hl-${i}-${randomUUID().slice(0, 6)}`);
    const sent = await post(`${h.url}/events/batch`, { events: users.map((u) => userAction(u)) });
    t.is(sent.status, 202);
    await until('health names the actors', async () => (await get(`${h.url}/health`)).status === 503);
    const bad = (await get(`${h.url}/health`)).body;
    t.deepEqual(bad.failing, ['actors']);
    t.regex(bad.checks.actors, /user actors do not answer: \d+ of \d+ asks in the last 10 s failed \(last: user\/hl-.*gave no answer within 300 ms\)/);
    down = false;
    await until('health ok again', async () => (await get(`${h.url}/health`)).status === 200, 30_000);
    // Nothing was lost meanwhile: each user counts its event once.
    for (const u of users) await until(`user ${u} counted`, async () => (await get(`${h.url}/users/${u}/summary`)).body.events === 1);
  });

  // #20 item 4: the event workers wait per user, not per batch group.
  test(`${backend}: a user actor that does not answer holds back only its own events; counted once when it answers`, async (t) => {
    let release!: () => void;
    const answers = new Promise<void>((r) => (release = r));
    const slow = `slow-${randomUUID().slice(0, 8)}`;
    const h = await startEvents(t, backend, {
      askTimeoutMs: 500,
      queueWorkers: 2,
      wrapActivity: (activity) => ({
        ...activity,
        async record(user, events) {
          if (user === slow) await answers;
          return activity.record(user, events);
        },
      }),
    });
    t.teardown(() => release());
    const others = Array.from({ length: 8 }, (_, i) => `fast-${i}-${randomUUID().slice(0, 6)}`);
    const slowIds: string[] = [];
    // More batches than workers, each with an event of the slow user.
    for (let i = 0; i < 8; i++) {
      const events = [userAction(slow), userAction(others[i]!), userAction(others[(i + 1) % others.length]!)];
      slowIds.push(events[0]!.id as string);
      t.is((await post(`${h.url}/events/batch`, { events })).status, 202);
    }
    await until('the other users counted while the slow one still does not answer', async () => {
      for (const u of others) if ((await get(`${h.url}/users/${u}/summary`)).body.events !== 2) return false;
      return true;
    });
    t.is((await h.pipeline.metrics()).events_processed, 24, 'every batch finished');
    release();
    await until('the slow user counted', async () => (await get(`${h.url}/users/${slow}/summary`)).body.events === 8, 30_000);
    await until('hand-offs done', async () => (await h.pipeline.metrics()).current_queue_depth === 0, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    t.is((await get(`${h.url}/users/${slow}/summary`)).body.events, 8, 'each event counted exactly once');
    t.is((await h.pipeline.store.rows(slowIds)).length, 8);
  });

  test(`${backend}: /health answers 200, and 503 naming the dependency that fails`, async (t) => {
    let storeDown = false;
    const h = await startEvents(t, backend, {
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, prop) {
            if (prop === 'ping' && storeDown) return async () => { throw new Error('store unreachable (test)'); };
            const v = Reflect.get(target, prop);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    // Polled: on a loaded machine a probe can miss its 2 s deadline now and then.
    await until('healthy', async () => (await get(`${h.url}/health`)).status === 200);
    const ok = await get(`${h.url}/health`);
    t.is(ok.body.status, 'ok');
    storeDown = true;
    let bad!: { status: number; body: any };
    await until('the store named alone', async () => (bad = await get(`${h.url}/health`)).body.failing?.length === 1);
    t.is(bad.status, 503);
    t.is(bad.body.failing.length, 1);
    t.regex(bad.body.failing[0], /^store/);
    t.regex(Object.values(bad.body.checks).join(' '), /store unreachable/);
  });

  test(`${backend}: the queue is bounded: past the depth limit new requests get 503, then it recovers`, async (t) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h = await startEvents(t, backend, {
      maxQueueDepth: 100,
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, prop) {
            if (prop === 'insert') return async (rows: Parameters<ProcessedEventStore['insert']>[0]) => (await gate, target.insert(rows));
            const v = Reflect.get(target, prop);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    const ids: string[] = [];
    let refused: { status: number; body: any } | undefined;
    for (let i = 0; i < 50 && !refused; i++) {
      const r = await post(`${h.url}/events/batch`, { events: Array.from({ length: 20 }, () => userAction('bounded')) });
      if (r.status === 202) ids.push(...r.body.ids);
      else refused = r;
      await new Promise((r) => setTimeout(r, 110)); // the depth is re-read every 100 ms
    }
    t.is(refused?.status, 503);
    t.is(refused?.body.error, 'overloaded');
    t.true(ids.length >= 100 && ids.length <= 200, `accepted ${ids.length}`);
    release();
    await until('all accepted stored', async () => (await h.pipeline.store.rows(ids)).length === ids.length);
    await until('room again', async () => (await post(`${h.url}/events`, userAction('bounded'))).status === 202);
  });
}
