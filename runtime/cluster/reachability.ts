// Peers that cannot reach each other: each node notes when it last heard from every peer (any frame
// on the peer's link, heartbeats included), reports the peers it has not heard from for longer than
// the failure-detection time to Redis (a set per node, with a TTL), and reads everyone's reports.
// From that graph every node computes the same survivors (the rule below); a node that is not among
// them leaves the ring, so its leases go to the others, until it can reach them again.

import type { Redis } from 'ioredis';
import { rootLogger, type Logger } from '../log.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { LuaScript } from './lua-script.js';

/**
 * KEYS: this node's set of unreachable peers, the members zset. ARGV: ttlMs, key prefix, the peers
 * this node cannot reach. Replaces the set (with a TTL, so a dead node's report goes with it) and
 * returns every live member's report: id, count, peers..., repeated.
 */
const reportUnreachablePeers = new LuaScript(
  'report_unreachable_peers_2_keys',
  `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do
  local peers = redis.call('SMEMBERS', ARGV[2] .. 'unreachable:' .. id)
  out[#out + 1] = id
  out[#out + 1] = #peers
  for _, p in ipairs(peers) do out[#out + 1] = p end
end
return out`,
);

/** A live member as the rule sees it. */
export interface Member {
  id: string;
  /** Epoch ms it started (the oldest wins a tie). */
  started: number;
}

/**
 * The rule: of the live members, keep a set in which every two can reach each other. While two
 * kept members cannot (either reported the other), drop the one cut from the most kept members;
 * on a tie, the younger (later start, then the greater id). So the side that reaches a majority
 * keeps the partitions (Akka's keep-majority), a node cut from everyone goes first, a node that only
 * some cannot reach is dropped rather than left to stall them, and of two nodes that lost each
 * other the oldest stays. Every node computes it from the same reports, so they agree.
 */
export function survivors(members: readonly Member[], cuts: ReadonlyMap<string, ReadonlySet<string>>): Set<string> {
  const kept = new Map(members.map((m) => [m.id, m]));
  const cut = (a: string, b: string): boolean => cuts.get(a)?.has(b) === true || cuts.get(b)?.has(a) === true;
  for (;;) {
    let victim: Member | undefined;
    let worst = 0;
    for (const m of kept.values()) {
      let degree = 0;
      for (const other of kept.keys()) if (other !== m.id && cut(m.id, other)) degree++;
      if (degree === 0) continue;
      const younger = victim !== undefined && (m.started > victim.started || (m.started === victim.started && m.id > victim.id));
      if (degree > worst || (degree === worst && younger)) {
        victim = m;
        worst = degree;
      }
    }
    if (victim === undefined) return new Set(kept.keys());
    kept.delete(victim.id);
  }
}

/** What reachability needs of the transport. */
export interface PeerLinks {
  /** performance.now() when a frame from the peer last arrived; undefined if none yet. */
  lastHeard(peer: string): number | undefined;
  /** Sends each peer a heartbeat if its link is idle, so that silence means a cut. */
  heartbeat(peers: readonly string[]): void;
}

export interface ReachabilityOptions {
  self: string;
  redis: Redis;
  cluster: string;
  links: PeerLinks;
  /** The live members now (this node included). */
  members(): readonly string[];
  /** When a member started (epoch ms), if known. */
  startedAt(id: string): number | undefined;
  /** Peers that became unreachable from this node, or reported this node: fail what waits on them. */
  onCut(peers: string[]): void;
  /** This node is not among the survivors: leave the ring (its leases go to the others). */
  standDown(): Promise<void>;
  /** It is again, for `afterMs` on end: rejoin the ring. */
  standUp(): Promise<void>;
  /** A peer not heard from for this long is unreachable; default 2000 ms (the failure-detection time). */
  afterMs?: number;
  /** Heartbeats, reports and decisions this often; default 500 ms. */
  everyMs?: number;
  log?: Logger;
}

export class Reachability {
  readonly #o: ReachabilityOptions;
  readonly #keys: ClusterKeys;
  readonly #log: Logger;
  readonly #afterMs: number;
  readonly #everyMs: number;
  /** Per peer, how long it has been silent, counted over ticks that ran on time. */
  readonly #silentMs = new Map<string, number>();
  #lastTick = performance.now();
  /** Consecutive on-time ticks that left this node out of the survivors. */
  #leftOut = 0;
  /** Peers this node must not count on: it cannot hear them, or they reported it. */
  #cut = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #stoodDown = false;
  /** performance.now() since which this node has been among the survivors without a break. */
  #keptSince: number | undefined;

