// Where processed events end up: the `processed_events` table (idempotent on id) and the dead-letter
// table of events that failed their last attempt. PostgreSQL with --postgres, SQLite embedded.

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

export interface ProcessedEventStore {
  readonly kind: 'postgres' | 'sqlite';
  /** Inserts the rows not already there (by id) in one statement; returns the ids it inserted. */
  insert(batch: RowBatch): Promise<Set<string>>;
  deadLetter(entries: readonly DeadLetter[]): Promise<void>;
  /** Throws, with a reason a person can act on, when the database does not answer. */
  ping(): Promise<void>;
  /** For tools and tests: rows by id (all rows when ids is absent), and the dead letters. */
  rows(ids?: readonly string[]): Promise<ProcessedEventRow[]>;
  count(): Promise<number>;
  deadLetters(): Promise<(DeadLetter & { failed_at: string })[]>;
  close(): Promise<void>;
}
