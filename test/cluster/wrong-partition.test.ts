// A frame on the cluster port names each message's partition; the receiver computes it from the
// actor id and refuses a message that disagrees or is out of range (issue #20, item 3). Sent over a
// real cluster port by a raw link: before the fix, a tell with a wrong partition activated the
// actor a second time, in the shard of the wrong partition.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import test, { type ExecutionContext } from 'ava';
import { encodeBatch, encodeHello } from '../../runtime/cluster/frame-codec.js';
import { NO_REPLY } from '../../runtime/envelope.js';
import { startNode, type TroupeNode } from '../../runtime/index.js';
import { partitionOf } from '../../runtime/partition.js';
import { protoPath } from '../../runtime/paths.js';
import { tempDir, TICKER } from '../runtime/helpers.js';
import { dropCluster, eventually, newRedis, quietLog, REDIS_URL, uniqueCluster } from './helpers.js';

const P = 64;

function rawLink(port: number): grpc.ClientDuplexStream<{ data: Buffer }, { data: Buffer }> {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('cluster.proto'), { keepCase: true }));
  const Ctor = ((pkg['troupe'] as grpc.GrpcObject)['cluster'] as grpc.GrpcObject)['Cluster'] as grpc.ServiceClientConstructor;
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { link(): grpc.ClientDuplexStream<{ data: Buffer }, { data: Buffer }> };
  const link = client.link();
  link.on('error', () => {});
  return link;
}

async function clusterNode(t: ExecutionContext): Promise<{ node: TroupeNode; name: string }> {
  const name = uniqueCluster();
  const node = await startNode({
    dataDir: tempDir(),
    shards: 2,
    partitions: P,
    askTimeoutMs: 10_000,
    actorModules: [TICKER],
    cluster: { redis: REDIS_URL, name, host: '127.0.0.1', port: 0 },
    log: quietLog,
  });
  t.teardown(async () => {
    await node.stop();
    const redis = newRedis();
    await dropCluster(redis, name);
    redis.disconnect();
  });
  await eventually(() => Array.from({ length: P }, (_, p) => p).every((p) => node.servesPartition(p)), 10_000, 'the lone node serves every partition');
  return { node, name };
}

test('a tell over the cluster port naming the wrong partition is refused: the actor is activated once', async (t) => {
  const { node, name } = await clusterNode(t);
  const id = 'ticker/cart-1';
  const right = partitionOf(id, P);
  // A partition of the other shard: trusted, it would make a second activation there.
  const wrong = (right + 1) % P;
  const link = rawLink(node.clusterPort!);
  t.teardown(() => link.end());
  link.write({ data: encodeHello('hostile', name, P) });
  link.write({ data: encodeBatch([id, wrong, 'hit', null, NO_REPLY, 0, 'ticker/other', P + 5, 'hit', null, NO_REPLY, 0]) });
  // A good message after the bad ones shows that the frame was read (and the link stayed up).
  link.write({ data: encodeBatch(['ticker/after', partitionOf('ticker/after', P), 'hit', null, NO_REPLY, 0]) });
  await eventually(async () => (await node.listActors({ limit: 1000 })).includes('ticker/after'), 10_000, 'the good message arrived');
  await node.refFromId(id).ask('hit');
  const actors = await node.listActors({ limit: 1000 });
  t.is(actors.filter((a) => a === id).length, 1, `listed ${actors.filter((a) => a === id).length} times: ${actors.join(', ')}`);
  t.false(actors.includes('ticker/other'), 'a partition out of range is refused too');
});
