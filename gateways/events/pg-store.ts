// The clustered processed-events store: `processed_events` and `dead_letter_events` in PostgreSQL,
// written through a pg connection pool, one multi-row statement per batch; read back by id or a page
// at a time.

import pg from 'pg';
import { redactedUrl } from '../../runtime/index.js';
import { pageSql } from './page-sql.js';
import type { DeadLetter, EventQuery, ProcessedEventRow, ProcessedEventStore, RowBatch } from './store.js';

export interface PgStoreOptions {
  url: string;
  /** The schema holding the tables (created when missing); tests use one each. */
  schema?: string;
  poolSize?: number;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function toRow(r: Record<string, unknown>): ProcessedEventRow {
  return { ...r, created_at: (r.created_at as Date).toISOString(), processed_at: (r.processed_at as Date).toISOString() } as ProcessedEventRow;
}

export class PgEventStore implements ProcessedEventStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #schema: string;
  readonly #events: string;
  readonly #dead: string;

  private constructor(options: PgStoreOptions) {
    this.#url = options.url;
    this.#schema = quoteIdent(options.schema ?? 'public');
    this.#events = `${this.#schema}.processed_events`;
    this.#dead = `${this.#schema}.dead_letter_events`;
    this.#pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 10 });
    this.#pool.on('error', () => {}); // an idle client's error surfaces on the next query instead
  }

  /** Opens the pool and creates the schema, tables and indexes when missing. */
  static async open(options: PgStoreOptions): Promise<PgEventStore> {
    const store = new PgEventStore(options);
    try {
      await store.#pool.query(`CREATE SCHEMA IF NOT EXISTS ${store.#schema}`);
      await store.#pool.query(`CREATE TABLE IF NOT EXISTS ${store.#events} (
        id varchar(36) PRIMARY KEY,
        type varchar(20) NOT NULL,
        source varchar(50) NOT NULL,
        user_id varchar(50),
        processed_data json NOT NULL,
        processing_time_ms integer NOT NULL,
        created_at timestamptz NOT NULL,
        processed_at timestamptz NOT NULL
      )`);
      await store.#pool.query(`CREATE INDEX IF NOT EXISTS processed_events_type_created ON ${store.#events} (type, created_at)`);
      await store.#pool.query(`CREATE INDEX IF NOT EXISTS processed_events_user_created ON ${store.#events} (user_id, created_at)`);
      await store.#pool.query(`CREATE TABLE IF NOT EXISTS ${store.#dead} (
        seq bigserial PRIMARY KEY,
        id varchar(36),
        event jsonb NOT NULL,
        error text NOT NULL,
        attempts integer NOT NULL,
        failed_at timestamptz NOT NULL DEFAULT now()
      )`);
    } catch (err) {
      await store.#pool.end().catch(() => {});
      throw new Error(`cannot prepare processed_events in PostgreSQL at ${redactedUrl(options.url)}: ${(err as Error).message}`);
    }
    return store;
  }

  async insert(batch: RowBatch): Promise<Set<string>> {
    if (batch.rowCount === 0) return new Set();
    // One statement and one parameter for all the rows: PostgreSQL unpacks the pool's JSON. The
    // pool sends each id once, so no DISTINCT is needed; an id already stored is skipped.
    const res = await this.#pool.query<{ id: string }>(
      `INSERT INTO ${this.#events} (id, type, source, user_id, processed_data, processing_time_ms, created_at, processed_at)
       SELECT id, type, source, user_id, processed_data, GREATEST(0, $2::bigint - received_at)::int, created_at, $3::timestamptz
       FROM json_to_recordset($1::json) AS t(id varchar(36), type varchar(20), source varchar(50), user_id varchar(50), processed_data json, created_at timestamptz, received_at bigint)
       ON CONFLICT (id) DO NOTHING
       RETURNING id`,
      [batch.rowsJson, batch.processedAt, new Date(batch.processedAt).toISOString()],
    );
    return new Set(res.rows.map((r) => r.id));
  }

  async deadLetter(entries: readonly DeadLetter[]): Promise<void> {
    if (entries.length === 0) return;
    await this.#pool.query(
      `INSERT INTO ${this.#dead} (id, event, error, attempts)
       SELECT id, event::jsonb, error, attempts FROM unnest($1::varchar[], $2::text[], $3::text[], $4::int[]) AS t(id, event, error, attempts)`,
      [entries.map((e) => e.id), entries.map((e) => JSON.stringify(e.event)), entries.map((e) => e.error), entries.map((e) => e.attempts)],
    );
  }

  async ping(): Promise<void> {
    try {
      await this.#pool.query('SELECT 1');
    } catch (err) {
      throw new Error(`postgres at ${redactedUrl(this.#url)} does not answer: ${(err as Error).message}`);
    }
  }

  async get(id: string): Promise<ProcessedEventRow | undefined> {
    const res = await this.#pool.query(`SELECT * FROM ${this.#events} WHERE id = $1`, [id]);
    return res.rows[0] && toRow(res.rows[0]);
  }

  async list(query: EventQuery): Promise<ProcessedEventRow[]> {
    const { sql, values } = pageSql(query, {
      table: this.#events,
      time: '?::timestamptz',
      timeValue: (iso) => iso,
      userId: { sql: 'user_id = ?', values: (u) => [u] },
    });
    let n = 0;
    const res = await this.#pool.query(sql.replace(/\?/g, () => `$${++n}`), values);
    return res.rows.map(toRow);
  }

  async rows(ids?: readonly string[]): Promise<ProcessedEventRow[]> {
    const res = ids
      ? await this.#pool.query(`SELECT * FROM ${this.#events} WHERE id = ANY($1::varchar[])`, [ids])
      : await this.#pool.query(`SELECT * FROM ${this.#events}`);
    return res.rows.map(toRow);
  }

  async count(): Promise<number> {
    const res = await this.#pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.#events}`);
    return Number(res.rows[0]!.n);
  }

  async deadLetters(): Promise<(DeadLetter & { failed_at: string })[]> {
    const res = await this.#pool.query(`SELECT id, event, error, attempts, failed_at FROM ${this.#dead} ORDER BY seq`);
    return res.rows.map((r) => ({ id: r.id, event: r.event, error: r.error, attempts: r.attempts, failed_at: (r.failed_at as Date).toISOString() }));
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  /** Drops a schema and everything in it (tests: each uses its own). */
  static async dropSchema(url: string, schema: string): Promise<void> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    } finally {
      await client.end();
    }
  }
}
