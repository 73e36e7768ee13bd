// The activity part of the actor `user/<id>`: per-user aggregates of the event pipeline (counts by
// type and by action, purchase total), applied idempotently by event id.

import type { ActorContext } from '../runtime/index.js';
import { entryCount, holds, idDigest, trimmed, withEntry } from './recent-ids.js';
import type { UserState } from './user.js';

/**
 * Which applied event ids the state remembers, to drop repeats. The event pipeline tells an actor
 * of an event when its row was just inserted, so a client's repeated id never reaches it twice;
 * only a batch delivered again (after a crash or a failed attempt) or a hand-off (events of an ask
 * that got no answer in time, which may have committed) re-sends events that may already be
 * applied, and those come within seconds to minutes (gateways/events/README.md, "Exactly once, also
 * under retries", says where this ends). So the state keeps the ids of events
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
  /** Digests of the latest event ids applied with their receipt seconds, oldest first (recent-ids.ts). */
  recent: string;
}

/** A snapshot written before ids were kept as digests. */
interface ActivityStateOfOld {
  recent?: string;
  recentIds?: string[];
  recentReceivedAt?: number[];
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
  return { events: 0, byType: {}, byAction: {}, purchaseTotal: 0, lastEventAt: null, recent: '' };
}

/** The remembered ids of `state`, also when its snapshot still holds them as a list of full ids. */
function recentOf(state: ActivityState): string {
  const old = state as ActivityState & ActivityStateOfOld;
  if (typeof old.recent === 'string') return old.recent;
  let recent = '';
  (old.recentIds ?? []).forEach((id, i) => (recent = withEntry(recent, idDigest(id), old.recentReceivedAt?.[i] ?? 0)));
  return recent;
}

/** Pure: the state after applying `events`, skipping ids already applied; and how many were new. */
export function applyActivity(state: ActivityState, events: readonly ActivityEvent[]): { state: ActivityState; applied: number } {
  const byType = { ...state.byType };
  const byAction = { ...state.byAction };
  let { purchaseTotal, lastEventAt, events: count } = state;
  let recent = recentOf(state);
  let applied = 0;
  let newest = 0;
  for (const e of events) {
    const digest = idDigest(e.id);
    if (holds(recent, digest)) continue;
    recent = withEntry(recent, digest, e.receivedAt);
    newest = Math.max(newest, e.receivedAt);
    applied++;
    count++;
    byType[e.type] = (byType[e.type] ?? 0) + 1;
    if (e.action) byAction[e.action] = (byAction[e.action] ?? 0) + 1;
    // Cents, to keep a long sum of prices free of binary rounding drift.
    if (e.action === 'purchase' && typeof e.value === 'number') purchaseTotal = Math.round(purchaseTotal * 100 + e.value * 100) / 100;
    if (lastEventAt === null || e.timestamp > lastEventAt) lastEventAt = e.timestamp;
  }
  if (applied === 0) return { state, applied };
  recent = trimmed(recent, RECENT_IDS_KEPT, RECENT_IDS_WINDOW_MS, newest);
  return { state: { events: count, byType, byAction, purchaseTotal, lastEventAt, recent }, applied };
}

/** How many event ids `state` remembers. */
export function rememberedIds(state: ActivityState): number {
  return entryCount(recentOf(state));
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
