// Which partitions this node serves, kept true to the ring and the leases: on every ring view it
// grabs the leases of partitions the ring gives it, hands off and releases the ones it lost, and
// writes the result into the shared ownership table the shards read. The control loop of a node.

import { OWNED_ELSEWHERE, OWNED_HERE } from '../envelope.js';
import { rootLogger, type Logger } from '../log.js';
import type { ClusterHealth } from '../system.js';
import { HANDOFF_ROW_STRIDE } from './frame-codec.js';
import { ClusterDataLost, IncarnationTooYoung, StaleEpoch, type PartitionLeases } from './leases.js';
import type { RedisMembership } from './redis-membership.js';
import type { RedisRing, RingView } from './redis-ring.js';
import type { PartitionMove } from './ring.js';

/** Where a partition stands on this node. */
export type PartitionState =
  /** Lease held, ownership table says OWNED_HERE: shards serve it. */
  | 'serving'
  /** The ring gives it to this node, the lease is not ours yet (the old owner is handing off, or its lease must expire): buffer its messages. */
  | 'acquiring'
  /** The ring gives it to another node and this node is handing it off: buffer its messages. */
  | 'releasing'
  /** Another node's: forward its messages to the ring owner. */
  | 'elsewhere'
  /**
   * The ring gives it to this node, and it cannot take the lease: Redis does not answer, or lost the
   * cluster's data. Nobody serves it; asks fail at once with PartitionUnavailable (retryable).
   */
  | 'unavailable';

/**
 * A hand-off this node will not install. The message is for this node's log; the sender hears a
 * generic refusal (transport.ts), since it may be the hostile peer the details would help.
 */
export class HandOffRefused extends Error {
  readonly code = 'HANDOFF_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'HandOffRefused';
  }
}

/** The lease check of a hand-off waits this long for Redis before refusing it (the sender waits 10 s for the acknowledgement). */
const HANDOFF_CHECK_TIMEOUT_MS = 5000;

/** What this node serves of what the ring gives it, and why not the rest (for /readyz, metrics, the inspector). */
export type OwnershipHealth = Omit<ClusterHealth, 'clusterLost'>;

export interface PartitionOwnershipOptions {
  self: string;
  ring: RedisRing;
  leases: PartitionLeases;
  /** The shared table of runtime/envelope.ts (OWNED_HERE / OWNED_ELSEWHERE), one Int32 per partition. */
  ownership: Int32Array;
  /**
   * Shared with the shards: per partition, how many times this node stopped serving it. Bumped at
   * each stop, so a shard knows an activation made before it is stale (runtime/shard.ts).
   */
  tenures?: Int32Array;
  /** When given, deaths it reports take the dead off the ring, and an eviction of this node drops everything. */
  membership?: RedisMembership;
  /**
   * Before releasing leases of partitions that moved away: stop their turns, commit, ship their
   * state to the new owners. The partitions are already OWNED_ELSEWHERE when it is called.
   */
  handOff?(moves: PartitionMove[], epoch: number): Promise<void>;
  /** After taking leases, before serving: load the partitions' state (from a hand-off or from recovery). */
  acquire?(partitions: number[], epoch: number): Promise<void>;
  /** Partitions now serving (drain their buffers) or lost (fail over their buffers to the router). */
  onServing?(partitions: number[]): void;
  onLost?(partitions: number[]): void;
  /** Partitions now 'unavailable': fail what is buffered for them (the asks get PartitionUnavailable). */
  onUnavailable?(partitions: number[]): void;
  /** How often partitions still 'acquiring' are retried; default 100 ms. */
  retryMs?: number;
  log?: Logger;
}

export class PartitionOwnership {
  readonly self: string;
  readonly #o: PartitionOwnershipOptions;
  readonly #log: Logger;
  readonly #states: PartitionState[];
  #running = false;
  #reconciling: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  readonly #unsubscribe: (() => void)[] = [];
  #why = '';
  #whyLoggedAt = 0;

  constructor(o: PartitionOwnershipOptions) {
    this.self = o.self;
    this.#o = o;
    this.#log = (o.log ?? rootLogger()).child({ node: o.self, part: 'ownership' });
    this.#states = new Array<PartitionState>(o.ring.partitions).fill('elsewhere');
    if (o.ownership.length < o.ring.partitions) throw new RangeError(`ownership table has ${o.ownership.length} slots for ${o.ring.partitions} partitions`);
  }

  state(partition: number): PartitionState {
    return this.#states[partition]!;
  }

