// The actor `cart/<uuid>`: serializes every operation on one cart, and persists the cart to the
// catalogue store (PostgreSQL or SQLite) before it replies. Operations arrive in batches (see
// cart-client.ts): one read of the items and one commit serve the whole batch.

import { defineActor, type ActorContext } from '../runtime/index.js';
import { CartConflict, catalogueOptionsFromSettings, openCatalogue, type CartRecord, type CatalogueStore } from './catalogue.js';
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

/** Times a batch is redone on a fresh read after its save met another activation's write. */
const SAVE_ATTEMPTS = 5;

/** Runs a batch of operations in order; each gets the cart as it stands after it, or its refusal. */
export async function applyBatch(ctx: Ctx, ops: readonly CartOperation[]): Promise<OperationResult[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await applyOnce(ctx, ops);
    } catch (err) {
      // The store had moved on since this activation read the cart: another activation of it
      // (a node paused past its lease, then resumed) saved in between. Nothing of this batch was
      // written; read the cart again and redo the batch on top, so neither write is lost.
      if (!(err instanceof CartConflict) || attempt >= SAVE_ATTEMPTS) throw err;
      ctx.log.warn({ cart: ctx.key, attempt, err: err.message }, 'cart saved elsewhere meanwhile; reading it again');
      ctx.state = { loaded: false, cart: undefined };
    }
  }
}

async function applyOnce(ctx: Ctx, ops: readonly CartOperation[]): Promise<OperationResult[]> {
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
    const saved = { ...cart, version: (committed?.version ?? 0) + 1 };
    await store.saveCart(saved, committed);
    ctx.state = { loaded: true, cart: saved };
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
