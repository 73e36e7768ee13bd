// WHO over the cluster's real membership (RedisMembership against the real Redis): three WHO
// servers in one process, each with its own membership as separate nodes would have. Clients spread
// over the servers see the same WHO everywhere within 2 s; a node that dies stops counting within 3 s.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisMembership } from '../../../runtime/cluster/redis-membership.js';
import { WhoServer } from '../../../gateways/who/server.js';
import { RawClient, eventually, silentLog } from './helpers.js';

const REDIS_URL = process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379';

async function dropCluster(redis: Redis, cluster: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `troupe:{${cluster}}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

test('three servers on RedisMembership: same WHO from each, connects within 2 s, a dead node dropped within 3 s', async (t) => {
  const cluster = `who-test-${randomBytes(5).toString('hex')}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  const memberships: RedisMembership[] = [];
  const servers: WhoServer[] = [];
  const clients: RawClient[] = [];
  // Under a loaded machine the shared connection may drop mid-teardown; ioredis reconnects, and
  // teardown must not turn that into a failure of what the test checked.
  redis.on('error', () => {});
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(memberships.map((m) => m.leave().catch(() => {})));
    await dropCluster(redis, cluster).catch((err: Error) => t.log(`cleanup of ${cluster} failed: ${err.message}`));
    await redis.quit().catch(() => redis.disconnect());
  });

  const ports: number[] = [];
  for (const name of ['a', 'b', 'c']) {
    const self = `${cluster}-${name}`;
    const membership = await RedisMembership.join({ redis, cluster, self, address: `127.0.0.1:${7000 + ports.length}`, log: silentLog });
    memberships.push(membership);
    const server = new WhoServer({ host: '127.0.0.1', port: 0, nodeId: self, membership, idleTimeoutMs: 0, maxConnections: 100, maxLineBytes: 64, log: silentLog });
    servers.push(server);
    ports.push(await server.listen());
  }
  // 1 client on a, 2 on b, 3 on c; the first of each asks.
  const askers: RawClient[] = [];
  for (const [i, port] of ports.entries()) {
    for (let k = 0; k <= i; k++) {
      const c = await RawClient.connect(port);
      clients.push(c);
      if (k === 0) askers.push(c);
    }
  }
  const whoEverywhere = () => Promise.all(askers.map((c) => c.ask('WHO')));
  await eventually(async () => (await whoEverywhere()).every((n) => n === '6'), 3000, 'WHO = 6 on every server');
  t.deepEqual(await Promise.all(askers.map((c) => c.ask('WHERE'))), memberships.map((m) => m.self));

  // A connect on c shows on a and b within 2 s.
  const connectedAt = Date.now();
  clients.push(await RawClient.connect(ports[2]!));
  await eventually(async () => (await whoEverywhere()).every((n) => n === '7'), 2000, 'WHO = 7 on every server');
  t.log(`a connect on c reflected on every server after ${Date.now() - connectedAt} ms`);

  // b dies: its heartbeat stops (as after SIGKILL), its clients are gone with it.
  const killedAt = Date.now();
  await memberships[1]!.close();
  await eventually(async () => {
    const [a, , c] = await whoEverywhere();
    return a === '5' && c === '5';
  }, 3000, 'WHO = 5 on a and c');
  t.log(`dead node dropped from WHO after ${Date.now() - killedAt} ms`);
});

test('WHO asked right after connecting counts the asking connection, before the gauge reaches Redis', async (t) => {
  const cluster = `who-test-${randomBytes(5).toString('hex')}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  redis.on('error', () => {});
  const self = `${cluster}-a`;
  const membership = await RedisMembership.join({ redis, cluster, self, address: '127.0.0.1:7000', log: silentLog });
  const server = new WhoServer({ host: '127.0.0.1', port: 0, nodeId: self, membership, idleTimeoutMs: 0, maxConnections: 100, maxLineBytes: 64, log: silentLog });
  const clients: RawClient[] = [];
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop();
    await membership.leave().catch(() => {});
    await dropCluster(redis, cluster).catch((err: Error) => t.log(`cleanup of ${cluster} failed: ${err.message}`));
    await redis.quit().catch(() => redis.disconnect());
  });
  const port = await server.listen();
  // The contract counts the asking connection: an embedded node answers 1 here, and so must a cluster.
  const first = await RawClient.connect(port);
  clients.push(first);
  t.is(await first.ask('WHO'), '1');
  const second = await RawClient.connect(port);
  clients.push(second);
  t.is(await second.ask('WHO'), '2');
});
