// Cluster benchmark: two nodes on loopback (this process and a child process) against the real
// Redis, beside the same load inside one node: tells and asks to the other node, and acknowledged
// durable updates (in a cluster also written to the partition changelogs in Redis before each
// reply); failure detection after SIGKILL; and the pause each actor sees while its partition is
// handed off on a join; and acknowledged durable updates with a Redis replica and WAIT against
// the same without a replica, on Redis servers of the bench's own; and remote tells and asks over
// mutual TLS against the same in plaintext, in the same run. `npm run bench -- cluster`
// (`-- cluster tls`: only the TLS comparison).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Overloaded, partitionOf, startNode, type TroupeNode } from '../../runtime/index.js';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from '../cluster/helpers.js';
import { redisSet } from '../runtime/redis-servers.js';
import { Cell } from './fixtures/cell.js';
import Tally from './fixtures/tally.js';
import type { BenchOptions, BenchResult } from './run.js';
import { createCertificateAuthority, issueCertificate } from '../../runtime/certs.js';
import type { ClusterTlsFiles } from '../../runtime/cluster/cluster-tls.js';
import { newNodeId } from '../../runtime/node.js';
import { writeFileSync } from 'node:fs';

const CELL = new URL('./fixtures/cell.js', import.meta.url).href;
const TALLY = new URL('./fixtures/tally.js', import.meta.url).href;
const NODE_PROCESS = new URL('../cluster/fixtures/troupe-node-process.js', import.meta.url).pathname;

function progress(msg: string): void {
  process.stderr.write(`  cluster: ${msg}\n`);
}

async function childNode(cluster: string, tls?: { files: ClusterTlsFiles; name: string }): Promise<{ child: ChildProcess; nodeId: string }> {
  const child = spawn(process.execPath, [NODE_PROCESS, mkdtempSync(join(tmpdir(), 'troupe-bench-node-')), REDIS_URL, cluster], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: {
      ...process.env,
      TROUPE_LOG_LEVEL: 'warn',
      TROUPE_TEST_ACTORS: `${CELL},${TALLY}`,
      ...(tls ? { TROUPE_TEST_TLS: [tls.files.ca, tls.files.cert, tls.files.key].join(','), TROUPE_TEST_NODE_NAME: tls.name } : {}),
    },
  });
  child.stdin!.on('error', () => {});
  const lines = createInterface({ input: child.stdout! });
  const nodeId = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const msg = JSON.parse(line) as { ready?: boolean; nodeId?: string };
      if (msg.ready) resolve(msg.nodeId!);
    });
    child.once('exit', (code) => reject(new Error(`node exited with ${code}`)));
  });
  return { child, nodeId };
}

async function until(check: () => Promise<boolean> | boolean, what: string, ms = 120_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Keys of `count` actors of a type (cell by default) whose partitions `node` does not (or does) serve. */
function keysServed(node: TroupeNode, count: number, servedHere: boolean, type = 'cell'): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = `k${i}`;
    if (node.servesPartition(partitionOf(`${type}/${key}`, node.partitions)) === servedHere) keys.push(key);
  }
  return keys;
}

/** Acknowledged durable updates per second: `inFlight` asks at a time, each answered once its state is committed. */
async function durableRate(node: TroupeNode, keys: string[], total: number, inFlight: number): Promise<number> {
  const refs = keys.map((k) => node.ref(Tally, k));
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await refs[next++ % refs.length]!.ask('add', 1);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

async function tellRate(node: TroupeNode, keys: string[], total: number): Promise<number> {
  const refs = keys.map((k) => node.ref(Cell, k));
  const before = (await Promise.all(refs.map((r) => r.ask('get')))).reduce((a, b) => a + b, 0);
  const t0 = performance.now();
  for (let i = 0; i < total; ) {
    try {
      const end = Math.min(total, i + 10_000);
      for (; i < end; i++) refs[i % refs.length]!.tell('hit');
    } catch (err) {
      if (!(err instanceof Overloaded)) throw err;
      await new Promise((r) => setTimeout(r, 1));
    }
    await yieldToLoop();
  }
  await until(async () => (await Promise.all(refs.map((r) => r.ask('get')))).reduce((a, b) => a + b, 0) - before >= total, 'all tells arriving');
  return total / ((performance.now() - t0) / 1000);
}

async function askRate(node: TroupeNode, keys: string[], total: number, inFlight: number): Promise<{ rate: number; p99: number; p50: number }> {
  const refs = keys.map((k) => node.ref(Cell, k));
  const latencies = new Float64Array(total);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) {
        const i = next++;
        const start = performance.now();
        await refs[i % refs.length]!.ask('echo', i);
        latencies[i] = performance.now() - start;
      }
    }),
  );
  const rate = total / ((performance.now() - t0) / 1000);
  latencies.sort();
  return { rate, p50: latencies[Math.floor(total * 0.5)]!, p99: latencies[Math.floor(total * 0.99)]! };
}

