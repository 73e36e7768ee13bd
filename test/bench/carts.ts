// `npm run bench -- carts`: AddItem through the gRPC gateway and the cart actors on PostgreSQL,
// side by side with a plain `pg` single-row upsert loop on the same database:
// spread over 10,000 carts, one hot cart, and Get latency at 50% of the spread load.

import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pg from 'pg';
import { Registry } from 'prom-client';
import { CartClient } from '../../actors/cart-client.js';
import { cartsGateway } from '../../gateways/carts/index.js';
import { signToken } from '../../gateways/carts/auth.js';
import { serviceOf } from '../../gateways/carts/protos.js';
import { rootLogger, startNode } from '../../runtime/index.js';
import type { BenchOptions, BenchResult } from './run.js';

const PG_URL = process.env.TROUPE_BENCH_POSTGRES ?? process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const SECRET = 'bench-secret';
const CARTS = 10_000;
const CONCURRENCY = 256;
const POOL = 4;

type Unary = (req: unknown) => Promise<unknown>;

function unary(client: grpc.Client, method: string, token: string): Unary {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return (req) =>
    new Promise((resolve, reject) => (client as any)[method](req, md, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))));
}

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

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

// ---- the load generator: a worker thread with its own gRPC clients, so the clients' CPU is
// not charged to the gateway's event loop (real clients run elsewhere) ----

interface ClientSetup {
  port: number;
  token: string;
  items: string[];
  carts: string[];
}

type Phase =
  | { kind: 'closed'; total: number; concurrency: number; hot?: string; stride: number }
  | { kind: 'open'; rate: number; seconds: number };

interface PhaseResult {
  rate: number;
  latencies?: number[];
  sent?: number;
  failures: number;
}

