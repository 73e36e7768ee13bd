// The activity part of the actor `user/<id>`: per-user aggregates of the event pipeline (counts by
// type and by action, purchase total), applied idempotently by event id.

import type { ActorContext } from '../runtime/index.js';
import type { UserState } from './user.js';

/**
 * Which applied event ids the state remembers, to drop repeats. The event pipeline tells an actor
 * only the events whose row it has just inserted, so a client's repeated id never reaches it twice;
 * only a batch delivered again (after a crash or a failed attempt) re-sends events that may already
 * be applied, and such a redelivery comes within minutes. So the state keeps the ids of events
 * received in the last RECENT_IDS_WINDOW_MS, at most RECENT_IDS_KEPT of them (newest kept): a repeat
 * is dropped when it comes back within that time and the user had fewer than RECENT_IDS_KEPT events
 * in between. Both bounds keep the durable state small.
 */
export const RECENT_IDS_KEPT = 512;
export const RECENT_IDS_WINDOW_MS = 15 * 60_000;

export interface ActivityState {
  events: number;
  byType: Record<string, number>;
  byAction: Record<string, number>;
  purchaseTotal: number;
  /** Latest event timestamp seen (RFC 3339), null before any. */
  lastEventAt: string | null;
  /** Ids of the latest events applied, oldest first (see RECENT_IDS_KEPT). */
  recentIds: string[];
  /** When each of recentIds was received at the gateway (epoch ms), same order. */
  recentReceivedAt: number[];
}

/** One event as the actor needs it. */
export interface ActivityEvent {
  id: string;
  type: string;
  action?: string;
  value?: number;
  timestamp: string;
  /** When the gateway received it (epoch ms); bounds how long its id is remembered. */
  receivedAt: number;
}

export interface ActivitySummary {
  user_id: string;
  events: number;
  by_type: Record<string, number>;
  by_action: Record<string, number>;
  purchase_total: number;
  last_event_at: string | null;
}

export function initialActivity(): ActivityState {
  return { events: 0, byType: {}, byAction: {}, purchaseTotal: 0, lastEventAt: null, recentIds: [], recentReceivedAt: [] };
}

/** Pure: the state after applying `events`, skipping ids already applied; and how many were new. */
export function applyActivity(state: ActivityState, events: readonly ActivityEvent[]): { state: ActivityState; applied: number } {
  // Most calls bring one or two events: a scan of the ids beats building a set of them.
  const recent: { has(id: string): boolean; add(id: string): void } =
    events.length > 4 ? new Set(state.recentIds) : { has: (id) => recentIds.includes(id), add() {} };
  const byType = { ...state.byType };
  const byAction = { ...state.byAction };
  let { purchaseTotal, lastEventAt, events: count } = state;
  const recentIds = [...state.recentIds];
  // `?? []`: snapshots written before the field existed still load.
  const recentReceivedAt = [...(state.recentReceivedAt ?? state.recentIds.map(() => 0))];
  let applied = 0;
  for (const e of events) {
    if (recent.has(e.id)) continue;
    recent.add(e.id);
    recentIds.push(e.id);
    recentReceivedAt.push(e.receivedAt);
    applied++;
    count++;
    byType[e.type] = (byType[e.type] ?? 0) + 1;
    if (e.action) byAction[e.action] = (byAction[e.action] ?? 0) + 1;
    // Cents, to keep a long sum of prices free of binary rounding drift.
    if (e.action === 'purchase' && typeof e.value === 'number') purchaseTotal = Math.round(purchaseTotal * 100 + e.value * 100) / 100;
    if (lastEventAt === null || e.timestamp > lastEventAt) lastEventAt = e.timestamp;
  }
  if (applied === 0) return { state, applied };
  let newest = 0;
  for (let i = recentReceivedAt.length - applied; i < recentReceivedAt.length; i++) newest = Math.max(newest, recentReceivedAt[i]!);
  let from = Math.max(0, recentIds.length - RECENT_IDS_KEPT);
  while (from < recentIds.length && recentReceivedAt[from]! < newest - RECENT_IDS_WINDOW_MS) from++;
  return {
    state: { events: count, byType, byAction, purchaseTotal, lastEventAt, recentIds: recentIds.slice(from), recentReceivedAt: recentReceivedAt.slice(from) },
    applied,
  };
}

export const activityHandlers = {
  /** Applies events (idempotent by id); replies with how many were new to this actor. */
  recordEvents(ctx: ActorContext<UserState>, msg: { events: ActivityEvent[] }): number {
    const { state, applied } = applyActivity(ctx.state.activity, msg.events);
    if (applied > 0) ctx.state = { ...ctx.state, activity: state };
    return applied;
  },

  /** The aggregates, as GET /users/:id/summary shows them. */
  activitySummary(ctx: ActorContext<UserState>): ActivitySummary {
    const a = ctx.state.activity;
    return {
      user_id: ctx.key,
      events: a.events,
      by_type: a.byType,
      by_action: a.byAction,
      purchase_total: a.purchaseTotal,
      last_event_at: a.lastEventAt,
    };
  },
};
