// `npm run bench -- carts` (`--quick` for a shorter run, `--shards=N` for other than one per core;
// diagnostics: `--realtime`, `--heap-sample`, below): AddItem through the carts gRPC gateway
// and the cart actors on PostgreSQL, side by side with a plain `pg` single-row upsert on the same
// database: spread over 10,000 carts, one hot cart, and Get latency at 50% of the spread load,
// beside the Get latency of a bare grpc-js server (carts-bare-server.ts) under the same schedule.
//
// The load comes from a child process (carts-load.ts) speaking gRPC straight over node:http2 with
// hand-made frames (carts-wire.ts), and Get latency from a second child that does nothing else, so
// neither the load generator's CPU nor its event loop is charged to the node being measured. The
// parent runs the node (gateway on its main thread, cart shards in worker threads), the direct
// CartClient run and the plain pg baseline, and reports where the machine's CPU went during the
// spread run (load generator, node, the rest: PostgreSQL and anything else on the machine), and the
// main thread's GC pauses during the 50% phase.
//
// Diagnostics, not figures of record: `--realtime` puts this process's threads and the two
// children (forked after, so they inherit it) under SCHED_RR (`chrt -r 10`; needs root or
// CAP_SYS_NICE), leaving PostgreSQL and the rest of the machine at normal priority, to show how much
// of the Get tail is waiting for a core. `--heap-sample` samples what the main thread allocates
// during the 50% phase (V8's sampling heap profiler, objects later collected included) and reports
// the share by origin: grpc-js, Node's HTTP/2 code, Troupe's own files. `--trace=R` runs the node
// with OpenTelemetry tracing at sampling ratio R, exporting to a counting sink (tracing.ts), to show
// what tracing costs a real service. `--load-curve` runs the AddItem open loop (with the Get prober)
// at 1/16, 1/8, 1/4 and 1/2 of the spread rate, on Troupe and on the bare server, and reports the
// Get p99, the CPU each server spends per call and the machine's CPU at each rate: what "50% load"
// leaves of this machine's cores, and how the Get tail grows with the load.

import * as grpc from '@grpc/grpc-js';
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Registry } from 'prom-client';
import { CartClient } from '../../actors/cart-client.js';
import { cartsGateway } from '../../gateways/carts/index.js';
import { signToken } from '../../gateways/carts/auth.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { rootLogger, startNode } from '../../runtime/index.js';
import { startBareCartServer, type BareItem } from './carts-bare-server.js';
import type { LoadCommand, LoadResult } from './carts-load.js';
import type { BenchOptions, BenchResult } from './run.js';
import { SpanSink } from './tracing.js';

const PG_URL = process.env.TROUPE_BENCH_POSTGRES ?? process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const SECRET = 'bench-secret-0123456789abcdef0123456789';
const CARTS = 10_000;
const CONCURRENCY = 256;
const POOL = 4;
/** HTTP/2 connections of the load generator, used round-robin. */
const SESSIONS = 4;
/** Gets per second of the latency prober. */
const PROBE_RATE = 200;
/** `--load-curve`: its rates, as divisors of the spread rate. */
const CURVE_DIVISORS = [16, 8, 4, 2] as const;
const SPREAD_STRIDE = 7919;

/** Runs `total` calls of `one(i)` with `concurrency` in flight; returns calls per second. */
async function closedLoop(total: number, concurrency: number, one: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await one(next++);
    }),
  );
  return total / ((performance.now() - started) / 1000);
}

// ---- the child processes (carts-load.ts) ----

/** One forked child (`role` names it in errors); one command at a time, answered over IPC. */
class LoadChild {
  readonly #child: ChildProcess;
  readonly #role: string;
  #exited: Error | undefined;

