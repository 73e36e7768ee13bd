// `npm run bench -- dashboard [--quick]`: what an open dashboard costs a node. The same asks (to
// 10,000 actors, 1,000 in flight) in alternating rounds with the page closed and open (a client
// polling /dashboard/api/cluster and /dashboard/api/series once a second, as the page does, so the
// node samples, merges and times one turn in eight); the ratio of open to closed throughput, side
// by side in one run. Target: at least 0.98.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createDashboard } from '../../runtime/dashboard/dashboard.js';
import { nodeReport } from '../../runtime/dashboard/node-report.js';
import { startNode, type TroupeNode } from '../../runtime/index.js';
import { startOpsServer } from '../../runtime/ops-server.js';
import { Cell } from './fixtures/cell.js';
import type { BenchOptions, BenchResult } from './run.js';

const CELL = new URL('./fixtures/cell.js', import.meta.url).href;
const ACTORS = 10_000;
const IN_FLIGHT = 1_000;

async function asks(node: TroupeNode, count: number): Promise<number> {
  const refs = Array.from({ length: ACTORS }, (_, i) => node.ref(Cell, `d-${i}`));
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < count) {
      const i = next++;
      await refs[i % ACTORS]!.ask('echo', i);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return count / ((performance.now() - t0) / 1000);
}

/** What an open page asks for, once a second; returns a function that stops it and says how many polls ran. */
function openPage(base: string): () => Promise<number> {
  let polls = 0;
  let lastT = 0;
  let stopped = false;
  const poll = async () => {
    const [view, series] = await Promise.all([fetch(`${base}/dashboard/api/cluster`), fetch(`${base}/dashboard/api/series?since=${lastT}`)]);
    await view.arrayBuffer();
    const chunk = (await series.json()) as { t: number[] };
    if (chunk.t.length) lastT = chunk.t.at(-1)!;
    polls++;
  };
  let running = poll();
  const timer = setInterval(() => {
    if (!stopped) running = running.then(poll);
  }, 1000);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
    return polls;
  };
}

/** Asks/s by the clock, and asks per second of this process's CPU (every thread), which other work on the machine disturbs less. */
async function round(node: TroupeNode, count: number): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const wall = await asks(node, count);
  const c = process.cpuUsage(c0);
  return { wall, cpu: count / ((c.user + c.system) / 1e6) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function run(o: BenchOptions): Promise<BenchResult[]> {
  // Rounds of several seconds, so that each open one holds several of the page's 1-second polls.
  const count = o.quick ? 150_000 : 600_000;
  const pairs = o.quick ? 3 : 6;
  const say = (msg: string) => process.stderr.write(`  dashboard: ${msg}\n`);
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-bench-dashboard-'));
  const node = await startNode({ dataDir, actorModules: [CELL], askTimeoutMs: 60_000 });
  const source = { node, inspector: 'read-only' as const, services: () => [], ports: () => ({ ops: ops.port }), notReady: async () => undefined };
  const dashboard = createDashboard(source);
  const ops = await startOpsServer({ host: '127.0.0.1', port: 0, registry: new Registry(), notReady: async () => undefined, dashboard });
  const base = `http://127.0.0.1:${ops.port}`;
  try {
    await asks(node, Math.round(count / 2)); // activations, JIT
    const wallRatios: number[] = [];
    const cpuRatios: number[] = [];
    const closedWall: number[] = [];
    const openWall: number[] = [];
    let polls = 0;
    // Pairs side by side, in alternating order, so a machine getting busier or quieter weighs on both.
    for (let i = 0; i < pairs; i++) {
      const runOpen = async () => {
        const stop = openPage(base);
        await new Promise((r) => setTimeout(r, 1200)); // sampling and turn timing on before the round
        const r = await round(node, count);
        polls += await stop();
        dashboard.close(); // the page closed: sampling and turn timing off at once
        return r;
      };
      let closed;
      let open;
      if (i % 2 === 0) {
        closed = await round(node, count);
        open = await runOpen();
      } else {
        open = await runOpen();
        closed = await round(node, count);
      }
      wallRatios.push(open.wall / closed.wall);
      cpuRatios.push(open.cpu / closed.cpu);
      closedWall.push(closed.wall);
      openWall.push(open.wall);
      say(`pair ${i + 1}: closed ${Math.round(closed.wall)} asks/s, open ${Math.round(open.wall)} (${(open.wall / closed.wall).toFixed(3)}); per CPU-second ${(open.cpu / closed.cpu).toFixed(3)}`);
    }
    // The sample itself, timed alone: what the node spends once a second while watched.
    const samples = 200;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < samples; i++) await nodeReport(source);
    const cpuMs = (process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1000 / samples;
    const wallMs = (performance.now() - t0) / samples;
    return [
      { bench: 'dashboard', metric: `asks/s (${IN_FLIGHT} in flight), dashboard closed, median of ${pairs} rounds`, value: Math.round(median(closedWall)), unit: 'asks/s' },
      { bench: 'dashboard', metric: `asks/s, dashboard open (${polls} polls), median of ${pairs} rounds`, value: Math.round(median(openWall)), unit: 'asks/s', baseline: Math.round(median(closedWall)), ratio: median(wallRatios), target: '>= 0.98' },
      { bench: 'dashboard', metric: '  open / closed, asks per CPU-second, median of the pairs', value: Number(median(cpuRatios).toFixed(3)), unit: 'ratio', ratio: median(cpuRatios), target: '>= 0.98' },
      { bench: 'dashboard', metric: "one sample of this node's report (taken once a second while watched)", value: Number(wallMs.toFixed(2)), unit: 'ms', baseline: Number(cpuMs.toFixed(2)), target: 'CPU ms in baseline' },
    ];
  } finally {
    dashboard.close();
    await ops.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
