// The embedded processed-events store: `processed_events` and `dead_letter_events` in a SQLite file
// in the node's data directory; and the rows read back by id or a page at a time.

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { makePrivateFile } from '../../runtime/index.js';
import { pageSql } from './page-sql.js';
import type { DeadLetter, EventQuery, ProcessedEventRow, ProcessedEventStore, RowBatch } from './store.js';

interface SqliteRow extends Omit<ProcessedEventRow, 'processed_data'> {
  processed_data: string;
}

function toRow(r: SqliteRow): ProcessedEventRow {
  return { ...r, processed_data: JSON.parse(r.processed_data) as Record<string, unknown> };
}

export class SqliteEventStore implements ProcessedEventStore {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #insert: Database.Statement;
  readonly #dead: Database.Statement;
  readonly #byId: Database.Statement;

  constructor(dataDir: string, fileName = 'events-store.sqlite') {
    this.#db = new Database(makePrivateFile(join(dataDir, fileName)));
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`CREATE TABLE IF NOT EXISTS processed_events (
      id TEXT PRIMARY KEY CHECK (length(id) = 36),
      type TEXT NOT NULL,
      source TEXT NOT NULL CHECK (length(source) <= 50),
      user_id TEXT CHECK (user_id IS NULL OR length(user_id) <= 50),
      processed_data TEXT NOT NULL,
      processing_time_ms INTEGER NOT NULL,
      created_at TEXT NOT NULL,
      processed_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS processed_events_type_created ON processed_events (type, created_at);
    CREATE INDEX IF NOT EXISTS processed_events_user_created ON processed_events (user_id, created_at);
    CREATE TABLE IF NOT EXISTS dead_letter_events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT,
      event TEXT NOT NULL,
      error TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      failed_at TEXT NOT NULL
    );`);
    // json_each unpacks the pool's JSON in SQLite itself; RETURNING yields only rows inserted.
    this.#insert = this.#db.prepare(`INSERT OR IGNORE INTO processed_events
      (id, type, source, user_id, processed_data, processing_time_ms, created_at, processed_at)
      SELECT value ->> '$.id', value ->> '$.type', value ->> '$.source', value ->> '$.user_id', value -> '$.processed_data', max(0, @ms - (value ->> '$.received_at')), value ->> '$.created_at', @at
      FROM json_each(@rows)
      RETURNING id`);
    this.#byId = this.#db.prepare('SELECT * FROM processed_events WHERE id = ?');
    this.#dead = this.#db.prepare(`INSERT INTO dead_letter_events (id, event, error, attempts, failed_at) VALUES (?, ?, ?, ?, ?)`);
  }

  async insert(batch: RowBatch): Promise<Set<string>> {
    const rows = this.#insert.all({ rows: batch.rowsJson, ms: batch.processedAt, at: new Date(batch.processedAt).toISOString() }) as { id: string }[];
    return new Set(rows.map((r) => r.id));
  }

  async deadLetter(entries: readonly DeadLetter[]): Promise<void> {
    const at = new Date().toISOString();
    this.#db.transaction(() => {
      for (const e of entries) this.#dead.run(e.id, typeof e.event === 'string' ? e.event : JSON.stringify(e.event), e.error, e.attempts, at);
    })();
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async get(id: string): Promise<ProcessedEventRow | undefined> {
    const r = this.#byId.get(id) as SqliteRow | undefined;
    return r && toRow(r);
  }

  async list(query: EventQuery): Promise<ProcessedEventRow[]> {
    const { sql, values } = pageSql(query, {
      table: 'processed_events',
      time: '?',
      timeValue: (iso) => iso, // stored as toISOString() text, which sorts as time
      userId: { sql: 'user_id = ?', values: (u) => [u] },
    });
    return (this.#db.prepare(sql).all(...values) as SqliteRow[]).map(toRow);
  }

  async rows(ids?: readonly string[]): Promise<ProcessedEventRow[]> {
    const raw = ids
      ? ids.map((id) => this.#byId.get(id) as SqliteRow | undefined).filter((r): r is SqliteRow => !!r)
      : (this.#db.prepare('SELECT * FROM processed_events').all() as SqliteRow[]);
    return raw.map(toRow);
  }

  async count(): Promise<number> {
    return (this.#db.prepare('SELECT count(*) AS n FROM processed_events').get() as { n: number }).n;
  }

  async deadLetters(): Promise<(DeadLetter & { failed_at: string })[]> {
    const rows = this.#db.prepare('SELECT id, event, error, attempts, failed_at FROM dead_letter_events ORDER BY seq').all() as {
      id: string | null;
      event: string;
      error: string;
      attempts: number;
      failed_at: string;
    }[];
    return rows.map((r) => {
      let event: unknown = r.event;
      try {
        event = JSON.parse(r.event);
      } catch {
        // kept as the raw text it arrived as
      }
      return { ...r, event };
    });
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
