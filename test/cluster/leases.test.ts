// Partition leases against the real Redis: fencing (two contenders never both hold a partition),
// expiry of a paused holder, refusal of a stale epoch, bulk renewal, and release.

import test from 'ava';
import { PartitionLeases, StaleEpoch } from '../../runtime/cluster/leases.js';
import { RedisRing } from '../../runtime/cluster/redis-ring.js';
import { clusterFixture, sleep } from './helpers.js';

const P = 64;

async function setup(t: Parameters<typeof clusterFixture>[0], ttlMs = 2000) {
  const fx = await clusterFixture(t);
  const ring = await RedisRing.open({ redis: fx.redis, cluster: fx.cluster, partitions: P });
  t.teardown(() => ring.close());
  const { epoch } = await ring.join('a', 'b', 'c');
  const lease = (self: string, o: { ttlMs?: number; deadlines?: Float64Array } = {}) =>
    new PartitionLeases({ redis: fx.extra(), cluster: fx.cluster, self, partitions: P, ttlMs: o.ttlMs ?? ttlMs, deadlines: o.deadlines });
  return { ...fx, ring, epoch, lease };
}

test('two contenders grabbing the same partitions at once: each partition goes to exactly one', async (t) => {
  const { epoch, lease } = await setup(t);
  const a = lease('a');
  const b = lease('b');
  const all = Array.from({ length: P }, (_, p) => p);
  for (let round = 0; round < 5; round++) {
    const [ra, rb] = await Promise.all([a.grab(all, epoch), b.grab(all, epoch)]);
    t.is(ra.granted.length + rb.granted.length, P);
    for (const p of all) t.not(a.holds(p), b.holds(p));
    t.true(rb.heldElsewhere.every((h) => h.node === 'a' && h.epoch === epoch) || ra.heldElsewhere.every((h) => h.node === 'b'));
    await a.releaseAll();
    await b.releaseAll();
  }
});

test('a paused holder loses its lease after the TTL; another node takes it; the holder learns it lost it', async (t) => {
  const { epoch, lease } = await setup(t);
  const deadlines = new Float64Array(P);
  const a = lease('a', { ttlMs: 300, deadlines });
  const b = lease('b', { ttlMs: 300 });
  t.deepEqual((await a.grab([1, 2], epoch)).granted, [1, 2]);
  t.true(a.holds(1));
  t.true(deadlines[1]! > performance.timeOrigin + performance.now());
  const refused = await b.grab([1], epoch);
  t.deepEqual(refused.heldElsewhere, [{ partition: 1, node: 'a', epoch }]);

  await sleep(350); // a "pauses": no renewal
  t.false(a.holds(1), 'the local deadline passed before Redis expired the lease');
  t.deepEqual((await b.grab([1], epoch)).granted, [1]);
  const renewal = await a.renew(epoch);
  t.deepEqual(renewal.lost, [1, 2]);
  t.false(a.holds(1));
  t.is(deadlines[1], 0);
  t.deepEqual(await a.holderOf(1), { partition: 1, node: 'b', epoch });
});

test('grabs and renewals at a stale epoch are refused; after a refresh they pass', async (t) => {
  const { ring, epoch, lease } = await setup(t);
  const a = lease('a');
  await a.grab([5], epoch);
  const next = (await ring.join('d')).epoch;
  const grab = await t.throwsAsync(a.grab([6], epoch), { instanceOf: StaleEpoch });
  t.is(grab?.current, next);
  t.regex(grab!.message, /refresh the ring/);
  await t.throwsAsync(a.renew(epoch), { instanceOf: StaleEpoch });
  t.true(a.holds(5), 'a refused renewal takes nothing away before the TTL');
  t.deepEqual((await a.renew(next)).renewed, [5]);
  t.deepEqual(await a.holderOf(5), { partition: 5, node: 'a', epoch: next });
  await t.throwsAsync(a.grab([6], next + 1), { instanceOf: StaleEpoch }, 'an epoch from the future is refused too');
});

test('one bulk renewal keeps all held leases alive past their TTL', async (t) => {
  const { epoch, lease } = await setup(t);
  // A TTL of 1 s renewed every quarter of it: three TTLs pass, on a loaded machine too.
  const a = lease('a', { ttlMs: 1000 });
  const all = Array.from({ length: P }, (_, p) => p);
  await a.grab(all, epoch);
  const lost: number[] = [];
  a.startRenewing({ epoch: () => epoch, refresh: async () => epoch, onLost: (ps) => lost.push(...ps) });
  t.teardown(() => a.stopRenewing());
  await sleep(3000);
  t.deepEqual(lost, []);
  t.deepEqual(a.held(), all);
  t.is((await a.holderOf(P - 1))?.node, 'a');
});

test('release hands a partition over at once; a node cannot release a lease it does not hold', async (t) => {
  const { epoch, lease } = await setup(t);
  const a = lease('a');
  const b = lease('b');
  await a.grab([7, 8], epoch);
  t.deepEqual(await b.release([7]), [], 'b does not hold 7');
  t.is((await a.holderOf(7))?.node, 'a');
  t.deepEqual(await a.release([7]), [7]);
  t.false(a.holds(7));
  t.true(a.holds(8));
  t.deepEqual((await b.grab([7], epoch)).granted, [7]);
  await t.throwsAsync(a.grab([P], epoch), { instanceOf: RangeError });
});

test('churn: contenders grabbing, renewing, pausing and releasing never both hold a partition', async (t) => {
  const { epoch, lease } = await setup(t);
  const nodes = ['a', 'b', 'c'].map((id) => lease(id, { ttlMs: 150 }));
  const parts = [0, 1, 2, 3];
  let violations = 0;
  let checks = 0;
  const check = (): void => {
    for (const p of parts) {
      checks++;
      if (nodes.filter((n) => n.holds(p)).length > 1) violations++;
    }
  };
  const sampler = setInterval(check, 2);
  const deadline = Date.now() + 3000;
  await Promise.all(
    nodes.map(async (n, i) => {
      let seed = i + 1;
      const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
      while (Date.now() < deadline) {
        const r = rand();
        if (r < 0.4) await n.grab(parts.filter(() => rand() < 0.5), epoch);
        else if (r < 0.7) await n.renew(epoch);
        else if (r < 0.85) await n.release(n.held().filter(() => rand() < 0.5));
        else await sleep(Math.floor(rand() * 250)); // a pause, sometimes longer than the TTL
        check();
      }
    }),
  );
  clearInterval(sampler);
  t.log(`${checks} checks`);
  t.is(violations, 0);
});
