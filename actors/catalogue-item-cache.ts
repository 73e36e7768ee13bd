// The items a shard's carts read, kept in memory for a short while: a cart turn needs the price of
// every item it holds, and asking the store each time was half of the shard's queries. The cache is
// the cart type's per-shard view; the Item service tells every shard of the cluster (through
// `system.query`) which items changed before its call returns, and entries expire after `ttlMs`
// so that a change made behind Troupe's back (SQL by hand, a member that did not answer) shows too.

import type { ItemRecord } from './catalogue.js';

/** What `system.query('cart', ...)` carries: the items whose rows changed or went away. */
export interface ItemsChanged {
  itemsChanged: string[];
}

export function isItemsChanged(args: unknown): args is ItemsChanged {
  return typeof args === 'object' && args !== null && Array.isArray((args as ItemsChanged).itemsChanged);
}

interface Entry {
  item: ItemRecord;
  expires: number;
}

export class ItemCache {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  /**
   * Bumped by every change: a read from the store that began before a change may carry the old
   * row, so its answer is used for its own turn but not kept.
   */
  #generation = 0;

  constructor(ttlMs = 5_000, maxEntries = 100_000) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Fills `found` with the fresh entries among `uuids`; returns the uuids it does not hold. */
  lookup(uuids: readonly string[], now: number, found: Map<string, ItemRecord>): string[] {
    const missing: string[] = [];
    for (const uuid of uuids) {
      const e = this.#entries.get(uuid);
      if (e && e.expires > now) found.set(uuid, e.item);
      else missing.push(uuid);
    }
    return missing;
  }

  /** Keeps what a store read returned, unless an item changed since the read began (`generation`). */
  fill(items: ReadonlyMap<string, ItemRecord>, generation: number, now: number): void {
    if (generation !== this.#generation) return;
    if (this.#entries.size + items.size > this.#maxEntries) this.#entries.clear();
    const expires = now + this.#ttlMs;
    for (const [uuid, item] of items) this.#entries.set(uuid, { item, expires });
  }

  /** Forgets the named items; returns how many it held. */
  forget(uuids: readonly string[]): number {
    this.#generation++;
    let held = 0;
    for (const uuid of uuids) if (this.#entries.delete(uuid)) held++;
    return held;
  }
}
