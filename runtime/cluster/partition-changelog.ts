// The partition changelog in Redis: in a cluster, every batch of durable states a shard commits is
// also written here before its replies leave, fenced by the partition's lease, so that the node
// that takes a partition over after a crash rebuilds it from what was acknowledged. It is kept
// compacted: one hash per partition, actor id -> the actor's last logged state (as SQLite stores it).

import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { connectRedis, redisEndpoint, type RedisTarget } from '../redis-connection.js';
import { ReplicaWait } from '../replica-wait.js';
import type { SnapshotRow } from '../snapshot-store.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { HOLDER_OF } from './leases.js';
import { LuaScript } from './lua-script.js';

/**
 * KEYS: per partition of the call, its lease key then its changelog key. ARGV: node, then per row
 * the partition's place among the call's partitions (1-based), the actor id and the state. Rows of
 * partitions whose lease the node does not hold are not written; the reply lists those places.
 */
const appendToChangelogs = new LuaScript(
  'append_partition_changelogs',
  HOLDER_OF +
    `local held = {}
local refused = {}
for i = 1, #KEYS / 2 do
  held[i] = holder_of(redis.call('GET', KEYS[2 * i - 1])) == ARGV[1]
  if not held[i] then refused[#refused + 1] = i end
end
for j = 2, #ARGV, 3 do
  local i = tonumber(ARGV[j])
  if held[i] then redis.call('HSET', KEYS[2 * i], ARGV[j + 1], ARGV[j + 2]) end
end
return refused`,
);

/** Rows per script call: a long script blocks Redis for everyone else. */
const ROWS_PER_CALL = 512;

/** What a shard needs of the changelog (runtime/shard.ts); a test can stand in for Redis with it. */
export interface DurableLog {
  /** Writes committed states; resolves with the partitions refused (their lease is not held here). */
  append(rows: readonly SnapshotRow[]): Promise<ReadonlySet<number>>;
  /** The logged rows of some partitions; a partition missing from the map has no changelog at all. */
  read(partitions: readonly number[]): Promise<Map<number, SnapshotRow[]>>;
  close(): Promise<void>;
}

export class PartitionChangelog implements DurableLog {
  readonly #redis: Redis;
  readonly #keys: ClusterKeys;
  readonly #self: string;
  /** With replicas, an append resolves only once a replica holds it (one WAIT per append). */
  readonly #replicas: ReplicaWait;

  private constructor(redis: Redis, cluster: string, self: string, replicas: ReplicaWait) {
    this.#redis = redis;
    this.#replicas = replicas;
    this.#keys = clusterKeys(cluster);
    this.#self = self;
  }

  /** Connects its own Redis client (a shard's appends queue behind nobody else's commands). */
  static async open(target: RedisTarget, cluster: string, self: string, log: Logger): Promise<PartitionChangelog> {
    const redis = await connectRedis(target, { role: 'command', purpose: `partition changelog of cluster "${cluster}"`, log });
    const e = redisEndpoint(target);
    return new PartitionChangelog(redis, cluster, self, new ReplicaWait(redis, { replicas: e.waitReplicas, timeoutMs: e.waitTimeoutMs, what: 'a partition changelog write', log }));
  }

  async append(rows: readonly SnapshotRow[]): Promise<ReadonlySet<number>> {
    const since = this.#replicas.begin();
    const calls: Promise<number[]>[] = [];
    for (let start = 0; start < rows.length; start += ROWS_PER_CALL) calls.push(this.#appendSome(rows.slice(start, start + ROWS_PER_CALL)));
    const refused = new Set<number>();
    for (const ps of await Promise.all(calls)) for (const p of ps) refused.add(p);
    // Acknowledged means a promoted replica would have it: a failing WAIT fails the whole append
    // (the shard writes the states again and tells their callers they are not acknowledged).
    await this.#replicas.confirm(since);
    return refused;
  }

  async #appendSome(rows: readonly SnapshotRow[]): Promise<number[]> {
    const place = new Map<number, number>();
    const keys: string[] = [];
    const args: (string | Buffer)[] = [this.#self];
    for (const row of rows) {
      let i = place.get(row.partition);
      if (i === undefined) {
        place.set(row.partition, (i = place.size + 1));
        keys.push(this.#keys.lease(row.partition), this.#keys.changelog(row.partition));
      }
      args.push(String(i), row.id, row.blob);
    }
    const refused = (await appendToChangelogs.run(this.#redis, keys, args)) as number[];
    const byPlace = [...place.keys()];
    return refused.map((i) => byPlace[i - 1]!);
  }

  async read(partitions: readonly number[]): Promise<Map<number, SnapshotRow[]>> {
    const pipeline = this.#redis.pipeline();
    for (const p of partitions) pipeline.hgetallBuffer(this.#keys.changelog(p));
    const replies = (await pipeline.exec()) ?? [];
    const out = new Map<number, SnapshotRow[]>();
    replies.forEach(([err, fields], i) => {
      if (err) throw new Error(`reading the changelog of partition ${partitions[i]} failed: ${err.message}`);
      const entries = Object.entries(fields as Record<string, Buffer>);
      // Redis has no empty hash: no fields means no changelog for the partition at all.
      if (entries.length === 0) return;
      const partition = partitions[i]!;
      out.set(
        partition,
        entries.map(([id, blob]) => ({ id, partition, blob })),
      );
    });
    return out;
  }

  async close(): Promise<void> {
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