/** A CA and two node certificates (bench-a, bench-b) in a temporary directory. */
async function benchCerts(): Promise<Record<'bench-a' | 'bench-b', ClusterTlsFiles>> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-certs-'));
  const ca = await createCertificateAuthority({ days: 2 });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  const out = {} as Record<'bench-a' | 'bench-b', ClusterTlsFiles>;
  for (const name of ['bench-a', 'bench-b'] as const) {
    const pair = await issueCertificate({ ca, name, days: 1 });
    writeFileSync(join(dir, `${name}.pem`), pair.cert);
    writeFileSync(join(dir, `${name}-key.pem`), pair.key, { mode: 0o600 });
    out[name] = { ca: join(dir, 'ca.pem'), cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
  }
  return out;
}

/** Two nodes (this process and a child) in a cluster of their own, plaintext or mutual TLS: remote tells/s and asks/s. */
async function remotePair(tells: number, asks: number, tls?: Record<'bench-a' | 'bench-b', ClusterTlsFiles>): Promise<{ tells: number; asks: number }> {
  const redis = newRedis();
  const cluster = uniqueCluster();
  let a: TroupeNode | undefined;
  let child: ChildProcess | undefined;
  try {
    a = await startNode({
      nodeId: newNodeId('bench-a'),
      dataDir: mkdtempSync(join(tmpdir(), 'troupe-bench-a-')),
      actorModules: [CELL, TALLY],
      askTimeoutMs: 60_000,
      cluster: { redis: REDIS_URL, name: cluster, host: '127.0.0.1', port: 0 },
      tls: tls?.['bench-a'],
    });
    child = (await childNode(cluster, tls ? { files: tls['bench-b'], name: 'bench-b' } : undefined)).child;
    await until(() => a!.membership.members().length === 2, 'the second node joining');
    await until(() => keysServed(a!, 1, false).length === 1 && [...Array(a!.partitions).keys()].filter((p) => a!.servesPartition(p)).length < a!.partitions * 0.7, 'partitions moving to the second node');
    const keys = keysServed(a, 10_000, false);
    await tellRate(a, keys, tells / 10);
    const tellsPerS = await tellRate(a, keys, tells);
    await askRate(a, keys, asks / 10, 64);
    const asksPerS = (await askRate(a, keys, asks, 64)).rate;
    return { tells: tellsPerS, asks: asksPerS };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    }
    await a?.stop();
    await dropCluster(redis, cluster);
    redis.disconnect();
  }
}

/**
 * Remote tells and asks over mutual TLS against the same pair in plaintext, in this run: pairs
 * alternate (plaintext, TLS, plaintext, TLS, ...) and each side keeps its best round, so that a
 * neighbour's load on a shared machine lands on both sides rather than on one.
 */
async function tlsRows(bench: string, tells: number, asks: number, rounds: number): Promise<BenchResult[]> {
  const certs = await benchCerts();
  const plain = { tells: 0, asks: 0 };
  const secure = { tells: 0, asks: 0 };
  for (let round = 1; round <= rounds; round++) {
    progress(`round ${round} of ${rounds}: two nodes in plaintext, then over mutual TLS (ECDSA P-256)`);
    const p = await remotePair(tells, asks);
    const s = await remotePair(tells, asks, certs);
    progress(`  plaintext ${Math.round(p.tells)} tells/s, ${Math.round(p.asks)} asks/s; mutual TLS ${Math.round(s.tells)} tells/s, ${Math.round(s.asks)} asks/s`);
    plain.tells = Math.max(plain.tells, p.tells);
    plain.asks = Math.max(plain.asks, p.asks);
    secure.tells = Math.max(secure.tells, s.tells);
    secure.asks = Math.max(secure.asks, s.asks);
  }
  const best = `best of ${rounds} alternating rounds`;
  return [
    { bench, metric: `tells/s to actors on another node, mutual TLS (baseline: plaintext, same run; ${best})`, value: Math.round(secure.tells), unit: 'msg/s', baseline: Math.round(plain.tells), ratio: secure.tells / plain.tells, target: 'ratio >= 0.8' },
    { bench, metric: `asks/s to actors on another node (64 in flight), mutual TLS (baseline: plaintext, same run; ${best})`, value: Math.round(secure.asks), unit: 'ask/s', baseline: Math.round(plain.asks), ratio: secure.asks / plain.asks, target: 'ratio >= 0.8' },
  ];
}

