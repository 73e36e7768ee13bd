// Benchmark of the WHO gateway: commands/s from 100 pipelining connections to one node (beside a
// minimal line server on the same harness, as a baseline), and idle connections one node holds.
// The server and the idle-connection clients run in child processes started through bash with the
// file limit raised to the hard limit, since Node cannot raise its own.
//
//   npm run bench -- who [--quick] [--json]      or      node dist/test/bench/who.js [--quick]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';
import { LocalMembership, type GatewayHost, type Logger } from '../../runtime/index.js';
import { whoGateway, whoSettings } from '../../gateways/who/index.js';
import { WhoServer } from '../../gateways/who/server.js';
import { RedisMembership } from '../../runtime/cluster/redis-membership.js';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

import type { BenchResult } from './run.js';
export type { BenchResult };

const SELF = fileURLToPath(import.meta.url);
const quietLog: Logger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => quietLog };

// ---- child process roles ---------------------------------------------------------------------

/** The WHO gateway alone, as a node would start it; prints its port, answers "stats" on stdin. */
async function serveWho(maxConnections: number, cluster?: string): Promise<void> {
  const nodeId = `bench-${process.pid}`;
  const defaults = Object.fromEntries(whoSettings.map((s) => [s.name, s.default]));
  // With a cluster name: the cluster's RedisMembership (WHO then reads Redis), else the local one.
  const redis = cluster ? new Redis(process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 3 }) : undefined;
  const membership = redis && cluster
    ? await RedisMembership.join({ redis, cluster, self: nodeId, address: '127.0.0.1:7000', log: quietLog })
    : new LocalMembership(nodeId);
  const host: GatewayHost = {
    system: { nodeId } as GatewayHost['system'],
    membership,
    settings: { ...defaults, 'who-port': 0, 'who-idle-timeout': 0, 'who-max-connections': maxConnections },
    metrics: new Registry(),
    log: quietLog,
    dataDir: '/tmp',
    host: '127.0.0.1',
  };
  const gateway = await whoGateway.start(host);
  serveControl(gateway.ports.who!, async () => {
    await gateway.stop();
    if (membership instanceof RedisMembership) await membership.leave();
    await redis?.del(`troupe:{${cluster}}:members`).catch(() => 0);
    await redis?.quit();
  });
}

/** The least a line server can do: answer "42" per line. The throughput baseline for the harness. */
async function serveBaseline(): Promise<void> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      let n = 0;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++;
      if (n) socket.write('42\n'.repeat(n));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  serveControl((server.address() as net.AddressInfo).port, () => new Promise((r) => server.close(() => r())));
}

function fdLimit(): number {
  const r = spawnSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

function serveControl(port: number, stop: () => Promise<void>): void {
  process.stdout.write(JSON.stringify({ port, fdLimit: fdLimit() }) + '\n');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'stats') process.stdout.write(JSON.stringify({ rss: process.memoryUsage().rss }) + '\n');
  });
  rl.on('close', () => void stop().finally(() => process.exit(0)));
}

/** Opens `count` connections and holds them, silent; prints how many opened; exits when stdin closes. */
async function holdIdle(port: number, count: number, firstAddress: number): Promise<void> {
  const sockets: net.Socket[] = [];
  let opened = 0;
  let failed = 0;
  let lastError = '';
  const batch = 500;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, (_, k) => {
        // Several loopback source addresses, so the ephemeral ports of one address are not the limit.
        const localAddress = `127.0.0.${firstAddress + ((i + k) % 4)}`;
        return new Promise<void>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress });
          s.once('connect', () => {
            opened++;
            sockets.push(s);
            resolve();
          });
          s.once('error', (err) => {
            failed++;
            lastError = err.message;
            resolve();
          });
        });
      }),
    );
  }
  let closedByServer = 0;
  for (const s of sockets) s.once('close', () => closedByServer++);
  process.stdout.write(JSON.stringify({ opened, failed, lastError, fdLimit: fdLimit() }) + '\n');
  createInterface({ input: process.stdin }).on('close', () => {
    process.stdout.write(JSON.stringify({ closedByServer }) + '\n');
    process.exit(0);
  });
}

// ---- the harness -------------------------------------------------------------------------------

interface Child {
  proc: ChildProcess;
  next(): Promise<Record<string, number | string>>;
  stop(): Promise<void>;
}