  constructor(role: string) {
    this.#role = role;
    this.#child = fork(fileURLToPath(new URL('./carts-load.js', import.meta.url)), [], {
      stdio: 'inherit',
      execArgv: [],
      env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' },
    });
    this.#child.on('exit', (code, signal) => {
      this.#exited = new Error(`carts bench ${this.#role} exited (code ${code}, signal ${signal})`);
    });
  }

  send<R = LoadResult>(cmd: LoadCommand): Promise<R> {
    return new Promise((resolve, reject) => {
      if (this.#exited) return reject(this.#exited);
      const onMessage = (m: unknown) => {
        this.#child.off('exit', onExit);
        const err = (m as { error?: string }).error;
        if (err) reject(new Error(`carts bench ${this.#role}: ${err}`));
        else resolve(m as R);
      };
      const onExit = () => {
        this.#child.off('message', onMessage);
        reject(this.#exited);
      };
      this.#child.once('message', onMessage);
      this.#child.once('exit', onExit);
      this.#child.send(cmd);
    });
  }

  async stop(): Promise<void> {
    if (this.#exited || this.#child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    if (this.#child.connected) this.#child.send({ cmd: 'stop' } satisfies LoadCommand);
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
  }
}

// ---- CPU accounting: this process (the node), its main thread, the whole machine ----

interface CpuMark {
  at: number;
  node: NodeJS.CpuUsage;
  /** The main thread's CPU in clock ticks (Linux /proc), where the gateway runs. */
  mainTicks: number | undefined;
  machineBusy: number;
  machineTotal: number;
}

/** utime + stime of this process's main thread, in clock ticks (usually 1/100 s), or undefined off Linux. */
function mainThreadTicks(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state (3), ..., utime (14), stime (15).
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function machineTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of cpus()) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}

function cpuMark(): CpuMark {
  const m = machineTimes();
  return { at: performance.now(), node: process.cpuUsage(), mainTicks: mainThreadTicks(), machineBusy: m.busy, machineTotal: m.total };
}

interface CpuSplit {
  wallMs: number;
  /** Each as % of one core over the wall time. */
  nodePct: number;
  mainThreadPct: number | undefined;
  machinePct: number;
}

function cpuSince(start: CpuMark): CpuSplit {
  const end = cpuMark();
  const wallMs = end.at - start.at;
  const used = process.cpuUsage(start.node);
  const cores = cpus().length;
  const totalDelta = end.machineTotal - start.machineTotal;
  return {
    wallMs,
    nodePct: ((used.user + used.system) / 1000 / wallMs) * 100,
    // Clock ticks are 10 ms on Linux (USER_HZ = 100).
    mainThreadPct: end.mainTicks === undefined || start.mainTicks === undefined ? undefined : (((end.mainTicks - start.mainTicks) * 10) / wallMs) * 100,
    machinePct: totalDelta > 0 ? ((end.machineBusy - start.machineBusy) / totalDelta) * cores * 100 : NaN,
  };
}

/** One point of `--load-curve`: an open-loop rate and what it cost. */
interface CurvePoint {
  rate: number;
  /** CPU of this process (the node, or the bare server) per AddItem, in microseconds. */
  serverUsPerCall: number;
  /** The load generator's CPU per AddItem, in microseconds. */
  loaderUsPerCall: number;
  machinePct: number;
  /** AddItem p99 from its scheduled send, and the prober's Get p99, in ms. */
  addItemP99Ms: number;
  getP99Ms: number;
  /** This process's main thread: event-loop delay p99 and GC pauses over the point, in ms. */
  loopDelayP99Ms: number;
  gcLongestMs: number;
  gcSharePct: number;
  /** Troupe only: the share of Gets its gateway answered within 5 ms (handler to reply). */
  gatewayWithin5msPct?: number;
}

/**
 * The AddItem open loop at each rate for `seconds` (the Get prober in its middle `seconds - 1`), with
 * the CPU each rate costs and the Get tail at that rate.
 */
async function loadCurve(
  loader: LoadChild,
  prober: LoadChild,
  rates: readonly number[],
  seconds: number,
  label: string,
  say: (msg: string) => void,
  /** `isAddItem` is false for the prober's Gets, so that only AddItems are counted as acknowledged. */
  account: (phase: string, r: LoadResult, isAddItem: boolean) => void,
  gatewayBuckets?: () => Promise<Map<number, number>>,
): Promise<CurvePoint[]> {
  const points: CurvePoint[] = [];
  for (const rate of rates) {
    const getsBefore = await gatewayBuckets?.();
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const stopGcWatch = watchGc();
    const mark = cpuMark();
    const [run, probe] = await Promise.all([
      loader.send({ cmd: 'open', rate, seconds, stride: 104_729 }),
      prober.send({ cmd: 'probe', rate: PROBE_RATE, seconds: seconds - 1, delayMs: 500 }),
    ]);
    const cpu = cpuSince(mark);
    loop.disable();
    const gc = stopGcWatch();
    const inGateway = getsBefore && gatewayBuckets ? gatewayGetSplit(getsBefore, await gatewayBuckets()) : undefined;
    account(`--load-curve, ${label}, open loop at ${rate} AddItem/s`, run, true);
    account(`--load-curve, ${label}, Get prober at ${rate} AddItem/s`, probe, false);
    const calls = Math.max(1, run.ok);
    const point = {
      rate,
      serverUsPerCall: ((cpu.nodePct / 100) * cpu.wallMs * 1000) / calls,
      loaderUsPerCall: (run.cpuMs * 1000) / calls,
      machinePct: cpu.machinePct,
      addItemP99Ms: run.p99Ms ?? NaN,
      getP99Ms: probe.p99Ms ?? NaN,
      // The histogram's figures are in ns, and include the 1 ms resolution of its timer.
      loopDelayP99Ms: loop.percentile(99) / 1e6,
      gcLongestMs: gc.longestMs,
      gcSharePct: (gc.totalMs / cpu.wallMs) * 100,
      gatewayWithin5msPct: inGateway === undefined ? undefined : inGateway.within5ms * 100,
    };
    say(
      `--load-curve, ${label} at ${rate} AddItem/s: CPU per call ${point.serverUsPerCall.toFixed(0)} µs (load generator ${point.loaderUsPerCall.toFixed(0)} µs), ` +
        `machine ${point.machinePct.toFixed(0)}%, AddItem p99 ${point.addItemP99Ms.toFixed(1)} ms, Get p99 ${point.getP99Ms.toFixed(2)} ms; ` +
        `main thread: event-loop delay p99 ${point.loopDelayP99Ms.toFixed(1)} ms, GC ${gc.pauses} pauses (longest ${gc.longestMs.toFixed(1)} ms, ${point.gcSharePct.toFixed(1)}% of the time)` +
        (point.gatewayWithin5msPct === undefined ? '' : `, gateway answered ${point.gatewayWithin5msPct.toFixed(1)}% of Gets within 5 ms`),
    );
    points.push(point);
  }
  return points;
}

// ---- the gateway's own timing of Get (its latency histogram), for what the node adds ----

/** Cumulative counts of the gateway's Get latency histogram by bucket bound (seconds), from handler entry to reply. */
async function gatewayGetBuckets(metrics: Registry): Promise<Map<number, number>> {
  const histogram = metrics.getSingleMetric('troupe_carts_rpc_seconds');
  const buckets = new Map<number, number>();
  if (!histogram) return buckets;
  for (const v of (await histogram.get()).values as { value: number; labels: Record<string, string | number | undefined>; metricName?: string }[]) {
    if (v.metricName !== 'troupe_carts_rpc_seconds_bucket' || v.labels['method'] !== 'cart.Cart/Get') continue;
    const le = String(v.labels['le']);
    buckets.set(le === '+Inf' ? Infinity : Number(le), v.value);
  }
  return buckets;
}

/** Of the Gets timed between two readings: how many, the share within 5 ms, the bucket bound that holds the p99. */
function gatewayGetSplit(before: Map<number, number>, after: Map<number, number>): { n: number; within5ms: number; p99Bound: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = (le: number) => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const n = delta(Infinity);
  const p99Bound = bounds.find((le) => delta(le) >= 0.99 * n) ?? Infinity;
  return { n, within5ms: n > 0 ? delta(0.005) / n : NaN, p99Bound: p99Bound * 1000 };
}

// ---- the main thread's GC pauses over a phase ----

/** Records this thread's GC pauses until stopped: how many, their total and the longest, in ms. */
function watchGc(): () => { pauses: number; totalMs: number; longestMs: number; byKind: string } {
  let pauses = 0;
  let totalMs = 0;
  let longestMs = 0;
  const kinds = new Map<string, { n: number; ms: number; max: number }>();
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      pauses++;
      totalMs += e.duration;
      longestMs = Math.max(longestMs, e.duration);
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      const k = kinds.get(kind) ?? { n: 0, ms: 0, max: 0 };
      k.n++;
      k.ms += e.duration;
      k.max = Math.max(k.max, e.duration);
      kinds.set(kind, k);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    observer.disconnect();
    const byKind = [...kinds].map(([kind, k]) => `${kind} ${k.n} (${k.ms.toFixed(0)} ms, longest ${k.max.toFixed(1)})`).join(', ');
    return { pauses, totalMs, longestMs, byKind };
  };
}

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental marking',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};

