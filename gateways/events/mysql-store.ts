// The MySQL processed-events store (MySQL 8 or MariaDB 10.6+): `processed_events` exactly as the
// events brief defines it, plus `dead_letter_events`, through a mysql2 connection pool.

import mysql from 'mysql2/promise';
import type { Pool, PoolConnection as CorePoolConnection } from 'mysql2';
import { redactedUrl } from '../../runtime/index.js';
import { pageSql } from './page-sql.js';
import type { DeadLetter, EventQuery, ProcessedEventRow, ProcessedEventStore, RowBatch } from './store.js';

export interface MysqlStoreOptions {
  /** mysql://USER:PASSWORD@HOST:PORT/DATABASE; the database must exist (the brief's init makes it). */
  url: string;
  poolSize?: number;
}

/** The events brief's DDL, word for word: a table its init container made first is used as it is. */
export const PROCESSED_EVENTS_DDL = `CREATE TABLE IF NOT EXISTS processed_events (
  id VARCHAR(36) PRIMARY KEY,
  type ENUM('user_action', 'sensor_data', 'system_log') NOT NULL,
  source VARCHAR(50) NOT NULL,
  user_id VARCHAR(50),
  processed_data JSON,
  processing_time_ms INT,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  processed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  INDEX idx_type_created (type, created_at),
  INDEX idx_user_created (user_id, created_at)
)`;

// Ours: one row per dead event, in the order they died; JSON is LONGTEXT + json_valid on MariaDB.
const DEAD_LETTERS_DDL = `CREATE TABLE IF NOT EXISTS dead_letter_events (
  seq BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  id VARCHAR(36) NULL,
  event JSON NOT NULL,
  error TEXT NOT NULL,
  attempts INT NOT NULL,
  failed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  INDEX idx_dead_id (id)
)`;

/**
 * Every connection works in UTC (TIMESTAMP converts to and from the session's time zone) and in
 * strict mode, so a value out of a column's range is an error, never a silent zero date.
 */
const SESSION_SQL = "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

/**
 * One statement for all the rows: the server unpacks the pool's JSON with JSON_TABLE. created_at is
 * cut to whole seconds (the brief's TIMESTAMP has no fraction; MySQL would round, MariaDB cut).
 * A duplicate id changes nothing (the no-op update), and, unlike INSERT IGNORE, a row the column
 * refuses (a date outside TIMESTAMP's 1970-2038) fails the statement instead of storing zeros.
 */
const INSERT_SQL = `INSERT INTO processed_events (id, type, source, user_id, processed_data, processing_time_ms, created_at, processed_at)
  SELECT t.id, t.type, t.source, t.user_id, t.processed_data,
    LEAST(2147483647, GREATEST(0, ? - t.received_at)),
    STR_TO_DATE(LEFT(t.created_at, 19), '%Y-%m-%dT%H:%i:%s'), ?
  FROM JSON_TABLE(?, '$[*]' COLUMNS (
    id VARCHAR(36) PATH '$.id',
    type VARCHAR(20) PATH '$.type',
    source VARCHAR(50) PATH '$.source',
    user_id VARCHAR(50) PATH '$.user_id',
    processed_data JSON PATH '$.processed_data',
    created_at VARCHAR(40) PATH '$.created_at',
    received_at BIGINT PATH '$.received_at'
  )) AS t
  ON DUPLICATE KEY UPDATE id = processed_events.id`;

/** Which of the rows' ids are stored already (MySQL 8 has no INSERT ... RETURNING; MariaDB has). */
const STORED_SQL = `SELECT t.id, p.id IS NOT NULL AS stored
  FROM JSON_TABLE(?, '$[*]' COLUMNS (id VARCHAR(36) PATH '$.id')) AS t
  LEFT JOIN processed_events p ON p.id = t.id`;

/** The longest error text kept in a dead letter (TEXT holds 64 KiB; 4 bytes a character at most). */
const MAX_ERROR_CHARS = 16_000;

/** 'YYYY-MM-DD HH:MM:SS.fff' (UTC, as the session reads it) from ISO 8601 or epoch ms. */
function sqlTime(t: string | number): string {
  return new Date(t).toISOString().slice(0, 23).replace('T', ' ');
}

/** The same, cut to the whole second a TIMESTAMP keeps (MySQL would round a fraction, MariaDB cut it). */
function sqlSecond(t: number): string {
  return sqlTime(t).slice(0, 19);
}

