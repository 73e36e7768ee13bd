// Frames a peer can forge on the cluster port (issue #21, "frames checked"), against nodes started
// in this process (real Redis, a unique cluster): a reply to another node's pending ask, hand-offs
// from a node that did not serve the partitions or at a stale epoch (a real join's hand-off still
// goes through), a first frame that is a batch with a v8 payload, and frames over the limit.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import test, { type ExecutionContext } from 'ava';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as http2 from 'node:http2';
import pino from 'pino';
import { encodeBatch, encodeHello, FrameError } from '../../runtime/cluster/frame-codec.js';
import { ClusterTransport, LINK_REFUSED } from '../../runtime/cluster/transport.js';
import { MAIN_ORIGIN, NO_REPLY } from '../../runtime/envelope.js';
import { startNode, type TroupeNode } from '../../runtime/index.js';
import type { Logger } from '../../runtime/log.js';
import { partitionOf } from '../../runtime/partition.js';
import { protoPath } from '../../runtime/paths.js';
import { tempDir, TICKER } from '../runtime/helpers.js';
import { dropCluster, eventually, newRedis, quietLog, REDIS_URL, uniqueCluster } from './helpers.js';

const P = 64;
const HANDOFF_REFUSED = /refused by the new owner: the receiving node did not take this hand-off; its log says why/;

type RawLink = grpc.ClientDuplexStream<{ data: Buffer }, { data: Buffer }>;

function rawLink(port: number): RawLink {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('cluster.proto'), { keepCase: true }));
  const Ctor = ((pkg['troupe'] as grpc.GrpcObject)['cluster'] as grpc.GrpcObject)['Cluster'] as grpc.ServiceClientConstructor;
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1_048_576 }) as unknown as grpc.Client & { link(): RawLink };
  return client.link();
}

/** A logger that keeps what it writes at warn and above, to read the refusals' details back. */
function keptLog(): { log: Logger; lines: { msg: string; [k: string]: unknown }[] } {
  const lines: { msg: string }[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) }) as unknown as Logger;
  return { log, lines };
}

/** Nodes of one cluster in this process; stopped one at a time, and the keys dropped, at the end. */
function clusterOf(t: ExecutionContext): { name: string; start(log?: Logger): Promise<TroupeNode> } {
  const name = uniqueCluster();
  const started: TroupeNode[] = [];
  t.teardown(async () => {
    for (const n of started.reverse()) await n.stop();
    const redis = newRedis();
    await dropCluster(redis, name);
    redis.disconnect();
  });
  return {
    name,
    async start(log = quietLog) {
      const node = await startNode({
        dataDir: tempDir('troupe-forged-'),
        shards: 2,
        partitions: P,
        askTimeoutMs: 10_000,
        actorModules: [TICKER],
        cluster: { redis: REDIS_URL, name, host: '127.0.0.1', port: 0 },
        log,
      });
      started.push(node);
      return node;
    },
  };
}

/** Until every partition is served by exactly one of the nodes. */
function settled(nodes: TroupeNode[]): Promise<void> {
  return eventually(() => Array.from({ length: P }, (_, p) => p).every((p) => nodes.filter((n) => n.servesPartition(p)).length === 1), 20_000, 'every partition served by one node');
}

/** `count` ticker ids whose partitions `node` serves. */
function tickersOf(node: TroupeNode, count: number, prefix: string): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) if (node.servesPartition(partitionOf(`ticker/${prefix}${i}`, P))) ids.push(`ticker/${prefix}${i}`);
  return ids;
}

const nodeIdOf = (node: TroupeNode): string => node.inspected.cluster()!.transport.self;

test('a reply forged by a third node to another node\'s pending ask is refused, and the real reply resolves the ask', async (t) => {
  const cluster = clusterOf(t);
  const kept = keptLog();
  const a = await cluster.start(kept.log);
  const b = await cluster.start();
  await settled([a, b]);
  // Asks from a to actors on b that take a while to answer: their forwarded ids (1, 2, ...) are pending on a.
  const ids = tickersOf(b, 5, 'slow');
  const asks = ids.map((id) => a.refFromId(id).ask('hold', 1500));
  // A third "node" with the cluster's name (nothing checks a certificate here: that is TLS's part)
  // answers every ask id a could have pending.
  const hostile = rawLink(a.clusterPort!);
  hostile.on('error', () => {});
  t.teardown(() => hostile.end());
  hostile.write({ data: encodeHello('hostile-node', cluster.name, P) });
  const forged: unknown[] = [];
  for (let askId = 1; askId <= 2000; askId++) forged.push(askId, 1, 'forged');
  hostile.write({ data: encodeBatch([], forged) });
  const answers = await Promise.all(asks);
  t.deepEqual(answers, [0, 0, 0, 0, 0], 'each ask got the hit count of its actor on b, not the forged value');
  const refusals = kept.lines.filter((l) => /refused a reply from node hostile-node/.test(l.msg));
  t.is(refusals.length, 1, 'five refusals, logged once (rate-limited)');
  t.like(refusals[0], { from: 'hostile-node', sentTo: nodeIdOf(b), kind: 'reply' });
});

