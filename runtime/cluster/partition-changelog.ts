// The partition changelog in Redis: in a cluster, every batch of durable states a shard commits is
// also written here before its replies leave, fenced by the partition's lease, so that the node
// that takes a partition over after a crash rebuilds it from what was acknowledged. It is kept
// compacted: one hash per partition, actor id -> the actor's last logged state (as SQLite stores it).

import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { connectRedis, type RedisTarget } from '../redis-connection.js';
import { ReplicaWait } from '../replica-wait.js';
import type { SnapshotRow } from '../snapshot-store.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { HOLDER_OF } from './leases.js';
import { LuaScript } from './lua-script.js';

/**
 * KEYS: per place of the call (a partition and the epoch its rows were committed at), its lease
 * key, its changelog key and its fence key. ARGV: node, the number of places, each place's epoch,
 * then per row its place (1-based), the actor id and the state. A place is written only if this
 * node holds the lease, the lease is at least at the rows' epoch, and the rows' epoch is not below
 * the partition's fence (the epoch of the newest tenure that recovered it): so a delayed write of
 * an earlier tenure cannot land after the same node took the lease again. The reply lists the
 * places refused.
 */
const appendToChangelogs = new LuaScript(
  'append_partition_changelogs',
  HOLDER_OF +
    `local places = tonumber(ARGV[2])
local held = {}
local refused = {}
for i = 1, places do
  local epoch = tonumber(ARGV[2 + i])
  local lease = redis.call('GET', KEYS[3 * i - 2])
  local fence = tonumber(redis.call('GET', KEYS[3 * i]) or '0')
  held[i] = holder_of(lease) == ARGV[1] and tonumber(string.match(lease, '^(%d+)|')) >= epoch and epoch >= fence
  if not held[i] then refused[#refused + 1] = i end
end
for j = 3 + places, #ARGV, 3 do
  local i = tonumber(ARGV[j])
  if held[i] then redis.call('HSET', KEYS[3 * i - 1], ARGV[j + 1], ARGV[j + 2]) end
end
return refused`,
);

/**
 * KEYS: fence keys. ARGV: epoch. A tenure that takes partitions over raises their fences to its
 * epoch before it reads their changelogs: writes of earlier tenures are refused from then on.
 * Reply: per key the fence now (above the epoch if a newer tenure already raised it).
 */
const raiseChangelogFences = new LuaScript(
  'raise_changelog_fences_n_keys',
  `local out = {}
local epoch = tonumber(ARGV[1])
for i = 1, #KEYS do
  local fence = tonumber(redis.call('GET', KEYS[i]) or '0')
  if fence < epoch then
    redis.call('SET', KEYS[i], ARGV[1])
    fence = epoch
  end
  out[i] = fence
end
return out`,
);

/** Rows per script call: a long script blocks Redis for everyone else. */
const ROWS_PER_CALL = 512;

/** A committed state on its way to the changelog, with the ring epoch of the tenure that committed it (0: none). */
export interface LoggedRow extends SnapshotRow {
  epoch?: number;
}

/** What a shard needs of the changelog (runtime/shard.ts); a test can stand in for Redis with it. */
export interface DurableLog {
  /**
   * Writes committed states; resolves with the partitions refused (their lease is not held here,
   * or a newer tenure than the rows' took the partition over).
   */
  append(rows: readonly LoggedRow[]): Promise<ReadonlySet<number>>;
  /**
   * The logged rows of some partitions; a partition missing from the map has no changelog at all.
   * With `epoch` (a tenure taking the partitions over), their fences are raised to it first.
   */
  read(partitions: readonly number[], epoch?: number): Promise<Map<number, SnapshotRow[]>>;
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
    return new PartitionChangelog(redis, cluster, self, ReplicaWait.forEndpoint(redis, target, 'a partition changelog write', log));
  }

  async append(rows: readonly LoggedRow[]): Promise<ReadonlySet<number>> {
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

  async #appendSome(rows: readonly LoggedRow[]): Promise<number[]> {
    // A place is a partition at one epoch (rows of two tenures of a partition are fenced apart).
    const place = new Map<string, number>();
    const partitionOfPlace: number[] = [];
    const keys: string[] = [];
    const epochs: string[] = [];
    const rowArgs: (string | Buffer)[] = [];
    for (const row of rows) {
      const epoch = row.epoch ?? 0;
      const name = `${row.partition}|${epoch}`;
      let i = place.get(name);
      if (i === undefined) {
        place.set(name, (i = place.size + 1));
        partitionOfPlace.push(row.partition);
        keys.push(this.#keys.lease(row.partition), this.#keys.changelog(row.partition), this.#keys.changelogFence(row.partition));
        epochs.push(String(epoch));
      }
      rowArgs.push(String(i), row.id, row.blob);
    }
    const refused = (await appendToChangelogs.run(this.#redis, keys, [this.#self, String(place.size), ...epochs, ...rowArgs])) as number[];
    return refused.map((i) => partitionOfPlace[i - 1]!);
  }

  async read(partitions: readonly number[], epoch?: number): Promise<Map<number, SnapshotRow[]>> {
    if (epoch !== undefined && partitions.length > 0) {
      const since = this.#replicas.begin();
      const fences = (await raiseChangelogFences.run(this.#redis, partitions.map((p) => this.#keys.changelogFence(p)), [String(epoch)])) as number[];
      // The raise confirmed by a replica proves this connection is on the primary the replicas
      // follow, not on a crashed primary restarted in its old role with stale changelogs (its
      // Sentinels will make it a replica): a recovery reads only from the primary that counts.
      await this.#replicas.confirm(since);
      const ahead = partitions.filter((_, i) => fences[i]! > epoch);
      // Only a ring epoch gone backwards (Redis lost it) can do this; this tenure's writes will be refused.
      if (ahead.length > 0) throw new Error(`partitions ${ahead.slice(0, 5).join(', ')}${ahead.length > 5 ? ', ...' : ''} were taken over at a ring epoch above ${epoch}; refresh the ring before serving them`);
    }
    const connection = this.#replicas.begin();
    const pipeline = this.#redis.pipeline();
    for (const p of partitions) pipeline.hgetallBuffer(this.#keys.changelog(p));
    const replies = (await pipeline.exec()) ?? [];
    // Read on the connection the fences were confirmed on, or not at all.
    if (epoch !== undefined && this.#replicas.begin() !== connection) throw new Error('the Redis connection was lost while the changelogs were read; reading them again');
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
