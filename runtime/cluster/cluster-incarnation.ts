// Whether the Redis a node talks to still holds the node's cluster: a random incarnation id is
// written when the cluster is created, and every node remembers it in its data directory. A Redis
// without it (restarted empty) while a node remembers one has lost the cluster's data: the cluster
// is marked lost, no lease is granted, and meanwhile every node publishes what it stored of the
// partitions it served last (newest tenure per partition wins) until an operator accepts.

import Database from 'better-sqlite3';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { rootLogger, type Logger } from '../log.js';
import { shardDatabasePath } from '../snapshot-store.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

/**
 * KEYS: incarnation hash. ARGV: the id this node remembers ('' for none), a fresh id, node, now ms.
 * Creates the cluster when Redis holds none; marks it lost when the node remembers another one
 * (unless an operator accepted losing that one). Reply: {id, lost reason or ''}.
 */
const checkIncarnation = new LuaScript(
  'check_cluster_incarnation_1_key',
  `local function listed(field, id)
  return string.find(' ' .. (redis.call('HGET', KEYS[1], field) or '') .. ' ', ' ' .. id .. ' ', 1, true) ~= nil
end
local function mark_lost(why)
  if redis.call('HEXISTS', KEYS[1], 'lost') == 0 then redis.call('HSET', KEYS[1], 'lost', why, 'lost_at', ARGV[4]) end
  if not listed('stale', ARGV[1]) then redis.call('HSET', KEYS[1], 'stale', (redis.call('HGET', KEYS[1], 'stale') or '') .. ' ' .. ARGV[1]) end
end
local id = redis.call('HGET', KEYS[1], 'id')
if not id then
  id = ARGV[2]
  -- Redis time: the lease grab script grants nothing during the incarnation's first TTL.
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'id', id, 'created', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  if ARGV[1] ~= '' then mark_lost('node ' .. ARGV[3] .. ' remembers cluster incarnation ' .. ARGV[1] .. ' and Redis held none (restarted without its data?)') end
elseif ARGV[1] ~= '' and ARGV[1] ~= id and not listed('replaces', ARGV[1]) then
  mark_lost('node ' .. ARGV[3] .. ' remembers cluster incarnation ' .. ARGV[1] .. ' and Redis holds ' .. id)
end
return { id, redis.call('HGET', KEYS[1], 'lost') or '' }`,
);

/**
 * KEYS: incarnation hash, rebuild hash, the partition's changelog. ARGV: node, tenure epoch,
 * partition, 'first'|'more', then actor id / state pairs. Only while the cluster is marked lost: the
 * newest tenure of a partition wins (an older one is refused with 0; a newer one replaces the
 * changelog an older one published). -1 when the cluster is not marked lost.
 */
const publishPartition = new LuaScript(
  'publish_rebuilt_partition_3_keys',
  `if redis.call('HEXISTS', KEYS[1], 'lost') == 0 then return -1 end
local tag = ARGV[2] .. '|' .. ARGV[1]
local claim = redis.call('HGET', KEYS[2], ARGV[3])
if claim and claim ~= tag then
  if tonumber(string.sub(claim, 1, string.find(claim, '|', 1, true) - 1)) >= tonumber(ARGV[2]) then return 0 end
end
if claim ~= tag or ARGV[4] == 'first' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], ARGV[3], tag)
end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return 1`,
);

/** KEYS: incarnation hash, rebuild hash. The operator accepts: the cluster serves again with what was rebuilt. Reply: 1, or 0 if it was not lost. */
const acceptLoss = new LuaScript(
  'accept_cluster_data_loss_2_keys',
  `if redis.call('HEXISTS', KEYS[1], 'lost') == 0 then return 0 end
local replaces = (redis.call('HGET', KEYS[1], 'replaces') or '') .. ' ' .. (redis.call('HGET', KEYS[1], 'stale') or '')
redis.call('HSET', KEYS[1], 'replaces', replaces, 'accepted_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'lost', 'lost_at', 'stale')
redis.call('DEL', KEYS[2])
return 1`,
);

/** What a node keeps of its cluster in its data directory (`cluster-<name>.json`). */
interface Remembered {
  incarnation: string;
  /** The ring members it saw last: the nodes whose data a rebuild should wait for. */
  ringMembers: string[];
  /** partition -> the ring epoch at which this node last began serving it. */
  tenures: Record<string, number>;
  /** The node ids that ran on this data directory (a restarted node gets a new id). */
  nodeIds: string[];
}

