// Cluster membership kept in Redis: each node registers (id, advertised address, start time) and
// heartbeats; a node whose heartbeat deadline passes is dead, whatever it believes. Deadlines are
// Redis server time (TIME inside the scripts), so clocks of the nodes never need to agree.

import type { Redis } from 'ioredis';
import { rootLogger, type Logger } from '../log.js';
import type { Membership } from '../membership.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS: members zset, node hash, gauges hash. ARGV: id, deadAfterMs, 'register'|'beat', address,
 * started, channel, then gauge name/value pairs. A 'beat' from a node already past its deadline is refused
 * (returns 0): it was declared dead and must drop its partitions and register again.
 */
const heartbeatMember = new LuaScript(
  'heartbeat_member_3_keys',
  NOW_MS +
    `local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local alive = score and tonumber(score) >= now
if ARGV[3] == 'beat' and not alive then
  if score then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('PUBLISH', ARGV[6], 'dead ' .. ARGV[1])
  end
  return 0
end
if ARGV[3] == 'register' then redis.call('DEL', KEYS[3]) end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], 'address', ARGV[4], 'started', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl)
if #ARGV > 6 then
  redis.call('HSET', KEYS[3], unpack(ARGV, 7))
end
redis.call('PEXPIRE', KEYS[3], ttl)
if ARGV[3] == 'register' and not alive then
  redis.call('PUBLISH', ARGV[6], 'joined ' .. ARGV[1])
end
return 1`,
);

/** KEYS: members zset. ARGV: key prefix, channel. Removes the dead; returns live id, address, started triples. */
const readLiveMembers = new LuaScript(
  'read_live_members_1_key',
  NOW_MS +
    `local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('PUBLISH', ARGV[2], 'dead ' .. id)
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', ARGV[1] .. 'node:' .. id, 'address', 'started')
  out[#out + 1] = id
  out[#out + 1] = h[1] or ''
  out[#out + 1] = h[2] or ''
end
return out`,
);

/**
 * KEYS: members zset. ARGV: key prefix, gauge name, the asking node's id. The gauge summed over the
 * live members other than the asker, as a string (Lua numbers would be truncated): the asker adds
 * its own value from memory, which is newer than what its last flush left in Redis.
 */
const sumLiveGauge = new LuaScript(
  'sum_live_gauge_1_key',
  NOW_MS +
    `local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local sum = 0
for _, id in ipairs(ids) do
  if id ~= ARGV[3] then
    local v = redis.call('HGET', ARGV[1] .. 'gauges:' .. id, ARGV[2])
    if v then sum = sum + tonumber(v) end
  end
end
return tostring(sum)`,
);

/** KEYS: members zset, node hash, gauges hash. ARGV: id, channel. */
const leaveMembership = new LuaScript(
  'leave_membership_3_keys',
  `local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
if removed == 1 then redis.call('PUBLISH', ARGV[2], 'left ' .. ARGV[1]) end
return removed`,
);

export interface MemberInfo {
  id: string;
  /** Advertised host:port of the node's cluster transport. */
  address: string;
  /** Epoch ms at which the node started. */
  started: number;
}

export interface RedisMembershipOptions {
  /** Command connection; the membership duplicates it for pub/sub. The caller closes it. */
  redis: Redis;
  cluster: string;
  self: string;
  /** host:port peers dial to reach this node. */
  address: string;
  /** Default 500 ms. */
  heartbeatMs?: number;
  /** A node that has not heartbeaten for this long is dead. Default 2000 ms. */
  deadAfterMs?: number;
  /** Re-read of the member list when no announcement arrives (pub/sub is best effort). Default 250 ms. */
  pollMs?: number;
  log?: Logger;
}

export class RedisMembership implements Membership {
  readonly self: string;
  readonly keys: ClusterKeys;
  readonly #redis: Redis;
  #subscriber: Redis | undefined;
  readonly #address: string;
  readonly #started = Date.now();
  readonly #heartbeatMs: number;
  readonly #deadAfterMs: number;
  readonly #pollMs: number;
  readonly #log: Logger;
  #members = new Map<string, MemberInfo>();
  #sortedIds: string[] = [];
  readonly #gauges = new Map<string, number>();
  readonly #dirtyGauges = new Set<string>();
  #gaugeFlush: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<(members: string[]) => void>();
  readonly #evictedListeners = new Set<() => void>();
  #heartbeat: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #beating = false;
  #refreshing: Promise<string[]> | undefined;
  #refreshAgain = false;
  #running = false;
  #lastBeatOk = 0;