  constructor(o: ReachabilityOptions) {
    this.#o = o;
    this.#keys = clusterKeys(o.cluster);
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'reachability' });
    this.#afterMs = o.afterMs ?? 2000;
    this.#everyMs = o.everyMs ?? 500;
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.#tick(), this.#everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** False for a peer this node cannot count on now (asks to it fail at once instead of timing out). */
  isReachable(peer: string): boolean {
    return !this.#cut.has(peer);
  }

  /** True while this node left the ring because it cannot reach the survivors. */
  get standingDown(): boolean {
    return this.#stoodDown;
  }

  /**
   * Peers this node has not heard from for longer than the detection time, counted in ticks that
   * ran on time only: after this node's own event loop stalled (GC, a busy core), the frames that
   * arrived meanwhile are still unread when the first tick runs, and its silence proves nothing.
   */
  #unheard(peers: readonly string[], now: number, onTime: boolean): string[] {
    const out: string[] = [];
    for (const peer of peers) {
      const heard = this.#o.links.lastHeard(peer);
      const silent = heard === undefined || heard < this.#lastTick;
      let ms = this.#silentMs.get(peer) ?? 0;
      if (!silent) ms = 0;
      else if (onTime) ms += now - this.#lastTick;
      this.#silentMs.set(peer, ms);
      // A peer never heard from gets twice the time: its link may still be dialing.
      if (ms > (heard === undefined ? 2 * this.#afterMs : this.#afterMs)) out.push(peer);
    }
    return out;
  }

  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const self = this.#o.self;
      const now = performance.now();
      const peers = this.#o.members().filter((m) => m !== self);
      for (const p of this.#silentMs.keys()) if (!peers.includes(p)) this.#silentMs.delete(p);
      this.#o.links.heartbeat(peers);
      const onTime = now - this.#lastTick <= 2 * this.#everyMs;
      const mine = this.#unheard(peers, now, onTime);
      this.#lastTick = now;
      const flat = (await reportUnreachablePeers.run(this.#o.redis, [this.#keys.unreachable(self), this.#keys.members], [String(this.#afterMs * 2), this.#keys.prefix, ...mine])) as (string | number)[];
      const cuts = new Map<string, Set<string>>();
      const live: string[] = [];
      for (let i = 0; i < flat.length; ) {
        const id = String(flat[i]);
        const n = Number(flat[i + 1]);
        live.push(id);
        cuts.set(id, new Set(flat.slice(i + 2, i + 2 + n).map(String)));
        i += 2 + n;
      }
      cuts.set(self, new Set(mine));
      if (!live.includes(self)) live.push(self);
      // Whom this node must not count on: those it cannot hear, and those that cannot hear it.
      const cut = new Set(mine);
      for (const [id, unreachable] of cuts) if (id !== self && unreachable.has(self)) cut.add(id);
      const newly = [...cut].filter((p) => !this.#cut.has(p));
      const healed = [...this.#cut].filter((p) => !cut.has(p));
      this.#cut = cut;
      if (newly.length > 0) {
        this.#log.warn({ peers: newly, afterMs: this.#afterMs }, 'peers unreachable (not heard from, or they cannot hear this node); asks to them fail at once');
        this.#o.onCut(newly);
      }
      if (healed.length > 0) this.#log.info({ peers: healed }, 'peers reachable again');

      const kept = survivors(
        live.map((id) => ({ id, started: this.#o.startedAt(id) ?? Number.MAX_SAFE_INTEGER })),
        cuts,
      );
      // Reports lag a tick (a node just resumed from a pause reads what others wrote before they
      // heard it again): a node stands down only when two ticks in a row, on time, leave it out.
      this.#leftOut = kept.has(self) ? 0 : onTime ? this.#leftOut + 1 : this.#leftOut;
      if (!kept.has(self)) {
        this.#keptSince = undefined;
        if (!this.#stoodDown && this.#leftOut >= 2) {
          this.#stoodDown = true;
          this.#log.warn({ survivors: [...kept], cut: [...cut] }, 'this node cannot reach the survivors of a network partition; leaving the ring until it can');
          await this.#o.standDown().catch((err: Error) => {
            this.#stoodDown = false; // tried again at the next tick
            throw err;
          });
        }
      } else if (this.#stoodDown) {
        this.#keptSince ??= now;
        // Back only once the links held for a detection time: a flapping link must not move partitions back and forth.
        if (now - this.#keptSince >= this.#afterMs) {
          this.#stoodDown = false;
          this.#keptSince = undefined;
          this.#log.info('this node reaches the survivors again; rejoining the ring');
          await this.#o.standUp().catch((err: Error) => {
            this.#stoodDown = true;
            throw err;
          });
        }
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'reachability report failed; keeping the last view');
    } finally {
      this.#ticking = false;
    }
  }
}
