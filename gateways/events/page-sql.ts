// The SQL of one page of `GET /events`, shared by the SQLite, PostgreSQL and MySQL stores: keyset
// pagination on (created_at, id), newest first, always on the (user_id, created_at) or
// (type, created_at) index; without either filter, one index range per event type, merged.

import { EVENT_TYPES } from './event.js';
import type { EventQuery } from './store.js';

export interface PageDialect {
  /** The table, quoted as the store needs it. */
  table: string;
  /** The placeholder of a time value, e.g. `?` or `?::timestamptz`. */
  time: string;
  /** A time (ISO 8601, UTC) as the driver should send it. */
  timeValue(iso: string): unknown;
  /** The condition on user_id with its placeholders (`user_id = ?`), and its values for a user id. */
  userId: { sql: string; values(userId: string): unknown[] };
}

/** `?` placeholders, values in order; the limit is a validated integer written into the text. */
export function pageSql(q: EventQuery, d: PageDialect): { sql: string; values: unknown[] } {
  const rest: string[] = [];
  const restValues: unknown[] = [];
  if (q.since !== undefined) {
    rest.push(`created_at >= ${d.time}`);
    restValues.push(d.timeValue(q.since));
  }
  if (q.until !== undefined) {
    rest.push(`created_at < ${d.time}`);
    restValues.push(d.timeValue(q.until));
  }
  if (q.after !== undefined) {
    // Spelled out rather than a row comparison, so every engine keeps to the index range.
    rest.push(`(created_at < ${d.time} OR (created_at = ${d.time} AND id < ?))`);
    const at = d.timeValue(q.after.created_at);
    restValues.push(at, at, q.after.id);
  }
  const limit = Math.max(1, Math.trunc(q.limit));
  const order = 'ORDER BY created_at DESC, id DESC';
  const select = (conditions: string[]) => `SELECT * FROM ${d.table} WHERE ${[...conditions, ...rest].join(' AND ')} ${order} LIMIT ${limit}`;

  if (q.user_id !== undefined) {
    const conditions = [d.userId.sql];
    const values = [...d.userId.values(q.user_id)];
    if (q.type !== undefined) {
      conditions.push('type = ?');
      values.push(q.type);
    }
    return { sql: select(conditions), values: [...values, ...restValues] };
  }
  if (q.type !== undefined) return { sql: select(['type = ?']), values: [q.type, ...restValues] };
  const arms = EVENT_TYPES.map((_, i) => `SELECT * FROM (${select(['type = ?'])}) AS by_type_${i}`);
  return {
    sql: `SELECT * FROM (${arms.join(' UNION ALL ')}) AS page ${order} LIMIT ${limit}`,
    values: EVENT_TYPES.flatMap((type) => [type, ...restValues]),
  };
}
