// Partition leases: a node serves a partition only while it holds the partition's lease in Redis.
// A lease is "epoch|node" with a TTL; grab, renew and release are Lua scripts, renewal covers every
// held partition in one call, and grabs and renewals from a node behind on the ring epoch are refused.
// Whatever Redis does (down, paused, slow), a lease stops counting at its local deadline: a sweep on
// its own timer drops it, and a grab or renewal that takes too long is given up.

import type { Redis } from 'ioredis';
import type { ReplicaWait } from '../replica-wait.js';
import { performance } from 'node:perf_hooks';
import { TroupeError } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

/** Lua: the node id in a lease value "epoch|node" (nil for no lease). */
export const HOLDER_OF = `local function holder_of(v)
  if not v then return nil end
  local bar = string.find(v, '|', 1, true)
  return string.sub(v, bar + 1)
end
`;

/**
 * KEYS: ring meta, lease keys. ARGV: node, epoch, ttlMs. Reply: {0, epoch, per key: '' granted or
 * the other holder's "epoch|node"}, or {-1, current epoch} when the caller's epoch is not current.
 */
/**
 * Prologue of the lease scripts: refuse a caller at a stale ring epoch ({-1, current}), else start
 * the reply {0, current, ...}. KEYS[1] is the ring meta, ARGV[2] the caller's epoch.
 */
const EPOCH_GUARD = `local current = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if tonumber(ARGV[2]) ~= current then return { -1, current } end
local out = { 0, current }
`;

/**
 * KEYS: ring meta, cluster incarnation, lease keys. ARGV: node, epoch, ttlMs, the incarnation the
 * node belongs to ('' to skip that check). Reply: {0, epoch, per lease '' granted or the other
 * holder's "epoch|node"}, {-1, current epoch} at a stale epoch, {-2, incarnation in Redis or ''}
 * when Redis does not hold the node's cluster (it lost its data) or the cluster is marked lost, or
 * {-3, ms to wait} during the first TTL of an incarnation: a Redis that restarted empty forgot the
 * leases, but their holders may still serve until their local deadlines, all within one TTL.
 */
const grabPartitionLeases = new LuaScript(
  'grab_partition_leases_n_keys',
  HOLDER_OF +
    `if ARGV[4] ~= '' then
  local inc = redis.call('HMGET', KEYS[2], 'id', 'lost', 'created')
  if inc[1] ~= ARGV[4] or inc[2] then return { -2, inc[1] or '' } end
  local t = redis.call('TIME')
  local wait = tonumber(inc[3] or '0') + tonumber(ARGV[3]) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  if wait > 0 then return { -3, wait } end
end
` +
    EPOCH_GUARD +
    `for i = 3, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v or holder_of(v) == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2] .. '|' .. ARGV[1], 'PX', ARGV[3])
    out[#out + 1] = ''
  else
    out[#out + 1] = v
  end
end
return out`,
);

/** KEYS: ring meta, lease keys. ARGV: node, epoch, ttlMs. Reply: {0, epoch, per key 1 renewed or 0 lost}, or {-1, current epoch}. */
const renewPartitionLeases = new LuaScript(
  'renew_partition_leases_n_keys',
  HOLDER_OF +
    EPOCH_GUARD +
    `for i = 2, #KEYS do
  if holder_of(redis.call('GET', KEYS[i])) == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[2] .. '|' .. ARGV[1], 'PX', ARGV[3])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out`,
);

/** KEYS: lease keys. ARGV: node. Deletes only leases the node holds; reply: per key 1 released or 0 not held. */
const releasePartitionLeases = new LuaScript(
  'release_partition_leases_n_keys',
  HOLDER_OF +
    `local out = {}
for i = 1, #KEYS do
  if holder_of(redis.call('GET', KEYS[i])) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out`,
);

/** The caller's ring epoch is not the current one: refresh the ring, then try again. */
export class StaleEpoch extends TroupeError {
  constructor(
    readonly offered: number,
    readonly current: number,
    what: string,
  ) {
    super('STALE_EPOCH', `${what} refused: this node is at ring epoch ${offered} and the ring is at ${current}; refresh the ring and retry`);
  }
}

/** Redis did not answer a lease call in time; the call may still land, which is safe (see renew). */
export class LeaseCallTimeout extends TroupeError {
  constructor(what: string, ms: number) {
    super('LEASE_CALL_TIMEOUT', `${what} got no answer from Redis within ${ms} ms; the leases lapse at their local deadlines unless a later call succeeds`);
  }
}

