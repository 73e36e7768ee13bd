// The presence part of `user/<id>`: Pong handling and the per-shard online-in-3-minutes view,
// checked against a brute-force count over every user.

import test from 'ava';
import fc from 'fast-check';
import type { ActorContext } from '../../runtime/index.js';
import { initialPresence, presenceHandlers, presenceView, PresenceView, type PresenceState } from '../../actors/user-presence.js';
import type { UserState } from '../../actors/user.js';

/** Runs presence handlers as the shard would: one state per user, one view per shard. */
class FakeShard {
  readonly view = presenceView.create();
  readonly states = new Map<string, UserState>();
  nowMs = 0;

  send(key: string, handler: keyof typeof presenceHandlers, message?: unknown): unknown {
    const state = this.states.get(key) ?? ({ presence: initialPresence(), activity: {} } as unknown as UserState);
    const ctx = { key, state, view: this.view, now: () => this.nowMs } as unknown as ActorContext<UserState>;
    const reply = (presenceHandlers[handler] as (c: typeof ctx, m: unknown) => unknown)(ctx, message);
    this.states.set(key, ctx.state);
    return reply;
  }

  count(nowMs: number): number {
    return presenceView.query(this.view, { nowMs });
  }

  /** What the view must answer: users whose last-online second is within the 181-second window. */
  bruteForce(nowMs: number): number {
    const now = Math.floor(nowMs / 1000);
    let n = 0;
    for (const s of this.states.values()) {
      const at = s.presence.lastOnlineMs;
      if (at === null) continue;
      const sec = Math.floor(at / 1000);
      if (sec >= now - 180 && sec <= now + PresenceView.FUTURE_SLACK_SECONDS) n++;
    }
    return n;
  }
}

const T0 = 1_700_000_000_000;

test('a user is online from its EVEN or ODD Pong until 180 s later, counted once', (t) => {
  const shard = new FakeShard();
  shard.send('a', 'pong', { status: 1, atMs: T0 });
  shard.send('a', 'pong', { status: 2, atMs: T0 + 1000 });
  shard.send('a', 'pong', { status: 1, atMs: T0 + 2000 });
  t.is(shard.count(T0 + 2000), 1);
  t.is(shard.count(T0 + 2000 + 179_999), 1);
  t.is(shard.count(T0 + 2000 + 181_000), 0);
});

test('STATUS_UNKNOWN and unknown status values do not make a user online', (t) => {
  const shard = new FakeShard();
  shard.send('u', 'pong', { status: 0, atMs: T0 });
  shard.send('v', 'pong', { status: 7, atMs: T0 });
  shard.send('w', 'pong', { status: 'EVEN', atMs: T0 });
  shard.send('x', 'pong', null);
  t.is(shard.count(T0), 0);
  const p = shard.send('v', 'presence') as PresenceState;
  t.deepEqual(p, { lastOnlineMs: null, lastReportMs: T0, lastStatus: 0 });
});

test('an UNKNOWN report after an online one keeps the user online for the rest of its window', (t) => {
  const shard = new FakeShard();
  shard.send('a', 'pong', { status: 2, atMs: T0 });
  shard.send('a', 'pong', { status: 0, atMs: T0 + 5000 });
  t.is(shard.count(T0 + 100_000), 1);
  t.is(shard.count(T0 + 181_000), 0);
});

test('a late Pong with an older time never moves last-online back', (t) => {
  const shard = new FakeShard();
  shard.send('a', 'pong', { status: 1, atMs: T0 + 10_000 });
  shard.send('a', 'pong', { status: 1, atMs: T0 });
  t.is((shard.send('a', 'presence') as PresenceState).lastOnlineMs, T0 + 10_000);
  t.is(shard.count(T0 + 189_000), 1);
});

test('a Pong without a time takes the shard clock', (t) => {
  const shard = new FakeShard();
  shard.nowMs = T0 + 42;
  shard.send('a', 'pong', { status: 1 });
  t.is((shard.send('a', 'presence') as PresenceState).lastOnlineMs, T0 + 42);
});

test('restore rebuilds the count from stored states; evict removes a user', (t) => {
  const shard = new FakeShard();
  for (let i = 0; i < 50; i++) shard.send(`u${i}`, 'pong', { status: 1 + (i % 2), atMs: T0 + i * 1000 });
  const restarted = presenceView.create();
  for (const [key, state] of shard.states) presenceView.restore!(restarted, key, state);
  t.is(presenceView.query(restarted, { nowMs: T0 + 60_000 }), 50);
  t.is(presenceView.query(restarted, { nowMs: T0 + 190_000 }), 40);
  presenceView.evict!(restarted, 'u49', shard.states.get('u49')!);
  t.is(presenceView.query(restarted, { nowMs: T0 + 60_000 }), 49);
  // A state with no online report contributes nothing either way.
  presenceView.restore!(restarted, 'never', { presence: initialPresence() } as UserState);
  presenceView.evict!(restarted, 'never', { presence: initialPresence() } as UserState);
  t.is(presenceView.query(restarted, { nowMs: T0 + 60_000 }), 49);
});

test('merge sums the shards\' answers', (t) => {
  t.is(presenceView.merge!(3, 4), 7);
});

test('the view equals a brute-force count under random reports and queries', (t) => {
  const event = fc.oneof(
    fc.record({ kind: fc.constant('pong' as const), user: fc.integer({ min: 0, max: 30 }), status: fc.integer({ min: 0, max: 3 }), dtMs: fc.integer({ min: -2000, max: 40_000 }) }),
    fc.record({ kind: fc.constant('query' as const), aheadMs: fc.integer({ min: -5000, max: 400_000 }) }),
  );
  fc.assert(
    fc.property(fc.array(event, { maxLength: 300 }), (events) => {
      const shard = new FakeShard();
      let clock = T0;
      for (const e of events) {
        if (e.kind === 'pong') {
          clock += Math.max(0, e.dtMs);
          // dtMs < 0 models a Pong stamped earlier than the latest one (another gateway's clock).
          shard.send(`u${e.user}`, 'pong', { status: e.status, atMs: clock + Math.min(0, e.dtMs) });
        } else {
          const now = clock + e.aheadMs;
          if (shard.count(now) !== shard.bruteForce(now)) return false;
        }
      }
      return shard.count(clock) === shard.bruteForce(clock);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('a shard of 100,000 users: the view still equals a brute-force count', (t) => {
  const shard = new FakeShard();
  for (let i = 0; i < 100_000; i++) shard.send(`u${i}`, 'pong', { status: 1, atMs: T0 + (i % 300) * 1000 });
  t.is(shard.count(T0 + 299_000), shard.bruteForce(T0 + 299_000));
});
