// The per actor type counters the shards keep: turns, failures, overloads, activations and
// passivations of each type, equal to the shards' own totals; turn times only while timing is on;
// the histogram's buckets and quantiles.

import test from 'ava';
import { quantileMs, timeBucket, bucketUpperMs, TIME_BUCKETS } from '../../../runtime/turn-tally.js';
import Counter from '../fixtures/counter.js';
import Probe from '../fixtures/probe.js';
import { eventually, testNode } from '../helpers.js';

test('each type counts its own turns, failures, overloads, activations and passivations, adding up to the shard totals', async (t) => {
  const node = await testNode();
  t.teardown(() => node.stop());
  for (let i = 0; i < 10; i++) await node.ref(Counter, `c${i}`).ask('add', 1);
  for (let i = 0; i < 3; i++) await t.throwsAsync(node.ref(Counter, 'c0').ask('addThenFail', 1));
  await t.throwsAsync(node.ref(Counter, 'c0').ask('noSuchHandler' as never));
  // The probe's mailbox holds 4: the rest are refused.
  const busy = node.ref(Probe, 'busy');
  const held = await Promise.allSettled(Array.from({ length: 12 }, () => busy.ask('hold', 50)));
  const refused = held.filter((r) => r.status === 'rejected').length;
  t.true(refused > 0);
  // Probes passivate after 150 ms idle.
  for (let i = 0; i < 5; i++) await node.ref(Probe, `p${i}`).ask('hit');
  t.true(await eventually(async () => (await node.typeTallies()).find((x) => x.type === 'probe')!.passivated >= 6, 10_000));

  const tallies = await node.typeTallies();
  const counter = tallies.find((x) => x.type === 'counter')!;
  const probe = tallies.find((x) => x.type === 'probe')!;
  t.is(counter.turns, 10);
  t.is(counter.failed, 4, 'three throws and one unknown handler');
  t.is(counter.activated, 10);
  t.is(counter.activations, 10);
  t.is(counter.overloaded, 0);
  t.is(probe.overloaded, refused);
  t.is(probe.activated, 6);
  t.is(probe.activations, 0);
  t.is(probe.turns, 12 - refused + 5);
  const stats = await node.stats();
  const sum = (f: (s: (typeof stats.shards)[number]) => number) => stats.shards.reduce((a, s) => a + f(s), 0);
  t.is(tallies.reduce((a, x) => a + x.turns, 0), sum((s) => s.turns));
  t.is(tallies.reduce((a, x) => a + x.failed, 0), sum((s) => s.turnsFailed));
  t.is(tallies.reduce((a, x) => a + x.overloaded, 0), sum((s) => s.rejectedOverloaded));
  t.is(tallies.reduce((a, x) => a + x.passivated, 0), sum((s) => s.passivationsTotal));
  t.is(tallies.reduce((a, x) => a + x.activated, 0), sum((s) => s.activationsTotal));
  t.is(tallies.reduce((a, x) => a + x.activations, 0), sum((s) => s.activations));
  t.is(counter.timed, 0, 'no turn timed while nobody watches');
});

test('turn times are taken for one turn in eight while timing is on, and not after it is off', async (t) => {
  const node = await testNode();
  t.teardown(() => node.stop());
  await node.setTurnTiming(true);
  const refs = Array.from({ length: 40 }, (_, i) => node.ref(Counter, `t${i}`));
  await Promise.all(Array.from({ length: 800 }, (_, i) => refs[i % 40]!.ask('add', 1)));
  let c = (await node.typeTallies()).find((x) => x.type === 'counter')!;
  t.is(c.turns, 800);
  // 800 turns over two shards, every eighth of each shard's turns (activations included in the count).
  t.true(c.timed >= 90 && c.timed <= 110, `timed ${c.timed}`);
  t.is(c.times.reduce((a, b) => a + b, 0), c.timed);
  await node.setTurnTiming(false);
  const before = c.timed;
  await Promise.all(Array.from({ length: 400 }, (_, i) => refs[i % 40]!.ask('add', 1)));
  c = (await node.typeTallies()).find((x) => x.type === 'counter')!;
  t.is(c.timed, before);
});

test('the histogram: buckets cover 1 µs to half a minute and more, quantiles read back within a bucket', (t) => {
  t.is(timeBucket(0), 0);
  t.is(timeBucket(-1), 0);
  t.is(timeBucket(Number.NaN), 0);
  t.is(timeBucket(1e12), TIME_BUCKETS - 1);
  for (const ms of [0.002, 0.05, 1, 7.3, 250, 30_000]) {
    const b = timeBucket(ms);
    t.true(bucketUpperMs(b) >= ms && bucketUpperMs(b - 1) <= ms * 1.0001, `${ms} ms in bucket ${b}`);
  }
  const times = new Array<number>(TIME_BUCKETS).fill(0);
  t.is(quantileMs(times, 0.5), undefined);
  for (let i = 0; i < 99; i++) times[timeBucket(1)]!++;
  times[timeBucket(100)]!++;
  t.true(quantileMs(times, 0.5)! >= 1 && quantileMs(times, 0.5)! < 1.2);
  t.true(quantileMs(times, 0.99)! >= 1 && quantileMs(times, 0.99)! < 1.2);
  t.true(quantileMs(times, 1)! >= 100 && quantileMs(times, 1)! < 120);
});
