// The parts of `troupe chaos` that decide without a cluster: the seeded fault plan, the judgement of
// what was acknowledged against what was stored (it must see a loss, a duplicate and a stray row),
// the user aggregates against their rows, and the settings checks.

import test from 'ava';
import { judgeOwnership, recoveredAt, type OwnershipSample } from '../../ops/chaos/ownership-watch.js';
import { planFaults } from '../../ops/chaos/schedule.js';
import { CHAOS_SETTINGS, chaosOptionsFrom } from '../../ops/chaos/settings.js';
import { findDoubleActivations, formatVerdict, isNothingLost, judgeAggregates, judgeCarts, judgeCounters, judgeEvents, type ChaosReport } from '../../ops/chaos/verdict.js';
import { readSettings } from '../../runtime/settings.js';

const plan = (seed: number) => planFaults({ seed, nodes: 3, durationMs: 60_000, killEveryMs: 10_000, pauseEveryMs: 15_000, stopEveryMs: 0 });

test('the fault plan is the same for a seed, another for another seed, and stays inside the run', (t) => {
  t.deepEqual(plan(42), plan(42));
  t.notDeepEqual(plan(42), plan(43));
  const p = plan(42);
  t.is(p.filter((f) => f.kind === 'kill').length, 5);
  t.is(p.filter((f) => f.kind === 'pause').length, 3);
  t.is(p.filter((f) => f.kind === 'stop').length, 0);
  for (const f of p) {
    t.true(f.atMs >= 0 && f.atMs < 60_000);
    t.true(f.node >= 0 && f.node < 3);
  }
  t.deepEqual(p.map((f) => f.atMs), [...p.map((f) => f.atMs)].sort((a, b) => a - b));
  t.deepEqual(planFaults({ seed: 1, nodes: 3, durationMs: 60_000, killEveryMs: 0, pauseEveryMs: 0, stopEveryMs: 0 }), []);
});

test('events: every acknowledged id stored once passes; refused and unanswered ids may be either', (t) => {
  const load = { acked: new Set(['a', 'b', 'c']), refused: new Set(['r']), ambiguous: new Set(['x', 'y']) };
  const j = judgeEvents(load, new Map([['a', 1], ['b', 1], ['c', 1], ['x', 1]]), new Set());
  t.like(j, { acked: 3, refused: 1, ambiguous: 2, stored: 4, lost: 0, duplicated: 0, neverSent: 0, ambiguousStored: 1, refusedStored: 0 });
  t.true(isNothingLost(j, undefined));
});

test('events: a lost id, a duplicate row and a row never sent are each caught', (t) => {
  const load = { acked: new Set(['a', 'b', 'c']), refused: new Set<string>(), ambiguous: new Set<string>() };
  const lost = judgeEvents(load, new Map([['a', 1], ['b', 1]]), new Set(['c']));
  t.like(lost, { lost: 1, lostExamples: ['c'], deadLettered: 1 });
  t.false(isNothingLost(lost, undefined));
  const twice = judgeEvents(load, new Map([['a', 2], ['b', 1], ['c', 1]]), new Set());
  t.is(twice.duplicated, 1);
  t.false(isNothingLost(twice, undefined));
  const stray = judgeEvents(load, new Map([['a', 1], ['b', 1], ['c', 1], ['z', 1]]), new Set());
  t.is(stray.neverSent, 1);
  t.false(isNothingLost(stray, undefined));
});

