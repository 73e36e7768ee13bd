// Where processed events end up: the `processed_events` table (idempotent on id) and the dead-letter
// table of events that failed their last attempt; and reading stored events back, newest first.
// SQLite embedded, PostgreSQL or MySQL/MariaDB by --events-store.

/** A row of `processed_events` (wire-contracts section 5). */
export interface ProcessedEventRow {
  id: string;
  type: string;
  source: string;
  user_id: string | null;
  processed_data: Record<string, unknown>;
  /** From receipt at the gateway to this row's write, in ms. */
  processing_time_ms: number;
  /** The event's own timestamp (RFC 3339). */
  created_at: string;
  /** When the row was written (RFC 3339). */
  processed_at: string;
}

/** Rows as the enrichment pool hands them over: serialized off the main thread, each id once. */
export interface RowBatch {
  /**
   * JSON array of `{id, type, source, user_id, processed_data, created_at, received_at}`, where
   * received_at is when the gateway received the event (epoch ms).
   */
  rowsJson: string;
  rowCount: number;
  /** When the rows are written (epoch ms), the same for all; processing_time_ms counts from received_at. */
  processedAt: number;
}

export interface DeadLetter {
  /** The event's id, when it had a readable one. */
  id: string | null;
  /** The event as queued (or the raw text when it could not be parsed). */
  event: unknown;
  error: string;
  attempts: number;
}

export type EventStoreKind = 'sqlite' | 'postgres' | 'mysql';

/** Where a page of `GET /events` starts: just after (older than) this row, in (created_at, id) order. */
export interface EventPosition {
  created_at: string;
  id: string;
}

/**
 * A page of stored events, newest first by (created_at, id); every field already validated
 * (event-query.ts). Stores answer it from their (user_id, created_at) or (type, created_at) index.
 */
export interface EventQuery {
  user_id?: string;
  type?: string;
  /** created_at >= since (RFC 3339, UTC). */
  since?: string;
  /** created_at < until. */
  until?: string;
  /** Rows strictly older than this position in (created_at, id) order. */
  after?: EventPosition;
  limit: number;
}

export interface ProcessedEventStore {
  readonly kind: EventStoreKind;
  /** Inserts the rows not already there (by id) in one statement; returns the ids it inserted. */
  insert(batch: RowBatch): Promise<Set<string>>;
  deadLetter(entries: readonly DeadLetter[]): Promise<void>;
  /** Throws, with a reason a person can act on, when the database does not answer. */
  ping(): Promise<void>;
  /** The stored row of one event (id lowercase), or undefined. */
  get(id: string): Promise<ProcessedEventRow | undefined>;
  /** Up to query.limit rows, newest first by (created_at, id). */
  list(query: EventQuery): Promise<ProcessedEventRow[]>;
  /** For tools and tests: rows by id (all rows when ids is absent), and the dead letters. */
  rows(ids?: readonly string[]): Promise<ProcessedEventRow[]>;
  count(): Promise<number>;
  deadLetters(): Promise<(DeadLetter & { failed_at: string })[]>;
  close(): Promise<void>;
}
