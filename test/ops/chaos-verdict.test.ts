// The parts of `troupe chaos` that decide without a cluster: the seeded fault plan, the judgement of
// what was acknowledged against what was stored (it must see a loss, a duplicate and a stray row),
// the user aggregates against their rows, and the settings checks.

import test from 'ava';
import { planFaults } from '../../ops/chaos/schedule.js';
import { CHAOS_SETTINGS, chaosOptionsFrom } from '../../ops/chaos/settings.js';
import { formatVerdict, isNothingLost, judgeAggregates, judgeCarts, judgeEvents, type ChaosReport } from '../../ops/chaos/verdict.js';
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
