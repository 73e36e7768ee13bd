// The live members of a cluster read straight from its Redis keys, for `troupe inspect --redis`:
// read-only (unlike a node's membership, it neither registers, nor heartbeats, nor removes the
// dead), so inspecting cannot change who is in the cluster.

import type { Redis } from 'ioredis';
import { clusterKeys, type ClusterKeys } from '../cluster/keys.js';
import { rootLogger, type Logger } from '../log.js';
import { connectRedis, describeRedis, type RedisTarget } from '../redis-connection.js';
import type { Member } from './protocol.js';


export class RedisMembers {
  readonly cluster: string;
  /** Where Redis is, in words (no password). */
  readonly url: string;
  readonly #keys: ClusterKeys;
  readonly #redis: Redis;

  private constructor(redis: Redis, target: RedisTarget, cluster: string) {
    this.#redis = redis;
    this.url = describeRedis(target);
    this.cluster = cluster;
    this.#keys = clusterKeys(cluster);
  }

  /** Connects (failing at once if Redis cannot be reached). Throws on a bad cluster name. */
  static async connect(target: RedisTarget, cluster: string, log: Logger = rootLogger()): Promise<RedisMembers> {
    clusterKeys(cluster);
    let redis: Redis;
    try {
      // Errors after this are reported by the calls that fail; the client logs only at warn.
      redis = await connectRedis(target, { role: 'command', purpose: `inspecting cluster "${cluster}"`, log });
    } catch (err) {
      throw new Error(`${(err as Error).message}; is it running, and is this what the nodes were given (--redis, or --redis-sentinels and --redis-master)?`);
    }
    return new RedisMembers(redis, target, cluster);
  }

  /** Members whose heartbeat deadline has not passed (by Redis's clock), sorted by id. */
  async list(): Promise<Member[]> {
    let ids: string[];
    try {
      const [seconds, micros] = (await this.#redis.time()) as [string | number, string | number];
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      ids = await this.#redis.zrangebyscore(this.#keys.members, now, '+inf');
    } catch (err) {
      throw new Error(`cannot read the members of cluster "${this.cluster}" from Redis at ${this.url}: ${(err as Error).message}`);
    }
    if (ids.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hmget(this.#keys.node(id), 'address', 'started');
    const rows = (await pipeline.exec()) ?? [];
    return ids
      .map((id, i) => {
        const [address, started] = (rows[i]?.[1] as (string | null)[] | undefined) ?? [];
        return { nodeId: id, address: address ?? '', startedMs: Number(started ?? 0) };
      })
      .sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  }

  close(): void {
    this.#redis.disconnect();
  }
}
