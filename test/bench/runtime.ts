// Runtime benchmark: tells, asks, activations, memory and durable updates on one node, each with
// its reference (nact, piscina) measured in the same run. `npm run bench -- runtime [--quick]`.

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { createRequire } from 'node:module';
import { Piscina } from 'piscina';
import { Overloaded, partitionOf, startNode, type TroupeNode } from '../../runtime/index.js';
import type { BenchOptions, BenchResult } from './run.js';
import { Cell } from './fixtures/cell.js';
import Tally from './fixtures/tally.js';
import JsonTally from './fixtures/tally-json.js';

const require = createRequire(import.meta.url);
const CELL = new URL('./fixtures/cell.js', import.meta.url).href;
const TALLY = new URL('./fixtures/tally.js', import.meta.url).href;
const TALLY_JSON = new URL('./fixtures/tally-json.js', import.meta.url).href;

function progress(msg: string): void {
  process.stderr.write(`  runtime: ${msg}\n`);
}

async function totalTurns(node: TroupeNode): Promise<number> {
  return (await node.stats()).shards.reduce((n, s) => n + s.turns, 0);
}

async function until(check: () => Promise<boolean>, what = 'the run', ms = 180_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} did not finish within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Sends tells as fast as the node takes them; on Overloaded, lets the shards catch up. */
async function tellAll(node: TroupeNode, count: number, keyOf: (i: number) => string, distinct = count): Promise<void> {
  // References are made once, as a caller holding them would; the loop measures telling only.
  const refs = Array.from({ length: Math.min(count, distinct) }, (_, i) => node.ref(Cell, keyOf(i)));
  for (let i = 0; i < count; ) {
    try {
      const end = Math.min(count, i + 20_000);
      for (; i < end; i++) refs[i % refs.length]!.tell('hit');
    } catch (err) {
      if (!(err instanceof Overloaded)) throw err;
      await new Promise((r) => setTimeout(r, 1));
    }
    await yieldToLoop();
  }
}

/** Same-shard actor-to-actor tells in Troupe: one actor blasts `count` tells at another. */
async function troupeLocalTells(node: TroupeNode, count: number): Promise<number> {
  const a = 'src-local';
  let b = 'dst-0';
  for (let i = 1; partitionOf(`cell/${a}`, node.partitions) % node.shardCount !== partitionOf(`cell/${b}`, node.partitions) % node.shardCount; i++) b = `dst-${i}`;
  const dst = node.ref(Cell, b);
  const before = await dst.ask('get');
  const t0 = performance.now();
  node.ref(Cell, a).tell('blast', { to: b, count });
  await until(async () => (await dst.ask('get')) - before >= count);
  return count / ((performance.now() - t0) / 1000);
}

/** The same workload in nact: one actor dispatches `count` messages to another that counts them. */
async function nactLocalTells(count: number): Promise<number> {
  const nact = require('nact') as typeof import('nact');
  const system = nact.start();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const dst = nact.spawn(system, (state: number = 0) => {
    const n = state + 1;
    if (n === count) done();
    return n;
  }, 'dst');
  const src = nact.spawnStateless(system, (msg: { count: number }) => {
    for (let i = 0; i < msg.count; i++) nact.dispatch(dst, 'hit');
  }, 'src');
  const t0 = performance.now();
  nact.dispatch(src, { count });
  await finished;
  const rate = count / ((performance.now() - t0) / 1000);
  nact.stop(system);
  return rate;
}

async function asksInFlight(node: TroupeNode, count: number, inFlight: number, actors: number): Promise<{ rate: number; p99: number; p50: number }> {
  const latencies = new Float64Array(count);
  const refs = Array.from({ length: actors }, (_, i) => node.ref(Cell, `ask-${i}`));
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) {
      const i = next++;
      const start = performance.now();
      await refs[i % actors]!.ask('echo', i);
      latencies[i] = performance.now() - start;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const rate = count / ((performance.now() - t0) / 1000);
  latencies.sort();
  return { rate, p99: latencies[Math.floor(count * 0.99)]!, p50: latencies[Math.floor(count * 0.5)]! };
}

async function piscinaTasks(count: number, inFlight: number): Promise<number> {
  const pool = new Piscina({ filename: new URL('./fixtures/piscina-task.js', import.meta.url).href, maxThreads: availableParallelism(), minThreads: availableParallelism() });
  await Promise.all(Array.from({ length: 100 }, (_, i) => pool.run(i)));
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) await pool.run(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const rate = count / ((performance.now() - t0) / 1000);
  await pool.destroy();
  return rate;
}