test('hand-offs from a node that did not serve the partitions, or at a stale epoch, are refused and not installed; a join\'s hand-off still goes through', async (t) => {
  const cluster = clusterOf(t);
  const kept = keptLog();
  const a = await cluster.start();
  const b = await cluster.start(kept.log);
  await settled([a, b]);
  const ma = a.inspected.cluster()!;
  const bId = nodeIdOf(b);
  const epoch = b.inspected.cluster()!.ring.view().epoch;
  const state = { activatedAt: 1, hits: 999, ticks: 0 };
  const [onA] = tickersOf(a, 1, 'ha');
  const [onB] = tickersOf(b, 1, 'hb');
  const pa = partitionOf(onA!, P);
  const pb = partitionOf(onB!, P);
  const reasons: RegExp[] = [];
  // A real member (a) sends, over its real link, what a hostile or confused peer could.
  // 1. At a stale epoch.
  await t.throwsAsync(ma.transport.handOff(bId, epoch - 1, [pa], [onA, pa, state]), { message: HANDOFF_REFUSED });
  reasons.push(/at ring epoch \d+ refused: the current epoch is \d+/);
  // 2. At the current epoch, partitions the ring gives to a, not b.
  await t.throwsAsync(ma.transport.handOff(bId, epoch, [pa], [onA, pa, state]), { message: HANDOFF_REFUSED });
  reasons.push(/partition \d+ is node .*'s at epoch \d+, not this node's/);
  // 3. Partitions the ring gives to b, from a node that does not hold their leases (b serves them).
  await t.throwsAsync(ma.transport.handOff(bId, epoch, [pb], [onB, pb, state]), { message: HANDOFF_REFUSED });
  reasons.push(/the lease of partition \d+ is node .*'s; only the node that served a partition hands it off/);
  // 4. Rows of a partition the hand-off does not name.
  await t.throwsAsync(ma.transport.handOff(bId, epoch, [pb], [onA, pa, state]), { message: HANDOFF_REFUSED });
  reasons.push(/a row of partition \d+, which the hand-off does not name/);
  const refusals = kept.lines.filter((l) => l.msg === 'refused a hand-off from another node').map((l) => String(l.err));
  t.is(refusals.length, 4);
  reasons.forEach((r, i) => t.regex(refusals[i]!, r));
  t.false((await b.listActors({ limit: 10_000 })).includes(onA!), 'the forged state of an actor of a is not installed on b');
  t.like(await b.refFromId(onB!).ask('state'), { hits: 0 }, 'nor over an actor b serves');

  // Real hand-offs: volatile tickers hit on a and b keep their counts when a third node joins.
  const tickers = Array.from({ length: 40 }, (_, i) => `ticker/join${i}`);
  for (const id of tickers) for (let k = 0; k < 3; k++) await a.refFromId(id).ask('hit');
  const c = await cluster.start();
  await settled([a, b, c]);
  const moved = tickers.filter((id) => c.servesPartition(partitionOf(id, P)));
  t.true(moved.length > 0, 'some tickers moved to the joining node');
  for (const id of tickers) t.like(await c.refFromId(id).ask('state'), { hits: 3 }, `${id} kept its state`);
  t.is(kept.lines.filter((l) => l.msg === 'refused a hand-off from another node').length, 4, 'no real hand-off was refused');
});

/** Counts v8.deserialize calls on buffers that hold `marker` (the codec's import is a live binding of node:v8). */
function spyOnDeserialize(t: ExecutionContext, marker: string): { calls: number } {
  const v8 = createRequire(import.meta.url)('node:v8') as typeof import('node:v8');
  const original = v8.deserialize;
  const spy = { calls: 0 };
  const needle = Buffer.from(marker);
  v8.deserialize = (buf: NodeJS.ArrayBufferView) => {
    if (Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).includes(needle)) spy.calls++;
    return original(buf);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    v8.deserialize = original;
    syncBuiltinESMExports();
  });
  return spy;
}

test.serial('a first frame that is a batch carrying a v8 payload is refused without deserializing it', async (t) => {
  const spy = spyOnDeserialize(t, 'MARKER-first-frame');
  const malformed: { from: string | undefined; err: FrameError }[] = [];
  const got: unknown[] = [];
  const node = await ClusterTransport.start({
    self: 'n1',
    cluster: 'c1',
    partitions: P,
    resolve: () => undefined,
    onBatch: (_from, m) => got.push(...m),
    onRedirect: () => {},
    onMalformed: (from, err) => malformed.push({ from, err }),
    log: quietLog,
  });
  t.teardown(() => node.close());
  const link = rawLink(node.port);
  const refused = new Promise<grpc.ServiceError>((resolve) => link.on('error', resolve));
  const id = 'ticker/x';
  link.write({ data: encodeBatch([id, partitionOf(id, P), 'hit', { evil: 'MARKER-first-frame' }, NO_REPLY, 0]) });
  const err = await refused;
  t.is(err.details, LINK_REFUSED);
  t.is(spy.calls, 0, 'the payload was never deserialized');
  t.regex(malformed[0]!.err.message, /the first frame on a link must be a hello, got a frame of kind 2/);
  t.deepEqual(got, []);

  // The same batch after a hello is decoded (the spy sees it): only the first frame is held back.
  const admitted = rawLink(node.port);
  admitted.on('error', () => {});
  t.teardown(() => admitted.end());
  admitted.write({ data: encodeHello('n2', 'c1', P) });
  admitted.write({ data: encodeBatch([id, partitionOf(id, P), 'hit', { evil: 'MARKER-first-frame' }, NO_REPLY, 0]) });
  await eventually(() => got.length === 6, 5000, 'the batch after the hello');
  t.is(spy.calls, 1);
});

