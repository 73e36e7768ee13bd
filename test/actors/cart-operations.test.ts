// Cart operations as pure functions, and money: prices in integer minor units without drift.

import test from 'ava';
import fc from 'fast-check';
import { minorToPrice, priceToMinor, type ItemRecord } from '../../actors/catalogue.js';
import { applyOperation, CartError, viewOf, withoutDeletedItems, type Caller } from '../../actors/cart-operations.js';

const alice: Caller = { user: 'a', admin: false };
const item = (uuid: string, priceMinor: number): ItemRecord => ({ uuid, name: uuid, description: '', priceMinor, created: 1, updated: 1 });
const items = new Map([['i1', item('i1', 1999)], ['i2', item('i2', 10)]]);

test('priceToMinor takes doubles of 2 decimals exactly and refuses the rest', (t) => {
  t.is(priceToMinor(19.99).minor, 1999);
  t.is(priceToMinor(0.1).minor, 10);
  t.is(priceToMinor(0).minor, 0);
  t.is(priceToMinor(1e9).minor, 1e11);
  t.regex(priceToMinor(-1).problem!, /negative/);
  t.regex(priceToMinor(1.005).problem!, /2 decimals/);
  t.truthy(priceToMinor(Number.NaN).problem);
  t.truthy(priceToMinor(Infinity).problem);
  t.truthy(priceToMinor(1e12).problem);
});

test('property: every cent amount survives the wire round trip', (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 1e11 }), (minor) => priceToMinor(minorToPrice(minor)).minor === minor));
  t.pass();
});

test('AddItem accumulates; UpdateQuantity 0 removes; totals are exact', (t) => {
  let cart = applyOperation('c', undefined, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 2 }, items, 100);
  cart = applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'i2', quantity: 1 }, items, 101);
  t.is(viewOf(cart!, items).priceTotalMinor, 4008);
  cart = applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 1 }, items, 102);
  t.deepEqual(cart!.lines.map((l) => l.quantity), [3, 1]);
  cart = applyOperation('c', cart, { kind: 'updateQuantity', caller: alice, itemUuid: 'i1', quantity: 0 }, items, 103);
  t.deepEqual(cart!.lines.map((l) => l.itemUuid), ['i2']);
  t.is(cart!.created, 100);
  t.is(cart!.updated, 103);
  const same = applyOperation('c', cart, { kind: 'updateQuantity', caller: alice, itemUuid: 'i2', quantity: 1 }, items, 104);
  t.is(same, cart, 'no change, no new record (and no write)');
});

test('refusals carry the right code', (t) => {
  const cart = applyOperation('c', undefined, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 1 }, items, 1);
  const codeOf = (f: () => unknown) => (t.throws(f, { instanceOf: CartError }) as CartError).code;
  t.is(codeOf(() => applyOperation('c', undefined, { kind: 'get', caller: alice }, items, 1)), 'NOT_FOUND');
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'get', caller: { user: 'b', admin: false } }, items, 1)), 'PERMISSION_DENIED');
  t.is(applyOperation('c', cart, { kind: 'get', caller: { user: 'b', admin: true } }, items, 1), cart);
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'empty', caller: { user: 'b', admin: true } }, items, 1)), 'PERMISSION_DENIED');
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'nope', quantity: 1 }, items, 1)), 'NOT_FOUND');
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 0 }, items, 1)), 'INVALID_ARGUMENT');
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'updateQuantity', caller: alice, itemUuid: 'i2', quantity: 3 }, items, 1)), 'FAILED_PRECONDITION');
  t.is(codeOf(() => applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 2_147_483_647 }, items, 1)), 'FAILED_PRECONDITION');
  t.is(codeOf(() => applyOperation('c', undefined, { kind: 'empty', caller: alice }, items, 1)), 'NOT_FOUND');
});

test('lines of deleted items leave the cart', (t) => {
  const cart = applyOperation('c', undefined, { kind: 'addItem', caller: alice, itemUuid: 'i1', quantity: 1 }, items, 1)!;
  const two = applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: 'i2', quantity: 1 }, items, 1)!;
  const after = withoutDeletedItems(two, new Map([['i2', items.get('i2')!]]))!;
  t.deepEqual(after.lines.map((l) => l.itemUuid), ['i2']);
  t.is(withoutDeletedItems(two, items), two);
});

test('property: the total is the exact sum of price x quantity', (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1e7 }), fc.integer({ min: 1, max: 1000 })), { minLength: 1, maxLength: 30 }), (rows) => {
      const its = new Map(rows.map(([p], i) => [`x${i}`, item(`x${i}`, p)]));
      let cart = undefined as ReturnType<typeof applyOperation>;
      rows.forEach(([, q], i) => (cart = applyOperation('c', cart, { kind: 'addItem', caller: alice, itemUuid: `x${i}`, quantity: q }, its, 1)));
      return viewOf(cart!, its).priceTotalMinor === rows.reduce((s, [p, q]) => s + p * q, 0);
    }),
  );
  t.pass();
});
