// Fencing at every turn (issue #20): a shard in a cluster runs a turn only while its partition's
// lease deadline is ahead by the node's own clock, not only when a message enters the shard. The
// mailbox backlog, timers and async handlers that resume after the deadline passed run nothing and
// keep nothing; their messages wait for the partition to settle (then run here or go to the main
// thread) and their asks fail with the retryable PARTITION_MOVED. The lease table is driven by hand.

import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import pino from 'pino';
import { MSG_STRIDE, OWNED_ELSEWHERE, OWNED_HERE, REPLY_STRIDE, type Batch } from '../../runtime/envelope.js';
import type { Logger } from '../../runtime/log.js';
import { partitionOf } from '../../runtime/partition.js';
import { Shard, shardActorType } from '../../runtime/shard.js';
import { SnapshotStore } from '../../runtime/snapshot-store.js';
import Counter from './fixtures/counter.js';
import Ticker from './fixtures/ticker.js';
import { eventually, sleep, tempDir } from './helpers.js';

const PARTITIONS = 16;
const now = (): number => performance.timeOrigin + performance.now();

function harness(t: ExecutionContext) {
  const store = new SnapshotStore(join(tempDir('troupe-fencing-'), 'shard-0.sqlite'));
  const replies = new Map<number, { ok: boolean; value: any }>();
  /** Messages the shard gave the main thread back, in order. */
  const toMain: unknown[] = [];
  const ownership = new Int32Array(PARTITIONS).fill(OWNED_HERE);
  const deadlines = new Float64Array(PARTITIONS).fill(now() + 600_000);
  const tenures = new Int32Array(PARTITIONS);
  const shard = new Shard({
    index: 0,
    count: 1,
    partitions: PARTITIONS,
    nodeId: 'n1',
    types: new Map([
      ['counter', shardActorType(Counter)],
      ['ticker', shardActorType(Ticker)],
    ]),
    store,
    links: {
      post: (_dest: number, batch: Batch) => {
        const r = batch.r ?? [];
        for (let i = 0; i < r.length; i += REPLY_STRIDE) replies.set(r[i] as number, { ok: r[i + 1] === 1, value: r[i + 2] });
        toMain.push(...(batch.m ?? []));
      },
    },
    queued: new Int32Array(1),
    queueCapacity: 10_000,
    ownership,
    leaseDeadlines: deadlines,
    tenures,
    askTimeoutMs: 10_000,
    log: pino({ level: 'silent' }) as unknown as Logger,
  });
  t.teardown(() => shard.drain(1000));
  let askId = 0;
  const send = (id: string, handler: string, payload?: unknown, ask = true): number => {
    const m: unknown[] = [id, partitionOf(id, PARTITIONS), handler, payload, ask ? 1 : 0, ask ? ++askId : 0];
    if (m.length !== MSG_STRIDE) throw new Error('message stride changed');
    shard.receive({ m });
    return askId;
  };
  return { store, shard, replies, toMain, ownership, deadlines, tenures, send };
}

test('an async turn that resumes after its lease lapsed keeps nothing, and the backlog behind it does not run', async (t) => {
  const { shard, store, replies, toMain, ownership, deadlines, send } = harness(t);
  const id = 'counter/a';
  const p = partitionOf(id, PARTITIONS);
  const slow = send(id, 'slowAdd', { by: 5, ms: 200 });
  const backlog = [send(id, 'add', 1), send(id, 'add', 2)];
  await sleep(50);
  deadlines[p] = now() - 1; // the lease lapses while the handler awaits (the main thread has not noticed yet)
  t.true(await eventually(() => replies.has(slow), 3000));
  t.false(replies.get(slow)!.ok);
  t.like(replies.get(slow)!.value, { code: 'PARTITION_MOVED' });
  t.regex(replies.get(slow)!.value.message, /lease lapsed on this node before the turn ended/);
  await sleep(100);
  t.false(backlog.some((a) => replies.has(a)), 'the backlog did not run after the deadline');
  t.is(shard.stats().turns, 0);
  t.is(store.load(id), undefined, 'nothing of the lapsed tenure was committed');
  t.deepEqual(toMain, [], 'held here while the main thread still routes the partition here');
  // The main thread notices: the held messages go to it, in order, to be routed to the new owner.
  ownership[p] = OWNED_ELSEWHERE;
  t.true(await eventually(() => toMain.length === 2 * MSG_STRIDE, 3000));
  t.deepEqual(toMain.filter((_, i) => i % MSG_STRIDE === 3), [1, 2]);
  t.deepEqual(await shard.listActors(undefined, 10), [], 'the activation was retired');
  t.true(shard.stats().fencedTurns >= 1);
});

test('timers of an actor whose lease lapsed run no turn', async (t) => {
  const { shard, send, deadlines } = harness(t);
  const id = 'ticker/t';
  send(id, 'startTicking', 10);
  t.true(await eventually(() => shard.stats().turns >= 4, 3000), 'the timer ticks while the lease holds');
  deadlines[partitionOf(id, PARTITIONS)] = now() - 1;
  await sleep(30);
  const turns = shard.stats().turns;
  await sleep(200);
  t.is(shard.stats().turns, turns, 'no tick ran after the deadline');
  t.deepEqual(shard.listActors(undefined, 10), []);
});

test('messages held for a lapsed lease run, in order, once the lease is renewed', async (t) => {
  const { replies, deadlines, toMain, send } = harness(t);
  const id = 'counter/r';
  const p = partitionOf(id, PARTITIONS);
  deadlines[p] = now() - 1;
  const asks = [send(id, 'record', 1), send(id, 'record', 2), send(id, 'record', 3)];
  await sleep(60);
  t.false(asks.some((a) => replies.has(a)));
  deadlines[p] = now() + 600_000; // a late renewal kept the lease
  t.true(await eventually(() => asks.every((a) => replies.has(a)), 3000));
  t.deepEqual(asks.map((a) => replies.get(a)!.value), [1, 2, 3]);
  const log = send(id, 'log');
  t.true(await eventually(() => replies.has(log), 3000));
  t.deepEqual(replies.get(log)!.value, [1, 2, 3]);
  t.deepEqual(toMain, [], 'nothing bounced through the main thread');
});

test('asks held for a lapsed lease that does not settle fail with PARTITION_MOVED; tells go back to the main thread', async (t) => {
  const { replies, deadlines, toMain, send } = harness(t);
  const id = 'counter/s';
  deadlines[partitionOf(id, PARTITIONS)] = now() - 1;
  const ask = send(id, 'add', 1);
  send(id, 'add', 2, false);
  t.true(await eventually(() => replies.has(ask), 5000));
  t.like(replies.get(ask)!.value, { code: 'PARTITION_MOVED' });
  t.true(await eventually(() => toMain.length === MSG_STRIDE, 3000));
  t.is(toMain[3], 2);
});
