// Rendering states for the inspector: every kind of value a state may hold becomes JSON, nothing
// of the state's own code runs, and depth, items, strings and the whole text stay within bounds.

import test from 'ava';
import fc from 'fast-check';
import { renderValue } from '../../../runtime/inspector/render.js';

const parse = (v: unknown, limits?: Parameters<typeof renderValue>[1]) => JSON.parse(renderValue(v, limits).json) as unknown;

test('plain JSON values come out as they are', (t) => {
  const state = { n: 5, name: 'ann', ok: true, none: null, list: [1, 'two', { three: 3 }] };
  t.deepEqual(parse(state), state);
  t.false(renderValue(state).truncated);
  t.deepEqual(parse('text'), 'text');
  t.deepEqual(parse(0), 0);
});

test('Maps, Sets, Dates, BigInts, typed arrays, errors and odd numbers are tagged, keys of any type kept', (t) => {
  const state = {
    byKey: new Map<unknown, unknown>([
      ['a', 1],
      [2, new Set(['x'])],
    ]),
    at: new Date('2026-01-02T03:04:05.000Z'),
    big: 12345678901234567890n,
    bytes: new Uint8Array([1, 2, 3]),
    buffer: new ArrayBuffer(8),
    err: Object.assign(new Error('boom'), { code: 'E_BOOM' }),
    nan: NaN,
    inf: -Infinity,
    missing: undefined,
    re: /a+/g,
  };
  t.deepEqual(parse(state), {
    byKey: { $type: 'Map', size: 2, entries: [['a', 1], [2, { $type: 'Set', size: 1, values: ['x'] }]] },
    at: { $type: 'Date', iso: '2026-01-02T03:04:05.000Z' },
    big: { $type: 'BigInt', value: '12345678901234567890' },
    bytes: { $type: 'Uint8Array', length: 3, values: [1, 2, 3] },
    buffer: { $type: 'ArrayBuffer', byteLength: 8 },
    err: { $type: 'Error', name: 'Error', message: 'boom', code: 'E_BOOM' },
    nan: { $type: 'Number', value: 'NaN' },
    inf: { $type: 'Number', value: '-Infinity' },
    missing: { $type: 'undefined' },
    re: { $type: 'RegExp', source: '/a+/g' },
  });
});

test("cycles are named, not followed; class instances keep their class; getters and functions are not run", (t) => {
  class Cart {
    items = ['x'];
    get total(): number {
      throw new Error('a getter ran');
    }
  }
  const cart = new Cart();
  Object.defineProperty(cart, 'owner', { enumerable: true, get: () => { throw new Error('a getter ran'); } });
  const loop: Record<string, unknown> = { name: 'loop' };
  loop.self = loop;
  const out = parse({ cart, loop, fn: function helper() {}, sym: Symbol('s') }) as Record<string, any>;
  t.deepEqual(out.cart, { $class: 'Cart', items: ['x'], owner: { $type: 'Getter' } });
  t.deepEqual(out.loop, { name: 'loop', self: { $type: 'Circular', of: 'Object with 2 keys' } });
  t.deepEqual(out.fn, { $type: 'Function', name: 'helper' });
  t.deepEqual(out.sym, { $type: 'Symbol', description: 's' });
  // A value seen twice but not inside itself is shown twice.
  const shared = { k: 1 };
  t.deepEqual(parse([shared, shared]), [{ k: 1 }, { k: 1 }]);
});

test('long strings, long lists, wide objects and deep nesting are cut where they are, and said so', (t) => {
  const r = renderValue({ s: 'x'.repeat(50), list: Array.from({ length: 10 }, (_, i) => i), wide: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])) }, { maxString: 8, maxItems: 3 });
  t.true(r.truncated);
  t.deepEqual(JSON.parse(r.json), {
    s: 'xxxxxxxx…(42 more characters)',
    list: [0, 1, 2, { $more: 7 }],
    wide: { k0: 0, k1: 1, k2: 2, $more: 7 },
  });
  let deep: unknown = 'bottom';
  for (let i = 0; i < 20; i++) deep = { down: deep };
  const d = JSON.stringify(parse(deep, { maxDepth: 3 }));
  t.is(d, '{"down":{"down":{"down":{"$truncated":"Object with 1 keys"}}}}');
  t.deepEqual(parse(new Map(Array.from({ length: 5 }, (_, i) => [i, i])), { maxItems: 2 }), { $type: 'Map', size: 5, entries: [[0, 0], [1, 1], { $more: 3 }] });
});

test('the whole text stays within its budget, whatever the state', (t) => {
  const huge = { rows: Array.from({ length: 100_000 }, (_, i) => ({ id: i, name: `row ${i}`, tags: new Set(['a', 'b']) })) };
  const r = renderValue(huge, { maxBytes: 4096, maxItems: 1_000_000 });
  t.true(r.truncated);
  t.true(r.json.length <= 4096 + 64, `${r.json.length} characters`);
  const parsed = JSON.parse(r.json) as { rows: unknown[] };
  t.deepEqual(parsed.rows[parsed.rows.length - 1], { $more: 100_000 - (parsed.rows.length - 1) });
  // Any value, any budget: the text is JSON and within the budget (plus the markers of the cut).
  fc.assert(
    fc.property(fc.anything({ withMap: true, withSet: true, withDate: true, withBigInt: true, withTypedArray: true, withNullPrototype: true, withSparseArray: true }), fc.integer({ min: 16, max: 2048 }), (value, maxBytes) => {
      const out = renderValue(value, { maxBytes, maxDepth: 6 });
      JSON.parse(out.json);
      return out.json.length <= maxBytes + 6 * 16 + 64;
    }),
    { numRuns: 300 },
  );
});