// ---- --heap-sample: what the main thread allocates, by origin ----

interface SamplingNode {
  callFrame: { url: string };
  selfSize: number;
  children: SamplingNode[];
}

/**
 * Starts V8's sampling heap profiler on this thread (objects collected later are counted too);
 * the returned function stops it and gives the bytes sampled, in all and by origin: each
 * allocation is charged to the innermost frame of a known origin on its stack (builtins and
 * allocations made straight from the event loop to 'other'), so the shares add up to 100%.
 */
async function sampleAllocations(): Promise<() => Promise<{ bytes: number; byOrigin: Record<string, number> }>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}) =>
    new Promise<any>((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return async () => {
    const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } };
    session.disconnect();
    const origins: [string, (url: string) => boolean][] = [
      ['grpc-js', (u) => u.includes('/node_modules/@grpc/')],
      ["Node's HTTP/2 and streams", (u) => u.startsWith('node:internal/http2') || u.startsWith('node:internal/streams') || u === 'node:events'],
      ["Troupe's own files", (u) => u.includes('/dist/') && !u.includes('/node_modules/')],
    ];
    const byOrigin: Record<string, number> = Object.fromEntries([...origins.map(([name]) => [name, 0]), ['other', 0]]);
    let bytes = 0;
    const walk = (n: SamplingNode, charged: string) => {
      const here = origins.find(([, matches]) => matches(n.callFrame.url))?.[0] ?? charged;
      bytes += n.selfSize;
      byOrigin[here]! += n.selfSize;
      for (const c of n.children) walk(c, here);
    };
    walk(profile.head, 'other');
    return { bytes, byOrigin };
  };
}

