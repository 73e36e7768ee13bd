// Redis servers a test (or a bench) starts and owns: a primary, replicas and Sentinels on free
// loopback ports in a temporary directory, stopped (SIGKILL, after SIGCONT) when released. Tests use
// them to kill, pause and fail over Redis without touching the shared server.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  readonly process: ChildProcess;
  /** A plain client for checks (no retries: a test wants errors at once). */
  client(): Redis;
  pause(): void;
  resume(): void;
  kill(): void;
}

export interface RedisSet {
  readonly dir: string;
  /** Starts a server; `replicaOf` makes it a replica of another of the set. */
  server(o?: { replicaOf?: OwnRedis; args?: string[]; port?: number; tls?: boolean }): Promise<OwnRedis>;
  /**
   * Starts a Sentinel watching `primary` as `master` (quorum 2, down after `downAfterMs`);
   * `password` is the Sentinel's own (requirepass), `primaryPassword` the one it gives the primary.
   */
  sentinel(primary: OwnRedis, master: string, downAfterMs?: number, auth?: { password?: string; primaryPassword?: string }): Promise<OwnRedis>;
  /** Stops everything started (idempotent). */
  stop(): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function untilAnswers(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis on port ${port} exited with ${child.exitCode}: ${output()}`);
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1000 });
    let refused = '';
    probe.on('error', (err: Error) => (refused = err.message));
    try {
      await probe.connect();
      await probe.ping();
      return;
    } catch (err) {
      // A server with a password answers, with NOAUTH: it is up.
      if (/NOAUTH/.test(`${(err as Error).message} ${refused}`)) return;
      if (Date.now() > deadline) throw new Error(`redis on port ${port} did not answer within 20 s: ${output()}`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      probe.disconnect();
    }
  }
}

async function untilLogged(line: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!output().includes(line)) {
    if (child.exitCode !== null) throw new Error(`redis exited with ${child.exitCode}: ${output()}`);
    if (Date.now() > deadline) throw new Error(`redis did not log "${line}" within 20 s: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every server any set started in this process: killed when the process exits, if a teardown did not run. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
/**
 * ava ends a test file that timed out with SIGTERM, and no 'exit' handler runs then: each server is
 * started under `setpriv --pdeathsig KILL` (util-linux), so the kernel kills it when this process
 * dies, however it dies. setpriv execs redis-server: the child's pid is the server's.
 */
const DIES_WITH_US = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0 ? ['setpriv', '--pdeathsig', 'KILL'] : [];

/** A set of servers that is stopped whatever happens: pass `teardown` (ava's t.teardown). */
export function redisSet(teardown: (fn: () => void | Promise<void>) => void): RedisSet {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-redis-'));
  const started: OwnRedis[] = [];
  let n = 0;

  /** `tls`: the port speaks only TLS, so readiness is read from the server's log, not by a plaintext PING. */
  async function launch(args: string[], port: number, tls = false): Promise<OwnRedis> {
    const [cmd, ...pre] = [...DIES_WITH_US, 'redis-server'];
    const child = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    let out = '';
    const keep = (b: Buffer) => {
      out = (out + b.toString()).slice(-4000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const clients: Redis[] = [];
    const own: OwnRedis = {
      port,
      url: `redis://127.0.0.1:${port}`,
      process: child,
      client() {
        const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
        c.on('error', () => {});
        clients.push(c);
        return c;
      },
      pause: () => void child.kill('SIGSTOP'),
      resume: () => void child.kill('SIGCONT'),
      kill() {
        for (const c of clients) c.disconnect();
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGCONT');
          child.kill('SIGKILL');
        }
      },
    };
    started.push(own);
    if (tls) await untilLogged('Ready to accept connections', child, () => out);
    else await untilAnswers(port, child, () => out);
    return own;
  }

  const set: RedisSet = {
    dir,
    async server(o = {}) {
      const port = o.port ?? (await freePort());
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--dbfilename', `dump-${port}.rdb`, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];
      if (o.replicaOf) args.push('--replicaof', '127.0.0.1', String(o.replicaOf.port), '--replica-announce-ip', '127.0.0.1');
      return launch([...args, ...(o.args ?? [])], port, o.tls);
    },
    async sentinel(primary, master, downAfterMs = 1000, auth = {}) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${port}-${n++}.conf`);
      // Sentinel rewrites its file: each gets its own.
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          `dir ${dir}`,
          `sentinel monitor ${master} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${master} ${downAfterMs}`,
          `sentinel failover-timeout ${master} 10000`,
          `sentinel parallel-syncs ${master} 1`,
          'sentinel announce-ip 127.0.0.1',
          ...(auth.primaryPassword === undefined ? [] : [`sentinel auth-pass ${master} ${auth.primaryPassword}`]),
          ...(auth.password === undefined ? [] : [`requirepass ${auth.password}`]),
          '',
        ].join('\n'),
      );
      return launch([conf, '--sentinel'], port);
    },
    stop() {
      for (const s of started) s.kill();
      started.length = 0;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  teardown(() => set.stop());
  return set;
}
