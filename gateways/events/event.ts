// The event contract (wire-contracts section 5): what a client may send, checked field by field,
// and the normalized shape that travels through the queue to the store.

import { randomUUID } from 'node:crypto';

export const EVENT_TYPES = ['user_action', 'sensor_data', 'system_log'] as const;
export const EVENT_SOURCES = ['web', 'mobile', 'iot_device', 'system'] as const;
export const USER_ACTIONS = ['login', 'purchase', 'click', 'error'] as const;
export const MAX_BATCH_EVENTS = 100;
/**
 * The version of AcceptedEvent and of the rules acceptEvent applies; raise it when either changes.
 * 2: text that a store cannot hold (U+0000, unpaired surrogates) is refused.
 */
export const EVENT_FORMAT = 2;
/** The `processed_events.user_id` and `source` columns hold at most 50 characters. */
export const MAX_USER_ID_LENGTH = 50;
/** A 400 lists at most this many problems and counts the rest: a body of 95,000 bad keys gets a short answer. */
export const MAX_LISTED_PROBLEMS = 20;
/** Deeper `data` is refused: recursive code further down (JSON, structured clone) must not overflow. */
export const MAX_DATA_DEPTH = 32;

export type EventType = (typeof EVENT_TYPES)[number];
export type EventSource = (typeof EVENT_SOURCES)[number];

/** An event as accepted at the door: every default filled in, ready to queue. */
export interface AcceptedEvent {
  id: string;
  type: EventType;
  source: EventSource;
  /** RFC 3339, normalized to UTC `toISOString()` form. */
  timestamp: string;
  user_id: string | null;
  data: Record<string, unknown>;
}

/** One thing wrong with one field: `{ field: 'events[3].type', problem: 'must be one of ...' }`. */
export interface FieldProblem {
  field: string;
  problem: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// RFC 3339 date-time: full date, 'T' (or space, as RFC 3339 allows), time, optional fraction, offset.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const KNOWN_FIELDS = new Set(['id', 'type', 'source', 'timestamp', 'user_id', 'data']);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * U+0000 and UTF-16 surrogates without their pair: valid in a JSON string, but PostgreSQL text and
 * jsonb refuse U+0000, and jsonb and MySQL's JSON refuse an unpaired surrogate, so an event holding
 * one would be acknowledged and then never stored. Searched per UTF-16 unit (no `u` flag).
 */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

/** What in `text` no store can hold, said for a person; undefined when it is all storable. */
export function unstorableIn(text: string): string | undefined {
  const m = UNSTORABLE.exec(text);
  if (!m) return undefined;
  const unit = m[0].charCodeAt(0);
  return unit === 0 ? 'U+0000 (NUL)' : `an unpaired UTF-16 surrogate (\\u${unit.toString(16)})`;
}

/** `text` with every unstorable unit written out as the six characters `\\uXXXX` (storable everywhere). */
export function spelledOut(text: string): string {
  return text.replace(UNSTORABLE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** How a key is named in a field path: as is when plain, else as a JSON string with the bad units spelled out. */
function keyInPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${spelledOut(JSON.stringify(key))}]`;
}

/**
 * Every string and key inside `value` that holds text no store can keep, by field path (at most
 * `max`). Iterative, like nestedDeeperThan; the caller has bounded the depth.
 */
export function unstorableFields(value: unknown, path: string, max = 10): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const stack: [unknown, string][] = [[value, path]];
  while (stack.length && problems.length < max) {
    const [v, at] = stack.pop()!;
    if (typeof v === 'string') {
      const why = unstorableIn(v);
      if (why) problems.push({ field: at, problem: `holds ${why}, which PostgreSQL and MySQL cannot store; remove it or encode it` });
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}[${i}]`]);
      continue;
    }
    for (const [key, child] of Object.entries(v)) {
      const field = `${at}${keyInPath(key)}`;
      const why = unstorableIn(key);
      if (why && problems.length < max) problems.push({ field, problem: `is a key that holds ${why}, which PostgreSQL and MySQL cannot store; rename it` });
      stack.push([child, field]);
    }
  }
  return problems;
}

/** Whether anything inside `value` (strings and keys, at any depth) holds text no store can keep. */
export function holdsUnstorable(value: unknown): boolean {
  return unstorableFields(value, '', 1).length > 0;
}

