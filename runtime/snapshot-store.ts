// A shard's SQLite database of durable actor snapshots (WAL). All state changes of one batch of
// turns commit in one transaction (group commit). States are stored as V8-serialized blobs.

import Database from 'better-sqlite3';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makePrivateFile } from './private-files.js';
import { deserialize, serialize } from 'node:v8';

/** What a commit writes: an actor's id, its partition and its encoded state (see `encode`). */
export interface SnapshotRow {
  readonly id: string;
  readonly partition: number;
  readonly blob: Buffer;
}

export type SnapshotCodec = 'v8' | 'json';

/** A stored state back as a value (the codec is told from its first byte). */
export function decodeSnapshot(blob: Buffer): unknown {
  return blob[0] === 0xff ? deserialize(blob) : JSON.parse(blob.toString('utf8'));
}

export function shardDatabasePath(dataDir: string, shard: number): string {
  return join(dataDir, `shard-${shard}.sqlite`);
}

export class SnapshotStore {
  readonly #db: Database.Database;
  readonly #load: Database.Statement<[string], { state: Buffer }>;
  readonly #upsert: Database.Statement<[string, number, Buffer]>;
  readonly #commit: (rows: readonly SnapshotRow[]) => void;
  readonly #ofType: Database.Statement<[string, string], { actor: string; state: Buffer }>;

  constructor(path: string, durability: 'normal' | 'full' = 'normal') {
    this.#db = new Database(makePrivateFile(path));
    this.#db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode loses nothing on a process crash; FULL also survives a power cut.
    this.#db.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`);
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS snapshot (
        actor     TEXT PRIMARY KEY,
        partition INTEGER NOT NULL,
        version   INTEGER NOT NULL,
        state     BLOB NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS snapshot_by_partition ON snapshot (partition);
    `);
    this.#load = this.#db.prepare('SELECT state FROM snapshot WHERE actor = ?');
    this.#upsert = this.#db.prepare(
      `INSERT INTO snapshot (actor, partition, version, state) VALUES (?, ?, 1, ?)
       ON CONFLICT (actor) DO UPDATE SET version = version + 1, state = excluded.state`,
    );
    // '/' is 0x2F and '0' is 0x30: every id of a type lies in ['type/', 'type0').
    this.#ofType = this.#db.prepare('SELECT actor, state FROM snapshot WHERE actor >= ? AND actor < ?');
    this.#commit = this.#db.transaction((rows: readonly SnapshotRow[]) => {
      for (const row of rows) this.#upsert.run(row.id, row.partition, row.blob);
    });
  }

  /**
   * Encodes a state for `commit`; throws for what cannot be stored. `v8` keeps what structured
   * clone keeps (Map, Set, Date, typed arrays); `json` is several times cheaper for plain data.
   * The two are told apart on load (V8's format starts with 0xFF, JSON never does).
   */
  encode(state: unknown, codec: SnapshotCodec): Buffer {
    if (codec === 'json') {
      const text = JSON.stringify(state);
      if (text === undefined) throw new TypeError('a json-coded actor state must be a JSON value (got undefined or a function)');
      return Buffer.from(text);
    }
    return serialize(state);
  }

  /** The last committed state of an actor, or undefined if it never committed one. */
  load(actor: string): unknown {
    const row = this.#load.get(actor);
    return row ? decodeSnapshot(row.state) : undefined;
  }

  /** Commits many actors' states in one transaction. */
  commit(rows: readonly SnapshotRow[]): void {
    if (rows.length) this.#commit(rows);
  }

  /** Every stored actor of a type (to rebuild per-shard views at start). */
  *ofType(type: string): Generator<{ actor: string; state: unknown }> {
    for (const row of this.#ofType.iterate(type + '/', type + '0')) yield { actor: row.actor, state: decodeSnapshot(row.state) };
  }

  /** Every stored actor of some partitions (a hand-off ships them). */
  *ofPartitions(partitions: readonly number[]): Generator<{ actor: string; partition: number; state: unknown }> {
    const stmt = this.#db.prepare('SELECT actor, state FROM snapshot WHERE partition = ?');
    for (const partition of partitions) {
      for (const row of stmt.iterate(partition) as IterableIterator<{ actor: string; state: Buffer }>) yield { actor: row.actor, partition, state: decodeSnapshot(row.state) };
    }
  }

  /** The stored rows of one partition as they are stored (encoded). */
  rowsOf(partition: number): { id: string; blob: Buffer }[] {
    const stmt = this.#db.prepare('SELECT actor AS id, state AS blob FROM snapshot WHERE partition = ?');
    return stmt.all(partition) as { id: string; blob: Buffer }[];
  }

  /** Replaces what is stored of some partitions with the given rows, in one transaction. */
  replacePartitions(partitions: readonly number[], rows: readonly SnapshotRow[]): void {
    const del = this.#db.prepare('DELETE FROM snapshot WHERE partition = ?');
    this.#db.transaction(() => {
      for (const p of partitions) del.run(p);
      for (const row of rows) this.#upsert.run(row.id, row.partition, row.blob);
    })();
  }

  /** Forgets partitions handed to another node: their state lives there now. */
  deletePartitions(partitions: readonly number[]): void {
    const stmt = this.#db.prepare('DELETE FROM snapshot WHERE partition = ?');
    this.#db.transaction(() => {
      for (const p of partitions) stmt.run(p);
    })();
  }

  count(): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM snapshot').get() as { n: number }).n;
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * Moves snapshots when the shard count changed since the data directory was last used: partition p
 * lives on shard p mod W, so rows follow their partition to the new shard's database.
 */
export function reshard(dataDir: string, oldShards: number, newShards: number): number {
  let moved = 0;
  const old: string[] = [];
  for (let s = 0; s < oldShards; s++) {
    const path = shardDatabasePath(dataDir, s);
    if (!existsSync(path)) continue;
    const aside = path + '.resharding';
    renameSync(path, aside);
    for (const suffix of ['-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
    old.push(aside);
  }
  const targets = Array.from({ length: newShards }, (_, s) => new Database(makePrivateFile(shardDatabasePath(dataDir, s))));
  for (const t of targets) {
    t.pragma('journal_mode = WAL');
    t.exec(`CREATE TABLE IF NOT EXISTS snapshot (actor TEXT PRIMARY KEY, partition INTEGER NOT NULL, version INTEGER NOT NULL, state BLOB NOT NULL) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS snapshot_by_partition ON snapshot (partition);`);
  }
  const inserts = targets.map((t) => t.prepare('INSERT OR REPLACE INTO snapshot (actor, partition, version, state) VALUES (?, ?, ?, ?)'));
  for (const path of old) {
    const src = new Database(path);
    const rows = src.prepare('SELECT actor, partition, version, state FROM snapshot').iterate() as IterableIterator<{ actor: string; partition: number; version: number; state: Buffer }>;
    for (const t of targets) t.exec('BEGIN');
    for (const r of rows) {
      inserts[r.partition % newShards]!.run(r.actor, r.partition, r.version, r.state);
      moved++;
    }
    for (const t of targets) t.exec('COMMIT');
    src.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
  }
  for (const t of targets) t.close();
  return moved;
}