  private constructor(o: RedisMembershipOptions) {
    this.self = o.self;
    this.keys = clusterKeys(o.cluster);
    this.#redis = o.redis;
    this.#address = o.address;
    this.#heartbeatMs = o.heartbeatMs ?? 500;
    this.#deadAfterMs = o.deadAfterMs ?? 2000;
    this.#pollMs = o.pollMs ?? 250;
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'membership' });
    if (this.#deadAfterMs < 2 * this.#heartbeatMs) {
      throw new TypeError(`deadAfterMs (${this.#deadAfterMs}) must be at least twice heartbeatMs (${this.#heartbeatMs}), or one late heartbeat kills a node`);
    }
  }

  /** Registers this node, subscribes to announcements and starts heartbeating. */
  static async join(o: RedisMembershipOptions): Promise<RedisMembership> {
    const m = new RedisMembership(o);
    try {
      await m.#start();
    } catch (err) {
      await m.close();
      throw new Error(`node ${o.self} cannot join cluster ${o.cluster} in Redis: ${(err as Error).message}`);
    }
    return m;
  }

  async #start(): Promise<void> {
    this.#subscriber = this.#redis.duplicate();
    this.#subscriber.on('error', (err) => this.#log.warn({ err: err.message }, 'membership subscriber connection error'));
    this.#subscriber.on('message', () => void this.refresh().catch(() => {}));
    await this.#subscriber.subscribe(this.keys.membersChannel);
    await this.#beat('register');
    this.#running = true;
    await this.refresh();
    this.#heartbeat = setInterval(() => void this.#beat('beat').catch(() => {}), this.#heartbeatMs);
    this.#poll = setInterval(() => void this.refresh().catch(() => {}), this.#pollMs);
    this.#heartbeat.unref();
    this.#poll.unref();
  }

  async #beat(mode: 'register' | 'beat'): Promise<void> {
    if (this.#beating && mode === 'beat') return;
    this.#beating = true;
    const gaugeArgs: (string | number)[] = [];
    const sent = mode === 'register' ? [...this.#gauges.keys()] : [...this.#dirtyGauges];
    for (const name of sent) gaugeArgs.push(name, this.#gauges.get(name)!);
    this.#dirtyGauges.clear();
    try {
      const ok = await heartbeatMember.run(
        this.#redis,
        [this.keys.members, this.keys.node(this.self), this.keys.gauges(this.self)],
        [this.self, this.#deadAfterMs, mode, this.#address, this.#started, this.keys.membersChannel, ...gaugeArgs],
      );
      if (ok === 1) {
        this.#lastBeatOk = Date.now();
        return;
      }
      // Declared dead while paused or cut off: whatever this node served, others may serve now.
      this.#log.warn({ deadAfterMs: this.#deadAfterMs }, 'this node was declared dead by the cluster (missed heartbeats); registering again');
      for (const name of sent) this.#dirtyGauges.add(name);
      for (const l of this.#evictedListeners) l();
      if (this.#running) await this.#beat('register');
    } catch (err) {
      for (const name of sent) this.#dirtyGauges.add(name);
      this.#log.warn({ err: (err as Error).message, sinceLastOkMs: Date.now() - this.#lastBeatOk }, 'heartbeat failed');
      if (mode === 'register') throw err;
    } finally {
      this.#beating = false;
    }
  }

  members(): string[] {
    return this.#sortedIds;
  }

  /** Live members with their addresses, as of the last refresh. */
  info(id: string): MemberInfo | undefined {
    return this.#members.get(id);
  }

  setGauge(name: string, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`gauge ${name} must be a finite number, got ${value}`);
    this.#gauges.set(name, value);
    this.#dirtyGauges.add(name);
    // Batched: many setGauge calls in a burst cost one round trip.
    this.#gaugeFlush ??= setTimeout(() => {
      this.#gaugeFlush = undefined;
      if (this.#running) void this.#beat('beat').catch(() => {});
    }, 20);
  }

  async sumGauge(name: string): Promise<number> {
    // This node's own value comes from memory: a WHO asked right after connecting counts its own
    // connection, though the gauge reaches Redis only at the next flush.
    const others = await sumLiveGauge.run(this.#redis, [this.keys.members], [this.keys.prefix, name, this.self]);
    return Number(others) + (this.#gauges.get(name) ?? 0);
  }

  onChange(listener: (members: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when the cluster declared this node dead (it stopped heartbeating for too long). */
  onEvicted(listener: () => void): () => void {
    this.#evictedListeners.add(listener);
    return () => this.#evictedListeners.delete(listener);
  }

  /** Re-reads the live members now (also removes the dead); notifies listeners on a change. */
  refresh(): Promise<string[]> {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return this.#refreshing;
    }
    this.#refreshing = this.#read().finally(() => {
      this.#refreshing = undefined;
      if (this.#refreshAgain) {
        this.#refreshAgain = false;
        void this.refresh().catch(() => {});
      }
    });
    return this.#refreshing;
  }

  async #read(): Promise<string[]> {
    const flat = (await readLiveMembers.run(this.#redis, [this.keys.members], [this.keys.prefix, this.keys.membersChannel])) as string[];
    const next = new Map<string, MemberInfo>();
    for (let i = 0; i + 2 < flat.length; i += 3) next.set(flat[i]!, { id: flat[i]!, address: flat[i + 1]!, started: Number(flat[i + 2]) });
    if (!next.has(this.self) && this.#running) next.set(this.self, { id: this.self, address: this.#address, started: this.#started });
    const ids = [...next.keys()].sort();
    const changed = ids.length !== this.#sortedIds.length || ids.some((id, i) => id !== this.#sortedIds[i]);
    this.#members = next;
    if (changed) {
      this.#sortedIds = ids;
      for (const l of this.#listeners) {
        try {
          l(ids);
        } catch (err) {
          this.#log.error({ err }, 'membership listener threw');
        }
      }
    }
    return ids;
  }

  /** Graceful leave: others see it at once (no wait for the deadline). */
  async leave(): Promise<void> {
    this.#stopTimers();
    await leaveMembership.run(this.#redis, [this.keys.members, this.keys.node(this.self), this.keys.gauges(this.self)], [this.self, this.keys.membersChannel]);
    await this.#closeSubscriber();
  }

  /** Stops heartbeating without leaving (as a crash would look, for tests and for SIGKILL-like exits). */
  async close(): Promise<void> {
    this.#stopTimers();
    await this.#closeSubscriber();
  }

  #stopTimers(): void {
    this.#running = false;
    clearInterval(this.#heartbeat);
    clearInterval(this.#poll);
    clearTimeout(this.#gaugeFlush);
    this.#gaugeFlush = undefined;
  }

  async #closeSubscriber(): Promise<void> {
    const s = this.#subscriber;
    this.#subscriber = undefined;
    if (s) await s.quit().catch(() => s.disconnect());
  }
}
