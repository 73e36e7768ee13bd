// `npm run bench -- presence`: how many presence clients one node keeps on a 1 s ± 100 ms (p99)
// Ping schedule, with the load generator in a child process on the same machine; the node's CPU
// per 1,000 clients and the StatusReader's latency at that load.
// Options (after the name): --max=N (stop stepping at N clients), --step=N, --shards=W, --cluster
// (the node joins a cluster of its own in the local Redis, so that every Pong's new state is also
// written to its partition's changelog there before the user actor's turn is acknowledged).

import { fork, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { StatusReaderConnection } from '../../gateways/presence/client.js';
import { PresenceSimulation, type SimulationStats } from '../../gateways/presence/simulation.js';
import { startPresenceNode, tempDir } from '../gateways/presence/helpers.js';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from '../cluster/helpers.js';
import type { BenchOptions, BenchResult } from './run.js';

const LOADGEN_ENV = 'TROUPE_PRESENCE_LOADGEN';
const TOLERANCE_MS = 100;

type LoadgenRequest = { cmd: 'grow'; to: number; rampMs: number } | { cmd: 'stats'; reset: boolean } | { cmd: 'stop' };
type LoadgenReply = { stats: SimulationStats; cpuMs: number; wallMs: number; loopDelayP99Ms: number; loopDelayMaxMs: number } | { grown: number };

/** The child: holds the simulated clients and answers the parent's requests over IPC. */
async function loadGenerator(address: string): Promise<void> {
  const sim = new PresenceSimulation({ address, clients: 0, idPrefix: 'bench-', clientsPerConnection: 1000 });
  let cpu = process.cpuUsage();
  let wall = performance.now();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  process.on('message', async (req: LoadgenRequest) => {
    if (req.cmd === 'grow') {
      sim.add(req.to - sim.clients.length);
      await sim.start(req.rampMs);
      process.send!({ grown: sim.clients.length } satisfies LoadgenReply);
    } else if (req.cmd === 'stats') {
      const used = process.cpuUsage(cpu);
      const reply: LoadgenReply = { stats: sim.stats(), cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - wall, ...loopDelay(loop) };
      if (req.reset) {
        loop.reset();
        sim.resetStats();
        cpu = process.cpuUsage();
        wall = performance.now();
      }
      process.send!(reply);
    } else {
      sim.stop();
      setTimeout(() => process.exit(0), 200);
    }
  });
}

if (process.env[LOADGEN_ENV] && process.send) void loadGenerator(process.env[LOADGEN_ENV]!);

function loopDelay(h: IntervalHistogram): { loopDelayP99Ms: number; loopDelayMaxMs: number } {
  return { loopDelayP99Ms: h.percentile(99) / 1e6, loopDelayMaxMs: h.max / 1e6 };
}

function request<R extends LoadgenReply>(child: ChildProcess, req: LoadgenRequest): Promise<R> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as R));
    child.send(req);
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : NaN;
}

interface Step {
  clients: number;
  ok: boolean;
  stats: SimulationStats;
  nodeCpuPct: number;
  loadgenCpuPct: number;
  readerP50Ms: number;
  readerP99Ms: number;
  counted: number;
  /** --cluster: the Redis server's CPU over the window (all of its clients, this node's by far the most). */
  redisCpuPct?: number;
}

/** The Redis server's CPU seconds so far (user + system), from INFO. */
async function redisCpuSeconds(redis: ReturnType<typeof newRedis>): Promise<number> {
  const info = await redis.info('cpu');
  const read = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return read('used_cpu_user') + read('used_cpu_sys');
}

/** `--name=N` (the bench runner keeps `--` arguments whole and moves bare values elsewhere). */
function flag(args: string[], name: string): number | undefined {
  const arg = args.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? undefined : Number(arg.slice(name.length + 3));
}

