// Replica confirmation of writes that back an acknowledgement: after such writes on a connection,
// WAIT until enough replicas of the Redis primary hold them, so a replica promoted by a failover
// holds everything acknowledged. A write the replicas did not confirm in time is not acknowledged.

import type { Redis } from 'ioredis';
import type { Logger } from './log.js';
import { redisEndpoint, type RedisTarget } from './redis-connection.js';

/** `auto`: as many replicas as the primary has connected now, at most one; a number: exactly that many. */
export type WaitReplicas = 'auto' | number;

export const DEFAULT_WAIT_TIMEOUT_MS = 1000;
/** How often `auto` reads the primary's replica count again (and at once after every reconnect). */
const REFRESH_MS = 5000;

export interface ReplicaWaitOptions {
  replicas?: WaitReplicas;
  timeoutMs?: number;
  /** What the writes are, for messages ("changelog write"). */
  what: string;
  log: Logger;
}

/** Thrown when replicas did not confirm in time: the write is on the primary, not acknowledged. */
export class ReplicasDidNotConfirm extends Error {
  constructor(what: string, confirmed: number, needed: number, timeoutMs: number) {
    super(`${what}: ${confirmed} of ${needed} Redis replica${needed === 1 ? '' : 's'} confirmed it within ${timeoutMs} ms, so it is not acknowledged (a failover now could lose it); retry, and check the replicas' link to the primary`);
    this.name = 'ReplicasDidNotConfirm';
  }
}

/**
 * How many replicas must confirm an acknowledged write on this endpoint. `auto` behind Sentinels is
 * 1: a primary the Sentinels watch is meant to have a replica, and one that has none connected is
 * either just promoted (its replica not synced yet) or a crashed primary restarted in its old role
 * with stale data, which the Sentinels will make a replica and wipe; a write taken there without a
 * replica's confirmation could be lost, so it is not acknowledged. `auto` on a plain URL counts the
 * primary's connected replicas (ReplicaWait below).
 */
export function waitReplicasOf(target: RedisTarget): WaitReplicas {
  const e = redisEndpoint(target);
  const wanted = e.waitReplicas ?? 'auto';
  return wanted === 'auto' && e.sentinels?.length ? 1 : wanted;
}

export class ReplicaWait {
  readonly #redis: Redis;
  readonly #setting: WaitReplicas;
  readonly #timeoutMs: number;
  readonly #what: string;
  readonly #log: Logger;
  /** For `auto`: the last count read, when it was read; undefined after a reconnect. */
  #known: { replicas: number; at: number } | undefined;
  #reading: Promise<number> | undefined;
  /** Connections lost so far: WAIT counts only the writes of its own connection. */
  #closes = 0;

  /** The wait an endpoint's settings ask for (its replica count by waitReplicasOf, its timeout), on one connection. */
  static forEndpoint(redis: Redis, target: RedisTarget, what: string, log: Logger): ReplicaWait {
    return new ReplicaWait(redis, { replicas: waitReplicasOf(target), timeoutMs: redisEndpoint(target).waitTimeoutMs, what, log });
  }

  constructor(redis: Redis, o: ReplicaWaitOptions) {
    this.#redis = redis;
    this.#setting = o.replicas ?? 'auto';
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
    this.#what = o.what;
    this.#log = o.log;
    // A reconnect may be to another primary (a failover): read its replicas before the next wait.
    redis.on('ready', () => (this.#known = undefined));
    redis.on('close', () => this.#closes++);
  }

  /** How many replicas the next confirmation waits for. */
  async needed(): Promise<number> {
    if (this.#setting !== 'auto') return this.#setting;
    const known = this.#known;
    if (known === undefined) return this.#read();
    if (Date.now() - known.at > REFRESH_MS) void this.#read().catch(() => {});
    return known.replicas;
  }

  #read(): Promise<number> {
    this.#reading ??= this.#redis
      .info('replication')
      .then((info) => {
        const m = /^connected_slaves:(\d+)/m.exec(info);
        const replicas = Math.min(1, m ? Number(m[1]) : 0);
        if (this.#known !== undefined && this.#known.replicas !== replicas) {
          this.#log.info({ replicas }, `${this.#what}: the Redis primary now has ${replicas === 0 ? 'no replica; writes are no longer waited for' : 'a replica; writes wait for it (WAIT)'}`);
        }
        this.#known = { replicas, at: Date.now() };
        return replicas;
      })
      .finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  /** Call before the writes: what confirm() needs to tell that they went on the connection it waits on. */
  begin(): number {
    return this.#closes;
  }

  /**
   * Resolves once the needed replicas hold every write sent on this connection since `begin()`;
   * throws ReplicasDidNotConfirm (or the connection's error) otherwise. Call it after the writes
   * resolved. If the connection was lost meanwhile, WAIT on the new one would not count the
   * writes (they may have gone to a primary that a failover since replaced): not acknowledged.
   */
  async confirm(since: number): Promise<void> {
    const needed = await this.needed();
    if (needed === 0) return;
    if (this.#closes !== since) {
      throw new Error(`${this.#what}: the Redis connection was lost between the write and its WAIT for replicas, so it is not acknowledged; retry`);
    }
    const confirmed = Number(await this.#redis.wait(needed, this.#timeoutMs));
    if (this.#closes !== since) {
      throw new Error(`${this.#what}: the Redis connection was lost while waiting for replicas, so it is not acknowledged; retry`);
    }
    if (confirmed < needed) throw new ReplicasDidNotConfirm(this.#what, confirmed, needed, this.#timeoutMs);
  }
}
