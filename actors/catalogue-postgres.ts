// The catalogue and cart store in PostgreSQL (pooled `pg`), in its own schema; migrations run
// under an advisory lock so several nodes may start (or `troupe migrate`) at once.

import pg from 'pg';
import type { AddressRecord, CartLine, CartRecord, CatalogueStore, ItemListQuery, ItemRecord } from './catalogue.js';
import { CartConflict, checkNextVersion, SORT_COLUMN } from './catalogue.js';
import { GroupCommit, type FlushOutcomes } from './catalogue-group-commit.js';
import { MIGRATIONS, MIGRATIONS_TABLE } from './catalogue-migrations.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;


interface ItemRow {
  uuid: string;
  name: string;
  description: string;
  price_minor: string | number;
  created: Date;
  updated: Date;
}

function itemFromRow(r: ItemRow): ItemRecord {
  return {
    uuid: r.uuid,
    name: r.name,
    description: r.description,
    priceMinor: Number(r.price_minor),
    created: r.created.getTime(),
    updated: r.updated.getTime(),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

interface CartWrite {
  next: CartRecord;
  previous: CartRecord | undefined;
}

export class PostgresCatalogue implements CatalogueStore {
  readonly kind = 'postgres' as const;
  readonly schema: string;
  readonly pool: pg.Pool;
  readonly #writes: GroupCommit<CartWrite>;

  constructor(url: string, schema: string, poolSize: number) {
    if (!SCHEMA_NAME.test(schema)) {
      throw new Error(`carts schema "${schema}" is not a plain lower-case SQL name; use letters, digits and _`);
    }
    this.schema = schema;
    this.pool = new pg.Pool({ connectionString: url, max: poolSize, options: `-c search_path=${schema}` });
    // An idle client that loses its server emits 'error'; the pool replaces it on next use.
    this.pool.on('error', () => {});
    this.#writes = new GroupCommit((batch) => this.#saveBatch(batch), (w) => w.next.uuid, {
      maxInFlight: Math.max(1, poolSize - 1),
    });
  }

  async migrate(): Promise<number[]> {
    const client = await this.pool.connect();
    const applied: number[] = [];
    try {
      await client.query('BEGIN');
      // Transaction-scoped: released by COMMIT or ROLLBACK, even if this process dies.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`troupe-carts-migrations:${this.schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.schema}.${MIGRATIONS_TABLE} (version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`,
      );
      const done = new Set(
        (await client.query<{ version: number }>(`SELECT version FROM ${this.schema}.${MIGRATIONS_TABLE}`)).rows.map((r) => r.version),
      );
      await client.query(`SET LOCAL search_path TO ${this.schema}`);
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        await client.query(m.postgres);
        await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
        applied.push(m.version);
      }
      await client.query('COMMIT');
      return applied;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async createItem(item: ItemRecord): Promise<void> {
    await this.pool.query(
      'INSERT INTO item (uuid, name, description, price_minor, created, updated) VALUES ($1, $2, $3, $4, $5, $6)',
      [item.uuid, item.name, item.description, item.priceMinor, iso(item.created), iso(item.updated)],
    );
  }

  async updateItem(item: Omit<ItemRecord, 'created'>): Promise<ItemRecord | undefined> {
    const r = await this.pool.query<ItemRow>(
      'UPDATE item SET name = $2, description = $3, price_minor = $4, updated = $5 WHERE uuid = $1 RETURNING *',
      [item.uuid, item.name, item.description, item.priceMinor, iso(item.updated)],
    );
    return r.rows[0] ? itemFromRow(r.rows[0]) : undefined;
  }

  async deleteItem(uuid: string): Promise<boolean> {
    const r = await this.pool.query<{ n: string }>(
      'WITH e AS (DELETE FROM cart_entry WHERE item_uuid = $1), i AS (DELETE FROM item WHERE uuid = $1 RETURNING 1) SELECT count(*) AS n FROM i',
      [uuid],
    );
    return Number(r.rows[0]!.n) > 0;
  }

  async getItem(uuid: string): Promise<ItemRecord | undefined> {
    const r = await this.pool.query<ItemRow>('SELECT * FROM item WHERE uuid = $1', [uuid]);
    return r.rows[0] ? itemFromRow(r.rows[0]) : undefined;
  }

  /**
   * Reads of one tick (from many cart actors of this shard) share one query: a cart turn costs
   * a share of a round trip rather than a round trip.
   */
  getItems(uuids: readonly string[]): Promise<Map<string, ItemRecord>> {
    if (uuids.length === 0) return Promise.resolve(new Map());
    return new Promise((resolve, reject) => {
      this.#reads.push({ uuids, resolve, reject });
      if (this.#reads.length === 1) setImmediate(() => this.#readBatch());
    });
  }

  #reads: { uuids: readonly string[]; resolve: (m: Map<string, ItemRecord>) => void; reject: (e: unknown) => void }[] = [];

  async #readBatch(): Promise<void> {
    const reads = this.#reads;
    this.#reads = [];
    const all = [...new Set(reads.flatMap((r) => r.uuids))];
    try {
      const r = await this.pool.query<ItemRow>({ name: 'carts-get-items', text: 'SELECT * FROM item WHERE uuid = ANY($1::uuid[])', values: [all] });
      const found = new Map(r.rows.map((row) => [row.uuid, itemFromRow(row)]));
      for (const read of reads) {
        const out = new Map<string, ItemRecord>();
        for (const u of read.uuids) {
          const item = found.get(u);
          if (item) out.set(u, item);
        }
        read.resolve(out);
      }
    } catch (err) {
      for (const read of reads) read.reject(err);
    }
  }

  async listItems(q: ItemListQuery): Promise<{ items: ItemRecord[]; total: number }> {
    const col = SORT_COLUMN[q.sorting];
    const dir = q.order === 'desc' ? 'DESC' : 'ASC';
    const [rows, count] = await Promise.all([
      this.pool.query<ItemRow>(`SELECT * FROM item ORDER BY ${col} ${dir}, uuid ${dir} LIMIT $1 OFFSET $2`, [q.limit, q.offset]),
      this.pool.query<{ n: string }>('SELECT count(*) AS n FROM item'),
    ]);
    return { items: rows.rows.map(itemFromRow), total: Number(count.rows[0]!.n) };
  }

  async loadCart(uuid: string): Promise<CartRecord | undefined> {
    const r = await this.pool.query<{ uuid: string; user_uuid: string; address: AddressRecord | null; created: Date; updated: Date; version: string; lines: CartLine[] | null }>({
      name: 'carts-load-cart',
      text: `SELECT c.uuid, c.user_uuid, c.address, c.created, c.updated, c.version,
               (SELECT json_agg(json_build_object('itemUuid', e.item_uuid, 'quantity', e.quantity,
                                                  'added', (extract(epoch FROM e.added) * 1000)::bigint)
                                ORDER BY e.added, e.item_uuid)
                  FROM cart_entry e WHERE e.cart_uuid = c.uuid) AS lines
             FROM cart c WHERE c.uuid = $1`,
      values: [uuid],
    });
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      uuid: row.uuid,
      userUuid: row.user_uuid,
      address: row.address,
      created: row.created.getTime(),
      updated: row.updated.getTime(),
      lines: (row.lines ?? []).map((l) => ({ itemUuid: l.itemUuid, quantity: Number(l.quantity), added: Number(l.added) })),
      version: Number(row.version),
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
   * One statement (so one round trip, atomic) for the whole batch: cart rows, removed and changed
   * lines. A cart row is written only if the store holds the version its write started from, and
   * its lines only if its row was; the carts not written are refused with CartConflict.
   */
  async #saveBatch(batch: CartWrite[]): Promise<FlushOutcomes> {
    const cu: string[] = [], cusr: string[] = [], caddr: (string | null)[] = [], ccr: string[] = [], cup: string[] = [], cv: number[] = [];
    const du: string[] = [], di: string[] = [];
    const eu: string[] = [], ei: string[] = [], eq: number[] = [], ea: string[] = [];
    for (const { next, previous } of batch) {
      cu.push(next.uuid);
      cusr.push(next.userUuid);
      caddr.push(next.address ? JSON.stringify(next.address) : null);
      ccr.push(iso(next.created));
      cup.push(iso(next.updated));
      cv.push(next.version);
      const before = new Map((previous?.lines ?? []).map((l) => [l.itemUuid, l.quantity]));
      const now = new Set<string>();
      for (const l of next.lines) {
        now.add(l.itemUuid);
        if (before.get(l.itemUuid) !== l.quantity) {
          eu.push(next.uuid);
          ei.push(l.itemUuid);
          eq.push(l.quantity);
          ea.push(iso(l.added));
        }
      }
      for (const item of before.keys()) {
        if (!now.has(item)) {
          du.push(next.uuid);
          di.push(item);
        }
      }
    }
    // A new cart (version 1) inserts; an existing row is updated only from the version before
    // (stored rows are at 1 or more, so a new cart meeting a row is refused). Under READ
    // COMMITTED a concurrent writer of the same row is waited for, and the condition checked again
    // against what it committed. The arbiter index finds each row whatever the planner thinks of
    // the table: an UPDATE ... FROM the arrays, tried first, doubled AddItem latency under load in
    // the carts bench (its join is the planner's choice, likely poor on a young table).
    const r = await this.pool.query<{ uuid: string }>({
      name: 'carts-save-batch',
      text: `WITH c AS (
               INSERT INTO cart AS t (uuid, user_uuid, address, created, updated, version)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[], $12::bigint[])
               ON CONFLICT (uuid) DO UPDATE SET address = EXCLUDED.address, updated = EXCLUDED.updated, version = EXCLUDED.version
                 WHERE t.version = EXCLUDED.version - 1
               RETURNING uuid
             ), d AS (
               DELETE FROM cart_entry e USING unnest($6::uuid[], $7::uuid[]) AS r(cart_uuid, item_uuid)
               WHERE e.cart_uuid = r.cart_uuid AND e.item_uuid = r.item_uuid AND r.cart_uuid IN (SELECT uuid FROM c)
               RETURNING 1
             ), u AS (
               INSERT INTO cart_entry (cart_uuid, item_uuid, quantity, added)
               SELECT * FROM unnest($8::uuid[], $9::uuid[], $10::integer[], $11::timestamptz[]) AS r(cart_uuid, item_uuid, quantity, added)
               WHERE r.cart_uuid IN (SELECT uuid FROM c)
               ON CONFLICT (cart_uuid, item_uuid) DO UPDATE SET quantity = EXCLUDED.quantity
               RETURNING 1
             )
             SELECT r.uuid FROM unnest($1::uuid[]) AS r(uuid) WHERE r.uuid NOT IN (SELECT uuid FROM c)`,
      values: [cu, cusr, caddr, ccr, cup, du, di, eu, ei, eq, ea, cv],
    });
    // Only the refused carts come back: usually none.
    if (r.rows.length === 0) return [];
    const refused = new Set(r.rows.map((row) => row.uuid));
    return batch.map(({ next, previous }) => (refused.has(next.uuid.toLowerCase()) ? new CartConflict(next.uuid, previous?.version ?? 0) : undefined));
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
