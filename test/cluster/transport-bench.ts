// Benchmark of the cluster transport alone (no actors): tells/s and asks/s with p99 between two
// ClusterTransports on loopback, beside the frame codec alone as the baseline. The lead's
// test/bench/cluster.ts can re-export `run` until the full two-node benchmark exists.

import { performance } from 'node:perf_hooks';
import { decodeFrame, encodeBatch } from '../../runtime/cluster/frame-codec.js';
import { ClusterTransport } from '../../runtime/cluster/transport.js';
import { MSG_STRIDE } from '../../runtime/envelope.js';
import { partitionOf } from '../../runtime/partition.js';
import type { BenchOptions, BenchResult } from '../bench/run.js';
import { quietLog } from './helpers.js';

const TICK = 4096;
/** The ids' real partitions (the receiver refuses any other), computed once as an ActorRef holds them. */
const USERS = 100_000;
const PART = Array.from({ length: USERS }, (_, i) => partitionOf(`user/${i}`, 1024));
const WARM = partitionOf('warm/0', 1024);

function codecTellsPerSec(total: number): number {
  const m: unknown[] = [];
  for (let i = 0; i < TICK; i++) m.push(`user/${i}`, PART[i]!, 'ping', i, 0, 0);
  const t0 = performance.now();
  let n = 0;
  while (n < total) {
    const f = decodeFrame(encodeBatch(m));
    if (f.kind === 'batch') n += f.m.length / MSG_STRIDE;
  }
  return n / ((performance.now() - t0) / 1000);
}

async function pair(): Promise<{ a: ClusterTransport; b: ClusterTransport; onB: { batch: (from: string, m: unknown[], r: unknown[]) => void }; onA: { batch: (from: string, m: unknown[], r: unknown[]) => void } }> {
  const addresses = new Map<string, string>();
  const onA = { batch: (_f: string, _m: unknown[], _r: unknown[]) => {} };
  const onB = { batch: (_f: string, _m: unknown[], _r: unknown[]) => {} };
  const common = { cluster: 'bench', partitions: 1024, resolve: (p: string) => addresses.get(p), onRedirect: () => {}, log: quietLog };
  const a = await ClusterTransport.start({ ...common, self: 'a', onBatch: (f, m, r) => onA.batch(f, m, r) });
  const b = await ClusterTransport.start({ ...common, self: 'b', onBatch: (f, m, r) => onB.batch(f, m, r) });
  addresses.set('a', `127.0.0.1:${a.port}`);
  addresses.set('b', `127.0.0.1:${b.port}`);
  return { a, b, onA, onB };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function transportTellsPerSec(total: number): Promise<number> {
  const { a, b, onB } = await pair();
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  onB.batch = (_f, m) => {
    received += m.length / MSG_STRIDE;
    if (received >= total) done();
  };
  a.send('b', 'warm/0', WARM, 'ping', 0, 0, 0);
  total += 1;
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  for (let sent = 0; sent < total - 1; ) {
    for (let i = 0; i < TICK && sent < total - 1; i++, sent++) a.send('b', `user/${sent % USERS}`, PART[sent % USERS]!, 'ping', sent, 0, 0);
    await tick();
    // Stay within a few frames of the receiver, as the router would under backpressure.
    while (a.stats()[0]!.queuedBytes > 4 * 1024 * 1024) await tick();
  }
  await all;
  const rate = (total - 1) / ((performance.now() - t0) / 1000);
  await Promise.all([a.close(), b.close()]);
  return rate;
}

async function transportAsks(total: number, window: number): Promise<{ rate: number; p50: number; p99: number }> {
  const { a, b, onA, onB } = await pair();
  onB.batch = (from, m) => {
    for (let i = 0; i < m.length; i += MSG_STRIDE) b.reply(from, m[i + 5] as number, true, m[i + 3]);
  };
  const started = new Float64Array(total + 1);
  const latencies: number[] = [];
  let next = 1;
  let settled = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const issue = (): void => {
    const askId = next++;
    started[askId] = performance.now();
    a.send('b', `user/${askId % USERS}`, PART[askId % USERS]!, 'get', askId, 1, askId);
  };
  onA.batch = (_f, _m, r) => {
    const now = performance.now();
    for (let i = 0; i < r.length; i += 3) {
      if (r[i] === 0) continue; // the warm-up ask
      latencies.push(now - started[r[i] as number]!);
      settled++;
      if (next <= total) issue();
    }
    if (settled >= total) done();
  };
  // Warm-up: both links dialed (replies travel on b's own link to a) and the JIT settled.
  a.send('b', 'warm/0', WARM, 'get', 0, 1, 0);
  await new Promise((r) => setTimeout(r, 300));
  latencies.length = 0;
  settled = 0;
  const t0 = performance.now();
  for (let i = 0; i < window && next <= total; i++) issue();
  await all;
  const rate = total / ((performance.now() - t0) / 1000);
  latencies.sort((x, y) => x - y);
  await Promise.all([a.close(), b.close()]);
  return { rate, p50: latencies[Math.floor(latencies.length * 0.5)]!, p99: latencies[Math.floor(latencies.length * 0.99)]! };
}

export async function run(opts: BenchOptions): Promise<BenchResult[]> {
  const tells = opts.quick ? 200_000 : 2_000_000;
  const asks = opts.quick ? 50_000 : 300_000;
  const codec = codecTellsPerSec(tells);
  const transported = await transportTellsPerSec(tells);
  const ask = await transportAsks(asks, 1000);
  const light = await transportAsks(Math.floor(asks / 3), 64);
  return [
    { bench: 'cluster-transport', metric: 'tells/s encoded+decoded by the frame codec alone', value: Math.round(codec), unit: 'msg/s' },
    {
      bench: 'cluster-transport',
      metric: 'tells/s from one transport to another over loopback gRPC',
      value: Math.round(transported),
      unit: 'msg/s',
      baseline: Math.round(codec),
      ratio: transported / codec,
      target: '>= 250,000 (end to end, with actors)',
    },
    { bench: 'cluster-transport', metric: 'asks/s round trip over loopback gRPC (1000 in flight)', value: Math.round(ask.rate), unit: 'ask/s', target: '>= 20,000 (end to end)' },
    { bench: 'cluster-transport', metric: 'ask round trip p50 (1000 in flight)', value: ask.p50, unit: 'ms' },
    { bench: 'cluster-transport', metric: 'ask round trip p99 (1000 in flight)', value: ask.p99, unit: 'ms', target: '<= 10 ms (end to end)' },
    { bench: 'cluster-transport', metric: 'asks/s round trip (64 in flight)', value: Math.round(light.rate), unit: 'ask/s' },
    { bench: 'cluster-transport', metric: 'ask round trip p50 (64 in flight)', value: light.p50, unit: 'ms' },
    { bench: 'cluster-transport', metric: 'ask round trip p99 (64 in flight)', value: light.p99, unit: 'ms', target: '<= 10 ms (end to end)' },
  ];
}
