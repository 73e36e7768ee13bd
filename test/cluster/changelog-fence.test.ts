// The partition changelog's fence against the real Redis, with leases driven by hand: a write is
// taken only from the lease's holder, and only from the tenure that holds it now. A write of an
// earlier tenure that was delayed (queued in a client while Redis was away, say) must not land
// after the same node took the partition again, over what another node logged meanwhile.

import test from 'ava';
import { PartitionChangelog, type LoggedRow } from '../../runtime/cluster/partition-changelog.js';
import { PartitionLeases } from '../../runtime/cluster/leases.js';
import { RedisRing } from '../../runtime/cluster/redis-ring.js';
import { clusterFixture, quietLog, REDIS_URL, sleep } from './helpers.js';

const P = 16;
const p = 3;
const row = (state: string, epoch: number): LoggedRow => ({ id: 'counter/x', partition: p, blob: Buffer.from(state), epoch });

async function setup(t: Parameters<typeof clusterFixture>[0]) {
  const fx = await clusterFixture(t);
  const ring = await RedisRing.open({ redis: fx.redis, cluster: fx.cluster, partitions: P });
  t.teardown(() => ring.close());
  const node = async (self: string) => {
    const leases = new PartitionLeases({ redis: fx.extra(), cluster: fx.cluster, self, partitions: P, ttlMs: 300 });
    const log = await PartitionChangelog.open(REDIS_URL, fx.cluster, self, quietLog);
    t.teardown(() => log.close());
    return { leases, log };
  };
  const logged = async (): Promise<string | undefined> => (await fx.redis.hgetBuffer(`troupe:{${fx.cluster}}:changelog:${p}`, 'counter/x'))?.toString();
  return { ring, node, logged };
}

test('a delayed write of an earlier tenure is refused after the same node took the lease again', async (t) => {
  const { ring, node, logged } = await setup(t);
  const a = await node('a');
  const b = await node('b');

  const e1 = (await ring.join('a')).epoch;
  t.deepEqual((await a.leases.grab([p], e1)).granted, [p]);
  await a.log.read([p], e1); // a's first tenure takes p over
  const delayed = row('a, first tenure', e1); // committed then, its write held up

  await sleep(350); // a pauses past its lease; b is given p and logs a newer state
  const e2 = (await ring.join('b')).epoch;
  t.deepEqual((await b.leases.grab([p], e2)).granted, [p]);
  await b.log.read([p], e2);
  t.deepEqual([...(await b.log.append([row('b', e2)]))], []);
  await b.leases.release([p]);

  const e3 = (await ring.leave('b')).epoch; // p comes back to a
  t.deepEqual((await a.leases.grab([p], e3)).granted, [p]);
  await a.log.read([p], e3);

  // Now the held-up write of a's first tenure arrives: a holds the lease, but not that tenure's.
  t.deepEqual([...(await a.log.append([delayed]))], [p]);
  t.is(await logged(), 'b', "b's state is kept");
  // The current tenure writes, also after a renewal re-tagged the lease with a newer epoch.
  const e4 = (await ring.join('c')).epoch;
  t.deepEqual((await a.leases.renew(e4)).renewed, [p]);
  t.deepEqual([...(await a.log.append([row('a, second tenure', e3)]))], []);
  t.is(await logged(), 'a, second tenure');
});

test('a write from a node that does not hold the lease is refused, whatever its epoch', async (t) => {
  const { ring, node, logged } = await setup(t);
  const a = await node('a');
  const b = await node('b');
  const e1 = (await ring.join('a', 'b')).epoch;
  await a.leases.grab([p], e1);
  await a.log.read([p], e1);
  t.deepEqual([...(await a.log.append([row('a', e1)]))], []);
  t.deepEqual([...(await b.log.append([row('b', e1 + 5)]))], [p]);
  t.is(await logged(), 'a');
});