async function clientThread(setup: ClientSetup): Promise<void> {
  const clients = Array.from({ length: 4 }, () => new (serviceOf('cart', 'Cart'))(`127.0.0.1:${setup.port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const addItem = clients.map((c) => unary(c, 'AddItem', setup.token));
  const getCart = clients.map((c) => unary(c, 'Get', setup.token));
  const { items, carts } = setup;
  const add = (cart: string, i: number) => addItem[i % addItem.length]!({ cart_uuid: cart, item_uuid: items[i % items.length]!, quantity: 1 });
  parentPort!.on('message', async (phase: Phase | 'exit') => {
    if (phase === 'exit') {
      for (const c of clients) c.close();
      parentPort!.close();
      return;
    }
    let failures = 0;
    if (phase.kind === 'closed') {
      const rate = await closedLoop(phase.total, phase.concurrency, (i) => add(phase.hot ?? carts[(i * phase.stride) % carts.length]!, i).catch(() => failures++));
      parentPort!.postMessage({ rate, failures } satisfies PhaseResult);
      return;
    }
    const latencies: number[] = [];
    const started = performance.now();
    let sent = 0;
    const inflight = new Set<Promise<unknown>>();
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = (performance.now() - started) / 1000;
        if (elapsed >= phase.seconds) {
          clearInterval(timer);
          resolve();
          return;
        }
        const due = Math.floor(elapsed * phase.rate) - sent;
        for (let j = 0; j < due; j++, sent++) {
          const p = add(carts[(sent * 104729) % carts.length]!, sent).catch(() => failures++);
          inflight.add(p);
          void p.finally(() => inflight.delete(p));
        }
        // One Get per tick (about 200/s), timed from send to reply.
        const cart = carts[Math.floor(Math.random() * carts.length)]!;
        const t0 = performance.now();
        const g = getCart[sent % getCart.length]!({ uuid: cart }).then(() => latencies.push(performance.now() - t0), () => failures++);
        inflight.add(g);
        void g.finally(() => inflight.delete(g));
      }, 5);
    });
    await Promise.all(inflight);
    parentPort!.postMessage({ rate: sent / phase.seconds, latencies, sent, failures } satisfies PhaseResult);
  });
}

if (!isMainThread && (workerData as { cartsBench?: ClientSetup } | undefined)?.cartsBench) {
  void clientThread((workerData as { cartsBench: ClientSetup }).cartsBench);
}

function loadGenerator(setup: ClientSetup) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { cartsBench: setup } });
  return {
    run(phase: Phase): Promise<PhaseResult> {
      return new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage(phase);
      });
    },
    async close() {
      worker.postMessage('exit');
      await worker.terminate();
    },
  };
}

export async function run(opts: BenchOptions): Promise<BenchResult[]> {
  const quick = opts.quick;
  const spreadCalls = quick ? 10_000 : 40_000;
  const hotCalls = quick ? 5_000 : 20_000;
  const loadSeconds = quick ? 4 : 10;
  const schema = `carts_bench_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-carts-bench-'));
  const shards = Math.max(1, Math.min(availableParallelism(), 4));
  const settings = { 'carts-port': 0, postgres: PG_URL, 'carts-schema': schema, 'carts-secret': SECRET, 'carts-pool-size': POOL };
  const log = rootLogger().child({ bench: 'carts' });
  const node = await startNode({ dataDir, actorModules: cartsGateway.actorModules, shards, settings, log });
  const gateway = await cartsGateway.start({ system: node, membership: node.membership, settings, metrics: new Registry(), log, dataDir, host: '127.0.0.1' });
  const port = gateway.ports['grpc']!;
  const user = randomUUID();
  const token = signToken(SECRET, user, { roles: ['admin'], ttlSeconds: 3600 });
  const admin = new (serviceOf('item', 'Item'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const create = unary(admin, 'Create', token);
  const baselinePool = new pg.Pool({ connectionString: PG_URL, max: shards * POOL, options: `-c search_path=${schema}` });
  const rows: BenchResult[] = [];
  let generator: ReturnType<typeof loadGenerator> | undefined;
  try {
    const items = await Promise.all(Array.from({ length: 10 }, (_, i) => create({ name: `bench-${i}`, price: 1.25 + i }) as Promise<{ uuid: string }>));
    const carts = Array.from({ length: CARTS }, () => randomUUID());
    const load = loadGenerator({ port, token, items: items.map((i) => i.uuid), carts });
    generator = load;
    // Warm-up: JIT, connections, and every cart once (so the spread run measures steady state).
    await load.run({ kind: 'closed', total: CARTS, concurrency: CONCURRENCY, stride: 1 });
    const spreadRun = await load.run({ kind: 'closed', total: spreadCalls, concurrency: CONCURRENCY, stride: 7919 });
    const spread = spreadRun.rate;
    // The same operations straight into the cart actors (no gRPC): what the actor layer and the store cost.
    const direct = new CartClient(node);
    const caller = { user, admin: false };
    const directSpread = await closedLoop(spreadCalls, CONCURRENCY, (i) =>
      direct.run(carts[(i * 7919) % CARTS]!, { kind: 'addItem', caller, itemUuid: items[i % items.length]!.uuid, quantity: 1 }),
    );

    // Baseline: the same effect as one AddItem, as one autocommitted single-row upsert.
    await baselinePool.query('CREATE TABLE bench_cart_entry (cart_uuid uuid, item_uuid uuid, quantity integer NOT NULL, PRIMARY KEY (cart_uuid, item_uuid))');
    const upsert = (cart: string, i: number) =>
      baselinePool.query({
        name: 'bench-upsert',
        text: 'INSERT INTO bench_cart_entry VALUES ($1, $2, $3) ON CONFLICT (cart_uuid, item_uuid) DO UPDATE SET quantity = bench_cart_entry.quantity + EXCLUDED.quantity',
        values: [cart, items[i % items.length]!.uuid, 1],
      });
    const seqCalls = quick ? 1_000 : 3_000;
    let k = 0;
    const seqStarted = performance.now();
    while (k < seqCalls) await upsert(carts[k % CARTS]!, k++);
    const sequential = seqCalls / ((performance.now() - seqStarted) / 1000);
    const baseSpread = await closedLoop(spreadCalls, CONCURRENCY, (i) => upsert(carts[(i * 7919) % CARTS]!, i));

    rows.push({ bench: 'carts', metric: `AddItem/s over ${CARTS} carts (gRPC, ${shards} shards, PostgreSQL)`, value: spread, unit: 'calls/s', baseline: baseSpread, ratio: spread / baseSpread, target: '>= 5,000' });
    rows.push({ bench: 'carts', metric: `AddItem/s over ${CARTS} carts, cart actors without gRPC`, value: directSpread, unit: 'calls/s', baseline: baseSpread, ratio: directSpread / baseSpread });
    rows.push({ bench: 'carts', metric: 'baseline: sequential single-row upsert loop (1 connection)', value: sequential, unit: 'rows/s' });

    const hot = randomUUID();
    await load.run({ kind: 'closed', total: 1, concurrency: 1, hot, stride: 1 });
    const hotRate = (await load.run({ kind: 'closed', total: hotCalls, concurrency: CONCURRENCY, hot, stride: 1 })).rate;
    const baseHot = await closedLoop(hotCalls, CONCURRENCY, () => upsert(hot, 0));
    rows.push({ bench: 'carts', metric: 'AddItem/s to one hot cart', value: hotRate, unit: 'calls/s', baseline: baseHot, ratio: hotRate / baseHot, target: '>= 2,000' });

    // Get latency while AddItem runs open-loop at half the spread rate.
    const rate = spread / 2;
    const loadRun = await load.run({ kind: 'open', rate, seconds: loadSeconds });
    const latencies = loadRun.latencies!;
    const failures = spreadRun.failures + loadRun.failures;
    latencies.sort((a, b) => a - b);
    const achieved = loadRun.rate;
    rows.push({ bench: 'carts', metric: `p99 Get latency at ${Math.round(achieved)} AddItem/s (50% load)`, value: percentile(latencies, 99), unit: 'ms', target: '<= 5 ms' });
    rows.push({ bench: 'carts', metric: 'p50 Get latency at 50% load', value: percentile(latencies, 50), unit: 'ms' });
    if (failures) rows.push({ bench: 'carts', metric: 'failed calls', value: failures, unit: 'calls' });
  } finally {
    await generator?.close();
    admin.close();
    await gateway.stop();
    await node.stop();
    await baselinePool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await baselinePool.end();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}
