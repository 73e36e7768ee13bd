// `troupe recover` against a cluster's keys in the shared Redis (its own prefix): the status of a
// cluster that is not lost, of one marked lost with what a node published, --accept, and settings
// refused with what to do.

import test from 'ava';
import { execFile } from 'node:child_process';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from '../cluster/helpers.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

function troupe(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TROUPE, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

test('troupe recover shows a lost cluster, who published and who is missing; --accept lets the nodes serve again', async (t) => {
  const redis = newRedis();
  const cluster = uniqueCluster();
  t.teardown(async () => {
    await dropCluster(redis, cluster);
    redis.disconnect();
  });
  const base = ['recover', '--redis', REDIS_URL, '--cluster', cluster];

  const fine = await troupe(base);
  t.is(fine.code, 0, fine.stderr);
  t.regex(fine.stdout, /is not marked lost: nothing to recover/);

  // As a node with history leaves it when it meets an empty Redis (runtime/cluster/cluster-incarnation.ts).
  const prefix = `troupe:{${cluster}}:`;
  await redis.hset(prefix + 'incarnation', 'id', 'new1', 'lost', 'node n1 remembers cluster incarnation old1 and Redis held none', 'lost_at', String(Date.now()), 'stale', ' old1');
  await redis.hset(prefix + 'rebuild', '3', '7|n1', '4', '7|n1', 'by:n1', JSON.stringify({ at: Date.now(), served: 2, newest: 2, states: 5, ringMembers: ['n1', 'n2'], nodeIds: ['n1'] }));
  const lost = await troupe([...base, '--partitions', '16']);
  t.is(lost.code, 0, lost.stderr);
  t.regex(lost.stdout, /is marked lost since .*: node n1 remembers/);
  t.regex(lost.stdout, /published by n1: 2 partitions served last, newest for 2, 5 states/);
  t.regex(lost.stdout, /2 of 16 partitions claimed/);
  t.regex(lost.stdout, /on the last ring but not published: n2/);
  t.regex(lost.stdout, /troupe recover --accept/);

  const accepted = await troupe([...base, '--accept', '--json']);
  t.is(accepted.code, 0, accepted.stderr);
  t.like(JSON.parse(accepted.stdout), { lost: 'node n1 remembers cluster incarnation old1 and Redis held none', missing: ['n2'], accepted: true });
  const [id, stillLost, replaces] = await redis.hmget(prefix + 'incarnation', 'id', 'lost', 'replaces');
  t.is(id, 'new1');
  t.is(stillLost, null);
  t.deepEqual(replaces!.trim().split(/ +/), ['old1'], 'a node remembering old1 is welcome under new1 from now on');
  t.is(await redis.exists(prefix + 'rebuild'), 0);
});

test('troupe recover refuses a bad cluster name and an unreachable Redis with what to do', async (t) => {
  const bad = await troupe(['recover', '--cluster', 'a b']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /setting cluster: cluster name "a b" must be/);
  const down = await troupe(['recover', '--redis', 'redis://127.0.0.1:1', '--cluster', 'x']);
  t.is(down.code, 1);
  t.regex(down.stderr, /troupe recover: cluster "x" at redis:\/\/127\.0\.0\.1:1: /);
});
