// Peers that cannot reach each other, cut for real: three whole nodes, each in a network namespace
// of its own made by this test, joined by veth pairs to a bridge in a fourth namespace where the
// test's own Redis listens. One node is cut from its peers by blackhole routes (it still reaches
// Redis); the rule of runtime/cluster/reachability.ts makes it leave the ring, the two others serve
// every partition, asks do not hang on it; after the heal it rejoins and every partition is served.
// Needs root (ip netns); the addresses (10.x.y.0/24, random) exist only inside these namespaces.

import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { uniqueCluster } from './helpers.js';
import { SCRIPT, TestNode, waitFor } from './test-cluster.js';

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function canMakeNamespaces(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  const probe = `trf-probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const why = canMakeNamespaces();

(why === undefined ? test : test.skip)('a node cut from its peers (not from Redis) leaves the ring; the others serve everything, and after the heal every partition is served again', async (t) => {
  const sfx = randomBytes(3).toString('hex');
  const net = `10.${100 + (parseInt(sfx.slice(0, 2), 16) % 100)}.${parseInt(sfx.slice(2, 4), 16)}`;
  const hub = `trf-${sfx}-hub`;
  const names = ['a', 'b', 'c'];
  const ns = names.map((n) => `trf-${sfx}-${n}`);
  const addr = names.map((_, i) => `${net}.${11 + i}`);
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const n of [...ns, hub]) {
      try {
        ip('netns', 'del', n);
      } catch {
        // not made, or already gone
      }
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  ip('netns', 'add', hub);
  ip('-n', hub, 'link', 'set', 'lo', 'up');
  ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', hub, 'addr', 'add', `${net}.1/24`, 'dev', 'br0');
  ip('-n', hub, 'link', 'set', 'br0', 'up');
  ns.forEach((n, i) => {
    ip('netns', 'add', n);
    ip('-n', n, 'link', 'set', 'lo', 'up');
    ip('link', 'add', `th${sfx}${i}`, 'netns', hub, 'type', 'veth', 'peer', 'name', `tn${sfx}${i}`, 'netns', n);
    ip('-n', hub, 'link', 'set', `th${sfx}${i}`, 'master', 'br0', 'up');
    ip('-n', n, 'addr', 'add', `${addr[i]}/24`, 'dev', `tn${sfx}${i}`);
    ip('-n', n, 'link', 'set', `tn${sfx}${i}`, 'up');
  });

  // The test's own Redis, in the hub, reachable from every node's namespace.
  const redis = spawn('ip', ['netns', 'exec', hub, 'redis-server', '--port', '6390', '--bind', `${net}.1`, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' });
  children.push(redis);
  const redisUrl = `redis://${net}.1:6390`;
  const cluster = uniqueCluster();

  const start = async (i: number): Promise<TestNode> => {
    const dataDir = mkdtempSync(join(tmpdir(), 'troupe-netns-node-'));
    dirs.push(dataDir);
    const child = spawn('ip', ['netns', 'exec', ns[i]!, process.execPath, SCRIPT, dataDir, redisUrl, cluster], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, TROUPE_TEST_HOST: addr[i], TROUPE_LOG_LEVEL: process.env.TROUPE_LOG_LEVEL ?? 'error' },
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const nodeId = await new Promise<string>((resolve, reject) => {
      const onLine = (line: string): void => {
        const msg = JSON.parse(line) as { ready?: boolean; nodeId?: string };
        if (msg.ready) {
          lines.off('line', onLine);
          resolve(msg.nodeId!);
        }
      };
      lines.on('line', onLine);
      child.once('exit', (code) => reject(new Error(`node ${names[i]} exited with ${code} before it was ready`)));
    });
    return new TestNode(child, nodeId, lines);
  };
  // Redis needs a moment to listen; the first node retries until it does.
  let a: TestNode | undefined;
  for (let tries = 0; a === undefined; tries++) {
    try {
      a = await start(0);
    } catch (err) {
      if (tries > 20) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const [b, c] = await Promise.all([start(1), start(2)]);
  const nodes = [a, b!, c!];
  const servingAll = async (among: TestNode[]): Promise<number[]> => Promise.all(among.map((n) => n.serving()));
  t.true(await waitFor(async () => (await Promise.all(nodes.map((n) => n.members()))).every((m) => m.length === 3), 20_000), 'three members');
  t.true(await waitFor(async () => (await servingAll(nodes)).reduce((x, y) => x + y, 0) === 1024 && (await servingAll(nodes)).every((n) => n > 0), 30_000), 'the partitions are spread');

  const keys = Array.from({ length: 30 }, (_, i) => `counter/k${i}`);
  for (const k of keys) t.is(await b!.ask(k, 'add', 1), 1, k);

  // Cut a from b and c, both ways; everyone still reaches Redis.
  const cut = (how: 'add' | 'del'): void => {
    for (const i of [1, 2]) {
      ip('-n', ns[0]!, 'route', how, 'blackhole', `${addr[i]}/32`);
      ip('-n', ns[i]!, 'route', how, 'blackhole', `${addr[0]}/32`);
    }
  };
  cut('add');
  const cutAt = Date.now();
  // Asks through b while the cut is detected and resolved: each answers or fails, none hangs its 10 s.
  let slowest = 0;
  let failures = 0;
  const answered = new Set<string>();
  const until = Date.now() + 40_000;
  while (answered.size < keys.length && Date.now() < until) {
    for (const k of keys) {
      if (answered.has(k)) continue;
      const t0 = Date.now();
      try {
        t.true((await b!.ask<number>(k, 'get')) >= 1, k);
        answered.add(k);
      } catch {
        failures++;
      }
      slowest = Math.max(slowest, Date.now() - t0);
    }
    if (answered.size < keys.length) await new Promise((r) => setTimeout(r, 200));
  }
  t.log(`during the cut: every key answered through b after ${Date.now() - cutAt} ms, ${failures} failed attempts, slowest attempt ${slowest} ms`);
  t.is(answered.size, keys.length, 'every counter answers through b during the cut');
  t.true(slowest < 9000, `no ask waited out its 10 s timeout (slowest ${slowest} ms)`);
  t.true(await waitFor(async () => (await a.serving()) === 0, 20_000), 'the cut node left the ring and serves nothing');
  t.true(await waitFor(async () => (await servingAll([b!, c!])).reduce((x, y) => x + y, 0) === 1024, 20_000), 'b and c serve every partition');

  cut('del');
  const healedAt = Date.now();
  t.true(await waitFor(async () => (await a.serving()) > 0 && (await servingAll(nodes)).reduce((x, y) => x + y, 0) === 1024, 30_000), 'after the heal a rejoins and every partition is served once');
  t.log(`after the heal: every partition served again, a among them, within ${Date.now() - healedAt} ms`);
  for (const k of keys) t.true((await a.ask<number>(k, 'get')) >= 1, `${k} through a after the heal`);
});
