// The presence part of the actor `user/<id>`: the user's last report to a presence gateway, and the
// per-shard view that answers "how many unique users were online in the last 3 minutes" without
// scanning users (a ring of per-second buckets of last-online times).

import type { ActorContext, ViewSpec } from '../runtime/index.js';
import type { UserState } from './user.js';

/** The wire values of `tenten.interview.Status`. */
export const STATUS_UNKNOWN = 0;
export const STATUS_EVEN = 1;
export const STATUS_ODD = 2;

/** A user counts as online for this long after its last STATUS_EVEN or STATUS_ODD report. */
export const ONLINE_WINDOW_MS = 180_000;

export interface PresenceState {
  /** When the last STATUS_EVEN/ODD report arrived (gateway clock, ms since the epoch); null: never. */
  readonly lastOnlineMs: number | null;
  /** When the last report of any status arrived; null: never. */
  readonly lastReportMs: number | null;
  /** The status of the last report (0 unknown, 1 even, 2 odd); null: never reported. */
  readonly lastStatus: number | null;
}

/** What a gateway tells `user/<id>` for each Pong it accepts. */
export interface PongMessage {
  /** The Pong's status; anything but 1 (even) or 2 (odd) is taken as unknown. */
  status: number;
  /** When the gateway received the Pong (ms since the epoch); default: the shard's clock. */
  atMs?: number;
}

export interface PresenceQuery {
  /** The time the window ends at (ms since the epoch); default: the shard's Date.now(). */
  nowMs?: number;
}

export function initialPresence(): PresenceState {
  return { lastOnlineMs: null, lastReportMs: null, lastStatus: null };
}

/**
 * Counts of users by the second of their last-online time, in a ring of RING_SECONDS slots. Each
 * user on the shard sits in exactly one slot (the second of its lastOnlineMs), so a query sums at
 * most RING_SECONDS numbers whatever the number of users. A slot is reused for a later second only
 * once its own second is RING_SECONDS old, far outside the 3-minute window, so nothing still
 * countable is ever overwritten (unless clocks disagree by more than RING_SECONDS - 181 s).
 */
export class PresenceView {
  static readonly RING_SECONDS = 512;
  /** Reports stamped up to this far ahead of the query's now still count (clocks of two nodes). */
  static readonly FUTURE_SLACK_SECONDS = 60;

  readonly #second = new Float64Array(PresenceView.RING_SECONDS).fill(-Infinity);
  readonly #count = new Int32Array(PresenceView.RING_SECONDS);

  static secondOf(ms: number): number {
    return Math.floor(ms / 1000);
  }

  #slot(second: number): number {
    const r = PresenceView.RING_SECONDS;
    return ((second % r) + r) % r;
  }

  /** A user whose last-online time is `ms` joins the view. */
  add(ms: number): void {
    const second = PresenceView.secondOf(ms);
    const slot = this.#slot(second);
    const held = this.#second[slot]!;
    if (held === second) {
      this.#count[slot]!++;
    } else if (held < second) {
      // The slot's users are RING_SECONDS older than this one: long out of any window.
      this.#second[slot] = second;
      this.#count[slot] = 1;
    }
    // held > second: this report is already too old to count in any window that the ring can hold.
  }

  /** A user whose last-online time was `ms` leaves the view (it moved on, or was handed off). */
  remove(ms: number): void {
    const second = PresenceView.secondOf(ms);
    const slot = this.#slot(second);
    if (this.#second[slot] === second && this.#count[slot]! > 0) this.#count[slot]!--;
  }

  /** A user's last-online time moves from `fromMs` (null: it had none) to `toMs`. */
  move(fromMs: number | null, toMs: number): void {
    if (fromMs !== null && PresenceView.secondOf(fromMs) === PresenceView.secondOf(toMs)) return;
    if (fromMs !== null) this.remove(fromMs);
    this.add(toMs);
  }

  /**
   * Users whose last-online second lies in the 181 seconds ending with the second of `nowMs`: a
   * user counts from its report until 180 to 181 s later (second resolution; never less than 180 s).
   */
  onlineAt(nowMs: number): number {
    const now = PresenceView.secondOf(nowMs);
    const from = now - ONLINE_WINDOW_MS / 1000;
    const to = now + PresenceView.FUTURE_SLACK_SECONDS;
    let total = 0;
    for (let slot = 0; slot < PresenceView.RING_SECONDS; slot++) {
      const s = this.#second[slot]!;
      if (s >= from && s <= to) total += this.#count[slot]!;
    }
    return total;
  }
}

function isOnlineStatus(status: unknown): status is 1 | 2 {
  return status === STATUS_EVEN || status === STATUS_ODD;
}

export const presenceHandlers = {
  /** A Pong reached a gateway. Told, never asked: the gateway does not wait for it. */
  pong(ctx: ActorContext<UserState>, message: PongMessage): void {
    const atMs = typeof message?.atMs === 'number' && Number.isFinite(message.atMs) ? message.atMs : ctx.now();
    const status = isOnlineStatus(message?.status) ? message.status : STATUS_UNKNOWN;
    const before = ctx.state.presence;
    let lastOnlineMs = before.lastOnlineMs;
    // Pongs may arrive out of order (a reconnection to another node): last-online never moves back.
    if (status !== STATUS_UNKNOWN && (lastOnlineMs === null || atMs > lastOnlineMs)) {
      (ctx.view as PresenceView).move(lastOnlineMs, atMs);
      lastOnlineMs = atMs;
    }
    const lastReportMs = before.lastReportMs === null ? atMs : Math.max(before.lastReportMs, atMs);
    ctx.state = { ...ctx.state, presence: { lastOnlineMs, lastReportMs, lastStatus: status } };
  },

  /** The user's presence as stored (for tools and tests). */
  presence(ctx: ActorContext<UserState>): PresenceState {
    return ctx.state.presence;
  },
};

export const presenceView: ViewSpec<UserState, PresenceView, PresenceQuery | undefined, number> = {
  create: () => new PresenceView(),
  restore(view, _key, state) {
    const at = state?.presence?.lastOnlineMs;
    if (typeof at === 'number') view.add(at);
  },
  evict(view, _key, state) {
    const at = state?.presence?.lastOnlineMs;
    if (typeof at === 'number') view.remove(at);
  },
  query: (view, args) => view.onlineAt(typeof args?.nowMs === 'number' ? args.nowMs : Date.now()),
  merge: (a, b) => a + b,
};
