// The read API's input: `GET /events/{id}` ids and `GET /events?...` query strings checked into an
// EventQuery (every problem reported at once), and the opaque cursor that carries a page's end.

import { EVENT_TYPES, MAX_USER_ID_LENGTH, parseRfc3339, type FieldProblem } from './event.js';
import type { EventPosition, EventQuery } from './store.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** A cursor is base64url of a short JSON array; anything longer is not one of ours. */
const MAX_CURSOR_LENGTH = 200;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** created_at as every store hands it back (Date#toISOString). */
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const PARAMS = ['user_id', 'type', 'since', 'until', 'limit', 'cursor'] as const;

function shown(v: string): string {
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** An event id from a path segment, lowercase (as stored), or undefined when it is not a UUID. */
export function parseEventId(text: string): string | undefined {
  return UUID.test(text) ? text.toLowerCase() : undefined;
}

export function encodeCursor(position: EventPosition): string {
  return Buffer.from(JSON.stringify([position.created_at, position.id])).toString('base64url');
}

/** The position a cursor names, or undefined when the text is not a cursor this API made. */
export function decodeCursor(text: string): EventPosition | undefined {
  if (text.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(text)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [createdAt, id] = v as unknown[];
  if (typeof createdAt !== 'string' || !ISO_UTC.test(createdAt)) return undefined;
  // A real instant, written as the stores write it (2026-13-45 matches the pattern, not a date).
  const ms = Date.parse(createdAt);
  if (!Number.isFinite(ms) || new Date(ms).toISOString() !== createdAt) return undefined;
  if (typeof id !== 'string' || !UUID.test(id) || id !== id.toLowerCase()) return undefined;
  return { created_at: createdAt, id };
}

function timeProblem(name: string, value: string): string {
  // A `+` left unencoded in a query string arrives as a space.
  const hint = /\d \d{2}:\d{2}$/.test(value) ? ' (a "+" in a query string must be sent as %2B)' : '';
  return `${name} must be an RFC 3339 date-time such as 2026-11-22T13:00:00Z${hint}; got ${shown(value)}`;
}

/** Checks the query string of `GET /events` (without the `?`). */
export function parseEventQuery(search: string): { query?: EventQuery; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const params = new URLSearchParams(search);
  const seen = new Map<string, string>();
  for (const [name, value] of params) {
    if (!(PARAMS as readonly string[]).includes(name)) {
      problems.push({ field: name.length > 40 ? `${name.slice(0, 37)}...` : name, problem: `unknown parameter; expected ${PARAMS.join(', ')}` });
    } else if (seen.has(name)) {
      if (!problems.some((p) => p.field === name)) problems.push({ field: name, problem: 'given more than once; give it once' });
    } else if (value === '') {
      problems.push({ field: name, problem: 'is empty; leave it out to not filter by it' });
    } else {
      seen.set(name, value);
    }
  }
  if (problems.length) return { problems };

  const query: EventQuery = { limit: DEFAULT_PAGE_SIZE };
  const userId = seen.get('user_id');
  if (userId !== undefined) {
    if (userId.length > MAX_USER_ID_LENGTH) problems.push({ field: 'user_id', problem: `has 1 to ${MAX_USER_ID_LENGTH} characters; got ${userId.length}` });
    else query.user_id = userId;
  }
  const type = seen.get('type');
  if (type !== undefined) {
    if (!(EVENT_TYPES as readonly string[]).includes(type)) problems.push({ field: 'type', problem: `must be one of ${EVENT_TYPES.join(', ')}; got ${shown(type)}` });
    else query.type = type;
  }
  for (const name of ['since', 'until'] as const) {
    const value = seen.get(name);
    if (value === undefined) continue;
    const ms = parseRfc3339(value);
    if (ms === undefined) problems.push({ field: name, problem: timeProblem(name, value) });
    else query[name] = new Date(ms).toISOString();
  }
  if (query.since !== undefined && query.until !== undefined && query.since >= query.until) {
    problems.push({ field: 'until', problem: `must be later than since (${query.since}); got ${query.until}` });
  }
  const limit = seen.get('limit');
  if (limit !== undefined) {
    const n = /^\d{1,7}$/.test(limit) ? Number(limit) : NaN;
    if (!(n >= 1 && n <= MAX_PAGE_SIZE)) problems.push({ field: 'limit', problem: `must be a whole number from 1 to ${MAX_PAGE_SIZE}; got ${shown(limit)}` });
    else query.limit = n;
  }
  const cursor = seen.get('cursor');
  if (cursor !== undefined) {
    const after = decodeCursor(cursor);
    if (!after) problems.push({ field: 'cursor', problem: 'is not a cursor this API gave out; pass next_cursor from the previous page as it is' });
    else query.after = after;
  }
  return problems.length ? { problems } : { query, problems };
}
