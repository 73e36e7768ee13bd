// The versioned schema changes of the catalogue and cart tables, for PostgreSQL and SQLite.
// Append only: a version once released never changes; a change of schema is a new version.

export interface Migration {
  version: number;
  name: string;
  postgres: string;
  sqlite: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'item table',
    postgres: `
      CREATE TABLE item (
        uuid uuid PRIMARY KEY,
        name text NOT NULL CHECK (name <> ''),
        description text NOT NULL DEFAULT '',
        price_minor bigint NOT NULL CHECK (price_minor >= 0),
        created timestamptz NOT NULL,
        updated timestamptz NOT NULL
      );
      CREATE INDEX item_name_idx ON item (name, uuid);
      CREATE INDEX item_price_idx ON item (price_minor, uuid);
      CREATE INDEX item_created_idx ON item (created, uuid);
      CREATE INDEX item_updated_idx ON item (updated, uuid);`,
    sqlite: `
      CREATE TABLE item (
        uuid TEXT PRIMARY KEY,
        name TEXT NOT NULL CHECK (name <> ''),
        description TEXT NOT NULL DEFAULT '',
        price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
      );
      CREATE INDEX item_name_idx ON item (name, uuid);
      CREATE INDEX item_price_idx ON item (price_minor, uuid);
      CREATE INDEX item_created_idx ON item (created, uuid);
      CREATE INDEX item_updated_idx ON item (updated, uuid);`,
  },
  {
    version: 2,
    name: 'cart and cart_entry tables',
    // No foreign key from cart_entry to item: deleting an item deletes its entries in the same
    // transaction, and a cart reading an entry whose item is gone drops it (see the README).
    postgres: `
      CREATE TABLE cart (
        uuid uuid PRIMARY KEY,
        user_uuid uuid NOT NULL,
        address jsonb,
        created timestamptz NOT NULL,
        updated timestamptz NOT NULL
      );
      CREATE INDEX cart_user_idx ON cart (user_uuid);
      CREATE TABLE cart_entry (
        cart_uuid uuid NOT NULL REFERENCES cart (uuid) ON DELETE CASCADE,
        item_uuid uuid NOT NULL,
        quantity integer NOT NULL CHECK (quantity > 0),
        added timestamptz NOT NULL,
        PRIMARY KEY (cart_uuid, item_uuid)
      );
      CREATE INDEX cart_entry_item_idx ON cart_entry (item_uuid);`,
    sqlite: `
      CREATE TABLE cart (
        uuid TEXT PRIMARY KEY,
        user_uuid TEXT NOT NULL,
        address TEXT,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
      );
      CREATE INDEX cart_user_idx ON cart (user_uuid);
      CREATE TABLE cart_entry (
        cart_uuid TEXT NOT NULL REFERENCES cart (uuid) ON DELETE CASCADE,
        item_uuid TEXT NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        added INTEGER NOT NULL,
        PRIMARY KEY (cart_uuid, item_uuid)
      );
      CREATE INDEX cart_entry_item_idx ON cart_entry (item_uuid);`,
  },
  {
    version: 3,
    name: 'cart.version for optimistic concurrency',
    // Rows written before this version count as saved once: every stored row is at 1 or more, so
    // a save of a new cart (version 1, from no row) can never be taken for an update.
    postgres: `ALTER TABLE cart ADD COLUMN version bigint NOT NULL DEFAULT 1;`,
    sqlite: `ALTER TABLE cart ADD COLUMN version INTEGER NOT NULL DEFAULT 1;`,
  },
];

export const MIGRATIONS_TABLE = 'carts_schema_migration';
