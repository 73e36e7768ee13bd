// The live members of a cluster read straight from its Redis keys, for `troupe inspect --redis`:
// read-only (unlike a node's membership, it neither registers, nor heartbeats, nor removes the
// dead), so inspecting cannot change who is in the cluster.

import { Redis } from 'ioredis';
import { clusterKeys, type ClusterKeys } from '../cluster/keys.js';
import { redactedUrl } from '../redact.js';
import type { Member } from './protocol.js';


export class RedisMembers {
  readonly cluster: string;
  readonly url: string;
  readonly #keys: ClusterKeys;
  readonly #redis: Redis;

  private constructor(redis: Redis, url: string, cluster: string) {
    this.#redis = redis;
    this.url = url;
    this.cluster = cluster;
    this.#keys = clusterKeys(cluster);
  }

  /** Connects (failing at once if Redis cannot be reached). Throws on a bad cluster name. */
  static async connect(url: string, cluster: string): Promise<RedisMembers> {
    clusterKeys(cluster);
    const redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: 3000,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    let cause: Error | undefined;
    redis.on('error', (err: Error) => (cause = err)); // reported by the calls that fail
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(`cannot reach Redis at ${redactedUrl(url)}: ${(cause ?? (err as Error)).message}; is it running, and is this the URL the nodes were given with --redis?`);
    }
    return new RedisMembers(redis, url, cluster);
  }

  /** Members whose heartbeat deadline has not passed (by Redis's clock), sorted by id. */
  async list(): Promise<Member[]> {
    let ids: string[];
    try {
      const [seconds, micros] = (await this.#redis.time()) as [string | number, string | number];
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      ids = await this.#redis.zrangebyscore(this.#keys.members, now, '+inf');
    } catch (err) {
      throw new Error(`cannot read the members of cluster "${this.cluster}" from Redis at ${redactedUrl(this.url)}: ${(err as Error).message}`);
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