/** Rejects with LeaseCallTimeout after `ms`; the call itself runs on (its result is dropped). */
function withinMs<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LeaseCallTimeout(what, ms)), ms);
  });
  call.catch(() => {});
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Redis does not hold this node's cluster: it lost its data (restarted empty, say), or the cluster
 * is marked lost. No lease is granted until an operator accepts (see runtime/cluster/README.md).
 */
export class ClusterDataLost extends TroupeError {
  constructor(
    readonly expected: string,
    readonly found: string,
  ) {
    super(
      'CLUSTER_DATA_LOST',
      `Redis does not hold cluster incarnation ${expected} (it holds ${found || 'none'}, or the cluster is marked lost): it lost the cluster's data; ` +
        'no partition is served until an operator runs `troupe recover --accept` (see `troupe recover` for what the nodes rebuilt)',
    );
  }
}

/** The cluster's incarnation is younger than one lease TTL: a holder from before may still be serving; grab again later. */
export class IncarnationTooYoung extends TroupeError {
  constructor(readonly waitMs: number) {
    super('INCARNATION_TOO_YOUNG', `no lease is granted during the first TTL of a cluster incarnation (a node may still serve a lease Redis forgot); grab again in ${waitMs} ms`);
  }
}

export interface LeaseHolder {
  partition: number;
  node: string;
  epoch: number;
}

export interface GrabResult {
  granted: number[];
  /** Partitions another node holds (wait for its release or for the TTL). */
  heldElsewhere: LeaseHolder[];
}

export interface RenewResult {
  renewed: number[];
  /** Partitions whose lease this node no longer holds (expired and maybe taken). */
  lost: number[];
}

export interface PartitionLeasesOptions {
  redis: Redis;
  cluster: string;
  self: string;
  partitions: number;
  /** Lease time to live; default 2000 ms. */
  ttlMs?: number;
  /**
   * Safety margin: a node counts a lease valid until (time the grab or renewal was SENT + ttl -
   * margin), which ends before Redis expires it, whatever the network delay. Default max(50, ttl/10).
   */
  marginMs?: number;
  /**
   * Optional shared table (one Float64 per partition, absolute ms = performance.timeOrigin +
   * performance.now()) where the deadline of each held lease is written and 0 when it is not held,
   * so shard threads can refuse turns after a pause without asking the main thread.
   */
  deadlines?: Float64Array;
  /** The cluster incarnation this node belongs to (runtime/cluster/cluster-incarnation.ts); grabs in a Redis without it are refused. */
  incarnation?: () => string;
  /**
   * With replicas, a grab or renewal counts only once a replica holds it (WAIT): a lease granted by
   * a primary that fails over before replicating it would be free on the promoted replica, and two
   * nodes would serve the partition. Without it (or without replicas) nothing is waited for.
   */
  replicas?: ReplicaWait;
  /**
   * A grab or renewal not answered within this long is given up (its leases then lapse at their
   * deadlines). Default max(1 s, ttl - margin): past ttl - margin a renewal's answer cannot extend
   * anything; with short test TTLs the floor keeps a loaded machine from failing every call.
   */
  callTimeoutMs?: number;
  log?: Logger;
}

function absoluteNow(): number {
  return performance.timeOrigin + performance.now();
}

export class PartitionLeases {
  readonly self: string;
  readonly ttlMs: number;
  readonly marginMs: number;
  readonly keys: ClusterKeys;
  readonly #redis: Redis;
  readonly #partitions: number;
  /** partition -> absolute ms until which this node may serve it. */
  readonly #validUntil = new Map<number, number>();
  readonly #deadlines: Float64Array | undefined;
  readonly #log: Logger;
  #renewTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #expiryAt = Infinity;
  #onExpired: ((partitions: number[]) => void) | undefined;
  #renewing = false;
  readonly #callTimeoutMs: number;
  readonly #incarnation: () => string;
  readonly #replicas: ReplicaWait | undefined;
  #staleEpochRefusals = 0;
  #lastOkAt = absoluteNow();

