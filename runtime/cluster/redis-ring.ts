// The ring's member set kept in Redis under an epoch: joins and leaves are Lua scripts that change
// the set and bump the epoch atomically, then announce the new epoch on pub/sub (with polling as
// the fallback). Every node computes the partition -> owner table from (epoch, members) itself.

import type { Redis } from 'ioredis';
import { rootLogger, type Logger } from '../log.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';
import { DEFAULT_VNODES, Ring } from './ring.js';

const READ_RING = `local members = redis.call('SMEMBERS', KEYS[2])
local out = { tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') }
for _, m in ipairs(members) do out[#out + 1] = m end
return out`;

/** KEYS: ring meta, ring members. ARGV: 'add'|'remove', channel, node ids. Bumps the epoch only if the set changed. */
const changeRingMembers = new LuaScript(
  'change_ring_members_2_keys',
  `local changed = 0
for i = 3, #ARGV do
  if ARGV[1] == 'add' then changed = changed + redis.call('SADD', KEYS[2], ARGV[i])
  else changed = changed + redis.call('SREM', KEYS[2], ARGV[i]) end
end
if changed > 0 then
  local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('PUBLISH', ARGV[2], tostring(epoch))
end
` + READ_RING,
);

/** KEYS: ring meta, ring members, membership zset. ARGV: channel. Takes members whose heartbeat deadline passed off the ring. */
const removeDeadRingMembers = new LuaScript(
  'remove_dead_ring_members_3_keys',
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local deadline = redis.call('ZSCORE', KEYS[3], m)
  if not deadline or tonumber(deadline) < now then
    changed = changed + redis.call('SREM', KEYS[2], m)
  end
end
if changed > 0 then
  local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('PUBLISH', ARGV[1], tostring(epoch))
end
` + READ_RING,
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

  async join(...ids: string[]): Promise<RingView> {
    return this.#adopt(await changeRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], ['add', this.keys.ringChannel, ...ids]));
  }

  async leave(...ids: string[]): Promise<RingView> {
    return this.#adopt(await changeRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], ['remove', this.keys.ringChannel, ...ids]));
  }

  /** Takes the nodes the membership declared dead off the ring (any node may call it; it is idempotent). */
  async removeDead(): Promise<RingView> {
    return this.#adopt(
      await removeDeadRingMembers.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers, this.keys.members], [this.keys.ringChannel]),
    );
  }

  async refresh(): Promise<RingView> {
    return this.#adopt(await readRing.run(this.#redis, [this.keys.ringMeta, this.keys.ringMembers], []));
  }

  #adopt(reply: unknown): RingView {
    const [epoch, ...members] = reply as [number, ...string[]];
    if (epoch <= this.#view.epoch) return this.#view;
    const previous = this.#view;
    const sorted = members.sort();
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
