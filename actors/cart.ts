// The actor `cart/<uuid>`: serializes every operation on one cart, and persists the cart to the
// catalogue store (PostgreSQL or SQLite) before it replies. Operations arrive in batches (see
// cart-client.ts): one read of the items and one commit serve the whole batch.

import { defineActor, type ActorContext } from '../runtime/index.js';
import { catalogueOptionsFromSettings, openCatalogue, type CartRecord, type CatalogueStore } from './catalogue.js';
import { applyOperation, CartError, itemsNeeded, viewOf, withoutDeletedItems, type CartOperation, type OperationResult } from './cart-operations.js';
import { isItemsChanged, ItemCache } from './catalogue-item-cache.js';
import type { ItemRecord } from './catalogue.js';

export interface CartState {
  /** False until the row was read from the store in this activation. */
  loaded: boolean;
  /** The cart as last committed; undefined while never written. */
  cart: CartRecord | undefined;
}

type Ctx = ActorContext<CartState, ItemCache, CatalogueStore>;

async function load(ctx: Ctx): Promise<CartRecord | undefined> {
  if (ctx.state.loaded) return ctx.state.cart;
  const cart = await ctx.resources.loadCart(ctx.key);
  ctx.state = { loaded: true, cart };
  return cart;
}

/** The items a turn needs: from the shard's cache, the rest in one store read (shared by the tick). */
async function itemsOf(ctx: Ctx, uuids: readonly string[]): Promise<Map<string, ItemRecord>> {
  const cache = ctx.view;
  const found = new Map<string, ItemRecord>();
  const missing = cache.lookup(uuids, ctx.now(), found);
  if (missing.length === 0) return found;
  const generation = cache.generation;
  const read = await ctx.resources.getItems(missing);
  cache.fill(read, generation, ctx.now());
  for (const [uuid, item] of read) found.set(uuid, item);
  return found;
}

/** Runs a batch of operations in order; each gets the cart as it stands after it, or its refusal. */
export async function applyBatch(ctx: Ctx, ops: readonly CartOperation[]): Promise<OperationResult[]> {
  const store = ctx.resources;
  const committed = await load(ctx);
  const items = await itemsOf(ctx, itemsNeeded(committed, ops));
  const now = ctx.now();
  let cart = withoutDeletedItems(committed, items);
  const results: OperationResult[] = [];
  let changed = false;
  for (const op of ops) {
    try {
      const next = applyOperation(ctx.key, cart, op, items, now);
      if (next !== cart) changed = true;
      cart = next;
      results.push({ ok: viewOf(cart!, items) });
    } catch (err) {
      if (!(err instanceof CartError)) throw err;
      results.push({ error: { code: err.code, message: err.message } });
    }
  }
  if (changed && cart) {
    // Persist before replying: a failure here throws, the staged state is dropped, and every
    // caller of the batch gets the error.
    await store.saveCart(cart, committed);
    ctx.state = { loaded: true, cart };
  }
  return results;
}

export default defineActor({
  type: 'cart',
  storage: 'volatile', // the catalogue store is the cart's durable home, shared by every node
  idleTimeoutMs: 5 * 60_000,
  mailboxCapacity: 10_000,
  initialState: (): CartState => ({ loaded: false, cart: undefined }),
  resources: {
    open: (env) => openCatalogue(catalogueOptionsFromSettings(env.settings, env.dataDir)),
    close: (store: CatalogueStore) => store.close(),
  },
  handlers: {
    apply: (ctx, ops: CartOperation[]) => applyBatch(ctx as Ctx, ops),
  },
  // The shard's item cache; `system.query('cart', { itemsChanged })` makes every shard forget
  // those items and answers how many entries were dropped.
  view: {
    create: () => new ItemCache(),
    query: (cache: ItemCache, args: unknown) => {
      if (!isItemsChanged(args)) throw new TypeError('a cart query is { itemsChanged: [uuid, ...] }');
      return cache.forget(args.itemsChanged);
    },
  },
});
