// The carts test suite, run once against PostgreSQL and once against the embedded SQLite
// (carts-postgres.test.ts, carts-sqlite.test.ts): every RPC, every error, paging, permissions.

import * as grpc from '@grpc/grpc-js';
import type { TestFn } from 'ava';
import { randomUUID } from 'node:crypto';
import { signToken } from '../../../gateways/carts/auth.js';
import { SECRET, startCartsFixture, type Backend, type CartsFixture } from './harness.js';

type Ctx = { f: CartsFixture };

async function code(p: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error('expected the call to fail');
}

async function newItem(f: CartsFixture, name: string, price: number, description = ''): Promise<any> {
  return f.item('Create', { name, description, price }, f.admin);
}

export function registerSuite(anyTest: TestFn<unknown>, backend: Backend): void {
  const test = anyTest as TestFn<Ctx>;

  test.before(async (t) => {
    t.context.f = await startCartsFixture(backend);
  });
  test.after.always(async (t) => {
    await t.context.f?.close();
  });

  test.serial('Item Create, Get, Update, Delete', async (t) => {
    const { f } = t.context;
    const created = await newItem(f, 'Kettle', 19.99, 'steel');
    t.regex(created.uuid, /^[0-9a-f-]{36}$/);
    t.is(created.name, 'Kettle');
    t.is(created.description, 'steel');
    t.is(created.price, 19.99);
    t.truthy(created.created);
    const got = await f.item('Get', { item_uuid: created.uuid }, f.alice);
    t.deepEqual(got.item, created);
    const updated = await f.item('Update', { item: { uuid: created.uuid, name: 'Kettle 2', description: '', price: 21.5 } }, f.admin);
    t.is(updated.name, 'Kettle 2');
    t.is(updated.price, 21.5);
    t.deepEqual(updated.created, created.created);
    t.deepEqual(await f.item('Delete', { item_uuid: created.uuid }, f.admin), {});
    t.is((await code(f.item('Get', { item_uuid: created.uuid }, f.alice))).code, grpc.status.NOT_FOUND);
    t.is((await code(f.item('Delete', { item_uuid: created.uuid }, f.admin))).code, grpc.status.NOT_FOUND);
    t.is((await code(f.item('Update', { item: { uuid: created.uuid, name: 'x', price: 1 } }, f.admin))).code, grpc.status.NOT_FOUND);
  });

  test.serial('Item errors: permissions, authentication and arguments', async (t) => {
    const { f } = t.context;
    const denied = await code(newItem({ ...f, admin: f.alice }, 'Mug', 3));
    t.is(denied.code, grpc.status.PERMISSION_DENIED);
    t.regex(denied.details, /admin role/);
    t.is((await code(f.item('Create', { name: 'Mug', price: 3 }, null))).code, grpc.status.UNAUTHENTICATED);
    t.is((await code(f.item('Create', { name: 'Mug', price: 3 }, 'not.a.token'))).code, grpc.status.UNAUTHENTICATED);
    const empty = await code(f.item('Create', { name: '  ', price: 3 }, f.admin));
    t.is(empty.code, grpc.status.INVALID_ARGUMENT);
    t.regex(empty.details, /name is required/);
    const negative = await code(f.item('Create', { name: 'Mug', price: -0.01 }, f.admin));
    t.is(negative.code, grpc.status.INVALID_ARGUMENT);
    t.regex(negative.details, /negative/);
    t.is((await code(f.item('Create', { name: 'Mug', price: 1.005 }, f.admin))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Create', { name: 'Mug', price: Number.NaN }, f.admin))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Create', { name: 'x'.repeat(201), price: 1 }, f.admin))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Get', { item_uuid: 'nope' }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Get', { item_uuid: '' }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Update', {}, f.admin))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.item('Update', { item: { uuid: randomUUID(), name: 'x', price: 1 } }, f.alice))).code, grpc.status.PERMISSION_DENIED);
    t.is((await code(f.item('Delete', { item_uuid: randomUUID() }, f.bob))).code, grpc.status.PERMISSION_DENIED);
    t.is((await code(f.item('Get', { item_uuid: randomUUID() }, f.alice))).code, grpc.status.NOT_FOUND);
    const free = await newItem(f, 'Sticker', 0);
    t.is(free.price, 0);
  });

  test.serial('Cart: AddItem, UpdateQuantity, ConfigureAddress, Empty, Get, with exact totals', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'A', 19.99);
    const b = await newItem(f, 'B', 0.1);
    const cart = randomUUID();
    t.is((await code(f.cart('Get', { uuid: cart }, f.alice))).code, grpc.status.NOT_FOUND);
    let r = (await f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 2 }, f.alice)).result;
    t.is(r.uuid, cart);
    t.is(r.user_uuid, f.aliceId);
    t.is(r.entries.length, 1);
    r = (await f.cart('AddItem', { cart_uuid: cart, item_uuid: b.uuid, quantity: 1 }, f.alice)).result;
    t.is(r.price_total, 40.08); // 2 x 19.99 + 0.10, exact (floating point would give 40.080000000000005)
    r = (await f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }, f.alice)).result;
    t.deepEqual(r.entries.map((e: any) => [e.item.name, e.quantity]), [['A', 3], ['B', 1]]);
    t.is(r.price_total, 60.07);
    r = (await f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: b.uuid, quantity: 7 }, f.alice)).result;
    t.deepEqual(r.entries.map((e: any) => e.quantity), [3, 7]);
    r = (await f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: a.uuid, quantity: 0 }, f.alice)).result;
    t.deepEqual(r.entries.map((e: any) => e.item.uuid), [b.uuid]);
    t.is(r.price_total, 0.7);
    // Removing what is not there is already done.
    r = (await f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: a.uuid, quantity: 0 }, f.alice)).result;
    t.is(r.entries.length, 1);
    const address = { line1: '1 Rue de Rivoli', city: 'Paris', zipCode: '75001', countryCode: 'FR' };
    r = (await f.cart('ConfigureAddress', { cart_uuid: cart, address }, f.alice)).result;
    t.is(r.configuration.address.city, 'Paris');
    t.is(r.configuration.address.zipCode, '75001');
    t.regex(r.configuration.address.UUID, /^[0-9a-f-]{36}$/);
    const addressUuid = r.configuration.address.UUID;
    r = (await f.cart('ConfigureAddress', { cart_uuid: cart, address: { ...address, city: 'Lyon' } }, f.alice)).result;
    t.is(r.configuration.address.city, 'Lyon');
    t.is(r.configuration.address.UUID, addressUuid);
    r = (await f.cart('Empty', { cart_uuid: cart }, f.alice)).result;
    t.is(r.entries.length, 0);
    t.is(r.price_total, 0);
    t.is(r.configuration.address.city, 'Lyon');
    const got = (await f.cart('Get', { uuid: cart }, f.alice)).result;
    t.deepEqual(got, r);
  });

  test.serial('Cart: a cart configured before any item exists; Get of it is not NOT_FOUND', async (t) => {
    const { f } = t.context;
    const cart = randomUUID();
    const r = (await f.cart('ConfigureAddress', { cart_uuid: cart, address: { line1: 'x', city: 'y', countryCode: 'DE' } }, f.bob)).result;
    t.is(r.user_uuid, f.bobId);
    t.is(r.entries.length, 0);
    t.is((await f.cart('Get', { uuid: cart }, f.bob)).result.uuid, cart);
  });

  test.serial('Cart errors: arguments, missing things, preconditions', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'E', 1);
    const cart = randomUUID();
    const add = (req: object, token = f.alice) => code(f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1, ...req }, token));
    t.is((await add({ quantity: 0 })).code, grpc.status.INVALID_ARGUMENT);
    t.is((await add({ quantity: -3 })).code, grpc.status.INVALID_ARGUMENT);
    t.is((await add({ cart_uuid: 'cart-1' })).code, grpc.status.INVALID_ARGUMENT);
    t.is((await add({ item_uuid: '' })).code, grpc.status.INVALID_ARGUMENT);
    const unknown = await add({ item_uuid: randomUUID() });
    t.is(unknown.code, grpc.status.NOT_FOUND);
    t.regex(unknown.details, /item .* does not exist/);
    // A refused first write does not create the cart.
    t.is((await code(f.cart('Get', { uuid: cart }, f.alice))).code, grpc.status.NOT_FOUND);
    t.is((await code(f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: a.uuid, quantity: 2 }, f.alice))).code, grpc.status.NOT_FOUND);
    t.is((await code(f.cart('Empty', { cart_uuid: cart }, f.alice))).code, grpc.status.NOT_FOUND);
    await f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }, f.alice);
    const other = await newItem(f, 'F', 2);
    const pre = await code(f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: other.uuid, quantity: 2 }, f.alice));
    t.is(pre.code, grpc.status.FAILED_PRECONDITION);
    t.regex(pre.details, /add it with AddItem/);
    t.is((await code(f.cart('UpdateQuantity', { cart_uuid: cart, item_uuid: a.uuid, quantity: -1 }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    const over = await code(f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 2_147_483_647 }, f.alice));
    t.is(over.code, grpc.status.FAILED_PRECONDITION);
    t.is((await code(f.cart('ConfigureAddress', { cart_uuid: cart }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.cart('ConfigureAddress', { cart_uuid: cart, address: {} }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await code(f.cart('Get', { uuid: 'DROP TABLE cart' }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
    t.is((await f.cart('Get', { uuid: cart }, f.alice)).result.entries[0].quantity, 1);
  });

  test.serial('Cart permissions: only the owner writes; admins read; tokens are checked', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'P', 5);
    const cart = randomUUID();
    await f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }, f.alice);
    // Another user's cart is answered as a cart that does not exist: same status, same text.
    for (const [method, req] of [
      ['Get', { uuid: cart }],
      ['AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }],
      ['UpdateQuantity', { cart_uuid: cart, item_uuid: a.uuid, quantity: 3 }],
      ['ConfigureAddress', { cart_uuid: cart, address: { line1: 'x' } }],
      ['Empty', { cart_uuid: cart }],
    ] as const) {
      const e = await code(f.cart(method, req, f.bob));
      t.is(e.code, grpc.status.NOT_FOUND, method);
    }
    t.is((await f.cart('Get', { uuid: cart }, f.admin)).result.user_uuid, f.aliceId);
    t.is((await code(f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }, f.admin))).code, grpc.status.PERMISSION_DENIED);
    t.is((await f.cart('Get', { uuid: cart }, f.alice)).result.entries[0].quantity, 1);
    const expired = signToken(SECRET, f.aliceId, { ttlSeconds: 1, nowMs: Date.now() - 10_000 });
    const e1 = await code(f.cart('Get', { uuid: cart }, expired));
    t.is(e1.code, grpc.status.UNAUTHENTICATED);
    t.regex(e1.details, /expired/);
    const forged = signToken('another-secret', f.aliceId);
    t.is((await code(f.cart('Get', { uuid: cart }, forged))).code, grpc.status.UNAUTHENTICATED);
    t.is((await code(f.cart('Get', { uuid: cart }, null))).code, grpc.status.UNAUTHENTICATED);
  });

  test.serial('not yours answers exactly as not found: Get, UpdateQuantity and Empty of either cart alike', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'S', 1);
    const alices = randomUUID();
    await f.cart('AddItem', { cart_uuid: alices, item_uuid: a.uuid, quantity: 1 }, f.alice);
    const nobodys = randomUUID();
    for (const [method, req] of [
      ['Get', (uuid: string) => ({ uuid })],
      ['UpdateQuantity', (uuid: string) => ({ cart_uuid: uuid, item_uuid: a.uuid, quantity: 2 })],
      ['Empty', (uuid: string) => ({ cart_uuid: uuid })],
    ] as const) {
      const notYours = await code(f.cart(method, req(alices), f.bob));
      const notFound = await code(f.cart(method, req(nobodys), f.bob));
      t.is(notYours.code, grpc.status.NOT_FOUND, method);
      t.is(notFound.code, notYours.code, method);
      t.is(notFound.details.replace(nobodys, '<uuid>'), notYours.details.replace(alices, '<uuid>'), method);
    }
    // Alice's cart is as she left it.
    t.is((await f.cart('Get', { uuid: alices }, f.alice)).result.entries[0].quantity, 1);
  });

  test.serial('Item price change shows in carts at once; a deleted item leaves every cart', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'Q', 10);
    const b = await newItem(f, 'R', 1.25);
    const cart = randomUUID();
    await f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 2 }, f.alice);
    await f.cart('AddItem', { cart_uuid: cart, item_uuid: b.uuid, quantity: 4 }, f.alice);
    await f.item('Update', { item: { uuid: a.uuid, name: 'Q', description: '', price: 12.5 } }, f.admin);
    let r = (await f.cart('Get', { uuid: cart }, f.alice)).result;
    t.is(r.entries[0].item.price, 12.5);
    t.is(r.price_total, 30);
    await f.item('Delete', { item_uuid: a.uuid }, f.admin);
    r = (await f.cart('Get', { uuid: cart }, f.alice)).result;
    t.deepEqual(r.entries.map((e: any) => e.item.uuid), [b.uuid]);
    t.is(r.price_total, 5);
    r = (await f.cart('AddItem', { cart_uuid: cart, item_uuid: b.uuid, quantity: 1 }, f.alice)).result;
    t.is(r.price_total, 6.25);
    t.is((await code(f.cart('AddItem', { cart_uuid: cart, item_uuid: a.uuid, quantity: 1 }, f.alice))).code, grpc.status.NOT_FOUND);
  });

  test.serial('50 concurrent AddItem calls to one cart add up exactly, and survive a restart', async (t) => {
    const { f } = t.context;
    const a = await newItem(f, 'S', 0.01);
    const b = await newItem(f, 'T', 3.33);
    const cart = randomUUID();
    const calls = Array.from({ length: 50 }, (_, i) =>
      f.cart('AddItem', { cart_uuid: cart, item_uuid: i % 2 ? a.uuid : b.uuid, quantity: i + 1 }, f.alice),
    );
    await Promise.all(calls);
    const r = (await f.cart('Get', { uuid: cart }, f.alice)).result;
    const byItem = new Map(r.entries.map((e: any) => [e.item.uuid, e.quantity]));
    // odd i (a): 2+4+...+50 = 650; even i (b): 1+3+...+49 = 625
    t.is(byItem.get(a.uuid), 650);
    t.is(byItem.get(b.uuid), 625);
    t.is(r.price_total, 2087.75); // 650 x 0.01 + 625 x 3.33
    await f.restart();
    const again = (await f.cart('Get', { uuid: cart }, f.alice)).result;
    t.deepEqual(again, r);
  });

  test.serial('List: paging, sorting whitelist, order, size cap, total', async (t) => {
    const f = await startCartsFixture(backend);
    try {
      let r = await f.item('List', {}, f.alice);
      t.deepEqual(r.items, []);
      t.is(Number(r.pager.total), 0);
      t.is(Number(r.pager.current), 1);
      for (let i = 0; i < 25; i++) await newItem(f, `item-${String(i).padStart(2, '0')}`, (25 - i) * 1.5);
      r = await f.item('List', { request: {} }, f.alice);
      t.is(r.items.length, 20);
      t.is(Number(r.pager.total), 25);
      t.is(r.pager.sorting, 'created');
      t.is(r.pager.order, 'asc');
      r = await f.item('List', { request: { sorting: 'name', order: 'asc', requested: 2, size: 10 } }, f.alice);
      t.deepEqual(r.items.map((i: any) => i.name), Array.from({ length: 10 }, (_, i) => `item-${String(i + 10).padStart(2, '0')}`));
      t.is(Number(r.pager.current), 2);
      r = await f.item('List', { request: { sorting: 'name', requested: 3, size: 10 } }, f.alice);
      t.is(r.items.length, 5);
      r = await f.item('List', { request: { sorting: 'name', requested: 4, size: 10 } }, f.alice);
      t.is(r.items.length, 0);
      t.is(Number(r.pager.total), 25);
      r = await f.item('List', { request: { sorting: 'PRICE', order: 'DESC', size: 3 } }, f.alice);
      t.deepEqual(r.items.map((i: any) => i.price), [37.5, 36, 34.5]);
      t.is(r.pager.sorting, 'price');
      t.is(r.pager.order, 'desc');
      r = await f.item('List', { request: { size: 100 } }, f.alice);
      t.is(r.items.length, 25);
      const cap = await code(f.item('List', { request: { size: 101 } }, f.alice));
      t.is(cap.code, grpc.status.INVALID_ARGUMENT);
      t.regex(cap.details, /from 1 to 100/);
      t.is((await code(f.item('List', { request: { size: -1 } }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
      t.is((await code(f.item('List', { request: { requested: -2 } }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
      t.is((await code(f.item('List', { request: { requested: '9223372036854775807', size: 100 } }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
      const sorting = await code(f.item('List', { request: { sorting: 'uuid; DROP TABLE item' } }, f.alice));
      t.is(sorting.code, grpc.status.INVALID_ARGUMENT);
      t.regex(sorting.details, /name, price, created, updated/);
      t.is((await code(f.item('List', { request: { order: 'sideways' } }, f.alice))).code, grpc.status.INVALID_ARGUMENT);
      t.is((await code(f.item('List', {}, null))).code, grpc.status.UNAUTHENTICATED);
    } finally {
      await f.close();
    }
  });

  test.serial('health checking answers SERVING', async (t) => {
    const { f } = t.context;
    const { HealthClient } = await healthClient();
    const client = new HealthClient(`127.0.0.1:${f.port}`, grpc.credentials.createInsecure());
    const reply = await new Promise<any>((resolve, reject) => client.check({ service: 'cart.Cart' }, (e: any, r: any) => (e ? reject(e) : resolve(r))));
    t.is(reply.status, 'SERVING');
    client.close();
  });

  test.serial('server reflection lists the Cart and Item services', async (t) => {
    const names = await reflectionServices(t.context.f.port);
    t.true(names.includes('cart.Cart'));
    t.true(names.includes('item.Item'));
  });
}

async function reflectionServices(port: number): Promise<string[]> {
  const loader = await import('@grpc/proto-loader');
  const { createRequire } = await import('node:module');
  const { dirname, join } = await import('node:path');
  const root = dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json'));
  const def = loader.loadSync(join(root, 'build/proto/grpc/reflection/v1/reflection.proto'), { keepCase: true });
  const Reflection = (grpc.loadPackageDefinition(def) as any).grpc.reflection.v1.ServerReflection as grpc.ServiceClientConstructor;
  const client = new Reflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.on('data', (r: any) => {
        resolve(r.list_services_response.service.map((s: any) => s.name));
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}

async function healthClient(): Promise<{ HealthClient: grpc.ServiceClientConstructor }> {
  const { protoPath } = (await import('grpc-health-check')) as unknown as { protoPath: string };
  const loader = await import('@grpc/proto-loader');
  const def = loader.loadSync(protoPath, { enums: String });
  const pkg = grpc.loadPackageDefinition(def) as any;
  return { HealthClient: pkg.grpc.health.v1.Health };
}