/** Iterative, so a hostile 100,000-level nesting cannot overflow the stack while being measured. */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'object' && v !== null) return Array.isArray(v) ? 'an array' : 'an object';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Parses an RFC 3339 timestamp into epoch ms, or undefined when it is not one (or not a real date). */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return undefined;
  const daysInMonth = new Date(Date.UTC(Number(y), month, 0)).getUTCDate();
  if (day > daysInMonth) return undefined;
  const ms = Date.parse(text.replace(' ', 'T').replace(/\.(\d{3})\d+/, '.$1'));
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * The problems of one body: the first `limit` in full, the rest only counted, so that hostile input
 * costs no strings (and no reply bytes) past the cap.
 */
export class ProblemList {
  readonly listed: FieldProblem[] = [];
  /** Problems found past the cap, not listed. */
  more = 0;
  constructor(readonly limit = MAX_LISTED_PROBLEMS) {}
  get count(): number {
    return this.listed.length + this.more;
  }
  /** `make` runs only while there is room: past the cap a problem costs a counter increment. */
  add(make: () => FieldProblem): void {
    if (this.listed.length < this.limit) this.listed.push(make());
    else this.more++;
  }
  addAll(problems: FieldProblem[]): void {
    for (const p of problems) this.add(() => p);
  }
}

/**
 * Checks one event and fills in its defaults: a fresh UUID when `id` is absent, the receipt time
 * when `timestamp` is absent. Returns the accepted event, or every problem found (not just the first).
 */
export function acceptEvent(
  raw: unknown,
  receivedAt: number,
  path = '',
  problems = new ProblemList(),
): { event?: AcceptedEvent; problems: FieldProblem[]; more: number } {
  const at = (f: string) => (path ? `${path}.${f}` : f);
  const before = problems.count;
  const refused = () => ({ problems: problems.listed, more: problems.more });
  if (!isPlainObject(raw)) {
    problems.add(() => ({ field: path || 'body', problem: `must be a JSON object, got ${Array.isArray(raw) ? 'an array' : shown(raw)}` }));
    return refused();
  }
  for (const key of Object.keys(raw)) {
    if (!KNOWN_FIELDS.has(key)) problems.add(() => ({ field: at(key), problem: `is not a field of an event (fields: ${[...KNOWN_FIELDS].join(', ')})` }));
  }

  let id: string | undefined;
  if (raw.id === undefined || raw.id === null) id = randomUUID();
  else if (typeof raw.id !== 'string' || !UUID.test(raw.id)) problems.add(() => ({ field: at('id'), problem: `must be a UUID such as 3f2a9c1e-0b6d-4c8e-9a51-2f0e7d3b6a10, or absent; got ${shown(raw.id)}` }));
  else id = raw.id.toLowerCase();

  if (!(EVENT_TYPES as readonly unknown[]).includes(raw.type)) {
    problems.add(() => ({ field: at('type'), problem: `must be one of ${EVENT_TYPES.join(', ')}; got ${shown(raw.type)}` }));
  }
  if (!(EVENT_SOURCES as readonly unknown[]).includes(raw.source)) {
    problems.add(() => ({ field: at('source'), problem: `must be one of ${EVENT_SOURCES.join(', ')}; got ${shown(raw.source)}` }));
  }

  let timestamp = new Date(receivedAt).toISOString();
  if (raw.timestamp !== undefined && raw.timestamp !== null) {
    const ms = typeof raw.timestamp === 'string' ? parseRfc3339(raw.timestamp) : undefined;
    if (ms === undefined) problems.add(() => ({ field: at('timestamp'), problem: `must be an RFC 3339 date-time such as 2026-11-22T13:00:00Z, or absent; got ${shown(raw.timestamp)}` }));
    else timestamp = new Date(ms).toISOString();
  }

  let userId: string | null = null;
  if (raw.user_id !== undefined && raw.user_id !== null) {
    if (typeof raw.user_id !== 'string' || raw.user_id.length === 0 || raw.user_id.length > MAX_USER_ID_LENGTH) {
      problems.add(() => ({ field: at('user_id'), problem: `must be a string of 1 to ${MAX_USER_ID_LENGTH} characters, or absent; got ${shown(raw.user_id)}` }));
    } else if (unstorableIn(raw.user_id)) {
      const why = unstorableIn(raw.user_id);
      problems.add(() => ({ field: at('user_id'), problem: `holds ${why}, which PostgreSQL and MySQL cannot store; got ${shown(raw.user_id)}` }));
    } else userId = raw.user_id;
  }

  const dataUsable = isPlainObject(raw.data) && !nestedDeeperThan(raw.data, MAX_DATA_DEPTH);
  if (isPlainObject(raw.data) && !dataUsable) {
    problems.add(() => ({ field: at('data'), problem: `is nested deeper than ${MAX_DATA_DEPTH} levels` }));
  } else if (!isPlainObject(raw.data)) {
    problems.add(() => ({ field: at('data'), problem: `must be a JSON object; got ${Array.isArray(raw.data) ? 'an array' : shown(raw.data)}` }));
  } else {
    problems.addAll(unstorableFields(raw.data, at('data')));
  }
  if (dataUsable && raw.type === 'user_action') {
    const data = raw.data as Record<string, unknown>;
    if (!(USER_ACTIONS as readonly unknown[]).includes(data.action)) {
      problems.add(() => ({ field: at('data.action'), problem: `a user_action needs an action, one of ${USER_ACTIONS.join(', ')}; got ${shown(data.action)}` }));
    }
    if (data.value !== undefined && (typeof data.value !== 'number' || !Number.isFinite(data.value))) {
      problems.add(() => ({ field: at('data.value'), problem: `must be a finite number, or absent; got ${shown(data.value)}` }));
    } else if (data.action === 'purchase' && data.value === undefined) {
      problems.add(() => ({ field: at('data.value'), problem: 'a purchase needs its amount as a number' }));
    }
    if (data.metadata !== undefined && !isPlainObject(data.metadata)) {
      problems.add(() => ({ field: at('data.metadata'), problem: `must be a JSON object, or absent; got ${shown(data.metadata)}` }));
    }
  }

  if (problems.count > before) return refused();
  return {
    event: { id: id!, type: raw.type as EventType, source: raw.source as EventSource, timestamp, user_id: userId, data: raw.data as Record<string, unknown> },
    problems: [],
    more: 0,
  };
}

