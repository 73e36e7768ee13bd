// The node-to-node transport on 127.0.0.1 port 0: batches both ways, redirects, bounded queues,
// reconnection after a peer restarts, and refusal of malformed or foreign frames without a crash.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import test from 'ava';
import { encodeBatch, encodeHello, FrameError } from '../../runtime/cluster/frame-codec.js';
import { ClusterTransport, LINK_REFUSED, type ClusterTransportOptions } from '../../runtime/cluster/transport.js';
import { Overloaded } from '../../runtime/errors.js';
import { partitionOf } from '../../runtime/partition.js';
import { protoPath } from '../../runtime/paths.js';
import { eventually, quietLog } from './helpers.js';

interface Received {
  batches: { from: string; m: unknown[]; r: unknown[] }[];
  redirects: { from: string; epoch: number; owner: string; m: unknown[] }[];
  malformed: { from: string | undefined; err: FrameError }[];
}

const addresses = new Map<string, string>();
/** The partition of an actor id here (the receiver refuses any other). */
const pt = (id: string): number => partitionOf(id, 64);

async function node(self: string, extra: Partial<ClusterTransportOptions> = {}): Promise<{ t: ClusterTransport; got: Received }> {
  const got: Received = { batches: [], redirects: [], malformed: [] };
  const t = await ClusterTransport.start({
    self,
    cluster: 'c1',
    partitions: 64,
    resolve: (peer) => addresses.get(peer),
    onBatch: (from, m, r) => got.batches.push({ from, m, r }),
    onRedirect: (from, epoch, owner, m) => got.redirects.push({ from, epoch, owner, m }),
    onMalformed: (from, err) => got.malformed.push({ from, err }),
    backoff: { initialMs: 20, maxMs: 200 },
    log: quietLog,
    ...extra,
  });
  addresses.set(self, `127.0.0.1:${t.port}`);
  return { t, got };
}

const messagesOf = (got: Received): unknown[] => got.batches.flatMap((b) => b.m);

function rawLink(port: number): grpc.ClientDuplexStream<{ data: Buffer }, { data: Buffer }> {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath('cluster.proto'), { keepCase: true }));
  const Ctor = ((pkg['troupe'] as grpc.GrpcObject)['cluster'] as grpc.GrpcObject)['Cluster'] as grpc.ServiceClientConstructor;
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { link(): grpc.ClientDuplexStream<{ data: Buffer }, { data: Buffer }> };
  return client.link();
}

test('two nodes exchange batches of messages and replies both ways, in order, one frame per tick', async (t) => {
  const a = await node('a1');
  const b = await node('b1');
  t.teardown(() => Promise.all([a.t.close(), b.t.close()]));
  for (let i = 0; i < 1000; i++) a.t.send('b1', `counter/${i}`, pt(`counter/${i}`), 'add', { by: i }, 1, i + 1);
  b.t.reply('a1', 7, true, 'seven');
  b.t.reply('a1', 8, false, { message: 'nope', code: 'E' });
  await eventually(() => messagesOf(b.got).length === 6000 && a.got.batches.length === 1, 5000, 'all delivered');
  const m = messagesOf(b.got);
  t.deepEqual(m.slice(0, 6), ['counter/0', pt('counter/0'), 'add', { by: 0 }, 1, 1]);
  t.deepEqual(m.slice(-6), ['counter/999', pt('counter/999'), 'add', { by: 999 }, 1, 1000]);
  t.true(b.got.batches.every((x) => x.from === 'a1'));
  t.true(b.got.batches.length <= 2, `1000 sends in one tick made ${b.got.batches.length} frames`);
  t.deepEqual(a.got.batches[0]!.r, [7, 1, 'seven', 8, 0, { message: 'nope', code: 'E' }]);

  b.t.redirect('a1', 12, 'c1', ['cart/9', pt('cart/9'), 'get', null, 1, 44]);
  await eventually(() => a.got.redirects.length === 1, 5000, 'redirect delivered');
  t.deepEqual(a.got.redirects[0], { from: 'b1', epoch: 12, owner: 'c1', m: ['cart/9', pt('cart/9'), 'get', null, 1, 44] });
});

test('large volumes go through stream backpressure and arrive complete and in order', async (t) => {
  const a = await node('a2');
  t.teardown(() => a.t.close());
  const blob = 'x'.repeat(64 * 1024);
  // b2 is not known yet: 400 frames (one per tick) wait in the link's queue...
  for (let i = 0; i < 400; i++) {
    a.t.sendBatch('b2', [`blob/${i}`, pt(`blob/${i}`), 'put', blob, 0, 0]);
    await new Promise((r) => setImmediate(r));
  }
  t.is(a.t.stats()[0]!.queuedFrames, 400);
  // ...and go out in one burst when it appears, more than the stream buffers at once.
  const b = await node('b2');
  t.teardown(() => b.t.close());
  await eventually(() => messagesOf(b.got).length === 400 * 6, 20_000, '25 MiB delivered');
  const ids = messagesOf(b.got).filter((_, i) => i % 6 === 0);
  t.deepEqual(ids, Array.from({ length: 400 }, (_, i) => `blob/${i}`));
  t.is(a.t.stats()[0]!.queuedBytes, 0);
  t.true(a.t.stats()[0]!.stalls > 0, 'write() returned false at least once and the link waited for drain');
});

