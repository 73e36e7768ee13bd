// A shard with a partition changelog (the cluster's): replies of durable turns leave only once their
// state is logged, reads of a state not yet logged wait too, a failed write is not acknowledged and
// is written again, a refused one (the lease moved) fails its turns, and recovery replaces what the
// shard stored of a partition with what the changelog holds. The changelog here is an in-memory
// stand-in whose writes the test settles by hand; the Redis one is tested in test/cluster.

import test from 'ava';
import { join } from 'node:path';
import type { DurableLog } from '../../runtime/cluster/partition-changelog.js';
import { MSG_STRIDE, OWNED_HERE, REPLY_STRIDE, type Batch } from '../../runtime/envelope.js';
import pino from 'pino';
import type { Logger } from '../../runtime/log.js';
import { partitionOf } from '../../runtime/partition.js';
import { Shard, shardActorType } from '../../runtime/shard.js';
import { decodeSnapshot, SnapshotStore, type SnapshotRow } from '../../runtime/snapshot-store.js';
import Counter from './fixtures/counter.js';
import { eventually, tempDir } from './helpers.js';

const PARTITIONS = 16;

interface Write {
  rows: readonly SnapshotRow[];
  settle(refused?: number[]): void;
  fail(message: string): void;
}

/** A changelog whose writes wait until the test settles them. */
class HandLog implements DurableLog {
  readonly writes: Write[] = [];
  readonly logged = new Map<number, Map<string, Buffer>>();

  append(rows: readonly SnapshotRow[]): Promise<ReadonlySet<number>> {
    return new Promise((resolve, reject) => {
      this.writes.push({
        rows,
        settle: (refused = []) => {
          for (const r of rows) if (!refused.includes(r.partition)) this.#partition(r.partition).set(r.id, r.blob);
          resolve(new Set(refused));
        },
        fail: (message) => reject(new Error(message)),
      });
    });
  }

  async read(partitions: readonly number[]): Promise<Map<number, SnapshotRow[]>> {
    const out = new Map<number, SnapshotRow[]>();
    for (const p of partitions) {
      const rows = this.logged.get(p);
      if (rows) out.set(p, [...rows].map(([id, blob]) => ({ id, partition: p, blob })));
    }
    return out;
  }

  async close(): Promise<void> {}

  #partition(p: number): Map<string, Buffer> {
    let m = this.logged.get(p);
    if (!m) this.logged.set(p, (m = new Map()));
    return m;
  }
}

function harness() {
  const log = new HandLog();
  const store = new SnapshotStore(join(tempDir('troupe-changelog-'), 'shard-0.sqlite'));
  const replies = new Map<number, { ok: boolean; value: unknown }>();
  const shard = new Shard({
    index: 0,
    count: 1,
    partitions: PARTITIONS,
    nodeId: 'n1',
    types: new Map([['counter', shardActorType(Counter)]]),
    store,
    links: {
      post: (_dest: number, batch: Batch) => {
        const r = batch.r ?? [];
        for (let i = 0; i < r.length; i += REPLY_STRIDE) replies.set(r[i] as number, { ok: r[i + 1] === 1, value: r[i + 2] });
      },
    },
    queued: new Int32Array(1),
    queueCapacity: 10_000,
    ownership: new Int32Array(PARTITIONS).fill(OWNED_HERE),
    changelog: log,
    askTimeoutMs: 10_000,
    log: pino({ level: 'silent' }) as unknown as Logger,
  });
  let askId = 0;
  const ask = (key: string, handler: string, payload?: unknown): number => {
    const id = `counter/${key}`;
    const m: unknown[] = [id, partitionOf(id, PARTITIONS), handler, payload, 1, ++askId];
    if (m.length !== MSG_STRIDE) throw new Error('message stride changed');
    shard.receive({ m });
    return askId;
  };
  return { log, store, shard, replies, ask };
}

test('a durable turn is answered only once its state is in the changelog, and so is a read of it', async (t) => {
  const { log, replies, ask } = harness();
  const add = ask('a', 'add', 5);
  t.true(await eventually(() => log.writes.length === 1));
  const read = ask('a', 'get');
  await new Promise((r) => setTimeout(r, 30));
  t.false(replies.has(add), 'the add waits for its write');
  t.false(replies.has(read), 'a read of the unlogged state waits too');
  log.writes[0]!.settle();
  t.true(await eventually(() => replies.has(add) && replies.has(read)));
  t.deepEqual(replies.get(add), { ok: true, value: 5 });
  t.deepEqual(replies.get(read), { ok: true, value: 5 });
  // Once logged, reads answer at once, with no write.
  const again = ask('a', 'get');
  t.true(await eventually(() => replies.has(again)));
  t.is(log.writes.length, 1);
});