/** Starts this file in a role, through bash so the file limit can be raised to the hard limit first. */
function startChild(role: string, args: string[]): Child {
  const proc = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, SELF, role, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    wake?.();
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    async next() {
      while (lines.length === 0) {
        if (proc.exitCode !== null) throw new Error(`bench child ${role} exited with ${proc.exitCode}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
      return JSON.parse(lines.shift()!) as Record<string, number | string>;
    },
    async stop() {
      proc.stdin!.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill();
    },
  };
}

/** Replies/s from 100 clients that each keep 30 commands in flight, until `ms` has passed. */
async function measureFor(port: number, ms: number): Promise<number> {
  const state = { running: true };
  const connections = 100;
  const depth = 30;
  const batch = Buffer.from(Array.from({ length: depth }, (_, i) => ['WHO\n', 'WHERE\n', 'WHY\n'][i % 3]).join(''));
  const sockets = await Promise.all(
    Array.from({ length: connections }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    })),
  );
  let replies = 0;
  const started = process.hrtime.bigint();
  setTimeout(() => (state.running = false), ms);
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          let owed = depth;
          s.setNoDelay(true);
          s.on('data', (chunk: Buffer) => {
            for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) {
              replies++;
              if (--owed === 0) {
                if (!state.running) return resolve();
                owed = depth;
                s.write(batch);
              }
            }
          });
          s.write(batch);
        }),
    ),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  for (const s of sockets) s.destroy();
  return replies / seconds;
}

async function whoOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write('WHO\n'));
    let text = '';
    s.on('data', (c) => {
      text += c.toString();
      if (text.includes('\n')) {
        s.destroy();
        resolve(Number(text.trim()));
      }
    });
    s.once('error', reject);
  });
}

/** A connection that sends one command at a time and resolves its reply line. */
class Asker {
  #socket: net.Socket;
  #buffer = '';
  #waiting: Array<(line: string) => void> = [];
  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => {
      this.#buffer += c.toString('latin1');
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl).replace(/\r$/, '');
        this.#buffer = this.#buffer.slice(nl + 1);
        this.#waiting.shift()?.(line);
      }
    });
  }
  static open(port: number): Promise<Asker> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Asker(s)));
      s.once('error', reject);
    });
  }
  ask(command: string): Promise<string> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#socket.write(command + '\n');
    });
  }
  close(): void {
    this.#socket.destroy();
  }
}

/**
 * Three WHO servers, each with its own RedisMembership and Redis connection as separate nodes would
 * have: for each sample, one client connects to one server, and the time until WHO on every other
 * server shows it is recorded. Undefined when Redis is not reachable.
 */
async function redisReachable(): Promise<boolean> {
  const probe = new Redis(process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  try {
    await probe.connect();
    await probe.ping();
    await probe.quit();
    return true;
  } catch {
    probe.disconnect();
    return false;
  }
}

async function reflectLatencies(samples: number): Promise<number[] | undefined> {
  const url = process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379';
  if (!(await redisReachable())) return undefined;
  const probe = new Redis(url, { maxRetriesPerRequest: 3 });
  const cluster = `who-bench-${randomBytes(5).toString('hex')}`;
  const nodes: Array<{ redis: Redis; membership: RedisMembership; server: WhoServer; port: number; asker?: Asker }> = [];
  const held: net.Socket[] = [];
  try {
    for (const name of ['a', 'b', 'c']) {
      const redis = new Redis(url, { maxRetriesPerRequest: 3 });
      const self = `${cluster}-${name}`;
      const membership = await RedisMembership.join({ redis, cluster, self, address: `127.0.0.1:${7000 + nodes.length}`, log: quietLog });
      const server = new WhoServer({ host: '127.0.0.1', port: 0, nodeId: self, membership, idleTimeoutMs: 0, maxConnections: 10_000, maxLineBytes: 64, log: quietLog });
      nodes.push({ redis, membership, server, port: await server.listen() });
    }
    for (const n of nodes) n.asker = await Asker.open(n.port);
    const expect = async (count: number) => {
      for (;;) {
        const answers = await Promise.all(nodes.map((n) => n.asker!.ask('WHO')));
        if (answers.every((a) => a === String(count))) return;
      }
    };
    await expect(3);
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const target = nodes[i % 3]!;
      const started = process.hrtime.bigint();
      held.push(await new Promise<net.Socket>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: target.port }, () => resolve(s));
      }));
      await expect(4 + i);
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    return times;
  } finally {
    for (const s of held) s.destroy();
    for (const n of nodes) {
      n.asker?.close();
      await n.server.stop();
      await n.membership.leave().catch(() => {});
    }
    let cursor = '0';
    do {
      const [next, keys] = await probe.scan(cursor, 'MATCH', `troupe:{${cluster}}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await probe.del(...keys);
    } while (cursor !== '0');
    for (const n of nodes) await n.redis.quit();
    await probe.quit();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function run(opts: { json: boolean; quick: boolean; args: string[] }): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  const say = (s: string) => {
    if (!opts.json) process.stderr.write(s + '\n');
  };

  // 1. Throughput, WHO gateway beside the minimal baseline server, same harness, same machine.
  const who = startChild('serve-who', ['1000']);
  const whoPort = Number((await who.next()).port);
  const base = startChild('serve-baseline', []);
  const basePort = Number((await base.next()).port);
  await measureFor(whoPort, 300); // warm up both
  await measureFor(basePort, 300);
  const whoRate = await measureFor(whoPort, opts.quick ? 1500 : 5000);
  const baseRate = await measureFor(basePort, opts.quick ? 1500 : 5000);
  await who.stop();
  await base.stop();
  say(`throughput: who ${Math.round(whoRate)}/s, baseline ${Math.round(baseRate)}/s`);
  // The same with the cluster's membership, where every WHO sum is a Redis call (shared by the WHOs
  // that arrive while it runs).
  if (await redisReachable()) {
    const clustered = startChild('serve-who', ['1000', `who-bench-${randomBytes(5).toString('hex')}`]);
    const port = Number((await clustered.next()).port);
    await measureFor(port, 300);
    const rate = await measureFor(port, opts.quick ? 1500 : 5000);
    await clustered.stop();
    say(`throughput with RedisMembership: ${Math.round(rate)}/s`);
    results.push({
      bench: 'who',
      metric: 'commands/s, same load, node on RedisMembership (WHO sums read from Redis)',
      value: Math.round(rate),
      unit: 'commands/s',
      baseline: Math.round(baseRate),
      ratio: Number((rate / baseRate).toFixed(2)),
      target: '>= 100000',
    });
  }
  results.unshift({
    bench: 'who',
    metric: 'commands/s, 100 pipelining connections (WHO/WHERE/WHY mix, 30 in flight each)',
    value: Math.round(whoRate),
    unit: 'commands/s',
    baseline: Math.round(baseRate),
    ratio: Number((whoRate / baseRate).toFixed(2)),
    target: '>= 100000',
  });

  // 2. Idle connections held by one node. Each process may hold at most its hard file limit.
  const wanted = opts.quick ? 4000 : 20_000;
  const server = startChild('serve-who', [String(wanted + 1000)]);
  const ready = await server.next();
  const port = Number(ready.port);
  const serverFdLimit = Number(ready.fdLimit);
  // Leave room for the server's own descriptors (listening socket, stdio, libuv, the probe).
  const target = Math.min(wanted, serverFdLimit - 64);
  if (target < wanted) say(`the server's file limit is ${serverFdLimit} (hard limit); holding ${target} instead of ${wanted}`);
  const before = Number((server.proc.stdin!.write('stats\n'), await server.next()).rss);
  const holders: Child[] = [];
  const perHolder = 5000;
  let opened = 0;
  let failed = 0;
  const started = Date.now();
  for (let i = 0; opened + failed < target; i++) {
    const n = Math.min(perHolder, target - opened - failed);
    const h = startChild('hold-idle', [String(port), String(n), String(1 + (i % 4) * 4)]);
    holders.push(h);
    const r = await h.next();
    opened += Number(r.opened);
    failed += Number(r.failed);
    if (Number(r.failed)) say(`idle holder ${i}: ${r.failed} connections failed (${r.lastError})`);
  }
  const openSeconds = (Date.now() - started) / 1000;
  const counted = await whoOnce(port);
  const after = Number((server.proc.stdin!.write('stats\n'), await server.next()).rss);
  say(`idle: opened ${opened}, failed ${failed} in ${openSeconds.toFixed(1)} s; WHO says ${counted}; server RSS +${((after - before) / 1e6).toFixed(1)} MB`);
  for (const h of holders) await h.stop();
  await server.stop();
  results.push({ bench: 'who', metric: 'concurrent idle connections held by one node (WHO-verified)', value: counted - 1, unit: 'connections', target: '>= 20000' });
  results.push({ bench: 'who', metric: "server process file limit (hard limit; the bench cannot raise it)", value: serverFdLimit, unit: 'descriptors' });
  results.push({ bench: 'who', metric: 'server memory per idle connection', value: Math.round((after - before) / Math.max(1, counted - 1)), unit: 'bytes' });
  results.push({ bench: 'who', metric: 'rate of opening idle connections', value: Math.round(opened / openSeconds), unit: 'connections/s' });

  // 3. A connect on one server, seen by WHO on every server (3 servers, RedisMembership).
  const times = await reflectLatencies(opts.quick ? 30 : 200);
  if (!times) {
    say('reflect latency: Redis not reachable, skipped');
  } else {
    const sorted = [...times].sort((a, b) => a - b);
    say(`reflect latency over ${times.length} connects: p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`);
    results.push({ bench: 'who', metric: 'time for WHO on every server to reflect a connect on another, p50 (3 servers, RedisMembership)', value: Number(percentile(sorted, 50).toFixed(1)), unit: 'ms' });
    results.push({ bench: 'who', metric: 'time for WHO on every server to reflect a connect on another, p99 (3 servers, RedisMembership)', value: Number(percentile(sorted, 99).toFixed(1)), unit: 'ms', target: '<= 2000' });
  }
  return results;
}

// ---- entry -------------------------------------------------------------------------------------

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [role, ...rest] = process.argv.slice(2);
  if (role === 'serve-who') await serveWho(Number(rest[0]), rest[1]);
  else if (role === 'serve-baseline') await serveBaseline();
  else if (role === 'hold-idle') await holdIdle(Number(rest[0]), Number(rest[1]), Number(rest[2]));
  else {
    const quick = process.argv.includes('--quick');
    const json = process.argv.includes('--json');
    const rows = await run({ json, quick, args: [] });
    for (const r of rows) console.log(json ? JSON.stringify(r) : `${r.metric}: ${r.value} ${r.unit}${r.baseline !== undefined ? ` (baseline ${r.baseline}, ratio ${r.ratio})` : ''}${r.target ? ` target ${r.target}` : ''}`);
  }
}