/**
 * One node in a cluster of its own on a Redis primary of the bench's own: without a replica (the
 * reference), then with one, where every changelog write waits for it (WAIT) before the replies leave.
 */
async function replicaWaitRows(bench: string, total: number): Promise<BenchResult[]> {
  const cleanups: (() => void | Promise<void>)[] = [];
  const servers = redisSet((fn) => cleanups.push(fn));
  const rate = async (url: string): Promise<number> => {
    const node = await startNode({
      dataDir: mkdtempSync(join(tmpdir(), 'troupe-bench-wait-')),
      actorModules: [TALLY],
      askTimeoutMs: 60_000,
      cluster: { redis: { url, waitReplicas: 'auto' }, name: uniqueCluster(), host: '127.0.0.1', port: 0 },
    });
    try {
      await until(() => [...Array(node.partitions).keys()].every((p) => node.servesPartition(p)), 'the node serving every partition');
      const keys = keysServed(node, 10_000, true, 'tally');
      await durableRate(node, keys, total / 10, 2000);
      return await durableRate(node, keys, total, 2000);
    } finally {
      await node.stop();
    }
  };
  try {
    progress('acknowledged durable updates: Redis primary alone, then with a replica and WAIT');
    const alone = await servers.server();
    const without = await rate(alone.url);
    const primary = await servers.server();
    const replica = await servers.server({ replicaOf: primary });
    const link = replica.client();
    await until(async () => /master_link_status:up/.test(await link.info('replication')), 'the replica syncing', 30_000);
    const withWait = await rate(primary.url);
    return [
      {
        bench,
        metric: 'acknowledged durable updates/s, 2,000 in flight, Redis with a replica and WAIT (baseline: the same Redis without a replica)',
        value: Math.round(withWait),
        unit: 'upd/s',
        baseline: Math.round(without),
        ratio: withWait / without,
      },
    ];
  } finally {
    for (const fn of cleanups) await fn();
  }
}

