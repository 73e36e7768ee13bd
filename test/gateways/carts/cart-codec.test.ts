// The hand-written Cart reply encoder against protobufjs (the contract's own definition, as
// @grpc/proto-loader loads it): protobufjs decodes our bytes to the very message it decodes from
// its own encoding, for empty carts, full carts, addresses, unicode, long strings, extreme
// quantities and totals, and for random carts. (The bytes differ where protobufjs writes zero
// values it was given; proto3 leaves them out, as we do, and every reader takes both.)

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { AddressRecord, ItemRecord } from '../../../actors/catalogue.js';
import { minorToPrice } from '../../../actors/catalogue.js';
import type { CartView } from '../../../actors/cart-operations.js';
import { encodeCartResult } from '../../../gateways/carts/cart-codec.js';
import { serviceOf } from '../../../gateways/carts/protos.js';

const { responseSerialize, responseDeserialize } = serviceOf('cart', 'Cart').service['AddItem']!;

function timestamp(ms: number) {
  return ms ? { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 } : null;
}

function itemObject(i: ItemRecord) {
  return { uuid: i.uuid, name: i.name, description: i.description, price: minorToPrice(i.priceMinor), created: timestamp(i.created), updated: timestamp(i.updated) };
}

function addressObject(a: AddressRecord) {
  return {
    UUID: a.uuid, line1: a.line1, line2: a.line2, line3: a.line3, city: a.city, province: a.province,
    zipCode: a.zipCode, countryCode: a.countryCode, other: a.other, updated: timestamp(a.updated), created: timestamp(a.created),
  };
}

/** What protobufjs makes of the same cart, written as the gateway used to build it. */
function reference(cart: CartView): Buffer {
  return responseSerialize({
    result: {
      uuid: cart.uuid,
      user_uuid: cart.userUuid,
      entries: cart.entries.map((e) => ({ item: itemObject(e.item), quantity: e.quantity })),
      configuration: cart.address ? { address: addressObject(cart.address) } : null,
      price_total: minorToPrice(cart.priceTotalMinor),
      created: timestamp(cart.created),
      updated: timestamp(cart.updated),
    },
  });
}

function item(over: Partial<ItemRecord> = {}): ItemRecord {
  return { uuid: randomUUID(), name: 'Kettle', description: '', priceMinor: 1999, created: 1_700_000_000_123, updated: 1_700_000_001_000, ...over };
}

function cart(over: Partial<CartView> = {}): CartView {
  return { uuid: randomUUID(), userUuid: randomUUID(), entries: [], address: null, priceTotalMinor: 0, created: 1_700_000_000_000, updated: 1_700_000_000_500, ...over };
}

const cases: [string, CartView][] = [
  ['an empty cart', cart()],
  ['a cart with no timestamps', cart({ created: 0, updated: 0 })],
  ['entries with prices and quantities', cart({ entries: [{ item: item(), quantity: 2 }, { item: item({ priceMinor: 10 }), quantity: 1 }], priceTotalMinor: 4008 })],
  ['a free item and the largest quantity', cart({ entries: [{ item: item({ priceMinor: 0 }), quantity: 2_147_483_647 }] })],
  ['unicode and long strings (multi-byte lengths)', cart({ entries: [{ item: item({ name: 'Thé vert 🍵 ' + 'ü'.repeat(300), description: 'x'.repeat(20_000) }), quantity: 3 }] })],
  ['a huge total', cart({ priceTotalMinor: 2_147_483_647 * 100_000_000 })],
  [
    'an address with some fields empty',
    cart({ address: { uuid: randomUUID(), line1: '1 Rue de la Paix', line2: '', line3: '', city: 'Paris', province: '', zipCode: '75002', countryCode: 'FR', other: '', created: 1_700_000_000_001, updated: 1_700_000_000_999 } }),
  ],
];

for (const [name, c] of cases) {
  test(`protobufjs reads it as its own encoding: ${name}`, (t) => {
    const decoded = responseDeserialize(encodeCartResult(c)) as { result: { uuid: string } };
    t.deepEqual(decoded, responseDeserialize(reference(c)));
    t.is(decoded.result.uuid, c.uuid);
  });
}

test('protobufjs reads 500 random carts as it reads its own encoding random carts', (t) => {
  const text = (n: number) => Array.from({ length: Math.floor(Math.random() * n) }, () => String.fromCodePoint(Math.floor(Math.random() * 0x2fff) + 32)).join('');
  const ms = () => (Math.random() < 0.1 ? 0 : Math.floor(Math.random() * 4_000_000_000_000));
  for (let k = 0; k < 500; k++) {
    const entries = Array.from({ length: Math.floor(Math.random() * 6) }, () => ({
      item: item({ name: text(40) || 'n', description: text(200), priceMinor: Math.floor(Math.random() * 1e11), created: ms(), updated: ms() }),
      quantity: 1 + Math.floor(Math.random() * 2 ** 31 - 1),
    }));
    const address: AddressRecord | null = Math.random() < 0.5 ? null : {
      uuid: randomUUID(), line1: text(30), line2: text(30), line3: '', city: text(20), province: text(5), zipCode: text(8), countryCode: 'DE', other: text(50), created: ms(), updated: ms(),
    };
    const c = cart({ entries, address, priceTotalMinor: Math.floor(Math.random() * 1e15), created: ms(), updated: ms() });
    if (!isDeepStrictEqual(responseDeserialize(encodeCartResult(c)), responseDeserialize(reference(c)))) {
      t.fail(`cart ${JSON.stringify(c).slice(0, 400)} encodes differently`);
      return;
    }
  }
  t.pass();
});
