// The sampler on made-up reports: it samples only while watched and stops after the idle time;
// rates come from successive reports; a dead node's partitions are a lease loss, a live one's a
// hand-off; a member gone while serving is a death, one gone after handing off left; a peer that
// does not answer is shown unreachable, and a peer's bad answer does not stop the others.

import test from 'ava';
import { ClusterWatch, type ClusterView } from '../../../runtime/dashboard/cluster-watch.js';
import type { NodeReport } from '../../../runtime/dashboard/node-report.js';
import type { PeerAnswer, PeerSource } from '../../../runtime/dashboard/peer-reports.js';
import { TIME_BUCKETS, timeBucket } from '../../../runtime/turn-tally.js';
import { eventually, sleep } from '../../cluster/helpers.js';

const P = 16;

function report(nodeId: string, o: { members: string[]; states: string; turns?: number; atMs: number; cpuMicros?: number; overloaded?: number; timesMs?: number[] }): NodeReport {
  const times = new Array<number>(TIME_BUCKETS).fill(0);
  for (const ms of o.timesMs ?? []) times[timeBucket(ms)]!++;
  return {
    nodeId,
    cluster: 'c',
    address: `${nodeId}:1`,
    pid: 1,
    runtime: 'node',
    startedMs: 0,
    atMs: o.atMs,
    uptimeMs: o.atMs,
    shards: 1,
    partitions: P,
    inspector: 'full',
    ports: { ops: 1 },
    cpuMicros: o.cpuMicros ?? 0,
    rssBytes: 1,
    heapUsedBytes: 1,
    pendingAsks: 0,
    members: o.members.map((m) => ({ nodeId: m, address: `${m}:1`, startedMs: 0 })),
    ringEpoch: 1,
    partitionStates: o.states,
    leasesHeld: 0,
    links: [],
    types: [{ type: 't', activations: 1, turns: o.turns ?? 0, failed: 0, overloaded: o.overloaded ?? 0, activated: 1, passivated: 0, timed: o.timesMs?.length ?? 0, times }],
    totals: { turns: o.turns ?? 0, turnsFailed: 0, activations: 1, rejectedOverloaded: o.overloaded ?? 0, queued: 0 },
    services: [{ name: 'svc', figures: [{ name: 'calls', value: o.turns ?? 0, kind: 'count' }, { name: 'online', value: 7, kind: 'gauge', scope: 'cluster' }] }],
  };
}

/** A scripted cluster: what each node answers now, or why it does not. */
class FakeCluster implements PeerSource {
  readonly answers = new Map<string, NodeReport | string>();
  localCalls = 0;
  forgotten: string[] = [];

  local = async (): Promise<NodeReport> => {
    this.localCalls++;
    return this.answers.get('a') as NodeReport;
  };

  async report(nodeId: string): Promise<PeerAnswer> {
    const a = this.answers.get(nodeId);
    if (a === undefined) return { ok: false, error: 'not a member' };
    return typeof a === 'string' ? { ok: false, error: a } : { ok: true, report: a };
  }

  async opsUrl(nodeId: string): Promise<string> {
    return `http://${nodeId}:1`;
  }

  forget(nodeId: string): void {
    this.forgotten.push(nodeId);
  }
}

function watchOf(fake: FakeCluster, idleStopMs = 60_000): ClusterWatch {
  const w = new ClusterWatch({ self: 'a', local: fake.local, peers: fake, intervalMs: 1e9, idleStopMs });
  return w;
}

const kinds = (v: ClusterView) => v.log.map((e) => e.kind);