async function durableAsks(node: TroupeNode, def: typeof Tally, count: number, inFlight: number, actors: number): Promise<number> {
  let next = 0;
  const refs = Array.from({ length: actors }, (_, i) => node.ref(def, `d-${i}`));
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) await refs[next++ % actors]!.ask('add', 1);
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return count / ((performance.now() - t0) / 1000);
}

export async function run(o: BenchOptions): Promise<BenchResult[]> {
  const scale = o.quick ? 0.1 : 1;
  const rows: BenchResult[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-bench-runtime-'));
  const node = await startNode({ dataDir, actorModules: [CELL, TALLY, TALLY_JSON], askTimeoutMs: 60_000 });
  const bench = 'runtime';
  try {
    progress(`node up with ${node.shardCount} shards; same-shard tells vs nact`);
    const localCount = Math.round(2_000_000 * scale);
    await troupeLocalTells(node, Math.round(localCount / 10));
    const troupeLocal = await troupeLocalTells(node, localCount);
    const nactLocal = await nactLocalTells(Math.round(localCount / 4));
    rows.push({ bench, metric: 'tells/s actor to actor, same shard', value: Math.round(troupeLocal), unit: 'msg/s', baseline: Math.round(nactLocal), ratio: troupeLocal / nactLocal, target: '>= 10x nact' });

    progress('tells from the main thread over 100,000 actors on all shards');
    const spread = 100_000;
    await tellAll(node, spread, (i) => `c${i}`); // activate them first: this metric is about messaging
    await until(async () => (await totalTurns(node)) >= 0);
    const crossCount = Math.round(3_000_000 * scale);
    const turns0 = await totalTurns(node);
    const tc = performance.now();
    await tellAll(node, crossCount, (i) => `c${i}`, spread);
    await until(async () => (await totalTurns(node)) - turns0 >= crossCount + spread * 0);
    const cross = crossCount / ((performance.now() - tc) / 1000);
    rows.push({ bench, metric: 'tells/s main thread -> 100k actors, all shards', value: Math.round(cross), unit: 'msg/s', target: '>= 1,000,000' });

    progress('asks with many in flight vs piscina tasks');
    const askCount = Math.round(1_000_000 * scale);
    await asksInFlight(node, Math.round(askCount / 10), 2000, 10_000);
    const asks = await asksInFlight(node, askCount, 4000, 10_000);
    const pisc = await piscinaTasks(Math.round(askCount / 4), 4000);
    rows.push({ bench, metric: 'asks/s main thread -> shards (4,000 in flight)', value: Math.round(asks.rate), unit: 'ask/s', baseline: Math.round(pisc), ratio: asks.rate / pisc, target: '>= 200,000 and >= 5x piscina' });
    rows.push({ bench, metric: 'ask latency p50 at that load', value: Number(asks.p50.toFixed(2)), unit: 'ms' });
    rows.push({ bench, metric: 'ask latency p99 at that load', value: Number(asks.p99.toFixed(2)), unit: 'ms' });

    progress('activations of new volatile actors');
    const fresh = Math.round(1_000_000 * scale);
    await node.collectGarbage();
    const before = await node.stats();
    const act0 = before.shards.reduce((n, s) => n + s.activationsTotal, 0);
    const heap0 = before.shards.reduce((n, s) => n + s.heapUsed, 0);
    const ta = performance.now();
    await tellAll(node, fresh, (i) => `new-${i}`);
    await until(async () => (await node.stats()).shards.reduce((n, s) => n + s.activationsTotal, 0) - act0 >= fresh);
    const activations = fresh / ((performance.now() - ta) / 1000);
    rows.push({ bench, metric: 'activations/s of new volatile actors', value: Math.round(activations), unit: 'act/s', target: '>= 200,000' });

    const gc = await node.collectGarbage();
    const after = await node.stats();
    const heap1 = after.shards.reduce((n, s) => n + s.heapUsed, 0);
    rows.push({ bench, metric: `heap per idle volatile actor (${fresh.toLocaleString('en-US')} actors${gc ? '' : ', no --expose-gc'})`, value: Math.round((heap1 - heap0) / fresh), unit: 'bytes', target: '<= 300' });

    progress('acknowledged durable updates');
    const durCount = Math.round(500_000 * scale);
    for (const [def, codec] of [[Tally, 'v8'], [JsonTally, 'json']] as const) {
      await durableAsks(node, def, Math.round(durCount / 10), 2000, 10_000);
      const durable = await durableAsks(node, def, durCount, 4000, 10_000);
      rows.push({ bench, metric: `acknowledged durable updates/s, ${codec} snapshots (committed before reply)`, value: Math.round(durable), unit: 'upd/s', target: '>= 50,000' });
    }
  } finally {
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}