test('a link to an unreachable peer queues up to its bound, then sends fail with Overloaded', async (t) => {
  const a = await node('a3', { maxQueuedBytes: 256 * 1024 });
  t.teardown(() => a.t.close());
  addresses.set('ghost', '127.0.0.1:1'); // nothing listens there
  const blob = 'y'.repeat(16 * 1024);
  // The bound is checked on encoded frames, which are made once per tick: send across ticks.
  const err = await t.throwsAsync(
    async () => {
      for (let i = 0; i < 1000; i++) {
        a.t.sendBatch('ghost', [`g/${i}`, 0, 'h', blob, 0, 0]);
        await new Promise((r) => setImmediate(r));
      }
    },
    { instanceOf: Overloaded },
  );
  t.regex(err!.message, /link to node ghost \(\d+ bytes queued, disconnected\)/);
  await new Promise((r) => setTimeout(r, 50));
  t.false(a.t.stats()[0]!.connected);
});

test('after a peer restarts (on a new port), the link redials and delivers what was queued meanwhile', async (t) => {
  const a = await node('a4');
  let b = await node('b4');
  t.teardown(() => a.t.close());
  a.t.send('b4', 'x/1', pt('x/1'), 'h', 1, 0, 0);
  await eventually(() => messagesOf(b.got).length === 6, 5000, 'first message');
  await b.t.close();
  await eventually(() => !a.t.stats()[0]!.connected, 5000, 'link seen down');
  a.t.send('b4', 'x/2', pt('x/2'), 'h', 2, 0, 0);
  a.t.send('b4', 'x/3', pt('x/3'), 'h', 3, 0, 0);
  b = await node('b4');
  t.teardown(() => b.t.close());
  await eventually(() => messagesOf(b.got).length === 12, 10_000, 'queued messages after the restart');
  t.deepEqual(messagesOf(b.got).filter((_, i) => i % 6 === 0), ['x/2', 'x/3']);
  t.true(a.t.stats()[0]!.dials >= 2);
});

test('malformed frames are refused with a clear error and the node keeps serving', async (t) => {
  const a = await node('a5');
  const b = await node('b5');
  t.teardown(() => Promise.all([a.t.close(), b.t.close()]));

  // Garbage as the first frame: the link is refused, with a generic text (the reason is logged).
  const raw1 = rawLink(b.t.port);
  const refused = new Promise<grpc.ServiceError>((resolve) => raw1.on('error', resolve));
  raw1.write({ data: Buffer.from('hello? is this HTTP?') });
  const e1 = await refused;
  t.is(e1.code, grpc.status.PERMISSION_DENIED);
  t.is(e1.details, LINK_REFUSED);
  t.regex(b.got.malformed[0]!.err.message, /bad cluster frame .*not a Troupe cluster frame/);

  // A hello from another cluster is refused with the same text: it does not learn this cluster's name.
  const raw2 = rawLink(b.t.port);
  const foreign = new Promise<grpc.ServiceError>((resolve) => raw2.on('error', resolve));
  raw2.write({ data: encodeHello('intruder', 'other-cluster', 64) });
  const e2 = await foreign;
  t.is(e2.code, grpc.status.PERMISSION_DENIED);
  t.is(e2.details, LINK_REFUSED);
  t.notRegex(e2.details, /c1/);

  // After a good hello, a malformed frame is dropped and reported; the frames after it still arrive.
  const raw3 = rawLink(b.t.port);
  raw3.on('error', () => {});
  raw3.write({ data: encodeHello('raw', 'c1', 64) });
  raw3.write({ data: Buffer.from([0x54, 1, 2, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]) });
  raw3.write({ data: encodeBatch(['ok/1', pt('ok/1'), 'h', 'fine', 0, 0]) });
  await eventually(() => b.got.batches.some((x) => x.from === 'raw'), 5000, 'the good frame after the bad one');
  t.is(b.got.malformed.length, 2, 'the garbage hello and the bad batch (the foreign hello was well formed)');
  t.is(b.got.malformed.at(-1)!.from, 'raw');
  t.regex(b.got.malformed.at(-1)!.err.message, /message count/);
  raw3.end();

  // And the node still serves its real peers.
  a.t.send('b5', 'still/1', pt('still/1'), 'h', 1, 0, 0);
  await eventually(() => b.got.batches.some((x) => x.from === 'a5'), 5000, 'a real peer after the hostile ones');
});