test('carts: acknowledged <= stored <= acknowledged + unanswered, per line', (t) => {
  const lines = new Map([
    ['c1|i1', { acked: 5, refused: 1, ambiguous: 2 }],
    ['c1|i2', { acked: 3, refused: 0, ambiguous: 0 }],
  ]);
  t.like(judgeCarts(lines, new Map([['c1|i1', 6], ['c1|i2', 3]])), { acked: 8, stored: 9, lost: 0, duplicated: 0, neverSent: 0, ambiguousStored: 1 });
  t.like(judgeCarts(lines, new Map([['c1|i1', 4], ['c1|i2', 3]])), { lost: 1 });
  t.like(judgeCarts(lines, new Map([['c1|i1', 8], ['c1|i2', 3]])), { duplicated: 1 });
  t.like(judgeCarts(lines, new Map([['c1|i1', 5], ['c1|i2', 3], ['c9|i1', 2]])), { neverSent: 2 });
  t.false(isNothingLost(undefined, judgeCarts(lines, new Map([['c1|i1', 5]]))));
});

test('user aggregates: each must count exactly its rows; one off or unanswered fails the run', (t) => {
  const rows = new Map([['u1', 3], ['u2', 5], ['u3', 1]]);
  const exact = judgeAggregates(rows, new Map([['u1', 3], ['u2', 5], ['u3', 1]]));
  t.like(exact, { users: 3, off: 0, eventsOff: 0, unanswered: 0 });
  t.true(isNothingLost(undefined, undefined, exact));
  const off = judgeAggregates(rows, new Map([['u1', 3], ['u2', 2], ['u3', 4]]));
  t.like(off, { off: 2, eventsOff: 6, unanswered: 0 });
  t.deepEqual(off.offExamples, ['user u2: its summary counts 2 events, it has 5 rows', 'user u3: its summary counts 4 events, it has 1 rows']);
  t.false(isNothingLost(undefined, undefined, off));
  const silent = judgeAggregates(rows, new Map<string, number | undefined>([['u1', 3], ['u2', undefined]]));
  t.like(silent, { off: 0, unanswered: 2 });
  t.false(isNothingLost(undefined, undefined, silent));
  const report: ChaosReport = { ok: false, seed: 5, nodes: 3, durationMs: 20_000, faults: { kill: 1, pause: 0, stop: 0, unexpectedExits: 0 }, aggregates: off, drained: true, drainMs: 100, notes: [] };
  t.regex(formatVerdict(report), /user aggregates \(durable actors\): 3 users, 2 OFF by 6 events, 0 UNANSWERED/);
  t.regex(formatVerdict(report), /example: user u2: its summary counts 2 events, it has 5 rows/);
  t.regex(formatVerdict({ ...report, ok: true, aggregates: exact }), /3 users, each counts exactly its stored events/);
});

test('the verdict table names the counts and says FAILED with the seed to rerun', (t) => {
  const load = { acked: new Set(['a', 'b']), refused: new Set<string>(), ambiguous: new Set<string>() };
  const events = judgeEvents(load, new Map([['a', 1]]), new Set());
  const report: ChaosReport = { ok: isNothingLost(events, undefined), seed: 9, nodes: 3, durationMs: 20_000, faults: { kill: 2, pause: 1, stop: 0, unexpectedExits: 0 }, events, drained: false, drainMs: 60_000, notes: [] };
  const text = formatVerdict(report);
  t.regex(text, /LOST \(acknowledged, not stored\)\s+1/);
  t.regex(text, /2 SIGKILL \+ restart, 1 SIGSTOP\/SIGCONT/);
  t.regex(text, /example: lost event b/);
  t.regex(text, /FAILED: .*--seed 9/);
  t.regex(formatVerdict({ ...report, ok: true, events: judgeEvents(load, new Map([['a', 1], ['b', 1]]), new Set()), drained: true }), /NOTHING ACKNOWLEDGED WAS LOST OR DUPLICATED \(seed 9\)/);
});