// ---- reporting ----

const okRate = (r: LoadResult) => r.ok / (r.wallMs / 1000);
const failed = (r: LoadResult) => Object.values(r.failures).reduce((a, b) => a + b, 0);

function describe(name: string, r: LoadResult): string {
  const f = failed(r) ? `, failures ${JSON.stringify(r.failures)}` : '';
  const lat = r.p99Ms === undefined ? '' : `, latency p50 ${r.p50Ms!.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} max ${r.maxMs!.toFixed(1)} ms`;
  const lag = r.sendLagP99Ms === undefined ? '' : `, send lag p99 ${r.sendLagP99Ms.toFixed(2)} max ${r.sendLagMaxMs!.toFixed(1)} ms`;
  return `${name}: ${r.ok}/${r.calls} OK in ${(r.wallMs / 1000).toFixed(2)} s (${Math.round(okRate(r))}/s), child CPU ${((r.cpuMs / r.wallMs) * 100).toFixed(0)}%${lat}${lag}${f}`;
}

export async function run(opts: BenchOptions): Promise<BenchResult[]> {
  const quick = opts.quick;
  const spreadCalls = quick ? 10_000 : 40_000;
  const hotCalls = quick ? 5_000 : 20_000;
  const loadSeconds = quick ? 4 : 10;
  const seqCalls = quick ? 1_000 : 3_000;
  const say = (msg: string) => {
    if (!opts.json) process.stderr.write(`carts: ${msg}\n`);
  };
  const load1 = loadavg()[0]!;
  const schema = `carts_bench_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-carts-bench-'));
  const shardsArg = opts.args.find((a) => a.startsWith('--shards='));
  const shards = shardsArg === undefined ? Math.max(1, Math.min(availableParallelism(), 4)) : Number(shardsArg.slice('--shards='.length));
  if (!Number.isInteger(shards) || shards < 1 || shards > 256) throw new Error(`--shards must be a whole number from 1 to 256, got ${shardsArg}`);
  const realtime = opts.args.includes('--realtime');
  const heapSample = opts.args.includes('--heap-sample');
  const withCurve = opts.args.includes('--load-curve');
  const traceArg = opts.args.find((a) => a.startsWith('--trace='));
  const traceRatio = traceArg === undefined ? undefined : Number(traceArg.slice('--trace='.length));
  if (traceRatio !== undefined && !(traceRatio >= 0 && traceRatio <= 1)) throw new Error(`--trace takes a sampling ratio from 0 to 1, got ${traceArg}`);
  const sink = traceRatio === undefined ? undefined : await SpanSink.start();
  const settings = { 'carts-port': 0, postgres: PG_URL, 'carts-schema': schema, 'carts-secret': SECRET, 'carts-pool-size': POOL };
  const log = rootLogger().child({ bench: 'carts' });
  const node = await startNode({
    dataDir,
    actorModules: cartsGateway.actorModules,
    shards,
    settings,
    log,
    tracing: sink === undefined ? undefined : { endpoint: sink.endpoint, sampleRatio: traceRatio! },
  });
  if (sink) say(`--trace: tracing at ratio ${traceRatio}, spans to a counting sink (a diagnostic, not a figure of record)`);
  const metrics = new Registry();
  const gateway = await cartsGateway.start({ system: node, membership: node.membership, settings, metrics, log, dataDir, host: '127.0.0.1' });
  const port = gateway.ports['grpc']!;
  if (realtime) {
    try {
      execFileSync('chrt', ['--all-tasks', '--rr', '--pid', '10', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      await gateway.stop();
      await node.stop();
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`--realtime: chrt could not set SCHED_RR on this process (it needs root or CAP_SYS_NICE): ${(err as Error).message}`);
    }
    say('--realtime: this process and its children run under SCHED_RR priority 10 (a diagnostic, not a figure of record)');
  }
  const address = `127.0.0.1:${port}`;
  const user = randomUUID();
  const token = signToken(SECRET, user, { roles: ['admin'], ttlSeconds: 3600 });
  const baselinePool = new pg.Pool({ connectionString: PG_URL, max: shards * POOL, options: `-c search_path=${schema}` });
  const rows: BenchResult[] = [];
  const row = (r: Omit<BenchResult, 'bench'>) => rows.push({ bench: 'carts', ...r });
  let loader: LoadChild | undefined;
  let prober: LoadChild | undefined;
  try {
    // Setup only (ten calls, not measured): the items, through grpc-js, then that client is closed.
    const admin = new (serviceOf('item', 'Item'))(address, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const catalogue = await Promise.all(
      Array.from(
        { length: 10 },
        (_, i) =>
          new Promise<BareItem>((resolve, reject) =>
            (admin as any).Create({ name: `bench-${i}`, price: 1.25 + i }, md, (err: Error | null, r: BareItem) => (err ? reject(err) : resolve(r))),
          ),
      ),
    );
    const items = catalogue.map((i) => i.uuid);
    admin.close();
    const carts = Array.from({ length: CARTS }, () => randomUUID());

    loader = new LoadChild('load generator');
    prober = new LoadChild('Get prober');
    await Promise.all([
      loader.send({ cmd: 'setup', address, token, items, carts, sessions: SESSIONS }),
      prober.send({ cmd: 'setup', address, token, items, carts, sessions: 1 }),
    ]);
    let acknowledged = 0; // AddItems answered OK, all phases: what the store must hold
    let grpcFailures = 0;
    const failureRows: BenchResult[] = [];
    const account = (phase: string, r: LoadResult, addItems: boolean) => {
      say(describe(phase, r));
      if (addItems) acknowledged += r.ok;
      grpcFailures += failed(r);
      for (const [code, n] of Object.entries(r.failures)) failureRows.push({ bench: 'carts', metric: `failed calls: ${phase}, ${code}`, value: n, unit: 'calls' });
    };

    // Warm-up: JIT, connections, and every cart once (so the spread run measures steady state).
    account('warm-up', await loader.send({ cmd: 'closed', total: CARTS, concurrency: CONCURRENCY, stride: 1 }), true);
    // The prober's code warm too (every cart exists now): half a second of Gets, not reported.
    account('Get prober warm-up', await prober.send({ cmd: 'probe', rate: 1000, seconds: 0.5, delayMs: 0 }), false);

    const mark = cpuMark();
    const spreadRun = await loader.send({ cmd: 'closed', total: spreadCalls, concurrency: CONCURRENCY, stride: SPREAD_STRIDE });
    const cpu = cpuSince(mark);
    account('spread', spreadRun, true);
    const spread = okRate(spreadRun);
    const loaderPct = (spreadRun.cpuMs / spreadRun.wallMs) * 100;
    say(
      `CPU over the spread run (% of one core, ${cpus().length} cores): load generator ${loaderPct.toFixed(0)}%, node ${cpu.nodePct.toFixed(0)}%` +
        (cpu.mainThreadPct === undefined ? '' : ` (main thread ${cpu.mainThreadPct.toFixed(0)}%)`) +
        `, machine ${cpu.machinePct.toFixed(0)}%`,
    );

    // The same operations straight into the cart actors (no gRPC): what the actor layer and the store cost.
    const direct = new CartClient(node);
    const caller = { user, admin: false };
    const directSpread = await closedLoop(spreadCalls, CONCURRENCY, (i) =>
      direct.run(carts[(i * SPREAD_STRIDE) % CARTS]!, { kind: 'addItem', caller, itemUuid: items[i % items.length]!, quantity: 1 }),
    );
    acknowledged += spreadCalls;
    say(`spread, CartClient without gRPC: ${Math.round(directSpread)}/s`);

    // Baseline: the same effect as one AddItem, as one autocommitted single-row upsert.
    await baselinePool.query('CREATE TABLE bench_cart_entry (cart_uuid uuid, item_uuid uuid, quantity integer NOT NULL, PRIMARY KEY (cart_uuid, item_uuid))');
    const upsert = (cart: string, i: number) =>
      baselinePool.query({
        name: 'bench-upsert',
        text: 'INSERT INTO bench_cart_entry VALUES ($1, $2, $3) ON CONFLICT (cart_uuid, item_uuid) DO UPDATE SET quantity = bench_cart_entry.quantity + EXCLUDED.quantity',
        values: [cart, items[i % items.length]!, 1],
      });
    let k = 0;
    const seqStarted = performance.now();
    while (k < seqCalls) await upsert(carts[k % CARTS]!, k++);
    const sequential = seqCalls / ((performance.now() - seqStarted) / 1000);
    const baseSpread = await closedLoop(spreadCalls, CONCURRENCY, (i) => upsert(carts[(i * SPREAD_STRIDE) % CARTS]!, i));
    say(`plain pg upsert: sequential ${Math.round(sequential)}/s, ${CONCURRENCY} in flight ${Math.round(baseSpread)}/s`);

    row({ metric: `AddItem/s over ${CARTS.toLocaleString('en-US')} carts (gRPC, ${shards} shards, PostgreSQL)`, value: spread, unit: 'calls/s', baseline: baseSpread, ratio: spread / baseSpread, target: '>= 5,000' });
    row({ metric: `AddItem/s over ${CARTS.toLocaleString('en-US')} carts, cart actors without gRPC`, value: directSpread, unit: 'calls/s', baseline: baseSpread, ratio: directSpread / baseSpread });
    row({ metric: 'baseline: sequential single-row upsert loop (1 connection)', value: sequential, unit: 'rows/s' });
    row({ metric: 'CPU, spread run: load generator (child process)', value: loaderPct, unit: '% of a core' });
    row({ metric: 'CPU, spread run: node (parent: gateway, shards, pg clients)', value: cpu.nodePct, unit: '% of a core' });
    if (cpu.mainThreadPct !== undefined) row({ metric: "CPU, spread run:   of which the node's main thread (gateway)", value: cpu.mainThreadPct, unit: '% of a core' });
    row({ metric: `CPU, spread run: rest of the machine (PostgreSQL, other work; ${cpus().length} cores)`, value: Math.max(0, cpu.machinePct - cpu.nodePct - loaderPct), unit: '% of a core' });

    const hot = randomUUID();
    account('hot cart, first write', await loader.send({ cmd: 'closed', total: 1, concurrency: 1, stride: 1, hot }), true);
    const hotRun = await loader.send({ cmd: 'closed', total: hotCalls, concurrency: CONCURRENCY, stride: 1, hot });
    account('hot cart', hotRun, true);
    const hotRate = okRate(hotRun);
    const baseHot = await closedLoop(hotCalls, CONCURRENCY, () => upsert(hot, 0));
    row({ metric: 'AddItem/s to one hot cart', value: hotRate, unit: 'calls/s', baseline: baseHot, ratio: hotRate / baseHot, target: '>= 2,000' });

    // Get latency while AddItem runs open-loop at half the spread rate: the load runs half a second
    // before and after the prober's window, so the prober sees the load's steady state only.
    const rate = spread / 2;
    const curveRates = CURVE_DIVISORS.map((d) => Math.round(spread / d));
    const curveSeconds = quick ? 3 : 5;
    let troupeCurve: CurvePoint[] = [];
    if (withCurve) troupeCurve = await loadCurve(loader, prober, curveRates, curveSeconds, 'Troupe', say, account, () => gatewayGetBuckets(metrics));
    const getsBefore = await gatewayGetBuckets(metrics);
    const stopSampling = heapSample ? await sampleAllocations() : undefined;
    const stopGcWatch = watchGc();
    const openMark = cpuMark();
    const [openRun, probeRun] = await Promise.all([
      loader.send({ cmd: 'open', rate, seconds: loadSeconds + 1, stride: 104_729 }),
      prober.send({ cmd: 'probe', rate: PROBE_RATE, seconds: loadSeconds, delayMs: 500 }),
    ]);
    const openCpu = cpuSince(openMark);
    const gc = stopGcWatch();
    say(`main thread GC at 50% load by kind: ${gc.byKind}`);
    const allocations = await stopSampling?.();
    const inGateway = gatewayGetSplit(getsBefore, await gatewayGetBuckets(metrics));
    account(`open loop at ${Math.round(rate)} AddItem/s`, openRun, true);
    account('Get prober', probeRun, false);

    // Side by side, the same open-loop rate and the same prober against the plain way of serving
    // these calls on this machine: a bare grpc-js server in this process's main thread, AddItem as
    // one pg upsert, Get from a Map (carts-bare-server.ts), warmed with every cart first.
    const bare = await startBareCartServer(baselinePool, catalogue);
    let bareOpen: LoadResult;
    let bareProbe: LoadResult;
    let bareCpu: CpuSplit;
    let bareCurve: CurvePoint[] = [];
    try {
      await Promise.all([
        loader.send({ cmd: 'setup', address: bare.address, token, items, carts, sessions: SESSIONS }),
        prober.send({ cmd: 'setup', address: bare.address, token, items, carts, sessions: 1 }),
      ]);
      account('bare grpc-js server, warm-up', await loader.send({ cmd: 'closed', total: CARTS, concurrency: CONCURRENCY, stride: 1 }), false);
      if (withCurve) bareCurve = await loadCurve(loader, prober, curveRates, curveSeconds, 'bare grpc-js server', say, (phase, r) => account(phase, r, false));
      const bareMark = cpuMark();
      [bareOpen, bareProbe] = await Promise.all([
        loader.send({ cmd: 'open', rate, seconds: loadSeconds + 1, stride: 104_729 }),
        prober.send({ cmd: 'probe', rate: PROBE_RATE, seconds: loadSeconds, delayMs: 500 }),
      ]);
      bareCpu = cpuSince(bareMark);
    } finally {
      await bare.stop();
    }
    account(`bare grpc-js server, open loop at ${Math.round(rate)} AddItem/s`, bareOpen, false);
    account('bare grpc-js server, Get prober', bareProbe, false);
    const pct = (r: LoadResult) => ((r.cpuMs / r.wallMs) * 100).toFixed(0);
    say(`CPU at 50% load (% of one core): load generator ${pct(openRun)}%, prober ${pct(probeRun)}%, node ${openCpu.nodePct.toFixed(0)}%, machine ${openCpu.machinePct.toFixed(0)}%`);
    say(`CPU at the same load on the bare server: load generator ${pct(bareOpen)}%, prober ${pct(bareProbe)}%, bench process ${bareCpu.nodePct.toFixed(0)}%, machine ${bareCpu.machinePct.toFixed(0)}%`);
    const achieved = okRate(openRun);
    // The baseline column of these rows is the bare grpc-js server under the same schedule.
    const vsBare = (ours: number | undefined, bare: number | undefined) => ({ value: ours ?? NaN, baseline: bare ?? NaN, ratio: (ours ?? NaN) / (bare ?? NaN) });
    row({ metric: `p99 Get latency at ${Math.round(achieved)} AddItem/s (50% load, ${probeRun.ok} Gets) vs bare grpc-js`, ...vsBare(probeRun.p99Ms, bareProbe.p99Ms), unit: 'ms', target: '<= 5 ms' });
    row({ metric: 'p50 Get latency at 50% load vs bare grpc-js', ...vsBare(probeRun.p50Ms, bareProbe.p50Ms), unit: 'ms' });
    row({ metric: `Gets timed inside the gateway (handler to reply, its histogram): within 5 ms (p99 <= ${inGateway.p99Bound} ms)`, value: inGateway.within5ms * 100, unit: '% of Gets' });
    row({ metric: "Get prober's own send lag p99 (its lateness against its schedule)", ...vsBare(probeRun.sendLagP99Ms, bareProbe.sendLagP99Ms), unit: 'ms' });
    row({ metric: `main thread's GC pauses at 50% load: ${gc.pauses}, longest ${gc.longestMs.toFixed(1)} ms; share of the phase's time`, value: (gc.totalMs / openCpu.wallMs) * 100, unit: '% of wall time' });
    if (openCpu.mainThreadPct !== undefined) row({ metric: "CPU at 50% load: the node's main thread (gateway)", value: openCpu.mainThreadPct, unit: '% of a core' });
    if (allocations) {
      const calls = openRun.calls + probeRun.calls;
      row({ metric: `--heap-sample: main thread allocations at 50% load, per call (${calls} calls)`, value: allocations.bytes / calls / 1024, unit: 'KiB' });
      for (const [origin, bytes] of Object.entries(allocations.byOrigin)) row({ metric: `--heap-sample:   made by ${origin}`, value: (bytes / allocations.bytes) * 100, unit: '% of bytes' });
    }
    row({ metric: `AddItem/s achieved open-loop (scheduled ${Math.round(rate)}/s)`, value: achieved, unit: 'calls/s', baseline: rate, ratio: achieved / rate });
    row({ metric: `CPU at 50% load: whole machine (${cpus().length} cores; node ${Math.round(openCpu.nodePct)}%, bare server ${Math.round(bareCpu.nodePct)}%)`, ...vsBare(openCpu.machinePct, bareCpu.machinePct), unit: '% of a core' });
    row({ metric: 'p99 AddItem latency at 50% load (from its scheduled send) vs bare grpc-js', ...vsBare(openRun.p99Ms, bareOpen.p99Ms), unit: 'ms' });
    troupeCurve.forEach((t, i) => {
      const b = bareCurve[i];
      const at = `--load-curve: ${t.rate} AddItem/s (1/${CURVE_DIVISORS[i]} of spread)`;
      row({ metric: `${at}, Get p99 vs bare grpc-js`, ...vsBare(t.getP99Ms, b?.getP99Ms), unit: 'ms' });
      row({ metric: `${at}, server CPU per call vs bare grpc-js`, ...vsBare(t.serverUsPerCall, b?.serverUsPerCall), unit: 'µs' });
      row({ metric: `${at}, load generator CPU per call`, ...vsBare(t.loaderUsPerCall, b?.loaderUsPerCall), unit: 'µs' });
      row({ metric: `${at}, whole machine's CPU`, ...vsBare(t.machinePct, b?.machinePct), unit: '% of a core' });
    });

    // Every acknowledged AddItem (quantity 1) must be in the store: a check on the figures above.
    const stored = Number((await baselinePool.query<{ n: string }>('SELECT coalesce(sum(quantity), 0) AS n FROM cart_entry')).rows[0]!.n);
    row({ metric: 'AddItems in the store / acknowledged (all phases)', value: stored, unit: 'quantity', baseline: acknowledged, ratio: stored / acknowledged });
    row({ metric: 'failed gRPC calls (all phases)', value: grpcFailures, unit: 'calls' });
    rows.push(...failureRows);
    row({ metric: 'load average (1 min) at the start', value: load1, unit: '' });
  } finally {
    await Promise.all([loader?.stop(), prober?.stop()]);
    await gateway.stop();
    await node.stop();
    await baselinePool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await baselinePool.end();
    rmSync(dataDir, { recursive: true, force: true });
    if (sink) {
      row({ metric: `--trace=${traceRatio}: spans exported`, value: await sink.count(), unit: 'spans' });
      sink.stop();
    }
  }
  return rows;
}