/** Rows per publish call: a long script blocks Redis for everyone. */
const ROWS_PER_CALL = 256;

export interface IncarnationOptions {
  redis: Redis;
  cluster: string;
  self: string;
  dataDir: string;
  shards: number;
  /** How often Redis is checked for the incarnation; default 1000 ms. */
  checkMs?: number;
  log?: Logger;
}

export class ClusterIncarnation {
  readonly #o: IncarnationOptions;
  readonly #keys: ClusterKeys;
  readonly #path: string;
  readonly #log: Logger;
  #remembered: Remembered;
  /** The incarnation Redis holds (as last checked), and why the cluster is marked lost ('' if not). */
  #id = '';
  #lost = '';
  #published = '';
  #timer: NodeJS.Timeout | undefined;
  #checking = false;
  readonly #listeners = new Set<() => void>();

  private constructor(o: IncarnationOptions) {
    this.#o = o;
    this.#keys = clusterKeys(o.cluster);
    this.#path = join(o.dataDir, `cluster-${o.cluster}.json`);
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'incarnation' });
    this.#remembered = existsSync(this.#path) ? (JSON.parse(readFileSync(this.#path, 'utf8')) as Remembered) : { incarnation: '', ringMembers: [], tenures: {}, nodeIds: [] };
    this.#remembered.nodeIds = [...(this.#remembered.nodeIds ?? []).filter((id) => id !== o.self).slice(-15), o.self];
  }

  /** Checks Redis against what the data directory remembers (creating the cluster in a Redis that has none and a node that remembers none). */
  static async open(o: IncarnationOptions): Promise<ClusterIncarnation> {
    const inc = new ClusterIncarnation(o);
    await inc.check();
    return inc;
  }

  /** The incarnation this node serves under: lease grabs carry it, and Redis refuses them if it differs or the cluster is lost. */
  expected(): string {
    return this.#remembered.incarnation || this.#id;
  }

  /** Why the cluster is marked lost ('' when it is not). */
  lost(): string {
    return this.#lost;
  }

  /** Called when the cluster stops or starts being lost. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async check(): Promise<void> {
    const [id, lost] = (await checkIncarnation.run(this.#o.redis, [this.#keys.incarnation], [this.#remembered.incarnation, randomBytes(8).toString('hex'), this.#o.self, Date.now()])) as [string, string];
    const was = this.#lost;
    this.#id = id;
    this.#lost = lost;
    if (lost === '' && this.#remembered.incarnation !== id) {
      if (this.#remembered.incarnation !== '') this.#log.warn({ from: this.#remembered.incarnation, to: id }, 'an operator accepted the loss of the cluster\'s Redis data; serving under the new incarnation');
      this.#remembered.incarnation = id;
      this.#save();
    }
    if (lost !== '' && was === '') this.#log.error({ why: lost }, 'Redis lost the cluster\'s data: serving nothing until an operator runs `troupe recover --accept`; publishing what this node stored meanwhile');
    if (lost !== '' && this.#published !== lost) {
      await this.#publish();
      this.#published = lost;
    }
    if (was !== lost) for (const l of this.#listeners) l();
  }

  /** Checks every `checkMs` (a node that keeps running through a Redis restart notices it too). */
  watch(): void {
    this.#timer = setInterval(() => {
      if (this.#checking) return;
      this.#checking = true;
      this.check()
        .catch((err: Error) => this.#log.debug({ err: err.message }, 'checking the cluster incarnation failed'))
        .finally(() => (this.#checking = false));
    }, this.#o.checkMs ?? 1000);
    this.#timer.unref();
  }

  /** Partitions this node begins serving at `epoch` (after it took their leases and recovered them). */
  noteTenures(partitions: readonly number[], epoch: number): void {
    for (const p of partitions) this.#remembered.tenures[p] = epoch;
    this.#save();
  }

  noteRingMembers(members: readonly string[]): void {
    this.#remembered.ringMembers = [...members];
    this.#save();
  }

  #save(): void {
    const tmp = this.#path + '.tmp';
    writeFileSync(tmp, JSON.stringify(this.#remembered));
    renameSync(tmp, this.#path);
  }

  /**
   * Publishes, for every partition this node served, what its shards stored of it, tagged with the
   * tenure's epoch: Redis keeps the newest tenure's rows per partition, whatever order nodes come in.
   */
  async #publish(): Promise<void> {
    const tenures = Object.entries(this.#remembered.tenures).map(([p, e]) => [Number(p), e] as const);
    if (tenures.length === 0) return;
    const rows = new Map<number, { id: string; blob: Buffer }[]>();
    for (let s = 0; s < this.#o.shards; s++) {
      const path = shardDatabasePath(this.#o.dataDir, s);
      if (!existsSync(path)) continue;
      const db = new Database(path, { readonly: true, fileMustExist: true });
      try {
        for (const r of db.prepare('SELECT actor AS id, partition, state AS blob FROM snapshot').iterate() as IterableIterator<{ id: string; partition: number; blob: Buffer }>) {
          let list = rows.get(r.partition);
          if (!list) rows.set(r.partition, (list = []));
          list.push({ id: r.id, blob: r.blob });
        }
      } finally {
        db.close();
      }
    }
    let won = 0;
    let states = 0;
    for (const [p, epoch] of tenures) {
      const mine = rows.get(p) ?? [];
      for (let start = 0; start === 0 || start < mine.length; start += ROWS_PER_CALL) {
        const args: (string | number | Buffer)[] = [this.#o.self, epoch, p, start === 0 ? 'first' : 'more'];
        for (const r of mine.slice(start, start + ROWS_PER_CALL)) args.push(r.id, r.blob);
        const took = (await publishPartition.run(this.#o.redis, [this.#keys.incarnation, this.#keys.rebuild, this.#keys.changelog(p)], args)) as number;
        if (took !== 1) break;
        if (start === 0) won++;
        states += Math.min(ROWS_PER_CALL, mine.length - start);
      }
    }
    await this.#o.redis.hset(this.#keys.rebuild, `by:${this.#o.self}`, JSON.stringify({ at: Date.now(), served: tenures.length, newest: won, states, ringMembers: this.#remembered.ringMembers, nodeIds: this.#remembered.nodeIds }));
    this.#log.warn({ served: tenures.length, newest: won, states }, 'published what this node stored of the partitions it served last, for the rebuild of the lost Redis data');
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** What `troupe recover` shows: is the cluster lost, which nodes published, which partitions have no claim. */
export interface RecoveryStatus {
  incarnation: string;
  lost: string;
  lostAt: number | undefined;
  /** Nodes that published their rows, with what they said. */
  published: { node: string; at: number; served: number; newest: number; states: number; ringMembers: string[]; nodeIds: string[] }[];
  /** Nodes some publisher saw on the ring last and that have not published. */
  missing: string[];
  /** Partitions claimed by some node's tenure, of `partitions`. */
  claimed: number;
}

export async function recoveryStatus(redis: Redis, cluster: string, partitions: number): Promise<RecoveryStatus> {
  const keys = clusterKeys(cluster);
  const inc = await redis.hgetall(keys.incarnation);
  const rebuild = await redis.hgetall(keys.rebuild);
  const published: RecoveryStatus['published'] = [];
  let claimed = 0;
  for (const [field, value] of Object.entries(rebuild)) {
    if (field.startsWith('by:')) published.push({ node: field.slice(3), ...(JSON.parse(value) as Omit<RecoveryStatus['published'][number], 'node'>) });
    else if (Number(field) < partitions) claimed++;
  }
  const seen = new Set(published.flatMap((p) => p.ringMembers));
  const missing = [...seen].filter((n) => !published.some((p) => p.node === n || p.nodeIds.includes(n))).sort();
  return { incarnation: inc.id ?? '', lost: inc.lost ?? '', lostAt: inc.lost_at ? Number(inc.lost_at) : undefined, published: published.sort((a, b) => a.node.localeCompare(b.node)), missing, claimed };
}

/** The operator's word: serve again with what was rebuilt. False if the cluster was not marked lost. */
export async function acceptDataLoss(redis: Redis, cluster: string): Promise<boolean> {
  const keys = clusterKeys(cluster);
  return (await acceptLoss.run(redis, [keys.incarnation, keys.rebuild], [Date.now()])) === 1;
}