test('a message whose payload cannot be encoded is given back; the rest of its batch goes through', async (t) => {
  const unsendable: unknown[][] = [];
  const a = await node('a6', { onUnsendable: (_peer, m) => unsendable.push(m) });
  const b = await node('b6');
  t.teardown(() => Promise.all([a.t.close(), b.t.close()]));
  a.t.send('b6', 'ok/1', pt('ok/1'), 'h', 1, 1, 1);
  a.t.send('b6', 'bad/2', pt('bad/2'), 'h', () => 'a function', 1, 2);
  a.t.send('b6', 'ok/3', pt('ok/3'), 'h', 3, 1, 3);
  await eventually(() => messagesOf(b.got).length === 12, 5000, 'good messages delivered');
  t.deepEqual(messagesOf(b.got).filter((_, i) => i % 6 === 0), ['ok/1', 'ok/3']);
  t.is(unsendable.length, 1);
  t.is(unsendable[0]![0], 'bad/2');
});

test('a hand-off ships partition state and resolves when the new owner stored it; a refusal rejects', async (t) => {
  const stored: { from: string; epoch: number; partitions: number[]; rows: unknown[] }[] = [];
  const a = await node('a7');
  const b = await node('b7', {
    onHandOff: async (from, epoch, partitions, rows) => {
      if (partitions.includes(13)) throw new Error('partition 13 is cursed');
      stored.push({ from, epoch, partitions, rows });
    },
  });
  t.teardown(() => Promise.all([a.t.close(), b.t.close()]));
  a.t.send('b7', 'before/1', pt('before/1'), 'h', 1, 0, 0);
  await a.t.handOff('b7', 5, [pt('cart/1'), pt('cart/2')], ['cart/1', pt('cart/1'), { items: [1, 2] }, 'cart/2', pt('cart/2'), { items: [] }]);
  t.deepEqual(stored, [{ from: 'a7', epoch: 5, partitions: [pt('cart/1'), pt('cart/2')], rows: ['cart/1', pt('cart/1'), { items: [1, 2] }, 'cart/2', pt('cart/2'), { items: [] }] }]);
  t.deepEqual(messagesOf(b.got).slice(0, 1), ['before/1'], 'a message sent before the hand-off arrived before it');
  // The sender hears a generic refusal; why is in the receiver's log.
  const refusal = await t.throwsAsync(a.t.handOff('b7', 5, [13], []), { message: /refused by the new owner: the receiving node did not take this hand-off/ });
  t.notRegex(refusal!.message, /cursed/);
  const c = await node('c7');
  t.teardown(() => c.t.close());
  await t.throwsAsync(a.t.handOff('c7', 5, [1], []), { message: /refused by the new owner: the receiving node did not take this hand-off/ });
});

test('messages and hand-off rows naming a partition that is not their actor id\'s are refused, counted, and asks answered', async (t) => {
  const unsendable: unknown[][] = [];
  const handedOff: unknown[][] = [];
  const a = await node('a8', { onUnsendable: (_peer, m) => unsendable.push(m) });
  const b = await node('b8', { onHandOff: (_from, _epoch, _partitions, rows) => void handedOff.push(rows) });
  t.teardown(() => Promise.all([a.t.close(), b.t.close()]));
  const wrong = (id: string): number => (pt(id) + 1) % 64;
  a.t.send('b8', 'cart/good', pt('cart/good'), 'get', null, 1, 1);
  a.t.send('b8', 'cart/bad-ask', wrong('cart/bad-ask'), 'get', null, 1, 2);
  a.t.send('b8', 'cart/bad-tell', wrong('cart/bad-tell'), 'add', 1, 0, 0);
  a.t.send('b8', 'cart/out-of-range', 64, 'add', 1, 0, 0);
  await eventually(() => a.got.batches.some((x) => x.r.length > 0), 5000, 'the refusal of the ask');
  t.deepEqual(messagesOf(b.got), ['cart/good', pt('cart/good'), 'get', null, 1, 1], 'only the good message reaches the node');
  const reply = a.got.batches.flatMap((x) => x.r);
  t.deepEqual(reply.slice(0, 2), [2, 0], 'the bad ask is answered with a failure');
  t.like(reply[2] as object, { code: 'MISROUTED' });
  t.notRegex((reply[2] as { message: string }).message, /bad-ask|\d/, 'the peer hears a generic text');
  t.is(b.t.refusedMisrouted, 3);

  // A redirect is our own messages coming back: a changed partition fails their asks at once.
  b.t.redirect('a8', 3, 'c8', ['cart/r', wrong('cart/r'), 'get', null, 1, 9]);
  await eventually(() => unsendable.length === 1, 5000, 'the redirected ask given back');
  t.is(unsendable[0]![0], 'cart/r');
  t.is(a.got.redirects.length, 0);

  await a.t.handOff('b8', 5, [pt('cart/h1')], ['cart/h1', pt('cart/h1'), { n: 1 }, 'cart/h2', wrong('cart/h2'), { n: 2 }]);
  t.deepEqual(handedOff, [['cart/h1', pt('cart/h1'), { n: 1 }]]);
  t.is(b.t.refusedMisrouted, 4);
});