  /** The node the ring gives a partition to now ('' on an empty ring): where to forward its messages. */
  ownerOf(partition: number): string {
    return this.#o.ring.view().owners[partition] ?? '';
  }

  /** Why partitions are 'unavailable' here ('' if none is). */
  unavailableWhy(): string {
    return this.#states.includes('unavailable') ? this.#why : '';
  }

  health(): OwnershipHealth {
    const view = this.#o.ring.view();
    const h: OwnershipHealth = {
      owned: 0,
      serving: 0,
      acquiring: 0,
      releasing: 0,
      unavailable: 0,
      why: '',
      epoch: view.epoch,
      onRing: view.members.includes(this.self),
      staleEpochRefusals: this.#o.leases.staleEpochRefusals,
      epochRaises: this.#o.ring.epochRaises,
      sinceRedisAnsweredMs: Math.max(0, Math.round(performance.timeOrigin + performance.now() - Math.max(this.#o.leases.lastAnsweredAt, this.#o.ring.lastAnsweredAt))),
      leaseTtlMs: this.#o.leases.ttlMs,
    };
    this.#states.forEach((s, p) => {
      if (view.owners[p] === this.self) h.owned++;
      // 'serving' counts only while the lease holds by this node's clock: that is what shards check.
      if (s === 'serving') {
        if (this.#o.leases.holds(p)) h.serving++;
        else h.unavailable++;
      } else if (s !== 'elsewhere') h[s]++;
    });
    if (h.unavailable > 0) h.why = this.#why || 'leases past their deadline, not yet renewed';
    return h;
  }

  serving(): number[] {
    const out: number[] = [];
    this.#states.forEach((s, p) => s === 'serving' && out.push(p));
    return out;
  }

  /**
   * Checks a hand-off before its state is installed; throws HandOffRefused (with the details, for the
   * log) unless all of these hold:
   * - `epoch` is the ring's current epoch (after a refresh, when the sender is ahead of this node);
   * - at that epoch the ring gives every partition named to this node, and every row is of one of them;
   * - the sender holds the lease of every partition named, in Redis, now. It is the node that served
   *   them until the ring moved them (a sender releases its leases only once this node acknowledged).
   *   The lease, not the ring's previous member set, says who that is: Redis keeps only the current
   *   ring, a node's own previous view may skip epochs, and when two changes come close together
   *   the node that served a partition is not the ring's owner of the epoch just before.
   */
  async checkHandOff(from: string, epoch: number, partitions: readonly number[], rows: readonly unknown[]): Promise<void> {
    const P = this.#states.length;
    let view = this.#o.ring.view();
    if (epoch > view.epoch) view = await this.#o.ring.refresh();
    if (epoch !== view.epoch) throw new HandOffRefused(`hand-off from node ${from} at ring epoch ${epoch} refused: the current epoch is ${view.epoch}`);
    const named = new Set<number>();
    for (const p of partitions) {
      if (!Number.isInteger(p) || p < 0 || p >= P) throw new HandOffRefused(`hand-off from node ${from} refused: partition ${p} is outside 0..${P - 1}`);
      if (view.owners[p] !== this.self) {
        throw new HandOffRefused(`hand-off from node ${from} refused: partition ${p} is node ${view.owners[p] || '(nobody)'}'s at epoch ${epoch}, not this node's`);
      }
      named.add(p);
    }
    for (let i = 1; i < rows.length; i += HANDOFF_ROW_STRIDE) {
      if (!named.has(rows[i] as number)) throw new HandOffRefused(`hand-off from node ${from} refused: a row of partition ${String(rows[i])}, which the hand-off does not name`);
    }
    let timer: NodeJS.Timeout | undefined;
    const holders = await Promise.race([
      Promise.all([...named].map((p) => this.#o.leases.holderOf(p))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${HANDOFF_CHECK_TIMEOUT_MS} ms`)), HANDOFF_CHECK_TIMEOUT_MS);
      }),
    ])
      .catch((err: Error) => {
        throw new HandOffRefused(`hand-off from node ${from} refused: cannot read who holds the leases of its ${named.size} partitions (${err.message})`);
      })
      .finally(() => clearTimeout(timer));
    const notHeld = holders.findIndex((h) => h?.node !== from);
    if (notHeld >= 0) {
      const h = holders[notHeld];
      throw new HandOffRefused(
        `hand-off from node ${from} refused: the lease of partition ${[...named][notHeld]} is ${h === undefined ? 'held by nobody' : `node ${h.node}'s`}; only the node that served a partition hands it off`,
      );
    }
  }

  /** Joins the ring and starts following it. */
  async start(): Promise<void> {
    const { ring, leases, membership } = this.#o;
    this.#running = true;
    this.#unsubscribe.push(ring.onChange(() => this.reconcile()));
    if (membership) {
      this.#unsubscribe.push(membership.onChange(() => void ring.removeDead().catch((err) => this.#log.warn({ err: err.message }, 'removing dead nodes from the ring failed'))));
      this.#unsubscribe.push(membership.onEvicted(() => this.#evicted()));
    }
    leases.startRenewing({
      epoch: () => ring.view().epoch,
      refresh: async () => (await ring.refresh()).epoch,
      onLost: (partitions) => this.#lost(partitions),
    });
    this.#retry = setInterval(() => {
      if (this.#states.includes('acquiring') || this.#states.includes('unavailable')) this.reconcile();
    }, this.#o.retryMs ?? 100);
    this.#retry.unref();
    await ring.join(this.self);
    // Members that died before this node joined (every node was restarted, say) changed nothing in
    // the membership it read: take them off the ring now, or their partitions wait for them forever.
    if (membership) await ring.removeDead().catch((err: Error) => this.#log.warn({ err: err.message }, 'removing dead nodes from the ring failed'));
    await this.reconcile();
  }

  /** Brings leases and the ownership table in line with the newest ring view (serialized; coalesces calls). */
  reconcile(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    if (this.#reconciling) {
      this.#again = true;
      return this.#reconciling;
    }
    this.#reconciling = this.#reconcileOnce()
      .catch((err) => this.#log.warn({ err: (err as Error).message }, 'reconciling partitions with the ring failed; retrying'))
      .finally(() => {
        this.#reconciling = undefined;
        if (this.#again) {
          this.#again = false;
          void this.reconcile();
        }
      });
    return this.#reconciling;
  }

  async #reconcileOnce(): Promise<void> {
    const view: RingView = this.#o.ring.view();
    const { leases, ownership } = this.#o;
    const moves: PartitionMove[] = [];
    const wanted: number[] = [];
    for (let p = 0; p < this.#states.length; p++) {
      const mine = view.owners[p] === this.self;
      const s = this.#states[p]!;
      if (mine && (s === 'elsewhere' || s === 'acquiring' || s === 'unavailable')) wanted.push(p);
      else if (!mine && s === 'serving') moves.push({ partition: p, from: this.self, to: view.owners[p] ?? '' });
      else if (!mine && (s === 'acquiring' || s === 'unavailable')) this.#states[p] = 'elsewhere';
    }

    // A lease that lapsed (this node was paused, say) may have been someone else's since: what this
    // node holds of such a partition is stale and must not be shipped over the newer owner's state.
    const lapsed = moves.filter((m) => !leases.holds(m.partition)).map((m) => m.partition);
    if (lapsed.length > 0) {
      for (const p of lapsed) {
        this.#stopServing(p);
        this.#states[p] = 'elsewhere';
      }
      moves.splice(0, moves.length, ...moves.filter((m) => !lapsed.includes(m.partition)));
      this.#log.warn({ partitions: lapsed.length, first: lapsed[0] }, 'partitions moved away after their leases lapsed here; not handed off');
      await leases.release(lapsed);
      this.#o.onLost?.(lapsed);
    }

    if (moves.length > 0) {
      // Stop serving first (shards now send these partitions' messages to the router, which
      // buffers them), then ship, and only then let the new owners in.
      const gone = moves.map((m) => m.partition);
      for (const p of gone) {
        this.#states[p] = 'releasing';
        this.#stopServing(p);
      }
      try {
        await this.#o.handOff?.(moves, view.epoch);
      } catch (err) {
        // The new owner loads whatever was last committed; the lease goes anyway, or both would stall.
        this.#log.error({ err, partitions: gone.length }, 'hand-off failed; releasing the leases anyway');
      }
      await leases.release(gone);
      for (const p of gone) this.#states[p] = 'elsewhere';
      this.#o.onLost?.(gone);
    }

    if (wanted.length > 0) {
      let granted: number[];
      try {
        const result = await leases.grab(wanted, view.epoch);
        granted = result.granted;
        for (const h of result.heldElsewhere) this.#states[h.partition] = 'acquiring';
      } catch (err) {
        if (err instanceof IncarnationTooYoung) {
          // A new cluster (or one an operator let serve again): the retry timer grabs once it may.
          for (const p of wanted) if (this.#states[p] !== 'unavailable') this.#states[p] = 'acquiring';
          return;
        }
        if (!(err instanceof StaleEpoch)) {
          this.#unavailable(wanted, err as Error);
          return;
        }
        // Redis behind this node's view means it lost the ring: refresh raises the epoch above the
        // view (runtime/cluster/redis-ring.ts). Either way the retry timer grabs again at the new one.
        const behind = err.current < err.offered;
        if (behind || this.#why !== '') this.#log.warn({ offered: err.offered, current: err.current }, behind ? 'Redis is behind this node\'s ring epoch; raising it and grabbing again' : err.message);
        else this.#log.debug({ offered: err.offered, current: err.current }, 'lease grab at a stale ring epoch; refreshing the ring');
        await this.#o.ring.refresh();
        for (const p of wanted) if (this.#states[p] !== 'unavailable') this.#states[p] = 'acquiring';
        return;
      }
      if (this.#why !== '' && !this.#states.includes('unavailable')) this.#why = '';
      if (granted.length > 0) {
        for (const p of granted) this.#states[p] = 'acquiring';
        if (this.#states.includes('unavailable')) {
          this.#log.info({ partitions: granted.length }, 'Redis answers again: taking partitions back');
        }
        await this.#o.acquire?.(granted, view.epoch);
        const serving = granted.filter((p) => leases.holds(p));
        for (const p of serving) {
          this.#states[p] = 'serving';
          Atomics.store(ownership, p, OWNED_HERE);
        }
        if (serving.length > 0) this.#o.onServing?.(serving);
      }
    }
  }

  /** The ring gives these partitions to this node and it cannot take their leases: say so, and fail their callers at once. */
  #unavailable(partitions: number[], err: Error): void {
    const newly = partitions.filter((p) => this.#states[p] !== 'unavailable');
    for (const p of partitions) this.#states[p] = 'unavailable';
    const why = err instanceof ClusterDataLost ? err.message : `cannot take their leases: ${err.message}`;
    const now = Date.now();
    // Said once per cause, then every 10 s while it lasts (the retry runs every 100 ms).
    if (why !== this.#why || now - this.#whyLoggedAt > 10_000) {
      this.#log.error({ partitions: partitions.length, first: partitions[0] }, `partitions of this node are served by nobody: ${why}`);
      this.#whyLoggedAt = now;
    }
    this.#why = why;
    if (newly.length > 0) this.#o.onUnavailable?.(newly);
  }

  /** Shards stop taking the partition's messages; if it was served here, its tenure ends. */
  #stopServing(p: number): void {
    if (Atomics.exchange(this.#o.ownership, p, OWNED_ELSEWHERE) === OWNED_HERE && this.#o.tenures) Atomics.add(this.#o.tenures, p, 1);
  }

  #lost(partitions: number[]): void {
    const lost = partitions.filter((p) => this.#states[p] === 'serving' || this.#states[p] === 'releasing');
    for (const p of partitions) {
      this.#stopServing(p);
      if (this.#states[p] === 'serving') this.#states[p] = this.ownerOf(p) === this.self ? 'acquiring' : 'elsewhere';
    }
    if (lost.length > 0) {
      this.#log.warn({ partitions: lost.length, first: lost[0] }, 'partition leases lost (expired or taken); stopped serving them');
      this.#o.onLost?.(lost);
    }
    void this.reconcile();
  }

  #evicted(): void {
    // Declared dead: others may already serve everything this node had. Drop it all, then come back.
    const had = this.serving();
    for (let p = 0; p < this.#states.length; p++) {
      this.#stopServing(p);
      this.#states[p] = 'elsewhere';
    }
    if (had.length > 0) this.#o.onLost?.(had);
    // Leases still ours in Redis are let go, or their renewals would keep the new owners out.
    void this.#o.leases
      .releaseAll()
      .then(() => this.#o.ring.join(this.self))
      .then(() => this.#o.ring.removeDead())
      .then(() => this.reconcile())
      .catch((err: Error) => this.#log.warn({ err: err.message }, 'rejoining the ring after an eviction failed'));
  }

  /**
   * Graceful leave: takes this node off the ring and waits until every partition it served was
   * handed off and released (or `timeoutMs` passed).
   */
  async leave(timeoutMs = 10_000): Promise<void> {
    await this.#o.ring.leave(this.self);
    await this.reconcile();
    const deadline = Date.now() + timeoutMs;
    while (this.#states.some((s) => s === 'serving' || s === 'releasing') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      await this.reconcile();
    }
    this.stop();
  }

  /** Stops following the ring and renewing (leases then lapse after their TTL, as after a crash). */
  stop(): void {
    this.#running = false;
    clearInterval(this.#retry);
    this.#o.leases.stopRenewing();
    for (const u of this.#unsubscribe.splice(0)) u();
  }
}
