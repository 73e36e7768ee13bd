// The servers a chaos run starts and owns, so that it may hurt them: a Redis primary with AOF on
// (and, for failover, a replica and three Sentinels), and a PostgreSQL from initdb in a directory of
// the run. Each is a child process of chaos on a free port; each is removed at the end. Chaos never
// stops, pauses or restarts a server it did not start: those are the only ones these classes touch.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { sleep } from './node-process.js';

const START_TIMEOUT_MS = 30_000;

/** A free TCP port on `host`, from the OS (closed again at once; a race with another binder is unlikely and fails loudly). */
export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One server process of the run: its command line, its log, stop / pause / resume / start again. */
export class ServerProcess {
  #proc?: ChildProcess;
  #exited?: Promise<void>;
  #closed = false;
  readonly #log: WriteStream;

  constructor(
    readonly name: string,
    readonly command: string,
    readonly args: string[],
    logFile: string,
    readonly user?: { uid: number; gid: number },
  ) {
    this.#log = createWriteStream(logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  get alive(): boolean {
    return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  start(): void {
    // A fault still healing when the run ends must not start a server the cleanup has stopped.
    if (this.#closed) throw new Error(`${this.name} was stopped for good at the end of the run`);
    if (this.alive) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    this.#log.write(`--- chaos ${new Date().toISOString()}: ${this.command} ${this.args.join(' ')}\n`);
    const proc = spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(this.user ?? {}) });
    proc.stdout!.pipe(this.#log, { end: false });
    proc.stderr!.pipe(this.#log, { end: false });
    this.#proc = proc;
    this.#exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.#log.write(`--- chaos ${new Date().toISOString()}: ${this.name} ended (${signal ?? `exit ${code}`})\n`);
      resolve();
    }));
  }

  /** Sends `signal` and waits for the process to end (SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 15_000): Promise<void> {
    if (!this.alive) return;
    this.#proc!.kill('SIGCONT');
    this.#proc!.kill(signal);
    const ended = await Promise.race([this.#exited!.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!ended) {
      this.#proc!.kill('SIGKILL');
      await this.#exited;
    }
  }

  pause(): void {
    if (this.alive) this.#proc!.kill('SIGSTOP');
  }

  resume(): void {
    if (this.alive) this.#proc!.kill('SIGCONT');
  }

  /** For exit handlers. */
  killNow(): void {
    try {
      if (this.alive) this.#proc!.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  /** Stops it for good: no start after this. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.stop('SIGKILL');
    await new Promise<void>((resolve) => this.#log.end(() => resolve()));
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} did not answer within ${timeoutMs / 1000}s`);
}

async function redisAnswers(host: string, port: number, expectRole?: string): Promise<boolean> {
  const r = new Redis({ host, port, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    if (!expectRole) return (await r.ping()) === 'PONG';
    const role = (await r.call('ROLE')) as unknown[];
    return role[0] === expectRole;
  } finally {
    r.disconnect();
  }
}

export interface RedisSetupOptions {
  dir: string;
  /** The address every server binds and announces (the run's bridge, or 127.0.0.1). */
  host: string;
  /** A replica and three Sentinels as well (for redis-failover). */
  sentinels: boolean;
  masterName: string;
}

/**
 * A Redis primary with AOF (appendfsync everysec; a write is in the kernel before its reply, so a
 * SIGKILL of Redis alone loses nothing acknowledged), and with `sentinels` a replica and three
 * Sentinels (quorum 2) that promote it when the primary is down for 2 s.
 */
export class RedisSetup {
  readonly primary: ServerProcess;
  readonly replica?: ServerProcess;
  readonly sentinelProcs: ServerProcess[] = [];
  readonly ports: { primary: number; replica?: number; sentinels: number[] };
  /** Which of primary/replica is the primary now (after failovers). */
  current: 'primary' | 'replica' = 'primary';
  readonly #confs = new Map<string, string>();

  private constructor(readonly o: RedisSetupOptions, ports: RedisSetup['ports']) {
    this.ports = ports;
    // Each server reads a config file of its own, as a managed Redis does: the Sentinels rewrite it
    // (CONFIG REWRITE) when they promote or demote the server, so a server restarted after a
    // failover comes back in the role it had, not in the one its first command line gave it.
    const server = (name: string, port: number, extra: string[]) => {
      const dir = join(o.dir, name);
      mkdirSync(dir, { recursive: true });
      const conf = join(dir, 'redis.conf');
      // A lone replica is synced at once (no 5 s wait for others to join a diskless transfer).
      writeFileSync(conf, [`bind ${o.host}`, `port ${port}`, `dir ${dir}`, 'appendonly yes', 'appendfsync everysec', 'save ""', 'protected-mode no', 'repl-diskless-sync-delay 0', ...extra, ''].join('\n'));
      this.#confs.set(name, conf);
      return new ServerProcess(`redis ${name}`, 'redis-server', [conf], join(o.dir, `${name}.log`));
    };
    this.primary = server('primary', ports.primary, []);
    if (o.sentinels) {
      this.replica = server('replica', ports.replica!, [`replicaof ${o.host} ${ports.primary}`]);
      ports.sentinels.forEach((port, i) => {
        const conf = join(o.dir, `sentinel-${i + 1}.conf`);
        writeFileSync(conf, [
          `bind ${o.host}`, `port ${port}`, 'protected-mode no', `dir ${o.dir}`,
          `sentinel monitor ${o.masterName} ${o.host} ${ports.primary} 2`,
          `sentinel down-after-milliseconds ${o.masterName} 2000`,
          `sentinel failover-timeout ${o.masterName} 10000`,
          `sentinel parallel-syncs ${o.masterName} 1`, '',
        ].join('\n'));
        this.sentinelProcs.push(new ServerProcess(`sentinel ${i + 1}`, 'redis-server', [conf, '--sentinel'], join(o.dir, `sentinel-${i + 1}.log`)));
      });
    }
  }

  static async start(o: RedisSetupOptions): Promise<RedisSetup> {
    mkdirSync(o.dir, { recursive: true });
    const ports = { primary: await freePort(o.host), replica: o.sentinels ? await freePort(o.host) : undefined, sentinels: o.sentinels ? [await freePort(o.host), await freePort(o.host), await freePort(o.host)] : [] };
    const setup = new RedisSetup(o, ports);
    try {
      setup.primary.start();
      await waitFor(`Redis primary on ${o.host}:${ports.primary}`, () => redisAnswers(o.host, ports.primary));
      if (setup.replica) {
        setup.replica.start();
        await waitFor(`Redis replica on ${o.host}:${ports.replica}`, () => redisAnswers(o.host, ports.replica!, 'slave'));
        for (const s of setup.sentinelProcs) s.start();
        for (const port of ports.sentinels) await waitFor(`Sentinel on ${o.host}:${port}`, () => redisAnswers(o.host, port));
      }
    } catch (err) {
      await setup.stopAll();
      throw err;
    }
    return setup;
  }

  get url(): string {
    return `redis://${this.o.host}:${this.ports.primary}`;
  }

  /** The primary's URL as it is now (after failovers). */
  get currentUrl(): string {
    return `redis://${this.o.host}:${this.current === 'primary' ? this.ports.primary : this.ports.replica}`;
  }

  get sentinelAddresses(): string {
    return this.ports.sentinels.map((p) => `${this.o.host}:${p}`).join(',');
  }

  /** Every TCP port of the set-up (what a partition from Redis cuts). */
  get allPorts(): number[] {
    return [this.ports.primary, ...(this.ports.replica ? [this.ports.replica] : []), ...this.ports.sentinels];
  }

  get currentProcess(): ServerProcess {
    return this.current === 'primary' ? this.primary : this.replica!;
  }

  /** redis-restart: SIGKILL the primary (a crash) and start it again on its AOF; resolves when it answers. */
  async restart(downForMs: number): Promise<void> {
    const p = this.currentProcess;
    const port = this.current === 'primary' ? this.ports.primary : this.ports.replica!;
    await p.stop('SIGKILL');
    await sleep(downForMs);
    await this.#startInRole(this.current, port);
    await waitFor(`Redis on ${this.o.host}:${port} after its restart`, () => redisAnswers(this.o.host, port));
  }

  /**
   * Starts a server of the set the way a deployment's start script does behind Sentinels: as a
   * replica of the primary the Sentinels name, unless that is itself. A crashed primary restarted
   * on its own config would come back as a primary with stale data, and stay one until the
   * Sentinels see it (their check of a returning old primary runs every 10 s).
   */
  async #startInRole(which: 'primary' | 'replica', port: number): Promise<void> {
    const proc = which === 'primary' ? this.primary : this.replica!;
    const conf = this.#confs.get(which)!;
    if (this.o.sentinels) {
      const master = await this.sentinelMaster();
      const lines = readFileSync(conf, 'utf8').split('\n').filter((l) => !/^(replicaof|slaveof)\s/i.test(l));
      if (master !== undefined && master !== `${this.o.host}:${port}`) lines.push(`replicaof ${master.replace(':', ' ')}`);
      writeFileSync(conf, lines.join('\n'));
    }
    proc.start();
  }

  /**
   * redis-failover: SIGKILL the primary, wait for the Sentinels to promote the replica, then start
   * the old primary again (the Sentinels make it a replica of the new one). Returns the new primary.
   */
  async failover(timeoutMs = 30_000): Promise<string> {
    if (!this.replica) throw new Error('no replica and Sentinels were started (redis-failover not in --faults)');
    const old = this.current;
    const oldProc = this.currentProcess;
    const newPort = old === 'primary' ? this.ports.replica! : this.ports.primary;
    await oldProc.stop('SIGKILL');
    await waitFor(`the Sentinels' promotion of ${this.o.host}:${newPort}`, async () => (await this.sentinelMaster()) === `${this.o.host}:${newPort}` && (await redisAnswers(this.o.host, newPort, 'master')), timeoutMs);
    this.current = old === 'primary' ? 'replica' : 'primary';
    await this.#startInRole(old, old === 'primary' ? this.ports.primary : this.ports.replica!);
    return `${this.o.host}:${newPort}`;
  }

  /** What the first answering Sentinel names as the primary. */
  async sentinelMaster(): Promise<string | undefined> {
    for (const port of this.ports.sentinels) {
      const r = new Redis({ host: this.o.host, port, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      try {
        await r.connect();
        const addr = (await r.call('SENTINEL', 'get-master-addr-by-name', this.o.masterName)) as string[] | null;
        if (addr) return `${addr[0]}:${addr[1]}`;
      } catch {
        // the next Sentinel
      } finally {
        r.disconnect();
      }
    }
    return undefined;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.sentinelProcs, ...(this.replica ? [this.replica] : []), this.primary].map((p) => p.close()));
  }

  killNow(): void {
    for (const p of [...this.sentinelProcs, ...(this.replica ? [this.replica] : []), this.primary]) p.killNow();
  }
}