function isoTime(v: unknown): string {
  if (v === null || v === undefined) return new Date(0).toISOString();
  if (v instanceof Date) return v.toISOString();
  return new Date(`${String(v).replace(' ', 'T')}Z`).toISOString();
}

/** JSON as mysql2 hands it: already parsed from MySQL 8's JSON type, text from MariaDB's LONGTEXT. */
function json(v: unknown): any {
  return typeof v === 'string' ? JSON.parse(v) : v;
}

/** A row as mysql2 returns it: JSON parsed on MySQL 8 but text on MariaDB; times as text. */
function toRow(r: Record<string, unknown>): ProcessedEventRow {
  return {
    id: r.id as string,
    type: r.type as string,
    source: r.source as string,
    user_id: (r.user_id as string | null) ?? null,
    processed_data: json(r.processed_data) ?? {},
    processing_time_ms: (r.processing_time_ms as number | null) ?? 0,
    created_at: isoTime(r.created_at),
    processed_at: isoTime(r.processed_at),
  };
}

/** The settings a mysql:// URL names; throws with what to fix. */
export function mysqlConnection(url: string): { host: string; port: number; user: string; password: string; database: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`the MySQL URL does not parse; give one like mysql://root:testpass@127.0.0.1:3306/eventdb`);
  }
  if (u.protocol !== 'mysql:') throw new Error(`the MySQL URL ${redactedUrl(url)} must start with mysql://, like mysql://root:testpass@127.0.0.1:3306/eventdb`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database || database.includes('/')) throw new Error(`the MySQL URL ${redactedUrl(url)} names no database; end it with /DATABASE, like mysql://root:testpass@127.0.0.1:3306/eventdb`);
  return {
    host: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username) || 'root',
    password: decodeURIComponent(u.password),
    database,
  };
}

/** What to do about a MySQL error met while opening the store. */
function advice(err: { code?: string; errno?: number }, database: string): string {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
      return 'nothing answers there: start MySQL (docker compose up mysql) or MariaDB, or point --mysql at one';
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR':
      return 'the user or password is refused: check the credentials in --mysql and that the user may use the database';
    case 'ER_BAD_DB_ERROR':
      return `create the database first (CREATE DATABASE ${database}) or name an existing one in --mysql`;
    case 'ER_TABLEACCESS_DENIED_ERROR':
      return 'the user may not create or read the tables: GRANT CREATE, SELECT, INSERT on the database';
    case 'ER_PARSE_ERROR':
      return 'the server does not know JSON_TABLE: events need MySQL 8.0 or MariaDB 10.6 or newer';
    default:
      return 'check that --mysql points at MySQL 8 or MariaDB 10.6+';
  }
}

/** The SQL of a page of GET /events on MySQL (exported for the test that EXPLAINs it). */
export function mysqlPageSql(query: EventQuery): { sql: string; values: unknown[] } {
  return pageSql(query, {
    table: 'processed_events',
    time: '?',
    timeValue: sqlTime,
    // The brief's table takes the database's collation (case- and trailing-space-insensitive by
    // default): the index finds the candidates, the binary comparison keeps the exact user.
    userId: { sql: 'user_id = ? AND CAST(user_id AS BINARY) = CAST(? AS BINARY)', values: (u) => [u, u] },
  });
}

export class MysqlEventStore implements ProcessedEventStore {
  readonly kind = 'mysql' as const;
  readonly #pool: mysql.Pool;
  readonly #url: string;
  #sessionError: Error | undefined;

