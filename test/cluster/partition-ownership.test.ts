// The ownership control loop of several in-process nodes against the real Redis: partitions follow
// the ring through joins, a graceful leave (with hand-off) and a crash, and no partition is ever
// served by two nodes at once (served = OWNED_HERE in the table and the lease within its deadline).

import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { OWNED_HERE } from '../../runtime/envelope.js';
import { PartitionLeases } from '../../runtime/cluster/leases.js';
import { PartitionOwnership } from '../../runtime/cluster/partition-ownership.js';
import { RedisMembership } from '../../runtime/cluster/redis-membership.js';
import { RedisRing } from '../../runtime/cluster/redis-ring.js';
import type { PartitionMove } from '../../runtime/cluster/ring.js';
import { clusterFixture, eventually, quietLog } from './helpers.js';

const P = 64;

test('partitions follow the ring through joins, a graceful leave and a crash, never served twice', async (t) => {
  const { cluster, extra } = await clusterFixture(t);
  interface TestNode {
    id: string;
    ownership: Int32Array;
    leases: PartitionLeases;
    owner: PartitionOwnership;
    membership: RedisMembership;
    ring: RedisRing;
    handedOff: PartitionMove[];
  }
  const nodes: TestNode[] = [];
  const start = async (id: string): Promise<TestNode> => {
    const redis = extra();
    const membership = await RedisMembership.join({ redis, cluster, self: id, address: 'x:0', heartbeatMs: 200, deadAfterMs: 1000, pollMs: 100, log: quietLog });
    const ring = await RedisRing.open({ redis, cluster, partitions: P, pollMs: 200, log: quietLog });
    const leases = new PartitionLeases({ redis, cluster, self: id, partitions: P, ttlMs: 1000, log: quietLog });
    const ownership = new Int32Array(P);
    const handedOff: PartitionMove[] = [];
    const owner = new PartitionOwnership({
      self: id,
      ring,
      leases,
      ownership,
      membership,
      handOff: async (moves) => void handedOff.push(...moves),
      log: quietLog,
    });
    const n = { id, ownership, leases, owner, membership, ring, handedOff };
    nodes.push(n);
    await owner.start();
    return n;
  };
  t.teardown(async () => {
    for (const n of nodes) {
      n.owner.stop();
      await n.ring.close();
      await n.membership.close();
    }
  });

  const live = new Set<TestNode>();
  const servedBy = (p: number, among: Iterable<TestNode>): string[] =>
    [...among].filter((n) => n.ownership[p] === OWNED_HERE && n.leases.holds(p)).map((n) => n.id);
  let doubleServed = 0;
  let samples = 0;
  // Every node ever started counts here, crashed and departed ones too.
  const sampler = setInterval(() => {
    samples++;
    for (let p = 0; p < P; p++) if (servedBy(p, nodes).length > 1) doubleServed++;
  }, 5);
  t.teardown(() => clearInterval(sampler));
  const settled = async (what: string): Promise<void> =>
    eventually(
      () => {
        const views = [...live].map((n) => n.ring.view());
        if (views.some((v) => v.epoch !== views[0]!.epoch)) return false;
        return views[0]!.owners.every((owner, p) => {
          const s = servedBy(p, live);
          return s.length === 1 && s[0] === owner;
        });
      },
      10_000,
      what,
    );

  const n1 = await start('n1');
  live.add(n1);
  await settled('n1 serves everything');
  t.is(n1.owner.serving().length, P);

  live.add(await start('n2'));
  live.add(await start('n3'));
  await settled('three nodes share the partitions as the ring says');
  t.true(n1.handedOff.length > 0 && n1.handedOff.every((m) => m.from === 'n1' && m.to !== 'n1'));

  const n2 = nodes[1]!;
  const n2Served = n2.owner.serving();
  n2.handedOff.length = 0; // n2 may have handed some to n3 when n3 joined
  await n2.owner.leave();
  live.delete(n2);
  await settled('n2 left gracefully');
  t.deepEqual(n2.handedOff.map((m) => m.partition).sort((a, b) => a - b), n2Served);
  t.deepEqual(n2.owner.serving(), []);

  const n3 = nodes[2]!;
  n3.owner.stop(); // a crash: no hand-off, no release, no more heartbeats
  await n3.membership.close();
  const crashedAt = Date.now();
  live.delete(n3);
  await settled('n1 took over the crashed n3');
  t.log(`after the crash, n1 served everything again within ${Date.now() - crashedAt} ms (death 1000 ms + lease TTL 1000 ms)`);
  t.is(n1.owner.serving().length, P);
  t.log(`${samples} samples of ${P} partitions`);
  t.is(doubleServed, 0);
});

test('a node paused past its leases (SIGSTOP) loses them, and on SIGCONT is evicted, lets go and rejoins', async (t) => {
  const { cluster, extra } = await clusterFixture(t);
  const redis = extra();
  const membership = await RedisMembership.join({ redis, cluster, self: 'parent', address: 'x:0', heartbeatMs: 200, deadAfterMs: 1000, pollMs: 100, log: quietLog });
  const ring = await RedisRing.open({ redis, cluster, partitions: 16, pollMs: 200, log: quietLog });
  const leases = new PartitionLeases({ redis, cluster, self: 'parent', partitions: 16, ttlMs: 1000, log: quietLog });
  const ownership = new Int32Array(16);
  const owner = new PartitionOwnership({ self: 'parent', ring, leases, ownership, membership, log: quietLog });
  t.teardown(async () => {
    owner.stop();
    await ring.close();
    await membership.close();
  });
  await owner.start();
  const serving = (): number => Array.from({ length: 16 }, (_, p) => p).filter((p) => ownership[p] === OWNED_HERE && leases.holds(p)).length;

  const script = fileURLToPath(new URL('./fixtures/ownership-process.js', import.meta.url));
  const child = spawn(process.execPath, [script, cluster, 'child', '16'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TROUPE_LOG_LEVEL: 'silent' } });
  t.teardown(() => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
  const lines: string[] = [];
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)));
  const childServing = (): number => Number(lines.filter((l) => l.startsWith('serving ')).at(-1)?.slice(8) ?? -1);
  const split = (): boolean => {
    const mine = ring.view().owners.filter((o) => o === 'parent').length;
    return mine > 0 && mine < 16 && serving() === mine && childServing() === 16 - mine;
  };
  await eventually(split, 10_000, 'parent and child share the partitions');

  child.kill('SIGSTOP');
  await eventually(() => serving() === 16, 10_000, 'parent serves everything while the child is paused');
  const linesBefore = lines.length;
  child.kill('SIGCONT');
  await eventually(() => lines.includes('evicted'), 5000, 'child told it was evicted');
  // Its first reports after the pause must not claim what the parent serves now.
  const firstAfter = lines.slice(linesBefore).find((l) => l.startsWith('serving '));
  t.is(firstAfter, 'serving 0');
  await eventually(split, 10_000, 'parent and child share the partitions again');
  t.pass();
});
