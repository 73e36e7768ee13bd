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

export async function run(o: BenchOptions): Promise<BenchResult[]> {
  const count = o.quick ? 100_000 : 400_000;
  const pairs = o.quick ? 2 : 4;
  const say = (msg: string) => process.stderr.write(`  dashboard: ${msg}\n`);
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-bench-dashboard-'));
  const node = await startNode({ dataDir, actorModules: [CELL], askTimeoutMs: 60_000 });
  const dashboard = createDashboard({ node, inspector: 'read-only', services: () => [], ports: () => ({ ops: ops.port }), notReady: async () => undefined });
  const ops = await startOpsServer({ host: '127.0.0.1', port: 0, registry: new Registry(), notReady: async () => undefined, dashboard });
  const base = `http://127.0.0.1:${ops.port}`;
  try {
    await asks(node, Math.round(count / 4)); // activations, JIT
    let closedSum = 0;
    let openSum = 0;
    let polls = 0;
    // Alternating, so a machine that gets busier or quieter during the run weighs on both alike.
    for (let i = 0; i < pairs; i++) {
      const closed = await asks(node, count);
      const stop = openPage(base);
      await new Promise((r) => setTimeout(r, 1200)); // sampling and turn timing on before the round
      const open = await asks(node, count);
      polls += await stop();
      dashboard.close(); // the page closed: sampling and turn timing off at once
      say(`round ${i + 1}: closed ${Math.round(closed)} asks/s, open ${Math.round(open)} asks/s (${(open / closed).toFixed(3)})`);
      closedSum += closed;
      openSum += open;
    }
    const closed = closedSum / pairs;
    const open = openSum / pairs;
    return [
      { bench: 'dashboard', metric: `asks/s (${IN_FLIGHT} in flight), dashboard closed`, value: Math.round(closed), unit: 'asks/s' },
      { bench: 'dashboard', metric: `asks/s, dashboard open (${polls} polls of the page's two calls)`, value: Math.round(open), unit: 'asks/s', baseline: Math.round(closed), ratio: open / closed, target: '>= 0.98' },
    ];
  } finally {
    dashboard.close();
    await ops.close();
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