test('settings: intervals left unset fit a short run; intervals given must be shorter than it', (t) => {
  const read = (argv: string[]) => chaosOptionsFrom(readSettings(CHAOS_SETTINGS, { argv, env: {} }).values, () => 7);
  const base = ['--redis', 'redis://127.0.0.1:6379', '--postgres', 'postgres://u@h:5432/d'];
  const short = read([...base, '--duration', '9s']);
  t.deepEqual(short.problems, []);
  t.like(short.options, { killEveryMs: 3000, pauseEveryMs: 4500, stopEveryMs: 0, seed: 7, nodes: 3 });
  t.like(read([...base, '--seed', '11']).options, { killEveryMs: 10_000, pauseEveryMs: 15_000, seed: 11 });
  const bad = read([...base, '--duration', '10s', '--kill-every', '10s', '--stop-every', '500ms']);
  t.is(bad.options, undefined);
  t.regex(bad.problems.join('\n'), /kill-every: got 10s, not shorter than --duration 10s/);
  t.regex(bad.problems.join('\n'), /stop-every: got 0.5s; expected at least 1s/);
  t.regex(read(['--redis', 'http://x:1', '--postgres', 'mysql://x']).problems.join('\n'), /redis:\/\/ or rediss:\/\/ URL[\s\S]*postgres:\/\/ or postgresql:\/\/ URL/);
});

test('the plan draws every kind listed in --faults, and a side for each partition', (t) => {
  const p = planFaults({ seed: 3, nodes: 3, durationMs: 60_000, killEveryMs: 0, pauseEveryMs: 0, stopEveryMs: 0, faultEveryMs: 20_000, kinds: ['partition', 'redis-pause', 'pg-restart'] });
  t.deepEqual([...new Set(p.map((f) => f.kind))].sort(), ['partition', 'pg-restart', 'redis-pause']);
  t.is(p.length, 6);
  for (const f of p) t.is(f.side !== undefined, f.kind === 'partition');
  t.deepEqual(p, planFaults({ seed: 3, nodes: 3, durationMs: 60_000, killEveryMs: 0, pauseEveryMs: 0, stopEveryMs: 0, faultEveryMs: 20_000, kinds: ['partition', 'redis-pause', 'pg-restart'] }));
});

test('counters: every acknowledged increment applied once; a loss, a second application and a stray are each caught', (t) => {
  const ack = (key: string, seq: number, n: number, activation: string, at: number) => ({ key, seq, n, activation, at });
  const load = { acked: [ack('c0', 0, 1, 'a', 10), ack('c0', 1, 2, 'a', 20), ack('c1', 2, 1, 'b', 15)], refused: new Set([3]), ambiguous: new Set([4]) };
  const exact = judgeCounters(load, new Map([['c0', { n: 3, applied: [0, 1, 4] }], ['c1', { n: 1, applied: [2] }]]));
  t.like(exact, { acked: 3, applied: 4, lost: 0, duplicated: 0, neverSent: 0, unanswered: 0, doubleActivations: 0 });
  t.true(isNothingLost(undefined, undefined, undefined, exact));
  t.like(judgeCounters(load, new Map([['c0', { n: 1, applied: [0] }], ['c1', { n: 1, applied: [2] }]])), { lost: 1 });
  t.like(judgeCounters(load, new Map([['c0', { n: 3, applied: [0, 1, 1] }], ['c1', { n: 1, applied: [2] }]])), { duplicated: 1 });
  t.like(judgeCounters(load, new Map([['c0', { n: 3, applied: [0, 1, 3] }], ['c1', { n: 1, applied: [2] }]])), { neverSent: 1 });
  const silent = judgeCounters(load, new Map([['c0', { n: 2, applied: [0, 1] }], ['c1', undefined]]));
  t.like(silent, { unanswered: 1, lost: 0 });
  t.false(isNothingLost(undefined, undefined, undefined, silent));
});

