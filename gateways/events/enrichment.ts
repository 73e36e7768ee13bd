// Validation and enrichment of queued batches, the CPU work the piscina pool runs off the main
// thread: each batch's JSON is parsed here, every event is checked again (a queue may hold batches
// from another node version, or hand-edited ones), gets the derived fields stored in
// `processed_data`, and the rows of all the batches of one task leave serialized, ready for one
// INSERT, each id once.

import type { ActivityEvent } from '../../actors/user-activity.js';
import { acceptEvent, EVENT_FORMAT, hasAcceptedShape, type AcceptedEvent } from './event.js';

export interface EnrichTask {
  /** Queued batches taken together: QueuedBatch.events (a JSON array), receipt time, checked format. */
  batches: { events: string; receivedAt: number; checked?: number }[];
}

/** What became of one batch of a task. */
export interface EnrichedBatch {
  /** Its valid events (the metrics count these as processed). */
  valid: number;
  /** Per user, in batch order, what its actor needs of the valid events that name a user (each id once). */
  activity: [string, ActivityEvent[]][];
  /** Events that can never be stored, whatever the retries: they go to the dead letters at once. */
  rejected: { id: string | null; event: unknown; error: string }[];
}

export interface EnrichResult {
  /** JSON array of `{id, type, source, user_id, processed_data, created_at, received_at}` (see RowBatch). */
  rowsJson: string;
  /** Rows in rowsJson: the valid events, each id once (a repeat, in a batch or across, is left out). */
  rowCount: number;
  /** One per task batch, same order. */
  batches: EnrichedBatch[];
}

const CATEGORY: Record<string, string> = {
  login: 'engagement',
  click: 'engagement',
  purchase: 'revenue',
  error: 'reliability',
};

function derive(event: AcceptedEvent): Record<string, unknown> {
  const at = new Date(event.timestamp);
  const derived: Record<string, unknown> = {
    day: event.timestamp.slice(0, 10),
    hour_utc: at.getUTCHours(),
    weekday_utc: at.getUTCDay(),
  };
  if (event.type === 'user_action') {
    derived.category = CATEGORY[String(event.data.action)] ?? 'other';
    if (typeof event.data.value === 'number') derived.value_cents = Math.round(event.data.value * 100);
  } else if (event.type === 'sensor_data') {
    derived.category = 'telemetry';
    let count = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const v of Object.values(event.data)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) continue;
      count++;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (count) derived.readings = { count, min, max };
  } else {
    derived.category = 'operations';
    const level = typeof event.data.level === 'string' ? event.data.level.toLowerCase() : 'info';
    derived.severity = ['fatal', 'error', 'warn', 'warning'].includes(level) ? 'high' : 'normal';
  }
  return derived;
}

/** Enriches one batch into `rows` (skipping ids in `seen`, which it extends). */
function enrichBatch({ events, receivedAt, checked }: EnrichTask['batches'][number], rows: unknown[], seen: Set<string>): EnrichedBatch {
  let queued: unknown;
  try {
    queued = JSON.parse(events);
  } catch (err) {
    return { valid: 0, activity: [], rejected: [{ id: null, event: events, error: `the queued batch is not JSON: ${(err as Error).message}` }] };
  }
  if (!Array.isArray(queued)) {
    return { valid: 0, activity: [], rejected: [{ id: null, event: events, error: 'the queued batch is not a JSON array of events' }] };
  }
  const byUser = new Map<string, ActivityEvent[]>();
  const rejected: EnrichedBatch['rejected'] = [];
  const mine = new Set<string>();
  let valid = 0;
  const checkedAtDoor = checked === EVENT_FORMAT;
  for (const q of queued as Partial<AcceptedEvent>[]) {
    const queuedId = typeof q?.id === 'string' ? q.id : null;
    // The queued id and timestamp are kept: validation must not invent new ones here.
    const { event, problems } =
      checkedAtDoor && hasAcceptedShape(q)
        ? { event: q, problems: [] }
        : queuedId && typeof q.timestamp === 'string'
          ? acceptEvent(q, 0)
          : { event: undefined, problems: [{ field: 'id/timestamp', problem: 'missing in the queue' }] };
    if (!event) {
      rejected.push({ id: queuedId, event: q, error: `invalid event: ${problems.map((p) => `${p.field} ${p.problem}`).join('; ')}` });
      continue;
    }
    valid++;
    // A repeated id is stored once, from its first occurrence in the task. Its actor is told of it
    // by every batch that holds it (once per batch), since which batch must tell depends on how each
    // was delivered (the main thread decides, and asks each actor once per id).
    if (mine.has(event.id)) continue;
    mine.add(event.id);
    if (!seen.has(event.id)) {
      seen.add(event.id);
      rows.push({
        id: event.id,
        type: event.type,
        source: event.source,
        user_id: event.user_id,
        processed_data: { ...event.data, _enriched: derive(event) },
        created_at: event.timestamp,
        received_at: receivedAt,
      });
    }
    if (event.user_id !== null) {
      const a: ActivityEvent = { id: event.id, type: event.type, timestamp: event.timestamp, receivedAt };
      if (event.type === 'user_action') {
        a.action = String(event.data.action);
        if (typeof event.data.value === 'number') a.value = event.data.value;
      }
      let list = byUser.get(event.user_id);
      if (!list) byUser.set(event.user_id, (list = []));
      list.push(a);
    }
  }
  return { valid, activity: [...byUser], rejected };
}

export function enrich(task: EnrichTask): EnrichResult {
  const rows: unknown[] = [];
  const seen = new Set<string>();
  const batches = task.batches.map((b) => enrichBatch(b, rows, seen));
  return { rowsJson: JSON.stringify(rows), rowCount: rows.length, batches };
}
