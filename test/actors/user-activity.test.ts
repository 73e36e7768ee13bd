// The activity part of `user/<id>`: aggregates applied idempotently by event id, checked against a
// brute-force count, and through a real node, across a restart.

import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activityHandlers, applyActivity, initialActivity, rememberedIds, RECENT_IDS_KEPT, RECENT_IDS_WINDOW_MS, type ActivityEvent, type ActivityState } from '../../actors/user-activity.js';
import type { UserState } from '../../actors/user.js';
import { startNode, type ActorContext } from '../../runtime/index.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';

const ev = (id: string, action = 'click', value?: number, receivedAt = 1_000_000): ActivityEvent => ({ id, type: 'user_action', action, value, timestamp: `2026-11-22T10:00:${id.padStart(2, '0').slice(-2)}Z`, receivedAt });

test('counts by type and action, the purchase total in cents, the latest timestamp', (t) => {
  const { state, applied } = applyActivity(initialActivity(), [ev('1', 'login'), ev('2', 'purchase', 19.99), ev('3', 'purchase', 0.01), { id: '4', type: 'sensor_data', timestamp: '2026-11-22T09:00:00Z', receivedAt: 1 }]);
  t.is(applied, 4);
  t.is(state.events, 4);
  t.deepEqual(state.byType, { user_action: 3, sensor_data: 1 });
  t.deepEqual(state.byAction, { login: 1, purchase: 2 });
  t.is(state.purchaseTotal, 20);
  t.is(state.lastEventAt, '2026-11-22T10:00:03Z');
});

test('an id applied again is dropped; the state is not rebuilt for nothing', (t) => {
  const first = applyActivity(initialActivity(), [ev('1'), ev('2')]).state;
  const again = applyActivity(first, [ev('2'), ev('1'), ev('1')]);
  t.is(again.applied, 0);
  t.is(again.state, first);
  const inOne = applyActivity(initialActivity(), [ev('7'), ev('7')]);
  t.is(inOne.applied, 1);
});

test('property: any redelivery within the window is applied once, and the ids kept stay bounded', (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 300 }), fc.array(fc.nat(), { maxLength: 20 }), (ids, redeliveries) => {
      // Feed the sequence; after each batch of 5, redeliver a recent one (as a retried batch would).
      let state = initialActivity();
      const distinct = new Set<string>();
      const batches: ActivityEvent[][] = [];
      for (let i = 0; i < ids.length; i += 5) batches.push(ids.slice(i, i + 5).map((n) => ev(String(n))));
      batches.forEach((b, i) => {
        state = applyActivity(state, b).state;
        b.forEach((e) => distinct.add(e.id));
        const r = redeliveries[i % Math.max(1, redeliveries.length)];
        if (r !== undefined && i > 0) state = applyActivity(state, batches[i - 1]!).state;
      });
      // Ids are 0..40, fewer than the window: every repeat is caught.
      t.true(41 <= RECENT_IDS_KEPT);
      return state.events === distinct.size && rememberedIds(state) <= RECENT_IDS_KEPT;
    }),
  );
});

test('the ids kept are bounded by count and by time', (t) => {
  let state = initialActivity();
  for (let i = 0; i < RECENT_IDS_KEPT + 50; i++) state = applyActivity(state, [ev(`n${i}`)]).state;
  t.is(rememberedIds(state), RECENT_IDS_KEPT);
  // The oldest 50 were pushed out, so they would count again; the 51st is still remembered.
  t.is(applyActivity(state, [ev('n50')]).applied, 0);
  t.is(applyActivity(state, [ev('n49')]).applied, 1);
  // An event received a window (and the second of resolution) later pushes out everything older.
  state = applyActivity(state, [ev('late', 'click', undefined, 1_000_000 + RECENT_IDS_WINDOW_MS + 1000)]).state;
  t.is(rememberedIds(state), 1);
  t.is(applyActivity(state, [ev('late')]).applied, 0);
  t.is(state.events, RECENT_IDS_KEPT + 51);
});

test('an entry is remembered for at least the window, to the second', (t) => {
  const state = applyActivity(initialActivity(), [ev('a', 'click', undefined, 1_000_999)]).state;
  const later = applyActivity(state, [ev('b', 'click', undefined, 1_000_999 + RECENT_IDS_WINDOW_MS)]).state;
  t.is(rememberedIds(later), 2);
  t.is(applyActivity(later, [ev('a')]).applied, 0);
});

test('the snapshot stays small: ids are kept as digests, not whole', (t) => {
  let state = initialActivity();
  for (let i = 0; i < RECENT_IDS_KEPT; i++) state = applyActivity(state, [ev(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`)]).state;
  // 19 characters per id instead of 36 plus quotes, a comma and a 13-digit receipt time.
  t.true(JSON.stringify(state).length < RECENT_IDS_KEPT * 20 + 200);
});

test('a snapshot that kept whole ids (before digests) still drops their repeats', (t) => {
  const old = { events: 2, byType: { user_action: 2 }, byAction: { click: 2 }, purchaseTotal: 0, lastEventAt: null, recentIds: ['1', '2'], recentReceivedAt: [1_000_000, 1_000_000] };
  const state = old as unknown as ActivityState;
  t.is(rememberedIds(state), 2);
  const next = applyActivity(state, [ev('2'), ev('3')]);
  t.is(next.applied, 1);
  t.is(next.state.events, 3);
  t.is(rememberedIds(next.state), 3);
  t.false('recentIds' in next.state);
});

test('handlers: recordEvents stages a new state only when something is new; activitySummary reads it', (t) => {
  let assigned = 0;
  let current: UserState = { presence: {} as UserState['presence'], activity: initialActivity() };
  const ctx = {
    key: 'ann',
    get state() {
      return current;
    },
    set state(s: UserState) {
      assigned++;
      current = s;
    },
  } as unknown as ActorContext<UserState>;
  t.is(activityHandlers.recordEvents(ctx, { events: [ev('1', 'purchase', 5)] }), 1);
  t.is(activityHandlers.recordEvents(ctx, { events: [ev('1', 'purchase', 5)] }), 0);
  t.is(assigned, 1);
  t.deepEqual(activityHandlers.activitySummary(ctx), {
    user_id: 'ann',
    events: 1,
    by_type: { user_action: 1 },
    by_action: { purchase: 1 },
    purchase_total: 5,
    last_event_at: '2026-11-22T10:00:01Z',
  });
});

test('through a node: aggregates are durable across a restart and repeats stay dropped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-activity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const actorModules = [new URL('../../actors/user.js', import.meta.url).href];
  let node = await startNode({ dataDir: dir, actorModules, shards: 1 });
  t.is(await node.ref('user', 'bob').ask('recordEvents', { events: [ev('1', 'purchase', 2.5), ev('2', 'login')] }), 2);
  await node.stop();
  node = await startNode({ dataDir: dir, actorModules, shards: 1 });
  t.teardown(() => node.stop());
  t.is(await node.ref('user', 'bob').ask('recordEvents', { events: [ev('2', 'login'), ev('3', 'click')] }), 1);
  const summary = (await node.ref('user', 'bob').ask('activitySummary')) as { events: number; purchase_total: number };
  t.is(summary.events, 3);
  t.is(summary.purchase_total, 2.5);
});
