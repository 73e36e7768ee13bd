// The catalogue and cart store in SQLite (the embedded default): one file in the node's data dir,
// shared by the main thread and every shard in WAL mode; writes of one tick share a transaction.

import Database from 'better-sqlite3';
import { dirname } from 'node:path';
import { makePrivateDir, makePrivateFile } from '../runtime/index.js';
import type { CartLine, CartRecord, CatalogueStore, ItemListQuery, ItemRecord } from './catalogue.js';
import { CartConflict, checkNextVersion, SORT_COLUMN } from './catalogue.js';
import { GroupCommit, type FlushOutcomes } from './catalogue-group-commit.js';
import { MIGRATIONS, MIGRATIONS_TABLE } from './catalogue-migrations.js';


interface ItemRow {
  uuid: string;
  name: string;
  description: string;
  price_minor: number;
  created: number;
  updated: number;
}

function itemFromRow(r: ItemRow): ItemRecord {
  return { uuid: r.uuid, name: r.name, description: r.description, priceMinor: r.price_minor, created: r.created, updated: r.updated };
}

interface CartWrite {
  next: CartRecord;
  previous: CartRecord | undefined;
}

export class SqliteCatalogue implements CatalogueStore {
  readonly kind = 'sqlite' as const;
  readonly db: Database.Database;
  readonly #writes: GroupCommit<CartWrite>;

  constructor(file: string) {
    makePrivateDir(dirname(file));
    this.db = new Database(makePrivateFile(file));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    // Shards and the main thread share the file; a writer waits for the lock rather than failing.
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.#writes = new GroupCommit(async (batch) => this.#saveBatch(batch), (w) => w.next.uuid, { maxInFlight: 1 });
  }

  async migrate(): Promise<number[]> {
    const applied: number[] = [];
    // BEGIN IMMEDIATE takes the write lock first, so concurrent migrators run one after the other.
    this.db.exec('BEGIN IMMEDIATE');
    try {
      this.db.exec(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)`);
      const done = new Set((this.db.prepare(`SELECT version FROM ${MIGRATIONS_TABLE}`).all() as { version: number }[]).map((r) => r.version));
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        this.db.exec(m.sqlite);
        this.db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (version, name, applied) VALUES (?, ?, ?)`).run(m.version, m.name, Date.now());
        applied.push(m.version);
      }
      this.db.exec('COMMIT');
      return applied;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async createItem(item: ItemRecord): Promise<void> {
    this.db
      .prepare('INSERT INTO item (uuid, name, description, price_minor, created, updated) VALUES (?, ?, ?, ?, ?, ?)')
      .run(item.uuid, item.name, item.description, item.priceMinor, item.created, item.updated);
  }

  async updateItem(item: Omit<ItemRecord, 'created'>): Promise<ItemRecord | undefined> {
    const row = this.db
      .prepare('UPDATE item SET name = ?, description = ?, price_minor = ?, updated = ? WHERE uuid = ? RETURNING *')
      .get(item.name, item.description, item.priceMinor, item.updated, item.uuid) as ItemRow | undefined;
    return row ? itemFromRow(row) : undefined;
  }

  async deleteItem(uuid: string): Promise<boolean> {
    return this.db.transaction(() => {
      this.db.prepare('DELETE FROM cart_entry WHERE item_uuid = ?').run(uuid);
      return this.db.prepare('DELETE FROM item WHERE uuid = ?').run(uuid).changes > 0;
    }).immediate();
  }

  async getItem(uuid: string): Promise<ItemRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM item WHERE uuid = ?').get(uuid) as ItemRow | undefined;
    return row ? itemFromRow(row) : undefined;
  }

  async getItems(uuids: readonly string[]): Promise<Map<string, ItemRecord>> {
    const out = new Map<string, ItemRecord>();
    if (uuids.length === 0) return out;
    const rows = this.db.prepare('SELECT * FROM item WHERE uuid IN (SELECT value FROM json_each(?))').all(JSON.stringify(uuids)) as ItemRow[];
    for (const r of rows) out.set(r.uuid, itemFromRow(r));
    return out;
  }

  async listItems(q: ItemListQuery): Promise<{ items: ItemRecord[]; total: number }> {
    const col = SORT_COLUMN[q.sorting];
    const dir = q.order === 'desc' ? 'DESC' : 'ASC';
    const read = this.db.transaction(() => {
      const rows = this.db.prepare(`SELECT * FROM item ORDER BY ${col} ${dir}, uuid ${dir} LIMIT ? OFFSET ?`).all(q.limit, q.offset) as ItemRow[];
      const total = (this.db.prepare('SELECT count(*) AS n FROM item').get() as { n: number }).n;
      return { items: rows.map(itemFromRow), total };
    });
    return read.deferred();
  }

  async loadCart(uuid: string): Promise<CartRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM cart WHERE uuid = ?').get(uuid) as
      | { uuid: string; user_uuid: string; address: string | null; created: number; updated: number; version: number }
      | undefined;
    if (!row) return undefined;
    const lines = this.db
      .prepare('SELECT item_uuid, quantity, added FROM cart_entry WHERE cart_uuid = ? ORDER BY added, item_uuid')
      .all(uuid) as { item_uuid: string; quantity: number; added: number }[];
    return {
      uuid: row.uuid,
      userUuid: row.user_uuid,
      address: row.address ? JSON.parse(row.address) : null,
      created: row.created,
      updated: row.updated,
      lines: lines.map((l): CartLine => ({ itemUuid: l.item_uuid, quantity: l.quantity, added: l.added })),
      version: row.version,
    };
  }

  saveCart(next: CartRecord, previous: CartRecord | undefined): Promise<void> {
    try {
      checkNextVersion(next, previous);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#writes.submit({ next, previous });
  }

  /**
   * One transaction for the batch. A cart row is written only if the store holds the version its
   * write started from (no row for a new cart), and its lines only if its row was; the carts not
   * written are refused with CartConflict.
   */
  #saveBatch(batch: CartWrite[]): FlushOutcomes {
    const insertCart = this.db.prepare(
      `INSERT INTO cart (uuid, user_uuid, address, created, updated, version) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (uuid) DO NOTHING`,
    );
    const updateCart = this.db.prepare('UPDATE cart SET address = ?, updated = ?, version = ? WHERE uuid = ? AND version = ?');
    const removeLine = this.db.prepare('DELETE FROM cart_entry WHERE cart_uuid = ? AND item_uuid = ?');
    const upsertLine = this.db.prepare(
      `INSERT INTO cart_entry (cart_uuid, item_uuid, quantity, added) VALUES (?, ?, ?, ?)
       ON CONFLICT (cart_uuid, item_uuid) DO UPDATE SET quantity = excluded.quantity`,
    );
    return this.db.transaction(() =>
      batch.map(({ next, previous }) => {
        const address = next.address ? JSON.stringify(next.address) : null;
        const written =
          previous === undefined
            ? insertCart.run(next.uuid, next.userUuid, address, next.created, next.updated, next.version).changes
            : updateCart.run(address, next.updated, next.version, next.uuid, previous.version).changes;
        if (written === 0) return new CartConflict(next.uuid, previous?.version ?? 0);
        const before = new Map((previous?.lines ?? []).map((l) => [l.itemUuid, l.quantity]));
        const now = new Set<string>();
        for (const l of next.lines) {
          now.add(l.itemUuid);
          if (before.get(l.itemUuid) !== l.quantity) upsertLine.run(next.uuid, l.itemUuid, l.quantity, l.added);
        }
        for (const item of before.keys()) if (!now.has(item)) removeLine.run(next.uuid, item);
        return undefined;
      }),
    ).immediate();
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