/**
 * Whether a queued value has the shape of an AcceptedEvent: what the pool relies on for a batch the
 * door already checked under this EVENT_FORMAT, far cheaper than acceptEvent.
 */
export function hasAcceptedShape(v: unknown): v is AcceptedEvent {
  if (!isPlainObject(v)) return false;
  return (
    typeof v.id === 'string' &&
    v.id.length === 36 &&
    (EVENT_TYPES as readonly unknown[]).includes(v.type) &&
    (EVENT_SOURCES as readonly unknown[]).includes(v.source) &&
    typeof v.timestamp === 'string' &&
    (v.user_id === null || (typeof v.user_id === 'string' && v.user_id.length > 0 && v.user_id.length <= MAX_USER_ID_LENGTH)) &&
    isPlainObject(v.data)
  );
}

/** Checks a batch body `{"events": [...]}`; the caller has already checked the count limit. */
export function acceptBatch(raw: unknown, receivedAt: number): { events?: AcceptedEvent[]; problems: FieldProblem[]; more: number } {
  const problems = new ProblemList();
  const refused = () => ({ problems: problems.listed, more: problems.more });
  if (!isPlainObject(raw)) {
    problems.add(() => ({ field: 'body', problem: `must be a JSON object {"events": [...]}, got ${Array.isArray(raw) ? 'an array' : shown(raw)}` }));
    return refused();
  }
  for (const key of Object.keys(raw)) if (key !== 'events') problems.add(() => ({ field: key, problem: 'is not a field of a batch (fields: events)' }));
  if (!Array.isArray(raw.events)) {
    problems.add(() => ({ field: 'events', problem: `must be an array of 1 to ${MAX_BATCH_EVENTS} events; got ${shown(raw.events)}` }));
    return refused();
  }
  if (raw.events.length === 0) {
    problems.add(() => ({ field: 'events', problem: `must hold 1 to ${MAX_BATCH_EVENTS} events; got none` }));
    return refused();
  }
  const events: AcceptedEvent[] = [];
  raw.events.forEach((e, i) => {
    const r = acceptEvent(e, receivedAt, `events[${i}]`, problems);
    if (r.event) events.push(r.event);
  });
  return problems.count ? refused() : { events, problems: [], more: 0 };
}
