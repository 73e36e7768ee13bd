// The ring's member set kept in Redis under an epoch: joins and leaves are Lua scripts that change
// the set and bump the epoch atomically, then announce the new epoch on pub/sub (with polling as
// the fallback). Every node computes the partition -> owner table from (epoch, members) itself.
// The epoch never goes backwards, even when Redis lost it: every change sets it above the
// caller's own view, and a node that reads an epoch below its view raises it (see refresh).

import type { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { rootLogger, type Logger } from '../log.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';
import { DEFAULT_VNODES, Ring } from './ring.js';

const READ_RING = `local members = redis.call('SMEMBERS', KEYS[2])
local out = { tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') }
for _, m in ipairs(members) do out[#out + 1] = m end
return out`;

/**
 * Lua: the next epoch after a change, `max(epoch in Redis, caller's view) + 1`, stored and
 * announced. `mine` is the caller's view: when Redis lost the ring (restarted empty), its epoch is
 * below what the nodes saw, and counting on from it would give old epoch numbers new meanings.
 */
const BUMP_EPOCH = `local function bump_epoch(meta, channel, mine)
  local current = tonumber(redis.call('HGET', meta, 'epoch') or '0')
  local epoch = math.max(current, tonumber(mine)) + 1
  redis.call('HSET', meta, 'epoch', epoch)
  redis.call('PUBLISH', channel, tostring(epoch))
end
`;

/**
 * KEYS: ring meta, ring members. ARGV: 'add'|'remove', channel, caller's epoch, node ids. Bumps the
 * epoch if the set changed, or if Redis is behind the caller.
 */
const changeRingMembers = new LuaScript(
  'change_ring_members_2_keys',
  BUMP_EPOCH +
    `local changed = 0
for i = 4, #ARGV do
  if ARGV[1] == 'add' then changed = changed + redis.call('SADD', KEYS[2], ARGV[i])
  else changed = changed + redis.call('SREM', KEYS[2], ARGV[i]) end
end
if changed > 0 or tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') < tonumber(ARGV[3]) then
  bump_epoch(KEYS[1], ARGV[2], ARGV[3])
end
` +
    READ_RING,
);

/**
 * KEYS: ring meta, ring members, membership zset. ARGV: channel, caller's epoch. Takes members whose
 * heartbeat deadline passed off the ring.
 */
const removeDeadRingMembers = new LuaScript(
  'remove_dead_ring_members_3_keys',
  BUMP_EPOCH +
    `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local deadline = redis.call('ZSCORE', KEYS[3], m)
  if not deadline or tonumber(deadline) < now then
    changed = changed + redis.call('SREM', KEYS[2], m)
  end
end
if changed > 0 or tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') < tonumber(ARGV[2]) then
  bump_epoch(KEYS[1], ARGV[1], ARGV[2])
end
` +
    READ_RING,
);

/**
 * KEYS: ring meta, ring members. ARGV: channel, caller's epoch. A node that read an epoch below its
 * own view, or its own epoch with other members (Redis lost the ring and it was rebuilt), raises the
 * epoch above its view, so every node adopts the ring Redis holds now. A no-op if another node did.
 */
const raiseRingEpoch = new LuaScript(
  'raise_ring_epoch_2_keys',
  BUMP_EPOCH +
    `if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') <= tonumber(ARGV[2]) then
  bump_epoch(KEYS[1], ARGV[1], ARGV[2])
end
` +
    READ_RING,
);

const readRing = new LuaScript('read_ring_2_keys', READ_RING);

export interface RingView {
  /** Bumped by every change of the member set; 0 before the first join. */
  readonly epoch: number;
  /** Sorted. */
  readonly members: readonly string[];
  /** owners[p] = the node owning partition p at this epoch ('' on an empty ring). */
  readonly owners: readonly string[];
}

export interface RedisRingOptions {
  /** Command connection; the ring duplicates it for pub/sub. The caller closes it. */
  redis: Redis;
  cluster: string;
  partitions: number;
  vnodes?: number;
  /** Default 500 ms. */
  pollMs?: number;
  log?: Logger;
}

export class RedisRing {
  readonly keys: ClusterKeys;
  readonly partitions: number;
  readonly vnodes: number;
  readonly #redis: Redis;
  #subscriber: Redis | undefined;
  readonly #pollMs: number;
  readonly #log: Logger;
  #view: RingView = { epoch: -1, members: [], owners: [] };
  readonly #listeners = new Set<(view: RingView, previous: RingView) => void>();
  #poll: NodeJS.Timeout | undefined;
  #raised = 0;
  #answeredAt = performance.timeOrigin + performance.now();

  private constructor(o: RedisRingOptions) {
    this.keys = clusterKeys(o.cluster);
    this.partitions = o.partitions;
    this.vnodes = o.vnodes ?? DEFAULT_VNODES;
    this.#redis = o.redis;
    this.#pollMs = o.pollMs ?? 500;
    this.#log = (o.log ?? rootLogger()).child({ part: 'ring' });
  }

  /** Reads the current ring and follows its changes (does not join). */
  static async open(o: RedisRingOptions): Promise<RedisRing> {
    const ring = new RedisRing(o);
    ring.#subscriber = o.redis.duplicate();
    ring.#subscriber.on('error', (err) => ring.#log.warn({ err: err.message }, 'ring subscriber connection error'));
    ring.#subscriber.on('message', (_channel: string, epoch: string) => {
      if (Number(epoch) > ring.#view.epoch) void ring.refresh().catch(() => {});
    });
    try {
      await ring.#subscriber.subscribe(ring.keys.ringChannel);
      await ring.refresh();
    } catch (err) {
      await ring.close();
      throw new Error(`cannot read the ring of cluster ${o.cluster} from Redis: ${(err as Error).message}`);
    }
    ring.#poll = setInterval(() => void ring.refresh().catch((err) => ring.#log.warn({ err: err.message }, 'ring poll failed')), ring.#pollMs);
    ring.#poll.unref();
    return ring;
  }

  /** The newest ring this node has seen. */
  view(): RingView {
    return this.#view;
  }

  /** Called with each newer view (epochs only move forward). Returns an unsubscribe function. */
  onChange(listener: (view: RingView, previous: RingView) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** When (absolute ms) Redis last answered a ring call. */
  get lastAnsweredAt(): number {
    return this.#answeredAt;
  }

  /** How many times this node found Redis behind its view of the ring and raised the epoch. */
  get epochRaises(): number {
    return this.#raised;
  }

  /** The epoch this node offers with a change: its view, never below 0. */
  #mine(): number {
    return Math.max(0, this.#view.epoch);
  }

  async join(...ids: string[]): Promise<RingView> {
    return this.#adopt(await changeRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], ['add', this.keys.ringChannel, this.#mine(), ...ids]));
  }

  async leave(...ids: string[]): Promise<RingView> {
    return this.#adopt(await changeRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], ['remove', this.keys.ringChannel, this.#mine(), ...ids]));
  }

  /** Takes the nodes the membership declared dead off the ring (any node may call it; it is idempotent). */
  async removeDead(): Promise<RingView> {
    return this.#adopt(
      await removeDeadRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers, this.keys.members], [this.keys.ringChannel, this.#mine()]),
    );
  }

  async refresh(): Promise<RingView> {
    return this.#adopt(await readRing.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], []));
  }

  /**
   * Adopts a newer ring. A ring behind this node's view (or at its epoch with other members) means
   * Redis lost the ring: the epoch is raised above the view, and the raised ring is adopted.
   */
  async #adopt(reply: unknown): Promise<RingView> {
    this.#answeredAt = performance.timeOrigin + performance.now();
    const [epoch, ...members] = reply as [number, ...string[]];
    const sorted = members.sort();
    if (epoch < this.#view.epoch || (epoch === this.#view.epoch && !sameMembers(sorted, this.#view.members))) {
      this.#raised++;
      this.#log.warn(
        { redisEpoch: epoch, viewEpoch: this.#view.epoch, members: sorted.length },
        'Redis holds a ring behind this node\'s view (did it restart without its data?); raising the ring epoch above the view',
      );
      const raised = (await raiseRingEpoch.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], [this.keys.ringChannel, this.#mine()])) as [number, ...string[]];
      if (raised[0] <= this.#view.epoch) return this.#view;
      return this.#adopt(raised);
    }
    if (epoch === this.#view.epoch) return this.#view;
    const previous = this.#view;
    this.#view = { epoch, members: sorted, owners: new Ring(sorted, this.vnodes).assign(this.partitions) };
    for (const l of this.#listeners) {
      try {
        l(this.#view, previous);
      } catch (err) {
        this.#log.error({ err }, 'ring listener threw');
      }
    }
    return this.#view;
  }

  async close(): Promise<void> {
    clearInterval(this.#poll);
    const s = this.#subscriber;
    this.#subscriber = undefined;
    if (s) await s.quit().catch(() => s.disconnect());
  }
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((m, i) => m === b[i]);
}