/** A transport of 2 MiB frames (the least allowed), recording what arrives. */
async function smallFrames(self: string, addresses: Map<string, string>, extra: { onUnsendable?: (m: unknown[]) => void } = {}) {
  const got = { m: [] as unknown[], handOffRows: [] as unknown[], malformed: 0 };
  const node = await ClusterTransport.start({
    self,
    cluster: 'c1',
    partitions: P,
    maxFrameBytes: 2 * 1_048_576,
    resolve: (peer) => addresses.get(peer),
    onBatch: (_from, m) => void got.m.push(...m),
    onRedirect: () => {},
    onHandOff: (_from, _epoch, _partitions, rows) => void got.handOffRows.push(...rows),
    onMalformed: () => void got.malformed++,
    onUnsendable: (_peer, m) => extra.onUnsendable?.(m),
    backoff: { initialMs: 20, maxMs: 200 },
    log: quietLog,
  });
  addresses.set(self, `127.0.0.1:${node.port}`);
  return { node, got };
}

test('a frame over the limit is refused by gRPC before the node reads it; senders split what does not fit', async (t) => {
  const addresses = new Map<string, string>();
  const b = await smallFrames('b', addresses);
  t.teardown(() => b.node.close());

  // A 3 MiB frame on a 2 MiB port: the stream fails with RESOURCE_EXHAUSTED, nothing is delivered.
  const link = rawLink(b.node.port);
  const failed = new Promise<grpc.ServiceError>((resolve) => link.on('error', resolve));
  link.write({ data: encodeHello('big', 'c1', P) });
  const id = 'blob/1';
  link.write({ data: encodeBatch([id, partitionOf(id, P), 'put', 'x'.repeat(3 * 1_048_576), NO_REPLY, 0], [], 64 * 1_048_576) });
  t.is((await failed).code, grpc.status.RESOURCE_EXHAUSTED);
  t.deepEqual(b.got.m, []);

  // Before it is buffered: a frame that only announces 100 MiB (its 5-byte gRPC prefix and a few
  // bytes, over plain HTTP/2) is refused at once, without the rest ever being sent.
  const session = http2.connect(`http://127.0.0.1:${b.node.port}`);
  t.teardown(() => session.close());
  session.on('error', () => {});
  const stream = session.request({ ':method': 'POST', ':path': '/troupe.cluster.Cluster/Link', 'content-type': 'application/grpc', te: 'trailers' });
  const status = new Promise<string>((resolve) => {
    stream.on('trailers', (trailers) => resolve(String(trailers['grpc-status'])));
    stream.on('response', (headers) => headers['grpc-status'] !== undefined && resolve(String(headers['grpc-status'])));
  });
  stream.on('error', () => {});
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(100 * 1_048_576, 1);
  stream.write(Buffer.concat([prefix, Buffer.alloc(16)]));
  t.is(await status, String(grpc.status.RESOURCE_EXHAUSTED));

  // A sender with the same limit splits a batch of 8 MiB (2,048 messages of 4 KiB) into frames that
  // fit, and gives back the one message too large for any frame.
  const unsendable: unknown[] = [];
  const a = await smallFrames('a', addresses, { onUnsendable: (m) => unsendable.push(...m) });
  t.teardown(() => a.node.close());
  const blob = 'y'.repeat(4096);
  const m: unknown[] = [];
  for (let i = 0; i < 2048; i++) m.push(`blob/${i}`, partitionOf(`blob/${i}`, P), 'put', blob, NO_REPLY, 0);
  m.push('blob/huge', partitionOf('blob/huge', P), 'put', 'z'.repeat(3 * 1_048_576), MAIN_ORIGIN, 7);
  a.node.sendBatch('b', m);
  await eventually(() => b.got.m.length === 2048 * 6, 20_000, 'every message that fits');
  t.deepEqual(b.got.m.filter((_, i) => i % 6 === 0), Array.from({ length: 2048 }, (_, i) => `blob/${i}`), 'in order');
  t.is(unsendable[0], 'blob/huge');
  t.is(b.got.malformed, 0);

  // And a hand-off of 6 MiB of state goes in several acknowledged frames.
  const rows: unknown[] = [];
  for (let i = 0; i < 24; i++) rows.push(`cart/${i}`, partitionOf(`cart/${i}`, P), { items: 'i'.repeat(256 * 1024) });
  await a.node.handOff('b', 3, [...new Set(rows.filter((_, i) => i % 3 === 1) as number[])], rows);
  t.is(b.got.handOffRows.length, rows.length);
});