test('states committed while a write is in flight go in the next write, the newest per actor', async (t) => {
  const { log, replies, ask } = harness();
  ask('a', 'add', 1);
  t.true(await eventually(() => log.writes.length === 1));
  const later = [ask('a', 'add', 1), ask('a', 'add', 1), ask('b', 'add', 7)];
  await new Promise((r) => setTimeout(r, 30));
  t.is(log.writes.length, 1, 'one write in flight at a time');
  log.writes[0]!.settle();
  t.true(await eventually(() => log.writes.length === 2));
  const second = log.writes[1]!.rows;
  t.deepEqual(second.map((r) => r.id).sort(), ['counter/a', 'counter/b']);
  t.is((decodeSnapshot(second.find((r) => r.id === 'counter/a')!.blob) as { n: number }).n, 3);
  log.writes[1]!.settle();
  t.true(await eventually(() => later.every((id) => replies.has(id))));
  t.deepEqual(later.map((id) => replies.get(id)!.value), [2, 3, 7]);
});

test('a failed write is not acknowledged, and the state is written again', async (t) => {
  const { log, replies, ask, shard } = harness();
  const add = ask('a', 'add', 2);
  t.true(await eventually(() => log.writes.length === 1));
  log.writes[0]!.fail('connection reset');
  t.true(await eventually(() => replies.has(add)));
  const reply = replies.get(add)!;
  t.false(reply.ok);
  t.like(reply.value as object, { code: 'CHANGELOG_UNAVAILABLE' });
  t.regex((reply.value as { message: string }).message, /connection reset/);
  // The shard tries again on its own; the state lands in the changelog.
  t.true(await eventually(() => log.writes.length === 2, 3000));
  t.deepEqual(log.writes[1]!.rows.map((r) => r.id), ['counter/a']);
  log.writes[1]!.settle();
  const read = ask('a', 'get');
  t.true(await eventually(() => replies.has(read)));
  t.is(replies.get(read)!.value, 2);
  t.is(log.logged.size, 1);
  t.like(shard.stats(), { changelogWrites: 1, changelogStates: 1, changelogFailures: 1, changelogRefused: 0 });
});

test('a write refused for a partition whose lease moved fails its turns with PARTITION_MOVED', async (t) => {
  const { log, replies, ask, shard } = harness();
  const add = ask('a', 'add', 1);
  t.true(await eventually(() => log.writes.length === 1));
  log.writes[0]!.settle([partitionOf('counter/a', PARTITIONS)]);
  t.true(await eventually(() => replies.has(add)));
  t.false(replies.get(add)!.ok);
  t.like(replies.get(add)!.value as object, { code: 'PARTITION_MOVED' });
  t.like(shard.stats(), { changelogWrites: 1, changelogRefused: 1 });
});

test('recovery replaces what the shard stored of a partition with the changelog, and logs what has no changelog', async (t) => {
  const { log, store, shard } = harness();
  const logged = 'counter/from-log';
  const p = partitionOf(logged, PARTITIONS);
  // Two actors this node stored in an earlier tenure: one of p, one of a partition with no changelog.
  let i = 0;
  while (partitionOf(`counter/kept-${i}`, PARTITIONS) === p) i++;
  const kept = `counter/kept-${i}`;
  const q = partitionOf(kept, PARTITIONS);
  const stale = 'counter/stale';
  const state = (n: number) => Buffer.from(JSON.stringify({ n, log: [] }));
  store.commit([
    { id: kept, partition: q, blob: state(1) },
    { id: logged, partition: p, blob: state(4) },
  ]);
  log.logged.set(p, new Map([[logged, state(9)]]));
  const recovering = shard.recover([p, q]);
  // The partition without a changelog keeps its stored state, which is logged before it is served.
  t.true(await eventually(() => log.writes.length === 1));
  t.deepEqual(log.writes[0]!.rows.map((r) => r.id), [kept]);
  log.writes[0]!.settle();
  t.is(await recovering, 2);
  t.deepEqual(store.load(logged), { n: 9, log: [] }, 'the changelog wins over the older stored state');
  t.deepEqual(store.load(kept), { n: 1, log: [] });
  t.is(store.load(stale), undefined);
});

test('states an earlier tenure could not log are not written after the partition is taken over again', async (t) => {
  const { log, replies, ask, shard } = harness();
  const id = 'counter/t';
  const p = partitionOf(id, PARTITIONS);
  await shard.recover([p], 3);
  const add = ask('t', 'add', 1);
  t.true(await eventually(() => log.writes.length === 1));
  t.is((log.writes[0]!.rows[0] as { epoch?: number }).epoch, 3, 'rows carry the epoch of their tenure');
  log.writes[0]!.fail('connection reset'); // kept for a retry in 500 ms
  t.true(await eventually(() => replies.has(add)));
  // The partition leaves and comes back (tenure at epoch 7) before the retry.
  const recovering = shard.recover([p], 7);
  t.true(await eventually(() => log.writes.length === 2));
  log.writes[1]!.settle();
  await recovering;
  await new Promise((r) => setTimeout(r, 700));
  t.deepEqual(log.writes.slice(1).map((w) => w.rows.map((r) => (r as { epoch?: number }).epoch)), [[7]], 'only the new tenure writes (what it recovered), never the old rows');
});
