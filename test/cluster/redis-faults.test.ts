// Redis faults, each against a redis-server of the test's own (never the shared one): the ring
// epoch never goes backwards when Redis lost it; a Redis restarted empty serves nothing until an
// operator accepts, and then every acknowledged state comes back from the nodes' snapshots (the
// newest tenure wins); a paused Redis costs each lease at its deadline, with no busy loop, and the
// partitions come back by themselves.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { join } from 'node:path';
import { acceptDataLoss, ClusterIncarnation, recoveryStatus } from '../../runtime/cluster/cluster-incarnation.js';
import { ClusterDataLost, IncarnationTooYoung, PartitionLeases, StaleEpoch } from '../../runtime/cluster/leases.js';
import { RedisRing } from '../../runtime/cluster/redis-ring.js';
import { InspectSession } from '../../runtime/inspector/session.js';
import { eventually, quietLog, sleep, uniqueCluster } from './helpers.js';
import { OwnRedis } from './own-redis.js';
import { TestCluster, type TestNode } from './test-cluster.js';
import { tempDir } from '../common.js';

const P = 64;

function client(t: Parameters<typeof OwnRedis.start>[0], url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, commandTimeout: 1000 });
  redis.on('error', () => {});
  t.teardown(() => redis.disconnect());
  return redis;
}

/** User + system CPU time of a process so far, in ms (Linux /proc). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of stat; here counted from the state field (3).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

test('a ring whose epoch Redis lost is raised above every view: the epoch never goes backwards, and leases are granted again', async (t) => {
  const own = await OwnRedis.start(t);
  const cluster = uniqueCluster();
  const ring = await RedisRing.open({ redis: client(t, own.url), cluster, partitions: P, pollMs: 100, log: quietLog });
  t.teardown(() => ring.close());
  for (const n of ['a', 'b', 'c', 'd']) await ring.join(n);
  await ring.leave('d');
  t.is(ring.view().epoch, 5);

  await own.restart(); // empty: the ring, its epoch and every lease are gone
  const fresh = await RedisRing.open({ redis: client(t, own.url), cluster, partitions: P, pollMs: 100, log: quietLog });
  t.teardown(() => fresh.close());
  await fresh.join('a'); // a node rejoining after the restart counts from what Redis has: epoch 1

  // (The old view may raise the empty ring first, before a's join: then the join counts on from it.)
  await eventually(() => ring.view().members.length === 1, 5000, 'the old view follows the ring Redis holds now');
  const raised = ring.view();
  t.true(raised.epoch > 5, `epoch ${raised.epoch} after 5`);
  t.deepEqual(raised.members, ['a']);
  t.true(ring.epochRaises >= 1);
  await eventually(() => fresh.view().epoch === raised.epoch, 5000, 'the other ring adopts the raised epoch');

  // Leases at the raised epoch are granted (at the old epoch 5 they would be refused forever).
  const leases = new PartitionLeases({ redis: client(t, own.url), cluster, self: 'a', partitions: P, log: quietLog });
  const err = await t.throwsAsync(leases.grab([1], 5));
  t.true(err instanceof StaleEpoch);
  t.deepEqual((await leases.grab([1, 2], raised.epoch)).granted, [1, 2]);
  t.is(leases.staleEpochRefusals, 1);
});

test('no lease in a Redis without this node\'s incarnation, and none during the first TTL of a new one (a holder Redis forgot may still serve)', async (t) => {
  const own = await OwnRedis.start(t);
  const cluster = uniqueCluster();
  const redis = client(t, own.url);
  const dataDir = tempDir('troupe-incarnation-');
  const ring = await RedisRing.open({ redis, cluster, partitions: P, log: quietLog });
  t.teardown(() => ring.close());
  const { epoch } = await ring.join('a');
  const incarnation = await ClusterIncarnation.open({ redis, cluster, self: 'a', dataDir, shards: 0, log: quietLog });
  const leases = new PartitionLeases({ redis, cluster, self: 'a', partitions: P, ttlMs: 800, incarnation: () => incarnation.expected(), log: quietLog });
  const young = await t.throwsAsync(leases.grab([1], epoch));
  t.true(young instanceof IncarnationTooYoung, young?.message);
  await sleep(900);
  t.deepEqual((await leases.grab([1], epoch)).granted, [1]);

  await own.restart();
  const raised = (await ring.join('a')).epoch;
  const lost = await t.throwsAsync(leases.grab([2], raised));
  t.true(lost instanceof ClusterDataLost, lost?.message);
  // The same data directory opened again (a restarted node) marks the cluster lost.
  const again = await ClusterIncarnation.open({ redis, cluster, self: 'a2', dataDir, shards: 0, log: quietLog });
  t.regex(again.lost(), /node a2 remembers cluster incarnation/);
});

test('a renewal stuck on a paused Redis does not keep leases alive: they lapse at their local deadline', async (t) => {
  const own = await OwnRedis.start(t);
  const cluster = uniqueCluster();
  // No command timeout on this client: only the lease code can give up on a hung call.
  const redis = new Redis(own.url);
  redis.on('error', () => {});
  t.teardown(() => redis.disconnect());
  const ring = await RedisRing.open({ redis, cluster, partitions: P, log: quietLog });
  t.teardown(() => ring.close());
  const { epoch } = await ring.join('a');
  const deadlines = new Float64Array(P);
  const leases = new PartitionLeases({ redis, cluster, self: 'a', partitions: P, ttlMs: 600, deadlines, log: quietLog });
  t.deepEqual((await leases.grab([3, 4], epoch)).granted, [3, 4]);
  const lost: number[] = [];
  leases.startRenewing({ epoch: () => epoch, refresh: async () => epoch, onLost: (ps) => lost.push(...ps), everyMs: 100 });
  t.teardown(() => leases.stopRenewing());
  await sleep(300);
  own.pause();
  const pausedAt = Date.now();
  t.teardown(() => own.resume());
  await eventually(() => lost.length === 2, 5000, 'both leases lapsed');
  t.true(Date.now() - pausedAt < 2000, `lapsed ${Date.now() - pausedAt} ms into the pause (TTL 600 ms)`);
  t.deepEqual(lost.sort(), [3, 4]);
  t.is(deadlines[3], 0);
  t.false(leases.holds(3));
  own.resume();
  // Redis back: the same node grabs them again.
  await eventually(async () => (await leases.grab([3, 4], epoch)).granted.length === 2, 10_000, 'grabbed again after SIGCONT');
});

/** Asks until the answer is a value (the node serves it) or `timeoutMs` passed. */
async function askUntilServed(node: TestNode, id: string, handler: string, message?: unknown, timeoutMs = 20_000): Promise<unknown> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await node.ask(id, handler, message);
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(200);
    }
  }
}

