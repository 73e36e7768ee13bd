// The shard's item cache: fresh entries are served, expired ones and forgotten ones are read
// again, and a store read that began before a change is not kept.

import test from 'ava';
import { isItemsChanged, ItemCache } from '../../actors/catalogue-item-cache.js';
import type { ItemRecord } from '../../actors/catalogue.js';

function item(uuid: string, priceMinor: number): ItemRecord {
  return { uuid, name: uuid, description: '', priceMinor, created: 1, updated: 1 };
}

test('serves what it holds until the entry expires', (t) => {
  const cache = new ItemCache(1000);
  cache.fill(new Map([['a', item('a', 100)]]), cache.generation, 0);
  const found = new Map<string, ItemRecord>();
  t.deepEqual(cache.lookup(['a', 'b'], 999, found), ['b']);
  t.is(found.get('a')?.priceMinor, 100);
  t.deepEqual(cache.lookup(['a'], 1000, new Map()), ['a'], 'expired at its ttl');
});

test('forget drops the named items and says how many it held', (t) => {
  const cache = new ItemCache();
  cache.fill(new Map([['a', item('a', 1)], ['b', item('b', 2)]]), cache.generation, 0);
  t.is(cache.forget(['a', 'z']), 1);
  t.deepEqual(cache.lookup(['a', 'b'], 1, new Map()), ['a']);
});

test('a read that began before a change is not kept (it may carry the old row)', (t) => {
  const cache = new ItemCache();
  const before = cache.generation;
  cache.forget(['a']); // the change lands while the read is in flight
  cache.fill(new Map([['a', item('a', 1)]]), before, 0);
  t.is(cache.size, 0);
  cache.fill(new Map([['a', item('a', 2)]]), cache.generation, 0);
  t.is(cache.size, 1);
});

test('stays within its bound of entries', (t) => {
  const cache = new ItemCache(60_000, 3);
  cache.fill(new Map([['a', item('a', 1)], ['b', item('b', 1)]]), cache.generation, 0);
  cache.fill(new Map([['c', item('c', 1)], ['d', item('d', 1)]]), cache.generation, 0);
  t.true(cache.size <= 3);
});

test('isItemsChanged accepts only { itemsChanged: [...] }', (t) => {
  t.true(isItemsChanged({ itemsChanged: ['a'] }));
  t.false(isItemsChanged({ itemsChanged: 'a' }));
  t.false(isItemsChanged(null));
  t.false(isItemsChanged(42));
});