  constructor(o: PartitionLeasesOptions) {
    this.self = o.self;
    this.ttlMs = o.ttlMs ?? 2000;
    this.marginMs = o.marginMs ?? Math.max(50, Math.floor(this.ttlMs / 10));
    if (this.marginMs >= this.ttlMs) throw new RangeError(`lease margin (${this.marginMs} ms) must be shorter than the TTL (${this.ttlMs} ms)`);
    this.keys = clusterKeys(o.cluster);
    this.#redis = o.redis;
    this.#partitions = o.partitions;
    this.#deadlines = o.deadlines;
    if (this.#deadlines && this.#deadlines.length < o.partitions) throw new RangeError(`deadlines table has ${this.#deadlines.length} slots for ${o.partitions} partitions`);
    this.#callTimeoutMs = o.callTimeoutMs ?? Math.max(1000, this.ttlMs - this.marginMs);
    this.#incarnation = o.incarnation ?? (() => '');
    this.#replicas = o.replicas;
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'leases' });
  }

  /** How many grabs and renewals Redis refused because this node's ring epoch was not current. */
  get staleEpochRefusals(): number {
    return this.#staleEpochRefusals;
  }

  /** When (absolute ms) Redis last answered a grab or renewal. */
  get lastAnsweredAt(): number {
    return this.#lastOkAt;
  }

  #check(partitions: readonly number[]): void {
    for (const p of partitions) {
      if (!Number.isInteger(p) || p < 0 || p >= this.#partitions) throw new RangeError(`partition ${p} is outside 0..${this.#partitions - 1}`);
    }
  }

  #set(p: number, until: number): void {
    this.#validUntil.set(p, until);
    if (this.#deadlines) this.#deadlines[p] = until;
    this.#armExpiry(until);
  }

  /** The sweep runs at the earliest deadline, so a lease stops counting when it lapses, not a renewal later. */
  #armExpiry(until: number): void {
    if (this.#onExpired === undefined || until >= this.#expiryAt) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryAt = until;
    this.#expiryTimer = setTimeout(() => this.#sweep(), Math.max(0, until - absoluteNow()) + 1);
    this.#expiryTimer.unref();
  }

  /** Drops every lease past its local deadline and tells the owner; re-arms for the next deadline. */
  #sweep(): void {
    this.#expiryAt = Infinity;
    this.#expiryTimer = undefined;
    const now = absoluteNow();
    const expired: number[] = [];
    let next = Infinity;
    for (const [p, until] of this.#validUntil) {
      if (now >= until) expired.push(p);
      else if (until < next) next = until;
    }
    for (const p of expired) this.#drop(p);
    if (next < Infinity) this.#armExpiry(next);
    if (expired.length > 0) {
      this.#log.warn({ partitions: expired.length, first: expired[0], sinceRedisAnsweredMs: Math.round(now - this.#lastOkAt) }, 'partition leases reached their local deadline without a renewal; stopped serving them');
      this.#onExpired?.(expired);
    }
  }

  #drop(p: number): void {
    this.#validUntil.delete(p);
    if (this.#deadlines) this.#deadlines[p] = 0;
  }

  /** True while this node holds the partition's lease (by its own conservative clock). */
  holds(partition: number): boolean {
    const until = this.#validUntil.get(partition);
    return until !== undefined && absoluteNow() < until;
  }

  /** Partitions whose lease this node believes it holds now. */
  held(): number[] {
    const now = absoluteNow();
    const out: number[] = [];
    for (const [p, until] of this.#validUntil) if (now < until) out.push(p);
    return out.sort((a, b) => a - b);
  }

  /** Takes the leases of free partitions (or re-tags this node's own) at `epoch`. Throws StaleEpoch. */
  async grab(partitions: readonly number[], epoch: number): Promise<GrabResult> {
    this.#check(partitions);
    if (partitions.length === 0) return { granted: [], heldElsewhere: [] };
    const sentAt = absoluteNow();
    const incarnation = this.#incarnation();
    const since = this.#replicas?.begin();
    const reply = (await withinMs(
      grabPartitionLeases.run(this.#redis, [this.keys.ringMeta, this.keys.incarnation, ...partitions.map((p) => this.keys.lease(p))], [this.self, epoch, this.ttlMs, incarnation]),
      this.#callTimeoutMs,
      `lease grab of ${partitions.length} partitions`,
    )) as [number, number | string, ...string[]];
    this.#lastOkAt = absoluteNow();
    if (reply[0] === -2) throw new ClusterDataLost(incarnation, String(reply[1]));
    if (reply[0] === -3) throw new IncarnationTooYoung(Number(reply[1]));
    if (reply[0] === -1) {
      this.#staleEpochRefusals++;
      throw new StaleEpoch(epoch, Number(reply[1]), `lease grab of ${partitions.length} partitions`);
    }
    // Not confirmed by a replica: nothing is served on it (Redis lets the leases lapse at their TTL).
    if (since !== undefined) await this.#replicas!.confirm(since);
    const result: GrabResult = { granted: [], heldElsewhere: [] };
    const until = sentAt + this.ttlMs - this.marginMs;
    partitions.forEach((p, i) => {
      const other = reply[2 + i] as string;
      if (other === '') {
        this.#set(p, until);
        result.granted.push(p);
      } else {
        const bar = other.indexOf('|');
        result.heldElsewhere.push({ partition: p, epoch: Number(other.slice(0, bar)), node: other.slice(bar + 1) });
      }
    });
    return result;
  }

  /** Extends every lease this node holds, in one script call, and tags them with `epoch`. Throws StaleEpoch. */
  async renew(epoch: number): Promise<RenewResult> {
    const mine = [...this.#validUntil.keys()];
    if (mine.length === 0) return { renewed: [], lost: [] };
    const sentAt = absoluteNow();
    const since = this.#replicas?.begin();
    const reply = (await withinMs(
      renewPartitionLeases.run(this.#redis, [this.keys.ringMeta, ...mine.map((p) => this.keys.lease(p))], [this.self, epoch, this.ttlMs]),
      this.#callTimeoutMs,
      `renewal of ${mine.length} leases`,
    )) as number[];
    this.#lastOkAt = absoluteNow();
    if (reply[0] === -1) {
      this.#staleEpochRefusals++;
      throw new StaleEpoch(epoch, reply[1]!, `renewal of ${mine.length} leases`);
    }
    // Not confirmed by a replica: the deadlines are not extended, and lapse unless a renewal is.
    if (since !== undefined) await this.#replicas!.confirm(since);
    const result: RenewResult = { renewed: [], lost: [] };
    const until = sentAt + this.ttlMs - this.marginMs;
    mine.forEach((p, i) => {
      // A partition released while the renewal was in flight stays released.
      if (!this.#validUntil.has(p)) return;
      // Still ours in Redis means nobody else held it meanwhile (an expired lease reads as nil),
      // even if our local deadline lapsed during a pause; so a renewal may revive it.
      if (reply[2 + i] === 1) {
        this.#set(p, until);
        result.renewed.push(p);
      } else {
        this.#drop(p);
        result.lost.push(p);
      }
    });
    return result;
  }

  /** Gives leases back at once (after a hand-off), so the new owner need not wait for the TTL. */
  async release(partitions: readonly number[]): Promise<number[]> {
    this.#check(partitions);
    if (partitions.length === 0) return [];
    for (const p of partitions) this.#drop(p);
    const reply = (await releasePartitionLeases.run(this.#redis, partitions.map((p) => this.keys.lease(p)), [this.self])) as number[];
    return partitions.filter((_, i) => reply[i] === 1);
  }

  /** Releases every held lease (graceful leave, after the hand-offs). */
  async releaseAll(): Promise<number[]> {
    return this.release([...this.#validUntil.keys()]);
  }

  /** Who holds a partition's lease in Redis now (for inspection and tests). */
  async holderOf(partition: number): Promise<LeaseHolder | undefined> {
    const v = await this.#redis.get(this.keys.lease(partition));
    if (v === null) return undefined;
    const bar = v.indexOf('|');
    return { partition, epoch: Number(v.slice(0, bar)), node: v.slice(bar + 1) };
  }

  /**
   * Renews every `everyMs` (default ttl/4). `epoch()` gives this node's ring epoch; on StaleEpoch
   * `refresh()` must bring the ring up to date (it returns the new epoch) and the renewal is retried
   * once. `onLost` hears of leases lost to expiry or to another node. The expiry sweep runs on its
   * own timer, at each lease's deadline, whether or not a renewal is stuck.
   */
  startRenewing(o: { epoch: () => number; refresh: () => Promise<number>; onLost: (partitions: number[]) => void; everyMs?: number }): void {
    const every = o.everyMs ?? Math.max(50, Math.floor(this.ttlMs / 4));
    const tick = async (): Promise<void> => {
      if (this.#renewing) return;
      this.#renewing = true;
      try {
        let result: RenewResult;
        try {
          result = await this.renew(o.epoch());
        } catch (err) {
          if (!(err instanceof StaleEpoch)) throw err;
          this.#log.warn({ err: err.message }, 'lease renewal refused at a stale ring epoch; refreshing the ring and renewing again');
          result = await this.renew(await o.refresh());
        }
        if (result.lost.length > 0) o.onLost(result.lost);
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'lease renewal failed; leases lapse at their local deadline');
      } finally {
        this.#renewing = false;
      }
    };
    this.stopRenewing();
    this.#onExpired = o.onLost;
    for (const until of this.#validUntil.values()) this.#armExpiry(until);
    this.#renewTimer = setInterval(() => void tick(), every);
    this.#renewTimer.unref();
  }

  stopRenewing(): void {
    clearInterval(this.#renewTimer);
    clearTimeout(this.#expiryTimer);
    this.#renewTimer = undefined;
    this.#expiryTimer = undefined;
    this.#expiryAt = Infinity;
    this.#onExpired = undefined;
  }
}