test('Redis paused past the lease TTL: the node serves until each deadline, then refuses at once with PARTITION_UNAVAILABLE, not ready, without busy looping; back by itself on SIGCONT', async (t) => {
  const own = await OwnRedis.start(t);
  const cluster = new TestCluster(t, { redis: own.url, inspector: true });
  const [a] = await cluster.start(1);
  t.teardown(() => own.resume());
  await eventually(async () => (await a!.notReady()) === null, 20_000, 'the node is ready');
  const keys = Array.from({ length: 24 }, (_, i) => `counter/p${i}`);
  for (const k of keys) t.is(await a!.ask(k, 'add', 5), 5);

  const pid = a!.child.pid!;
  own.pause();
  const pausedAt = Date.now();
  // The leases are still valid by the node's clock: volatile actors are served.
  const early = await a!.ask('ticker/early', 'hit').then(
    () => 'served',
    (err: Error) => err.message,
  );
  const earlyMs = Date.now() - pausedAt;
  if (earlyMs < 1000) t.is(early, 'served', `asked ${earlyMs} ms into the pause`);
  else t.log(`the first ask took ${earlyMs} ms (busy machine): not checked`);

  await sleep(3000); // past the TTL (2 s)
  const cpuBefore = cpuMs(pid);
  const measuredFrom = Date.now();
  const refusedAt = Date.now();
  const refused = await a!.ask('ticker/late', 'hit').then(
    () => 'served',
    (err: Error) => err.message,
  );
  t.regex(refused, /PARTITION_UNAVAILABLE|served by no node/, 'asks past the deadline fail at once with a retryable error');
  t.true(Date.now() - refusedAt < 5000, `refused in ${Date.now() - refusedAt} ms, not at the ask timeout`);
  t.regex((await a!.notReady()) ?? '', /Redis has not answered|serves none/);
  t.regex(await a!.metrics(), /troupe_partitions_serving 0/);
  // The inspector says it too: served by nobody, and why.
  const inspect = new InspectSession({ seed: `127.0.0.1:${a!.clusterPort}`, timeoutMs: 10_000, askTimeoutMs: 5000 });
  const ring = (await inspect.run('ring'))!;
  t.true(ring.ok, ring.error);
  t.regex(ring.text, /served by no node: 1,024 partitions|served by no node: 1024 partitions/);
  const nodes = (await inspect.run('nodes'))!;
  t.regex(nodes.text, /serves 0 of the 1,?024 partitions the ring gives it, NOT READY: Redis has not answered/);
  await sleep(3000);
  const spent = cpuMs(pid) - cpuBefore;
  const wall = Date.now() - measuredFrom;
  t.log(`node CPU over ${wall} ms of the pause: ${spent} ms`);
  // A busy loop burned about half a core per thread; an idle node waiting on Redis burns little.
  t.true(spent < wall * 0.5, `CPU ${spent} ms over ${wall} ms`);

  own.resume();
  // Back by itself, with every acknowledged add.
  for (const k of keys) t.is(await askUntilServed(a!, k, 'get'), 5, k);
  await eventually(async () => (await a!.notReady()) === null, 20_000, 'ready again after SIGCONT');
});