test('double activations: two activations of one counter whose replies interleave in time; one after the other is a hand-off', (t) => {
  const ack = (key: string, n: number, activation: string, at: number) => ({ key, seq: n, n, activation, at });
  const handOff = [ack('c0', 1, 'a', 10), ack('c0', 2, 'a', 20), ack('c0', 3, 'b', 30), ack('c0', 4, 'b', 40)];
  t.like(findDoubleActivations(handOff), { pairs: 0, forked: 0 });
  const both = [ack('c0', 1, 'a', 10), ack('c0', 2, 'b', 15), ack('c0', 2, 'a', 20), ack('c0', 3, 'b', 25)];
  const found = findDoubleActivations(both);
  t.like(found, { pairs: 1, forked: 1 });
  t.regex(found.examples[0]!, /counter c0: activations a \(10-20\) and b \(15-25\) both answered at once/);
  const j = judgeCounters({ acked: both, refused: new Set(), ambiguous: new Set() }, new Map([['c0', { n: 3, applied: [1, 2, 2, 3] }]]));
  t.is(j.doubleActivations, 1);
  t.false(isNothingLost(undefined, undefined, undefined, j));
});

test('ownership: a partition unserved past the threshold is stuck; time inside a Redis fault does not count; recovery is the first full sample after the heal', (t) => {
  const sample = (atMs: number, unserved: number[] = [], read = true): OwnershipSample => ({ atMs, served: read ? [0, 1, 2, 3].map((p) => !unserved.includes(p)) : undefined });
  const samples = [sample(0), sample(1000, [2]), sample(5000, [2]), sample(12_000, [2]), sample(13_000), sample(14_000, [0, 1, 2, 3]), sample(20_000, [0, 1, 2, 3]), sample(21_000, [], false), sample(22_000, [1]), sample(23_000)];
  const j = judgeOwnership(samples, 10_000, [[13_500, 21_500]]);
  t.is(j.stuck, 1);
  t.is(j.longestUnservedMs, 11_000);
  t.regex(j.stuckExamples[0]!, /partition 2 served by nobody from 1\.0s to at least 12\.0s/);
  t.is(j.unreadSamples, 0);
  t.is(recoveredAt(samples, 21_500), 23_000);
  t.is(recoveredAt(samples, 23_500), undefined);
  t.false(isNothingLost(undefined, undefined, undefined, undefined, j));
  const report: ChaosReport = { ok: false, seed: 1, nodes: 3, durationMs: 30_000, faults: { kill: 0, pause: 0, stop: 0, 'redis-pause': 1, unexpectedExits: 0 }, ownership: { ...j, stuckAfterMs: 10_000 }, doubleActivations: 0, faultLog: [{ kind: 'redis-pause', target: 'redis', startedAtMs: 13_500, healedAtMs: 21_500, recoveredAtMs: 23_000 }], drained: true, drainMs: 1, notes: [] };
  const text = formatVerdict(report);
  t.regex(text, /STUCK partitions \(served by nobody for more than 10\.0s\): 1; longest unserved 11\.0s/);
  t.regex(text, /1 redis-pause/);
  t.regex(text, /13\.5s redis-pause redis: healed after 8\.0s, every partition served 1\.5s after the heal/);
  t.regex(text, /DOUBLE ACTIVATIONS \(two live at once\): 0/);
});

test('settings: --faults lists kinds, --stop-every alone adds stop, a Redis fault with --redis is refused', (t) => {
  const read = (argv: string[]) => chaosOptionsFrom(readSettings(CHAOS_SETTINGS, { argv, env: {} }).values, () => 7);
  t.like(read([]).options, { faults: ['kill', 'pause'], overlap: 1, redisUrl: undefined, postgresUrl: undefined });
  t.deepEqual(read(['--stop-every', '5s']).options!.faults, ['kill', 'pause', 'stop']);
  t.like(read(['--faults', 'partition,pg-restart', '--duration', '20s']).options, { killEveryMs: 0, pauseEveryMs: 0, stopEveryMs: 0, faultEveryMs: 10_000 });
  t.regex(read(['--redis', 'redis://127.0.0.1:6379', '--faults', 'redis-failover']).problems.join('\n'), /redis-failover needs a Redis chaos starts itself/);
});
