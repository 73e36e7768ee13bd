// The rule that resolves peers that cannot reach each other (runtime/cluster/reachability.ts): the
// side that reaches a majority keeps the partitions, a node cut from everyone goes, a node that only
// some cannot reach is dropped, and of two nodes that lost each other the oldest stays.

import test from 'ava';
import { survivors, type Member } from '../../runtime/cluster/reachability.js';

const members = (...ids: string[]): Member[] => ids.map((id, i) => ({ id, started: 1000 + i })); // a is the oldest
const cuts = (...pairs: [string, string][]): Map<string, Set<string>> => {
  const m = new Map<string, Set<string>>();
  for (const [a, b] of pairs) (m.get(a) ?? m.set(a, new Set()).get(a)!).add(b);
  return m;
};
const sorted = (s: Set<string>): string[] => [...s].sort();

test('nobody cut: everyone stays', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b', 'c'), cuts())), ['a', 'b', 'c']);
});

test('a node cut from both others (reported by either side) leaves; the majority stays', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b', 'c'), cuts(['a', 'b'], ['c', 'a']))), ['b', 'c']);
  t.deepEqual(sorted(survivors(members('a', 'b', 'c', 'd', 'e'), cuts(['a', 'c'], ['a', 'd'], ['a', 'e'], ['b', 'c'], ['b', 'd'], ['e', 'b']))), ['c', 'd', 'e']);
});

test('two nodes that lost each other: the oldest stays (start time, then the lower id)', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b'), cuts(['b', 'a']))), ['a']);
  t.deepEqual(sorted(survivors([{ id: 'b', started: 5 }, { id: 'a', started: 9 }], cuts(['a', 'b']))), ['b']);
  t.deepEqual(sorted(survivors([{ id: 'b', started: 5 }, { id: 'a', started: 5 }], cuts(['a', 'b']))), ['a']);
});

test('only two of three cannot reach each other: the younger of them leaves, so nobody keeps waiting on a dead link', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b', 'c'), cuts(['a', 'b']))), ['a', 'c']);
});

test('everyone cut from everyone: the oldest alone keeps serving', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b', 'c'), cuts(['a', 'b'], ['b', 'c'], ['c', 'a']))), ['a']);
});

test('reports about nodes that are not live members count for nothing', (t) => {
  t.deepEqual(sorted(survivors(members('a', 'b'), cuts(['a', 'ghost'], ['ghost', 'b']))), ['a', 'b']);
});