test('Redis restarted empty: nothing is served and nodes say why; restarted nodes publish their snapshots, the newest tenure wins, and after troupe recover --accept every acknowledged state is back', async (t) => {
  const own = await OwnRedis.start(t);
  const cluster = new TestCluster(t, { redis: own.url, inspector: true });
  const [a] = await cluster.start(1);
  const keys = Array.from({ length: 40 }, (_, i) => `counter/r${i}`);
  // a alone serves everything: its SQLite holds every counter at 1.
  for (const k of keys) t.is(await askUntilServed(a!, k, 'add', 1), 1);
  // b joins and takes about half; the counters it takes go on to 11 there, a keeps them at 1.
  const [b] = await cluster.start(1);
  await eventually(async () => (await a!.members()).length === 2 && (await a!.notReady()) === null && (await b!.notReady()) === null, 20_000, 'both nodes serve');
  const bActors = new Set<string>();
  for (const k of keys) t.is(await askUntilServed(b!, k, 'add', 10), 11, k);
  for (const id of await b!.actors()) bActors.add(id);
  t.true(bActors.size > 0 && bActors.size < keys.length, `b serves some counters (${bActors.size})`);

  await own.restart(); // Redis comes back without the ring, the leases and every changelog
  // The running nodes notice: nothing served, not ready, and they say why.
  await eventually(async () => /Redis lost the cluster's data/.test((await a!.notReady()) ?? '') && /Redis lost/.test((await b!.notReady()) ?? ''), 20_000, 'both nodes say Redis lost the data');
  const refused = await a!.ask(keys[0]!, 'get').then(
    () => 'served',
    (err: Error) => err.message,
  );
  t.regex(refused, /PARTITION_UNAVAILABLE|CLUSTER_DATA_LOST|served by no node/);
  t.regex(await b!.metrics(), /troupe_cluster_data_lost 1/);
  const inspect = new InspectSession({ seed: `127.0.0.1:${a!.clusterPort}`, timeoutMs: 10_000, askTimeoutMs: 5000 });
  const partitions = (await inspect.run('partitions'))!;
  t.regex(partitions.text, /served by nobody +\d+: .*Redis does not hold cluster incarnation/);

  const redis = client(t, own.url);
  await eventually(async () => (await recoveryStatus(redis, cluster.name, 1024)).published.length === 2, 20_000, 'the running nodes published what they stored');

  // The nodes are restarted (as after the failure in the issue), a first: it must not take b's counters at 1.
  a!.kill('SIGKILL');
  b!.kill('SIGKILL');
  await Promise.all([a!.exited, b!.exited]);
  // Past their heartbeat deadline: a2 meets a membership without them and a ring still naming them.
  await sleep(2500);
  const a2 = await cluster.restart(a!);
  await sleep(1500);
  t.not((await recoveryStatus(redis, cluster.name, 1024)).lost, '');
  t.regex((await a2.notReady()) ?? '', /Redis lost/);
  // Once the ring has dropped the killed nodes, a2 owns every partition and serves none of them.
  await eventually(async () => /PARTITION_UNAVAILABLE|served by no node/.test(await a2.ask(keys[0]!, 'get').then(() => 'served', (err: Error) => err.message)), 30_000, 'asks to a2 refused');
  const b2 = await cluster.restart(b!);
  await eventually(async () => {
    const status = await recoveryStatus(redis, cluster.name, 1024);
    return status.published.some((p) => p.node === a2.nodeId) && status.published.some((p) => p.node === b2.nodeId) && status.missing.length === 0;
  }, 20_000, 'the restarted nodes published too, and no node of the last ring is missing');

  if (process.env.DEBUG_REBUILD) {
    const rb = await redis.hgetall(`troupe:{${cluster.name}}:rebuild`);
    t.log(JSON.stringify(Object.entries(rb).filter(([k]) => k.startsWith('by:'))));
    t.log(Object.keys(rb).length, (await redis.keys(`troupe:{${cluster.name}}:changelog:*`)).length);
  }
  t.true(await acceptDataLoss(redis, cluster.name));
  for (const k of keys) t.is(await askUntilServed(a2, k, 'get'), 11, k);
  for (const k of keys) t.is(await askUntilServed(b2, k, 'get'), 11, k);
  await eventually(async () => (await a2.notReady()) === null && (await b2.notReady()) === null, 20_000, 'both ready');
});