test('samples only while watched: nothing before the first request, and it stops after the idle time', async (t) => {
  const fake = new FakeCluster();
  fake.answers.set('a', report('a', { members: ['a'], states: 's'.repeat(P), atMs: 1 }));
  const w = new ClusterWatch({ self: 'a', local: fake.local, peers: fake, intervalMs: 50, idleStopMs: 300 });
  t.teardown(() => w.stop());
  await sleep(200);
  t.is(fake.localCalls, 0, 'nothing gathered before anyone asked');
  t.false(w.active);
  const view = await w.touch();
  t.true(w.active);
  t.is(view.nodes.length, 1);
  await eventually(() => fake.localCalls >= 3, 5000, 'sampling once per interval');
  await eventually(() => !w.active, 5000, 'sampling stopped after the idle time');
  await sleep(150); // a sample in flight when it stopped may still land
  const calls = fake.localCalls;
  await sleep(400);
  t.is(fake.localCalls, calls, 'nothing gathered after it stopped');
});

test('rates, percentiles and cluster-wide figures come from successive reports of every node', async (t) => {
  const fake = new FakeCluster();
  const members = ['a', 'b'];
  fake.answers.set('a', report('a', { members, states: 's'.repeat(8) + '.'.repeat(8), turns: 100, atMs: 1000, cpuMicros: 0 }));
  fake.answers.set('b', report('b', { members, states: '.'.repeat(8) + 's'.repeat(8), turns: 50, atMs: 1000 }));
  const w = watchOf(fake);
  t.teardown(() => w.stop());
  await w.touch();
  fake.answers.set('a', report('a', { members, states: 's'.repeat(8) + '.'.repeat(8), turns: 300, atMs: 3000, cpuMicros: 1_000_000, timesMs: [0.01, 0.01, 0.01, 5] }));
  fake.answers.set('b', report('b', { members, states: '.'.repeat(8) + 's'.repeat(8), turns: 150, atMs: 3000, timesMs: [0.01] }));
  await w.sampleNow();
  const v = w.latest().view!;
  t.deepEqual(v.nodes.map((n) => [n.nodeId, n.label, n.serving, n.turnsPerSecond]), [['a', 'A', 8, 100], ['b', 'B', 8, 50]]);
  t.is(v.nodes[0]!.cpuPercent, 50);
  t.deepEqual(v.owner, [...new Array(8).fill(0), ...new Array(8).fill(1)]);
  const type = v.types[0]!;
  t.is(type.turns, 450);
  t.is(type.turnsPerSecond, 150);
  t.deepEqual(type.byNode, { a: 100, b: 50 });
  t.is(type.timedInWindow, 5);
  t.true(type.p50Ms! >= 0.01 && type.p50Ms! < 0.013, `p50 ${type.p50Ms}`);
  t.true(type.p99Ms! >= 5 && type.p99Ms! < 6, `p99 ${type.p99Ms}`);
  const svc = v.services[0]!;
  t.deepEqual(svc.nodes, ['a', 'b']);
  t.deepEqual(svc.figures.find((f) => f.name === 'calls'), { name: 'calls', kind: 'count', unit: undefined, value: 450, perSecond: 150 });
  t.is(svc.figures.find((f) => f.name === 'online')!.value, 7, 'a cluster-wide figure is not summed');
  const series = w.series(0);
  t.is(series.t.length, 2);
  t.deepEqual(series.series['turns/s'], [0, 150]);
  t.deepEqual(w.series(series.t[0]!).t, [series.t[1]!], "only the points after since");
});

