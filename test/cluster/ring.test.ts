// The pure consistent-hash ring: deterministic, balanced, and a join or leave moves about 1/N of
// the partitions, only to the joiner or only from the leaver.

import test from 'ava';
import fc from 'fast-check';
import { movedPartitions, Ring } from '../../runtime/cluster/ring.js';

const P = 1024;
const names = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `node-${from + i}`);

test('the same members give the same table, in any order', (t) => {
  const a = new Ring(['c', 'a', 'b']).assign(P);
  const b = new Ring(['b', 'c', 'a', 'a']).assign(P);
  t.deepEqual(a, b);
  t.true(a.every((o) => ['a', 'b', 'c'].includes(o)));
  // Pinned values catch an accidental change of the hash, which would move every partition of a live cluster.
  t.snapshot(a.slice(0, 16));
});

test('an empty ring owns nothing; a single member owns everything', (t) => {
  t.true(new Ring([]).assign(8).every((o) => o === ''));
  t.true(new Ring(['solo']).assign(P).every((o) => o === 'solo'));
});

test('partitions spread evenly enough over the members', (t) => {
  for (const n of [2, 3, 5, 8]) {
    const owners = new Ring(names(n)).assign(P);
    const counts = new Map<string, number>();
    for (const o of owners) counts.set(o, (counts.get(o) ?? 0) + 1);
    const fair = P / n;
    const worst = Math.max(...[...counts.values()].map((c) => Math.abs(c - fair) / fair));
    t.log(`${n} nodes: ${[...counts.values()].join(' ')} (worst ${(worst * 100).toFixed(0)}% off fair)`);
    t.is(counts.size, n);
    t.true(worst < 0.35, `${n} nodes: a member is ${(worst * 100).toFixed(0)}% off its fair share`);
  }
});

test('a join moves about 1/N partitions, all to the joiner; a leave moves only the leaver\'s', (t) => {
  for (const n of [2, 4, 7]) {
    const before = new Ring(names(n)).assign(P);
    const after = new Ring(names(n + 1)).assign(P);
    const moves = movedPartitions(before, after);
    t.true(moves.every((m) => m.to === `node-${n}`));
    const share = moves.length / P;
    t.log(`${n} -> ${n + 1} nodes: ${moves.length} partitions moved (${(share * 100).toFixed(1)}%, ideal ${(100 / (n + 1)).toFixed(1)}%)`);
    t.true(share > 0.5 / (n + 1) && share < 1.6 / (n + 1));
    const back = movedPartitions(after, before);
    t.true(back.every((m) => m.from === `node-${n}`));
    t.is(back.length, moves.length);
  }
});

test('property: adding a member only ever moves partitions to it', (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 8 }), fc.string({ minLength: 1, maxLength: 12 }), (members, joiner) => {
      fc.pre(!members.includes(joiner));
      const before = new Ring(members, 32).assign(128);
      const after = new Ring([...members, joiner], 32).assign(128);
      return movedPartitions(before, after).every((m) => m.to === joiner);
    }),
    { numRuns: 200 },
  );
  t.pass();
});
