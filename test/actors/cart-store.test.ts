// The catalogue store behind the cart actors, on PostgreSQL (own schema) and SQLite (temp dir):
// migrations twice and concurrently, the grouped cart writes, reading carts back, and saves from a
// stale copy refused (optimistic concurrency).

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { CartConflict, openCatalogue, type CartRecord, type CatalogueOptions } from '../../actors/catalogue.js';
import { MIGRATIONS } from '../../actors/catalogue-migrations.js';

const PG_URL = process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const LATEST = MIGRATIONS.map((m) => m.version);

async function withBackend(kind: 'postgres' | 'sqlite', body: (options: CatalogueOptions) => Promise<void>): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-cart-store-'));
  const schema = `carts_test_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  try {
    await body({ postgres: kind === 'postgres' ? PG_URL : undefined, schema, dataDir, poolSize: 2 });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    if (kind === 'postgres') {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    }
  }
}

for (const kind of ['postgres', 'sqlite'] as const) {
  test(`${kind}: migrations apply once, run twice and from four migrators at once`, async (t) => {
    await withBackend(kind, async (options) => {
      const stores = await Promise.all([1, 2, 3, 4].map(() => openCatalogue(options)));
      try {
        const applied = await Promise.all(stores.map((s) => s.migrate()));
        t.deepEqual(applied.flat().sort(), LATEST, 'every version applied exactly once over all migrators');
        t.deepEqual(await stores[0]!.migrate(), []);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });
  });

  test(`${kind}: grouped cart writes, lines diffed, read back in order`, async (t) => {
    await withBackend(kind, async (options) => {
      const store = await openCatalogue(options);
      try {
        await store.migrate();
        const user = randomUUID();
        const items = [randomUUID(), randomUUID(), randomUUID()];
        const carts: CartRecord[] = Array.from({ length: 40 }, (_, i) => ({
          uuid: randomUUID(),
          userUuid: user,
          lines: items.map((itemUuid, j) => ({ itemUuid, quantity: i + j + 1, added: 1000 + j })),
          address: i % 2 ? { uuid: randomUUID(), line1: 'l', line2: '', line3: '', city: 'c', province: '', zipCode: '1', countryCode: 'FR', other: '', created: 5000, updated: 6000 } : null,
          created: 1_700_000_000_000,
          updated: 1_700_000_000_000 + i,
          version: 1,
        }));
        await Promise.all(carts.map((c) => store.saveCart(c, undefined)));
        for (const c of carts) t.deepEqual(await store.loadCart(c.uuid), c);
        // Change one line, drop one, keep one.
        const first = carts[0]!;
        const next: CartRecord = { ...first, lines: [first.lines[0]!, { ...first.lines[2]!, quantity: 99 }], updated: first.updated + 1, version: 2 };
        await store.saveCart(next, first);
        t.deepEqual(await store.loadCart(first.uuid), next);
        t.is(await store.loadCart(randomUUID()), undefined);
        // Deleting an item removes its lines everywhere.
        await store.createItem({ uuid: items[0]!, name: 'n', description: '', priceMinor: 1, created: 1, updated: 1 });
        t.true(await store.deleteItem(items[0]!));
        t.deepEqual((await store.loadCart(carts[1]!.uuid))!.lines.map((l) => l.itemUuid), items.slice(1));
      } finally {
        await store.close();
      }
    });
  });

  test(`${kind}: a save from a stale copy is refused and writes nothing; the saves grouped with it go through`, async (t) => {
    await withBackend(kind, async (options) => {
      const store = await openCatalogue(options);
      try {
        await store.migrate();
        const user = randomUUID();
        const [a, b] = [randomUUID(), randomUUID()];
        const cart = (uuid: string, quantity: number, version: number): CartRecord => ({
          uuid,
          userUuid: user,
          lines: [{ itemUuid: a, quantity, added: 1000 }],
          address: null,
          created: 1_700_000_000_000,
          updated: 1_700_000_000_000 + version,
          version,
        });
        const v1 = cart(randomUUID(), 1, 1);
        const other = cart(randomUUID(), 7, 1);
        await Promise.all([store.saveCart(v1, undefined), store.saveCart(other, undefined)]);

        // Two copies of v1 (two activations) each save their next version: the first wins.
        const mine = { ...cart(v1.uuid, 2, 2), lines: [...v1.lines.map((l) => ({ ...l, quantity: 2 })), { itemUuid: b, quantity: 1, added: 2000 }] };
        const theirs = cart(v1.uuid, 5, 2);
        await store.saveCart(mine, v1);
        const otherNext = cart(other.uuid, 8, 2);
        // Submitted together, so grouped into one statement: the stale one is refused alone.
        const [stale, fine] = await Promise.allSettled([store.saveCart(theirs, v1), store.saveCart(otherNext, other)]);
        t.is(stale.status, 'rejected');
        const err = (stale as PromiseRejectedResult).reason as Error;
        t.true(err instanceof CartConflict, String(err));
        t.is((err as CartConflict).code, 'CART_CONFLICT');
        t.regex(err.message, new RegExp(`cart ${v1.uuid} was saved elsewhere since this copy \\(version 1\\) was read`));
        t.is(fine.status, 'fulfilled');
        t.deepEqual(await store.loadCart(v1.uuid), mine, 'the winner is stored whole, no line of the loser');
        t.deepEqual(await store.loadCart(other.uuid), otherNext);

        // A save that skips or repeats a version is a caller's bug, refused before the store.
        await t.throwsAsync(store.saveCart({ ...mine, version: 7 }, mine), { instanceOf: TypeError, message: /must be version 3, got 7/ });
        // From the stored copy the loser's change goes through.
        const redone = { ...mine, lines: mine.lines.map((l) => (l.itemUuid === a ? { ...l, quantity: 5 } : l)), version: 3 };
        await store.saveCart(redone, mine);
        t.deepEqual(await store.loadCart(v1.uuid), redone);

        // A cart new to two activations at once: the second creation is refused.
        const fresh = cart(randomUUID(), 1, 1);
        await store.saveCart(fresh, undefined);
        const again = await store.saveCart(cart(fresh.uuid, 3, 1), undefined).then(() => undefined, (e: unknown) => e);
        t.true(again instanceof CartConflict);
        t.regex((again as Error).message, /was created elsewhere/);
        t.is((await store.loadCart(fresh.uuid))!.lines[0]!.quantity, 1);
      } finally {
        await store.close();
      }
    });
  });
}
