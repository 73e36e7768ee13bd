// The ring kept in Redis: atomic joins and leaves bump the epoch, every node computes the same
// table from (epoch, members), announcements reach other nodes, and dead members come off.

import test from 'ava';
import { RedisMembership } from '../../runtime/cluster/redis-membership.js';
import { RedisRing, type RingView } from '../../runtime/cluster/redis-ring.js';
import { Ring } from '../../runtime/cluster/ring.js';
import { clusterFixture, eventually } from './helpers.js';

const P = 256;

test('join and leave bump the epoch only when the member set changes', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  const ring = await RedisRing.open({ redis, cluster, partitions: P });
  t.teardown(() => ring.close());
  t.is(ring.view().epoch, 0);
  t.deepEqual(ring.view().members, []);
  let v = await ring.join('a');
  t.is(v.epoch, 1);
  v = await ring.join('a');
  t.is(v.epoch, 1, 'joining twice is not a change');
  v = await ring.join('b', 'c');
  t.is(v.epoch, 2, 'one script call, one epoch');
  t.deepEqual(v.members, ['a', 'b', 'c']);
  t.deepEqual(v.owners, new Ring(['a', 'b', 'c']).assign(P));
  v = await ring.leave('b', 'nobody');
  t.is(v.epoch, 3);
  t.deepEqual(v.members, ['a', 'c']);
  v = await ring.leave('nobody');
  t.is(v.epoch, 3);
});

test('concurrent joins from many nodes all land, each with its own epoch; every node converges on one view', async (t) => {
  const { cluster, extra } = await clusterFixture(t);
  const rings = await Promise.all(Array.from({ length: 5 }, () => RedisRing.open({ redis: extra(), cluster, partitions: P, pollMs: 200 })));
  t.teardown(() => Promise.all(rings.map((r) => r.close())));
  const views = await Promise.all(rings.map((r, i) => r.join(`n${i}`)));
  t.deepEqual(views.map((v) => v.epoch).sort(), [1, 2, 3, 4, 5]);
  await eventually(() => rings.every((r) => r.view().epoch === 5), 3000, 'all rings at epoch 5');
  const first = rings[0]!.view();
  for (const r of rings) t.deepEqual(r.view(), first);
  t.deepEqual(first.members, ['n0', 'n1', 'n2', 'n3', 'n4']);
});

test('a change is announced: a listener on another node sees the new view, and epochs only move forward', async (t) => {
  const { cluster, extra } = await clusterFixture(t);
  const writer = await RedisRing.open({ redis: extra(), cluster, partitions: P });
  const reader = await RedisRing.open({ redis: extra(), cluster, partitions: P, pollMs: 60_000 });
  t.teardown(() => Promise.all([writer.close(), reader.close()]));
  const seen: [RingView, RingView][] = [];
  reader.onChange((v, prev) => seen.push([v, prev]));
  await writer.join('a', 'b');
  await writer.join('c');
  // pollMs is a minute here, so only the announcement can have brought these.
  await eventually(() => reader.view().epoch === 2, 3000, 'reader at epoch 2');
  t.true(seen.every(([v, prev]) => v.epoch > prev.epoch));
  t.deepEqual(reader.view().members, ['a', 'b', 'c']);
});

test('members the membership declared dead are taken off the ring, once, whoever asks', async (t) => {
  const { redis, cluster, extra } = await clusterFixture(t);
  const alive = await RedisMembership.join({ redis, cluster, self: 'alive', address: 'x:1' });
  const doomed = await RedisMembership.join({ redis: extra(), cluster, self: 'doomed', address: 'x:2', heartbeatMs: 100, deadAfterMs: 300 });
  const ring1 = await RedisRing.open({ redis, cluster, partitions: P });
  const ring2 = await RedisRing.open({ redis: extra(), cluster, partitions: P });
  t.teardown(() => Promise.all([alive.close(), ring1.close(), ring2.close()]));
  await ring1.join('alive', 'doomed');
  t.is((await ring1.removeDead()).epoch, 1, 'both alive: nothing removed');
  await doomed.close(); // stops heartbeating, as a crash would
  await eventually(() => !alive.members().includes('doomed'), 3000, 'doomed declared dead');
  const [v1, v2] = await Promise.all([ring1.removeDead(), ring2.removeDead()]);
  t.is(Math.max(v1.epoch, v2.epoch), 2);
  await eventually(() => ring1.view().epoch === 2 && ring2.view().epoch === 2, 3000, 'both at epoch 2');
  t.deepEqual(ring1.view().members, ['alive']);
  t.true(ring1.view().owners.every((o) => o === 'alive'));
});

test('after concurrent churn (joins, leaves, dead removal from five nodes), every node agrees on epoch, members and owners', async (t) => {
  const { redis, cluster, extra } = await clusterFixture(t);
  const rings = await Promise.all(Array.from({ length: 5 }, () => RedisRing.open({ redis: extra(), cluster, partitions: P, pollMs: 100 })));
  t.teardown(() => Promise.all(rings.map((r) => r.close())));
  const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
  const deadline = Date.now() + 1500;
  let ops = 0;
  await Promise.all(
    rings.map(async (ring, i) => {
      let seed = i + 7;
      const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
      while (Date.now() < deadline) {
        const id = ids[Math.floor(rand() * ids.length)]!;
        const r = rand();
        if (r < 0.45) await ring.join(id);
        else if (r < 0.9) await ring.leave(id);
        else await ring.removeDead(); // nobody heartbeats here: takes everyone off
        ops++;
      }
    }),
  );
  const truth = await redis.smembers(rings[0]!.keys.ringMembers);
  const epoch = Number(await redis.hget(rings[0]!.keys.ringMeta, 'epoch'));
  await eventually(() => rings.every((r) => r.view().epoch === epoch), 3000, `every node at epoch ${epoch}`);
  t.log(`${ops} ring operations, final epoch ${epoch}`);
  for (const r of rings) {
    t.deepEqual(r.view().members, truth.sort());
    t.deepEqual(r.view().owners, new Ring(truth).assign(P));
  }
});
