// The item catalogue and the cart rows: domain records, money in integer minor units, and the
// store interface with its two adapters (PostgreSQL when `postgres` is set, else SQLite).

import { join } from 'node:path';

/** An item of the catalogue. Prices are integer minor units (cents): no floating-point drift. */
export interface ItemRecord {
  uuid: string;
  name: string;
  description: string;
  priceMinor: number;
  /** Milliseconds since the epoch. */
  created: number;
  updated: number;
}

export interface AddressRecord {
  uuid: string;
  line1: string;
  line2: string;
  line3: string;
  city: string;
  province: string;
  zipCode: string;
  countryCode: string;
  other: string;
  created: number;
  updated: number;
}

/** One line of a cart: a reference to an item and how many. The price is read from the item. */
export interface CartLine {
  itemUuid: string;
  quantity: number;
  added: number;
}

export interface CartRecord {
  uuid: string;
  userUuid: string;
  /** In the order the items were first added. */
  lines: CartLine[];
  address: AddressRecord | null;
  created: number;
  updated: number;
  /**
   * How many times the cart has been saved (0: never). A save must start from the version the
   * store holds, so two activations of one cart (which the cluster's leases exist to prevent, and
   * which a node paused past its lease can still briefly have) cannot overwrite each other's writes.
   */
  version: number;
}

/**
 * A save was refused because the store no longer holds the cart it started from: another
 * activation saved it in between. Read the cart again and redo the operations on top.
 */
export class CartConflict extends Error {
  readonly code = 'CART_CONFLICT';
  constructor(uuid: string, expectedVersion: number) {
    super(
      expectedVersion === 0
        ? `cart ${uuid} was created elsewhere while this copy was new`
        : `cart ${uuid} was saved elsewhere since this copy (version ${expectedVersion}) was read`,
    );
    this.name = 'CartConflict';
  }
}

export const ITEM_SORT_FIELDS = ['name', 'price', 'created', 'updated'] as const;
export type ItemSortField = (typeof ITEM_SORT_FIELDS)[number];

export interface ItemListQuery {
  sorting: ItemSortField;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
}

export interface CatalogueStore {
  readonly kind: 'postgres' | 'sqlite';
  /** Applies the migrations not yet applied; returns the versions it applied (none: up to date). */
  migrate(): Promise<number[]>;
  createItem(item: ItemRecord): Promise<void>;
  /** Replaces name, description, price and updated; undefined when there is no such item. */
  updateItem(item: Omit<ItemRecord, 'created'>): Promise<ItemRecord | undefined>;
  /** Deletes the item and its lines in every cart; false when there was no such item. */
  deleteItem(uuid: string): Promise<boolean>;
  getItem(uuid: string): Promise<ItemRecord | undefined>;
  getItems(uuids: readonly string[]): Promise<Map<string, ItemRecord>>;
  listItems(query: ItemListQuery): Promise<{ items: ItemRecord[]; total: number }>;
  loadCart(uuid: string): Promise<CartRecord | undefined>;
  /**
   * Writes a cart (its row and the lines that differ from `previous`, the state last saved) as
   * version `next.version`, only if the store still holds `previous` at `previous.version` (no row
   * at all when `previous` is undefined). Rejects with CartConflict otherwise, writing nothing of it.
   * `next.version` must be one more than `previous.version` (1 for a new cart).
   * Concurrent calls are grouped into one transaction; resolves once committed.
   */
  saveCart(next: CartRecord, previous: CartRecord | undefined): Promise<void>;
  close(): Promise<void>;
}

export interface CatalogueOptions {
  /** A PostgreSQL URL; without it the store is SQLite in `dataDir`. */
  postgres?: string;
  /** PostgreSQL schema holding the tables (created by the migrations). */
  schema?: string;
  dataDir: string;
  /** Connections per pool (PostgreSQL). */
  poolSize?: number;
}

export const SQLITE_FILE = 'carts.sqlite';

export function sqlitePath(dataDir: string): string {
  return join(dataDir, SQLITE_FILE);
}

/** Throws unless `next` is the version after `previous`: what saveCart's check relies on. */
export function checkNextVersion(next: CartRecord, previous: CartRecord | undefined): void {
  const expected = (previous?.version ?? 0) + 1;
  if (next.version !== expected) throw new TypeError(`cart ${next.uuid}: a save from version ${previous?.version ?? 0} must be version ${expected}, got ${next.version}`);
}

/** Opens the store the settings ask for. Does not migrate; call migrate() where appropriate. */
export async function openCatalogue(options: CatalogueOptions): Promise<CatalogueStore> {
  if (options.postgres) {
    const { PostgresCatalogue } = await import('./catalogue-postgres.js');
    return new PostgresCatalogue(options.postgres, options.schema ?? 'public', options.poolSize ?? 4);
  }
  const { SqliteCatalogue } = await import('./catalogue-sqlite.js');
  return new SqliteCatalogue(sqlitePath(options.dataDir));
}

/** What the node's settings say about the store (shared by the gateway, the actor and `migrate`). */
export function catalogueOptionsFromSettings(settings: Readonly<Record<string, unknown>>, dataDir: string): CatalogueOptions {
  const postgres = typeof settings['postgres'] === 'string' && settings['postgres'] !== '' ? (settings['postgres'] as string) : undefined;
  const schema = typeof settings['carts-schema'] === 'string' && settings['carts-schema'] !== '' ? (settings['carts-schema'] as string) : 'public';
  const poolSize = typeof settings['carts-pool-size'] === 'number' ? (settings['carts-pool-size'] as number) : undefined;
  return { postgres, schema, dataDir, poolSize };
}

// ---- money ----

/** Largest price accepted, in minor units: keeps every total of a cart a safe integer. */
export const MAX_PRICE_MINOR = 1_000_000_000_00; // one billion in major units

/**
 * The wire's double price (major units, 2 decimals) to integer minor units, or a reason it is not
 * a price. 19.99 arrives as 19.989999999999998 and must become 1999, while 19.995 is refused
 * rather than silently rounded.
 */
export function priceToMinor(price: number): { minor?: number; problem?: string } {
  if (!Number.isFinite(price)) return { problem: `price ${price} is not a number` };
  if (price < 0) return { problem: `price ${price} is negative; give 0 or more` };
  const scaled = price * 100;
  const minor = Math.round(scaled);
  if (Math.abs(scaled - minor) > 1e-6 * Math.max(1, Math.abs(scaled))) {
    return { problem: `price ${price} has more than 2 decimals; give it in cents precision, like 19.99` };
  }
  if (minor > MAX_PRICE_MINOR) return { problem: `price ${price} is over the limit of ${MAX_PRICE_MINOR / 100}` };
  return { minor };
}

export function minorToPrice(minor: number): number {
  // Division of an exact integer by 100 gives the double nearest to the decimal, as JSON would print it.
  return minor / 100;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(text: unknown): text is string {
  return typeof text === 'string' && UUID.test(text);
}

/** Empty strings in every field: what a cart without an address shows. */
export function emptyAddress(): AddressRecord {
  return { uuid: '', line1: '', line2: '', line3: '', city: '', province: '', zipCode: '', countryCode: '', other: '', created: 0, updated: 0 };
}

/** The columns `List` may sort by (a whitelist: the sort key never reaches SQL as given). */
export const SORT_COLUMN: Record<ItemListQuery['sorting'], string> = {
  name: 'name',
  price: 'price_minor',
  created: 'created',
  updated: 'updated',
};