  private constructor(options: MysqlStoreOptions) {
    this.#url = options.url;
    const c = mysqlConnection(options.url);
    this.#pool = mysql.createPool({
      ...c,
      connectionLimit: options.poolSize ?? 10,
      // Requests wait for a connection rather than fail, but not without bound.
      queueLimit: 10_000,
      connectTimeout: 10_000,
      enableKeepAlive: true,
      dateStrings: true,
      supportBigNumbers: true,
      charset: 'utf8mb4',
    });
    ((this.#pool as unknown as { pool: Pool }).pool).on('connection', (conn: CorePoolConnection) => {
      // Queued on the connection before any query of ours, so every statement runs in this session;
      // a connection whose session cannot be set is closed rather than used in another time zone.
      conn.query(SESSION_SQL, (err) => {
        if (!err) return;
        this.#sessionError = err;
        conn.destroy();
      });
    });
  }

  /** Opens the pool, checks the server answers, creates the tables when missing. */
  static async open(options: MysqlStoreOptions): Promise<MysqlEventStore> {
    const { database } = mysqlConnection(options.url);
    const store = new MysqlEventStore(options);
    try {
      await store.#pool.query(PROCESSED_EVENTS_DDL);
      await store.#pool.query(DEAD_LETTERS_DDL);
      // JSON_TABLE is what the inserts need; say so now rather than at the first batch.
      await store.#pool.query(`SELECT id FROM JSON_TABLE('[{"id":"x"}]', '$[*]' COLUMNS (id VARCHAR(36) PATH '$.id')) AS t`);
    } catch (err) {
      await store.#pool.end().catch(() => {});
      const e = (store.#sessionError ?? err) as Error & { code?: string };
      throw new Error(`cannot prepare processed_events in MySQL at ${redactedUrl(options.url)}: ${e.code ? `${e.code}: ` : ''}${e.message}; ${advice(e, database)}`);
    }
    return store;
  }

  async insert(batch: RowBatch): Promise<Set<string>> {
    if (batch.rowCount === 0) return new Set();
    // Ids already stored before the insert are not this delivery's. An id a concurrent delivery
    // inserts between the two statements is reported as ours too: the actor then sees it twice
    // and drops the repeat (it keeps recent ids), which is the safe side; reporting fewer would lose it.
    const [before] = await this.#pool.execute<mysql.RowDataPacket[]>(STORED_SQL, [batch.rowsJson]);
    try {
      await this.#pool.execute(INSERT_SQL, [batch.processedAt, sqlSecond(batch.processedAt), batch.rowsJson]);
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.code === 'ER_TRUNCATED_WRONG_VALUE' || e.code === 'ER_WRONG_VALUE' || e.code === 'ER_DATETIME_FUNCTION_OVERFLOW') {
        throw new Error(`MySQL refused the rows: ${e.message} (the brief's TIMESTAMP columns hold 1970-01-01 to 2038-01-19 UTC only)`);
      }
      throw err;
    }
    const inserted = new Set<string>();
    for (const r of before) if (!Number(r.stored)) inserted.add(r.id as string);
    return inserted;
  }

  async deadLetter(entries: readonly DeadLetter[]): Promise<void> {
    // Several rows a statement, client-side placeholders: one text per size, no prepared statement each.
    for (let i = 0; i < entries.length; i += 500) {
      const chunk = entries.slice(i, i + 500);
      await this.#pool.query(
        `INSERT INTO dead_letter_events (id, event, error, attempts) VALUES ${chunk.map(() => '(?, ?, ?, ?)').join(', ')}`,
        chunk.flatMap((e) => [e.id, JSON.stringify(e.event ?? null), e.error.slice(0, MAX_ERROR_CHARS), e.attempts]),
      );
    }
  }

  async ping(): Promise<void> {
    try {
      await this.#pool.query('SELECT 1');
    } catch (err) {
      throw new Error(`mysql at ${redactedUrl(this.#url)} does not answer: ${(err as Error).message}`);
    }
  }

  async get(id: string): Promise<ProcessedEventRow | undefined> {
    const [rows] = await this.#pool.execute<mysql.RowDataPacket[]>('SELECT * FROM processed_events WHERE id = ?', [id]);
    return rows[0] && toRow(rows[0]);
  }

  async list(query: EventQuery): Promise<ProcessedEventRow[]> {
    const { sql, values } = mysqlPageSql(query);
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(sql, values);
    return rows.map(toRow);
  }

  async rows(ids?: readonly string[]): Promise<ProcessedEventRow[]> {
    if (ids && ids.length === 0) return [];
    const [rows] = ids
      ? await this.#pool.query<mysql.RowDataPacket[]>('SELECT * FROM processed_events WHERE id IN (?)', [ids])
      : await this.#pool.query<mysql.RowDataPacket[]>('SELECT * FROM processed_events');
    return rows.map(toRow);
  }

  async count(): Promise<number> {
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT count(*) AS n FROM processed_events');
    return Number(rows[0]!.n);
  }

  async deadLetters(): Promise<(DeadLetter & { failed_at: string })[]> {
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT id, CAST(event AS CHAR) AS event, error, attempts, failed_at FROM dead_letter_events ORDER BY seq');
    // CAST: text from both servers, so an event kept as a JSON string is parsed once only.
    return rows.map((r) => ({ id: r.id as string | null, event: JSON.parse(r.event as string), error: r.error as string, attempts: r.attempts as number, failed_at: isoTime(r.failed_at) }));
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
