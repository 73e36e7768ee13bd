// Starts N whole nodes as child processes against the real Redis, each with its own data dir,
// under a unique cluster name, and tears them down (and the cluster's keys) after the test.

import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { dropCluster, newRedis, REDIS_URL, uniqueCluster } from './helpers.js';
import { pollUntil, tempDir } from '../common.js';

export const SCRIPT = new URL('./fixtures/troupe-node-process.js', import.meta.url).pathname;

export class TestNode {
  readonly nodeId: string;
  readonly child: ChildProcess;
  /** Set by the cluster that started it (a restart reuses it). */
  dataDir = '';
  /** Its cluster port, where the inspector answers too. */
  clusterPort = 0;
  #n = 0;
  readonly #waiting = new Map<number, (r: { ok: boolean; value?: unknown; error?: string }) => void>();
  exited: Promise<unknown>;

  constructor(child: ChildProcess, nodeId: string, lines: ReturnType<typeof createInterface>) {
    this.child = child;
    this.nodeId = nodeId;
    this.exited = once(child, 'exit');
    // Writes racing a node's death fail with EPIPE; the exit below settles those calls.
    child.stdin!.on('error', () => {});
    // A node that dies answers nothing more: settle what waits on it.
    void this.exited.then(() => {
      for (const done of this.#waiting.values()) done({ ok: false, error: 'the node process exited' });
      this.#waiting.clear();
    });
    lines.on('line', (line) => {
      const msg = JSON.parse(line) as { n?: number; ok: boolean; value?: unknown; error?: string };
      if (msg.n !== undefined) {
        this.#waiting.get(msg.n)?.(msg);
        this.#waiting.delete(msg.n);
      }
    });
  }

  #call(cmd: object): Promise<{ ok: boolean; value?: unknown; error?: string }> {
    const n = ++this.#n;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve({ ok: false, error: 'the node process exited' });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(n);
        resolve({ ok: false, error: 'no answer from the node process within 15 s' });
      }, 15_000);
      this.#waiting.set(n, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.child.stdin!.write(JSON.stringify({ n, ...cmd }) + '\n');
    });
  }

  async ask<T = unknown>(id: string, handler: string, message?: unknown): Promise<T> {
    const r = await this.#call({ op: 'ask', id, handler, message });
    if (!r.ok) throw new Error(r.error);
    return r.value as T;
  }

  /** Why the node is not ready (what /readyz says), or null when it is. */
  async notReady(): Promise<string | null> {
    return ((await this.#call({ op: 'notReady' })).value as string | null) ?? null;
  }

  /** The node's /metrics text. */
  async metrics(): Promise<string> {
    return (await this.#call({ op: 'metrics' })).value as string;
  }

  async members(): Promise<string[]> {
    return (await this.#call({ op: 'members' })).value as string[];
  }

  /** How many partitions the node serves now. */
  async serving(): Promise<number> {
    const r = await this.#call({ op: 'serving' });
    return r.ok ? (r.value as number) : -1;
  }

  async actors(): Promise<string[]> {
    return (await this.#call({ op: 'actors' })).value as string[];
  }

  /** Graceful: SIGTERM, hand-off, exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    await this.exited;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}

export class TestCluster {
  readonly name = uniqueCluster();
  readonly nodes: TestNode[] = [];
  readonly #redis: string;
  readonly #inspector: boolean;

  /**
   * `redis`: a Redis of the test's own (then its keys are not dropped: the test stops the server).
   * `inspector`: the nodes serve a read-only inspector on their cluster port (by default they serve none).
   */
  constructor(t: ExecutionContext, o: { redis?: string; inspector?: boolean } = {}) {
    this.#redis = o.redis ?? REDIS_URL;
    this.#inspector = o.inspector === true;
    t.teardown(async () => {
      for (const n of this.nodes) {
        if (n.child.exitCode === null && n.child.signalCode === null) {
          n.kill('SIGCONT');
          n.kill('SIGKILL');
        }
      }
      if (o.redis !== undefined) return;
      const redis = newRedis();
      await dropCluster(redis, this.name);
      redis.disconnect();
    });
  }

  async start(count = 1): Promise<TestNode[]> {
    const started = await Promise.all(Array.from({ length: count }, () => this.#startOne()));
    this.nodes.push(...started);
    return started;
  }

  /** Starts a node again on the data directory of one that exited (killed or stopped). */
  async restart(node: TestNode): Promise<TestNode> {
    const again = await this.#startOne(node.dataDir);
    this.nodes.push(again);
    return again;
  }

  async #startOne(dataDir = tempDir('troupe-cluster-node-')): Promise<TestNode> {
    const child = spawn(process.execPath, [SCRIPT, dataDir, this.#redis, this.name], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, TROUPE_LOG_LEVEL: process.env.TROUPE_LOG_LEVEL ?? 'warn', TROUPE_TEST_INSPECTOR: this.#inspector ? '1' : '0' },
    });
    const lines = createInterface({ input: child.stdout! });
    let clusterPort = 0;
    const nodeId = await new Promise<string>((resolve, reject) => {
      const onLine = (line: string) => {
        const msg = JSON.parse(line) as { ready?: boolean; nodeId?: string; clusterPort?: number };
        if (msg.ready) {
          lines.off('line', onLine);
          clusterPort = msg.clusterPort ?? 0;
          resolve(msg.nodeId!);
        }
      };
      lines.on('line', onLine);
      child.once('exit', (code) => reject(new Error(`node exited with ${code} before it was ready`)));
    });
    const node = new TestNode(child, nodeId, lines);
    node.dataDir = dataDir;
    node.clusterPort = clusterPort;
    return node;
  }
}

/** Polls until `check` holds or `ms` (stretched on a loaded machine, see test/common.ts) passed. */
export function waitFor(check: () => Promise<boolean>, ms = 10_000, every = 50): Promise<boolean> {
  return pollUntil(check, ms, every);
}