test('a node that stops answering, then is declared dead: unreachable, its partitions unserved, then a lease loss and a death', async (t) => {
  const fake = new FakeCluster();
  const three = ['a', 'b', 'c'];
  const states = (mine: number[]) => Array.from({ length: P }, (_, p) => (mine.includes(p % 3) ? 's' : '.')).join('');
  fake.answers.set('a', report('a', { members: three, states: states([0]), atMs: 1 }));
  fake.answers.set('b', report('b', { members: three, states: states([1]), atMs: 1 }));
  fake.answers.set('c', report('c', { members: three, states: states([2]), atMs: 1 }));
  const w = watchOf(fake);
  t.teardown(() => w.stop());
  await w.touch();
  fake.answers.set('c', 'connect ECONNREFUSED');
  await w.sampleNow();
  let v = w.latest().view!;
  t.is(v.nodes.find((n) => n.nodeId === 'c')!.status, 'unreachable');
  t.regex(v.nodes.find((n) => n.nodeId === 'c')!.detail!, /ECONNREFUSED/);
  t.is(v.owner.filter((o) => o === -1).length, 5, "c's partitions are served by nobody while its leases run");
  t.true(kinds(v).includes('unreachable'));
  // Declared dead: off the members; a and b take its partitions.
  fake.answers.delete('c');
  fake.answers.set('a', report('a', { members: ['a', 'b'], states: states([0, 2]), atMs: 2 }));
  fake.answers.set('b', report('b', { members: ['a', 'b'], states: states([1]), atMs: 2 }));
  await w.sampleNow();
  v = w.latest().view!;
  t.is(v.nodes.length, 2);
  t.deepEqual(v.nodes.map((n) => n.label), ['A', 'B']);
  t.is(v.owner.filter((o) => o === -1).length, 0);
  t.true(kinds(v).includes('death'));
  const loss = v.log.find((e) => e.kind === 'lease-loss');
  t.truthy(loss);
  t.regex(loss!.text, /^5 partitions of c taken by a after its leases lapsed/);
  t.false(kinds(v).includes('hand-off'));
  t.deepEqual(fake.forgotten, ['c']);
});

test('a graceful leave: releasing partitions shown moving, a hand-off to a live node, and a leave (not a death)', async (t) => {
  const fake = new FakeCluster();
  const two = ['a', 'b'];
  fake.answers.set('a', report('a', { members: two, states: 's'.repeat(8) + '.'.repeat(8), atMs: 1 }));
  fake.answers.set('b', report('b', { members: two, states: '.'.repeat(8) + 's'.repeat(8), atMs: 1 }));
  const w = watchOf(fake);
  t.teardown(() => w.stop());
  await w.touch();
  fake.answers.set('a', report('a', { members: two, states: 's'.repeat(8) + 'a'.repeat(8), atMs: 2 }));
  fake.answers.set('b', report('b', { members: two, states: '.'.repeat(8) + 'r'.repeat(8), atMs: 2 }));
  await w.sampleNow();
  let v = w.latest().view!;
  t.deepEqual(v.moving.slice(8), new Array(8).fill(2));
  t.deepEqual(v.owner.slice(8), new Array(8).fill(1), 'the releasing node still has them');
  fake.answers.set('a', report('a', { members: two, states: 's'.repeat(P), atMs: 3 }));
  fake.answers.set('b', report('b', { members: two, states: '.'.repeat(P), atMs: 3 }));
  await w.sampleNow();
  v = w.latest().view!;
  t.regex(v.log.find((e) => e.kind === 'hand-off')!.text, /^8 partitions handed off from b to a/);
  fake.answers.delete('b');
  fake.answers.set('a', report('a', { members: ['a'], states: 's'.repeat(P), atMs: 4 }));
  await w.sampleNow();
  v = w.latest().view!;
  t.true(kinds(v).includes('leave'));
  t.false(kinds(v).includes('death'));
  t.false(kinds(v).includes('lease-loss'));
});

test('overloads are logged per type and node as they happen', async (t) => {
  const fake = new FakeCluster();
  fake.answers.set('a', report('a', { members: ['a'], states: 's'.repeat(P), atMs: 1, overloaded: 2 }));
  const w = watchOf(fake);
  t.teardown(() => w.stop());
  await w.touch();
  t.false(kinds(w.latest().view!).includes('overload'), 'refusals before the watch started are not news');
  fake.answers.set('a', report('a', { members: ['a'], states: 's'.repeat(P), atMs: 2, overloaded: 40 }));
  await w.sampleNow();
  t.regex(w.latest().view!.log.find((e) => e.kind === 'overload')!.text, /^38 messages to t actors refused on a/);
});