export async function run(o: BenchOptions): Promise<BenchResult[]> {
  const scale = o.quick ? 0.2 : 1;
  const bench = 'cluster';
  // `npm run bench -- cluster wait`: only the replica-and-WAIT row.
  if (o.args.includes('wait')) return replicaWaitRows(bench, Math.round(200_000 * scale));
  // `npm run bench -- cluster tls`: a plaintext pair, then the same over mutual TLS.
  if (o.args.includes('tls')) return tlsRows(bench, Math.round(1_000_000 * scale), Math.round(200_000 * scale), 3);
  const rows: BenchResult[] = [];
  const redis = newRedis();
  const cluster = uniqueCluster();
  const children: ChildProcess[] = [];
  let a: TroupeNode | undefined;
  let alone: TroupeNode | undefined;
  try {
    progress('one node alone (the reference)');
    alone = await startNode({ dataDir: mkdtempSync(join(tmpdir(), 'troupe-bench-alone-')), actorModules: [CELL, TALLY], askTimeoutMs: 60_000 });
    const aloneKeys = keysServed(alone, 10_000, true);
    const tells = Math.round(1_000_000 * scale);
    await tellRate(alone, aloneKeys, tells / 10);
    const aloneTells = await tellRate(alone, aloneKeys, tells);
    const asks = Math.round(200_000 * scale);
    await askRate(alone, aloneKeys, asks / 10, 64);
    const aloneAsks = await askRate(alone, aloneKeys, asks, 64);
    const durables = Math.round(200_000 * scale);
    const aloneTallies = keysServed(alone, 10_000, true, 'tally');
    await durableRate(alone, aloneTallies, durables / 10, 2000);
    const aloneDurable = await durableRate(alone, aloneTallies, durables, 2000);
    await alone.stop();
    alone = undefined;

    progress('two nodes: this process and a child process');
    a = await startNode({
      dataDir: mkdtempSync(join(tmpdir(), 'troupe-bench-a-')),
      actorModules: [CELL, TALLY],
      askTimeoutMs: 60_000,
      cluster: { redis: REDIS_URL, name: cluster, host: '127.0.0.1', port: 0 },
    });
    const b = await childNode(cluster);
    children.push(b.child);
    await until(() => a!.membership.members().length === 2, 'the second node joining');
    await until(() => keysServed(a!, 1, false).length === 1 && [...Array(a!.partitions).keys()].filter((p) => a!.servesPartition(p)).length < a!.partitions * 0.7, 'partitions moving to the second node');
    const remoteKeys = keysServed(a, 10_000, false);
    await tellRate(a, remoteKeys, tells / 10);
    const remoteTells = await tellRate(a, remoteKeys, tells);
    rows.push({ bench, metric: 'tells/s to actors on another node', value: Math.round(remoteTells), unit: 'msg/s', baseline: Math.round(aloneTells), ratio: remoteTells / aloneTells, target: '>= 250,000 (baseline: same load inside one node)' });
    await askRate(a, remoteKeys, asks / 10, 64);
    const remoteAsks = await askRate(a, remoteKeys, asks, 64);
    rows.push({ bench, metric: 'asks/s to actors on another node (64 in flight)', value: Math.round(remoteAsks.rate), unit: 'ask/s', baseline: Math.round(aloneAsks.rate), ratio: remoteAsks.rate / aloneAsks.rate, target: '>= 20,000' });
    rows.push({ bench, metric: 'ask latency p50, other node', value: Number(remoteAsks.p50.toFixed(2)), unit: 'ms', baseline: Number(aloneAsks.p50.toFixed(2)) });
    rows.push({ bench, metric: 'ask latency p99, other node', value: Number(remoteAsks.p99.toFixed(2)), unit: 'ms', baseline: Number(aloneAsks.p99.toFixed(2)), target: '<= 10 ms' });
    rows.push(...(await tlsRows(bench, tells, asks, 2)));
    // Actors this node serves, so the difference from one node alone is the changelog write.
    const localTallies = keysServed(a, 10_000, true, 'tally');
    await durableRate(a, localTallies, durables / 10, 2000);
    const clusterDurable = await durableRate(a, localTallies, durables, 2000);
    rows.push({ bench, metric: 'acknowledged durable updates/s, 2,000 in flight (cluster: SQLite, then the Redis changelog, before each reply)', value: Math.round(clusterDurable), unit: 'upd/s', baseline: Math.round(aloneDurable), ratio: clusterDurable / aloneDurable });

    progress('pause per actor while partitions are handed off to a joining node');
    const watched = keysServed(a, 300, true).concat(keysServed(a, 300, false));
    const gaps = new Map<string, number>();
    let watching = true;
    const watchers = watched.map(async (key) => {
      const ref = a!.ref(Cell, key);
      let last = performance.now();
      let worst = 0;
      while (watching) {
        await ref.ask('echo', 1);
        const now = performance.now();
        worst = Math.max(worst, now - last);
        last = now;
      }
      gaps.set(key, worst);
    });
    await new Promise((r) => setTimeout(r, 500));
    const c = await childNode(cluster);
    children.push(c.child);
    await until(() => a!.membership.members().length === 3, 'the third node joining');
    await new Promise((r) => setTimeout(r, 2000));
    watching = false;
    await Promise.all(watchers);
    const pauses = [...gaps.values()].sort((x, y) => x - y);
    rows.push({ bench, metric: `per-actor pause during a join's hand-off, p99 (${pauses.length} actors)`, value: Math.round(pauses[Math.floor(pauses.length * 0.99)]!), unit: 'ms', target: '<= 1,000 ms' });
    rows.push({ bench, metric: 'per-actor pause during a join, max', value: Math.round(pauses[pauses.length - 1]!), unit: 'ms' });

    rows.push(...(await replicaWaitRows(bench, durables)));

    progress('failure detection after SIGKILL');
    const killedAt = performance.now();
    c.child.kill('SIGKILL');
    await until(() => !a!.membership.members().includes(c.nodeId), 'detecting the killed node', 10_000);
    rows.push({ bench, metric: 'failure detection after SIGKILL', value: Math.round(performance.now() - killedAt), unit: 'ms', target: '<= 3,000 ms' });
  } finally {
    await alone?.stop();
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
        child.kill('SIGKILL');
      }
    }
    await a?.stop();
    await dropCluster(redis, cluster);
    redis.disconnect();
  }
  return rows;
}