/** The PostgreSQL binaries of the newest version installed. */
function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(a) - Number(b)) : [];
  if (!versions.length) throw new Error('no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql), or give --postgres');
  return join(root, versions.at(-1)!, 'bin');
}

function postgresUser(): { uid: number; gid: number } {
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('there is no postgres user to run initdb and postgres as (they refuse to run as root); give --postgres');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** A PostgreSQL of the run: initdb in `dir` (owned by the postgres user), trust auth, on a free port. */
export class PostgresServer {
  readonly process: ServerProcess;
  private constructor(readonly dir: string, readonly host: string, readonly port: number, bin: string, user: { uid: number; gid: number }) {
    this.process = new ServerProcess('postgres', join(bin, 'postgres'), ['-D', join(dir, 'data'), '-p', String(port), '-k', dir, '-c', `listen_addresses=${host}`, '-c', 'max_connections=200', '-c', 'fsync=on', '-c', 'shared_buffers=32MB'], join(dir, 'postgres.log'), user);
  }

  static async start(dir: string, host: string): Promise<PostgresServer> {
    const bin = postgresBin();
    const user = process.getuid?.() === 0 ? postgresUser() : { uid: process.getuid!(), gid: process.getgid!() };
    mkdirSync(dir, { recursive: true });
    chownSync(dir, user.uid, user.gid);
    const init = spawnSync(join(bin, 'initdb'), ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], { encoding: 'utf8', uid: user.uid, gid: user.gid, cwd: dir });
    if (init.status !== 0) throw new Error(`initdb in ${dir} failed (exit ${init.status}): ${(init.stderr || init.stdout).trim().split('\n').slice(-3).join('; ')}`);
    // Trust on the run's own addresses only: the bridge's /24 (or loopback), and the socket.
    const hba = join(dir, 'data', 'pg_hba.conf');
    const net = host === '127.0.0.1' ? '127.0.0.1/32' : `${host.split('.').slice(0, 3).join('.')}.0/24`;
    writeFileSync(hba, `local all all trust\nhost all all ${net} trust\n`);
    chownSync(hba, user.uid, user.gid);
    const server = new PostgresServer(dir, host, await freePort(host), bin, user);
    server.process.start();
    try {
      await server.waitReady();
    } catch (err) {
      await server.process.stop('SIGKILL');
      throw new Error(`${(err as Error).message}; its log: ${join(dir, 'postgres.log')} (--keep keeps it)`);
    }
    return server;
  }

  get url(): string {
    return `postgres://postgres@${this.host}:${this.port}/postgres`;
  }

  async waitReady(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    await waitFor(`PostgreSQL on ${this.host}:${this.port}`, async () => {
      const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 1000 });
      try {
        await c.connect();
        await c.query('SELECT 1');
        return true;
      } finally {
        await c.end().catch(() => {});
      }
    }, timeoutMs);
  }

  /** pg-restart: a fast shutdown (SIGINT: connections cut, a checkpoint), a pause, the same data directory again. */
  async restart(downForMs: number): Promise<void> {
    await this.process.stop('SIGINT', 30_000);
    await sleep(downForMs);
    this.process.start();
    await this.waitReady();
  }

  async stop(): Promise<void> {
    await this.process.stop('SIGINT', 10_000);
    await this.process.close();
  }
}