export async function run(opts: BenchOptions): Promise<BenchResult[]> {
  const step = flag(opts.args, 'step') ?? (opts.quick ? 1000 : 5000);
  const max = flag(opts.args, 'max') ?? (opts.quick ? 2000 : 40_000);
  const shards = flag(opts.args, 'shards') ?? 2;
  const measureMs = opts.quick ? 4000 : 10_000;
  const log = (msg: string) => {
    if (!opts.json) process.stderr.write(msg + '\n');
  };

  const cluster = opts.args.includes('--cluster') ? uniqueCluster() : undefined;
  const presence = await startPresenceNode({
    dataDir: tempDir('troupe-bench-presence-'),
    shards,
    settings: { 'presence-max-clients': 200_000 },
    cluster: cluster === undefined ? undefined : { redis: REDIS_URL, name: cluster, host: '127.0.0.1', port: 0 },
  });
  if (cluster) log(`--cluster: one node in the cluster ${cluster} of ${REDIS_URL}; every Pong's state also goes to the Redis changelog`);
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, [LOADGEN_ENV]: presence.address, TROUPE_LOG_LEVEL: 'warn' }, stdio: 'inherit' });
  const reader = new StatusReaderConnection(presence.address);
  const redis = cluster === undefined ? undefined : newRedis();
  const steps: Step[] = [];
  try {
    for (let n = Math.min(step, max); n <= max; n += step) {
      const rampMs = Math.max(1000, step / 5);
      log(`growing to ${n} clients...`);
      await request(child, { cmd: 'grow', to: n, rampMs });
      // Settle: new streams get their first Pings; earlier reconnections are over.
      await new Promise((r) => setTimeout(r, 3000));
      await request(child, { cmd: 'stats', reset: true });
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      const cpu0 = process.cpuUsage();
      const redisCpu0 = redis === undefined ? undefined : await redisCpuSeconds(redis);
      const t0 = performance.now();
      const latencies: number[] = [];
      let counted = 0;
      while (performance.now() - t0 < measureMs) {
        const q0 = performance.now();
        counted = await reader.fetchOnlineUsers();
        latencies.push(performance.now() - q0);
        await new Promise((r) => setTimeout(r, 250));
      }
      const used = process.cpuUsage(cpu0);
      const wall = performance.now() - t0;
      const redisCpu = redis === undefined || redisCpu0 === undefined ? undefined : ((await redisCpuSeconds(redis)) - redisCpu0) / (wall / 1000);
      loop.disable();
      const gen = await request<{ stats: SimulationStats; cpuMs: number; wallMs: number; loopDelayP99Ms: number; loopDelayMaxMs: number }>(child, { cmd: 'stats', reset: false });
      const nodeLoop = loopDelay(loop);
      latencies.sort((a, b) => a - b);
      const s = gen.stats;
      // Every client connected, and about one Ping gap measured per client per second of the window.
      const expectedGaps = n * (gen.wallMs / 1000) * 0.9;
      const ok = s.connected === n && s.deviationP99Ms <= TOLERANCE_MS && s.gaps >= expectedGaps;
      const result: Step = {
        clients: n,
        ok,
        stats: s,
        nodeCpuPct: ((used.user + used.system) / 1000 / wall) * 100,
        loadgenCpuPct: (gen.cpuMs / gen.wallMs) * 100,
        readerP50Ms: quantile(latencies, 0.5),
        readerP99Ms: quantile(latencies, 0.99),
        counted,
        redisCpuPct: redisCpu === undefined ? undefined : redisCpu * 100,
      };
      steps.push(result);
      log(
        `${n} clients: ${ok ? 'ok' : 'MISSED'}; connected ${s.connected}, ping gap deviation p50 ${s.deviationP50Ms} ms p99 ${s.deviationP99Ms} ms max ${Math.round(s.deviationMaxMs)} ms, ` +
          `gaps ${s.gaps}/${Math.round(expectedGaps / 0.9)}; node CPU ${result.nodeCpuPct.toFixed(0)}%, load generator CPU ${result.loadgenCpuPct.toFixed(0)}%; ` +
          `StatusReader p50 ${result.readerP50Ms.toFixed(1)} ms p99 ${result.readerP99Ms.toFixed(1)} ms, count ${counted}; ` +
          (result.redisCpuPct === undefined ? '' : `Redis CPU ${result.redisCpuPct.toFixed(0)}%; `) +
          `event loop delay p99/max: node ${nodeLoop.loopDelayP99Ms.toFixed(0)}/${nodeLoop.loopDelayMaxMs.toFixed(0)} ms, load generator ${gen.loopDelayP99Ms.toFixed(0)}/${gen.loopDelayMaxMs.toFixed(0)} ms`,
      );
      if (!ok) break;
    }
  } finally {
    child.send({ cmd: 'stop' } satisfies LoadgenRequest);
    await new Promise((r) => child.once('exit', r));
    reader.close();
    await presence.stop();
    if (redis && cluster) {
      await dropCluster(redis, cluster);
      redis.disconnect();
    }
  }

  const best = [...steps].reverse().find((s) => s.ok);
  const rows: BenchResult[] = [
    { bench: 'presence', metric: `clients on schedule (1 s ± 100 ms at p99), highest step passed${cluster ? ' (--cluster: one node, changelog in Redis)' : ''}`, value: best?.clients ?? 0, unit: 'clients', target: '>= 20,000' },
  ];
  if (best) {
    rows.push(
      { bench: 'presence', metric: 'ping interval deviation p99 at that load', value: best.stats.deviationP99Ms, unit: 'ms', target: '<= 100' },
      { bench: 'presence', metric: 'node CPU per 1,000 clients (gateway + shards)', value: best.nodeCpuPct / (best.clients / 1000), unit: '% of a core' },
      { bench: 'presence', metric: 'load generator CPU per 1,000 clients', value: best.loadgenCpuPct / (best.clients / 1000), unit: '% of a core' },
      ...(best.redisCpuPct === undefined ? [] : [{ bench: 'presence', metric: '--cluster: Redis CPU per 1,000 clients (changelog writes)', value: best.redisCpuPct / (best.clients / 1000), unit: '% of a core' }]),
      { bench: 'presence', metric: 'StatusReader latency p50 at that load', value: best.readerP50Ms, unit: 'ms' },
      { bench: 'presence', metric: 'StatusReader latency p99 at that load', value: best.readerP99Ms, unit: 'ms' },
      { bench: 'presence', metric: 'StatusReader count at that load', value: best.counted, unit: 'users', baseline: best.clients, ratio: best.counted / best.clients },
    );
  }
  const failed = steps.find((s) => !s.ok);
  if (failed) {
    rows.push({ bench: 'presence', metric: `first step missed (${failed.clients} clients): deviation p99`, value: failed.stats.deviationP99Ms, unit: 'ms' });
  }
  return rows;
}
