// A chaos run from start to verdict: start its own Redis and PostgreSQL (unless given ones) and, for
// network faults, a network of its own; start N nodes in a cluster of their own, run the load against
// all of them, inject the seeded plan's faults (at most --overlap at once) while watching who serves
// each partition, then stop the load, wait for the pipeline to drain, compare what was acknowledged
// with what the stores and the counters hold, and remove everything the run made.

import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { CounterLoad, readCounters } from './counter-load.js';
import { describeMisses, readBack } from './read-back.js';
import { RunNetwork, networkProblem } from './network.js';
import { OwnershipWatch, judgeOwnership, recoveredAt, type FaultRecord } from './ownership-watch.js';
import { PostgresServer, RedisSetup } from './servers.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { CartLoad } from './cart-load.js';
import { EventLoad, type LoadTarget } from './event-load.js';
import { mysqlRunUrl, newRunNames, openPostgres, prepareMysql, prepareRun, quoteIdent, removeMysql, removeRun, type RunNames } from './isolation.js';
import { TcpRelay } from './relay.js';
import { openEventStore } from '../../gateways/events/open-store.js';
import type { ProcessedEventStore } from '../../gateways/events/store.js';
import { NodeProcess, sleep, startAgain } from './node-process.js';
import { redactedUrl } from '../../runtime/index.js';
import { createCertificateAuthority, issueCertificate } from '../../runtime/certs.js';
import { describeFault, NODE_FAULTS, planFaults, type PlannedFault } from './schedule.js';
import { NETWORK_FAULTS, REDIS_FAULTS, type ChaosOptions } from './settings.js';
import { formatVerdict, isNothingLost, judgeAggregates, judgeCarts, judgeCounters, judgeEvents, type ChaosReport, type CountersJudgement, type FaultCounts } from './verdict.js';

export interface ChaosIO {
  /** Progress and the verdict, for a person. */
  out(line: string): void;
  /**
   * Tests: runs after the drain, before the stores are read (to take rows away and see the verdict
   * fail). db is the run's PostgreSQL (carts, and events with --events-store postgres, in schema);
   * mysqlUrl the run's MySQL database with --events-store mysql.
   */
  beforeJudgement?(db: pg.Client, schema: string, mysqlUrl?: string): Promise<void>;
}

/** The run could not begin (Redis or PostgreSQL unreachable, a node that does not start). */
export class ChaosStartError extends Error {
  override name = 'ChaosStartError';
}

/** The run was interrupted (Ctrl-C); everything it started has been stopped and removed. */
export class ChaosInterrupted extends Error {
  override name = 'ChaosInterrupted';
}

const TROUPE_BIN = fileURLToPath(new URL('../../bin/troupe.js', import.meta.url));
const NODE_START_TIMEOUT_MS = 60_000;
const READY_AFTER_PAUSE_TIMEOUT_MS = 30_000;
const NODE_STOP_TIMEOUT_MS = 30_000;
const STATUS_EVERY_MS = 10_000;
const DRAIN_POLL_MS = 1000;
const DRAIN_PRINT_EVERY_MS = 3000;
/** With the queue depth not at 0 (its counter can drift by a batch after a crash), a store this still is drained. */
const DRAIN_STILL_MS = 10_000;
/** The nodes' BullMQ job lock: a batch held by a killed or paused node is delivered again after about 1.5x this. */
const LOCK_DURATION = '4s';
const EVENT_USERS = 200;
const CARTS = 20;
const CART_ITEMS = 4;
const CART_CONCURRENCY = 4;
const EVENT_RETRIES = 3;
const COUNTERS = 20;
const COUNTER_CONCURRENCY = 4;
/** Detection (2 s death, 2 s lease TTL) plus a hand-off, with room for a loaded machine. */
const STUCK_AFTER_MS = 10_000;
/** How long reading every user's summary and every counter back may take, in all. */
/** Reading back the users' summaries and the counters, in all (ops/chaos/read-back.ts). */
const READ_BACK_TIMEOUT_MS = 120_000;
/** One read-back request: as long as a node's own ask timeout (--events-ask-timeout, 10 s), after which it answers 503 itself. */
const READ_BACK_REQUEST_MS = 10_000;
const PARTITIONS = 1024;
const MAX_RESTARTS_ON_EXIT = 3;
const SENTINEL_MASTER = 'chaos';
/** A Redis pause lasts at least this: past three lease TTLs (2 s), so every lease lapses. */
const MIN_REDIS_PAUSE_MS = 6000;
const SLOW_LINK_DELAY_MS = 200;
const SLOW_LINK_LOSS_PERCENT = 5;
/** A fault that hurts a node's ability to serve: the others must keep at least one node serving. */
const TAKES_NODE_AWAY = new Set(['kill', 'pause', 'stop', 'partition']);

/** A PostgreSQL client that connects again after its server went away (pg-restart). */
class Postgres {
  #client?: pg.Client;
  constructor(readonly url: string) {}
  async query<R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.#client) {
          const c = await openPostgres(this.url);
          c.on('error', () => {
            if (this.#client === c) this.#client = undefined;
          });
          this.#client = c;
        }
        return await this.#client.query<R>(sql, params);
      } catch (err) {
        // Only a lost connection is worth another try (SQLSTATE 08, 57: shutdown; or a socket error).
        const code = String((err as { code?: unknown }).code ?? '');
        const lostConnection = code === '' || /^(08|57)/.test(code) || /^E[A-Z]/.test(code);
        if (!lostConnection || attempt >= 20) throw err;
        await this.#client?.end().catch(() => {});
        this.#client = undefined;
        await sleep(500);
      }
    }
  }
  /** For the test hook: a client connected now. */
  async client(): Promise<pg.Client> {
    await this.query('SELECT 1');
    return this.#client!;
  }
  async end(): Promise<void> {
    await this.#client?.end().catch(() => {});
    this.#client = undefined;
  }
}

/**
 * The events store the nodes write (PostgreSQL schema or MySQL database), read through the same
 * interface the nodes use, so the verdict is the same on either; a call that meets a lost
 * connection (pg-restart) is tried again, bounded.
 */
class EventRows {
  constructor(readonly store: ProcessedEventStore) {}
  async #retrying<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const code = String((err as { code?: unknown }).code ?? '');
        const lostConnection = code === '' || /^(08|57)/.test(code) || /^E[A-Z]+$/.test(code) || code === 'PROTOCOL_CONNECTION_LOST';
        if (!lostConnection || attempt >= 20) throw err;
        await sleep(500);
      }
    }
  }
  count(): Promise<number> {
    return this.#retrying(() => this.store.count());
  }
  /** Which of these ids are stored (asked in chunks: a MySQL packet holds 16 MiB by default). */
  async storedOf(ids: readonly string[]): Promise<string[]> {
    const found: string[] = [];
    for (let i = 0; i < ids.length; i += 5000) {
      const chunk = ids.slice(i, i + 5000);
      for (const r of await this.#retrying(() => this.store.rows(chunk))) found.push(r.id);
    }
    return found;
  }
  /** Rows per event id and per user, from every row of the table. */
  async tally(): Promise<{ perId: Map<string, number>; perUser: Map<string, number> }> {
    const perId = new Map<string, number>();
    const perUser = new Map<string, number>();
    for (const r of await this.#retrying(() => this.store.rows())) {
      perId.set(r.id, (perId.get(r.id) ?? 0) + 1);
      if (r.user_id !== null) perUser.set(r.user_id, (perUser.get(r.user_id) ?? 0) + 1);
    }
    return { perId, perUser };
  }
  async deadLetterIds(): Promise<Set<string>> {
    const dead = await this.#retrying(() => this.store.deadLetters());
    return new Set(dead.flatMap((d) => (d.id === null ? [] : [d.id])));
  }
  close(): Promise<void> {
    return this.store.close();
  }
}

const fmt = (v: number): string => v.toLocaleString('en-US');

export async function runChaos(o: ChaosOptions, io: ChaosIO, abort: AbortSignal): Promise<ChaosReport> {
  const names = newRunNames();
  const withEvents = o.workloads.includes('events');
  const withCarts = o.workloads.includes('carts');
  const withCounters = o.workloads.includes('counters');
  const plan = planFaults({ seed: o.seed, nodes: o.nodes, durationMs: o.durationMs, killEveryMs: o.killEveryMs, pauseEveryMs: o.pauseEveryMs, stopEveryMs: o.stopEveryMs, faultEveryMs: o.faultEveryMs, kinds: o.faults });
  const needsNetwork = plan.some((f) => NETWORK_FAULTS.includes(f.kind));
  if (needsNetwork) {
    const problem = networkProblem();
    if (problem) throw new ChaosStartError(`${problem}; or leave partition and slow-link out of --faults`);
    if (o.redisUrl || o.postgresUrl) throw new ChaosStartError('partition and slow-link run the nodes in network namespaces of the run, which reach only the Redis and PostgreSQL chaos starts itself on the run\'s bridge; leave out --redis and --postgres, or these faults');
  }

  const runDir = mkdtempSync(join(o.workDir, 'troupe-chaos-'));
  let network: RunNetwork | undefined;
  let redisSetup: RedisSetup | undefined;
  let pgServer: PostgresServer | undefined;
  let pgDir: string | undefined;
  let nodes: NodeProcess[] = [];
  const killAll = () => {
    for (const n of nodes) n.killNow();
    redisSetup?.killNow();
    pgServer?.process.killNow();
    network?.removeNow();
  };
  process.on('exit', killAll);

  let db: Postgres | undefined;
  let eventRows: EventRows | undefined;
  let mysqlRelay: TcpRelay | undefined;
  let mysqlPrepared = false;
  let eventLoad: EventLoad | undefined;
  let cartLoad: CartLoad | undefined;
  let counterLoad: CounterLoad | undefined;
  let watch: OwnershipWatch | undefined;
  const notes: string[] = [];
  const faults: FaultCounts = { kill: 0, pause: 0, stop: 0, unexpectedExits: 0 };
  for (const k of o.faults) faults[k] = 0;
  const faultLog: FaultRecord[] = [];
  const redisDown: [number, number][] = [];
  let t0 = performance.now();
  const sinceLoad = () => performance.now() - t0;
  const clock = () => `[${(sinceLoad() / 1000).toFixed(1).padStart(6)}s]`;
  const say = (text: string) => io.out(`${clock()} ${text}`);
  let finished = false;
  let redisUrl = o.redisUrl;
  let postgresUrl = o.postgresUrl;
  /** Faults under way; on an interruption the cleanup waits for them (bounded) before stopping what they touch. */
  const running = new Set<Promise<void>>();

  try {
    // The run's own network and servers, before anything that needs them.
    try {
      if (needsNetwork) network = RunNetwork.create(o.nodes);
      const serverHost = network?.hostAddress ?? '127.0.0.1';
      if (!redisUrl) {
        redisSetup = await RedisSetup.start({ dir: join(runDir, 'redis'), host: serverHost, sentinels: o.faults.includes('redis-failover'), masterName: SENTINEL_MASTER });
        redisUrl = redisSetup.url;
      }
      if (!postgresUrl) {
        pgDir = mkdtempSync(join(o.workDir, 'troupe-chaos-pg-'));
        pgServer = await PostgresServer.start(pgDir, serverHost);
        postgresUrl = pgServer.url;
      }
      await prepareRun(redisUrl, postgresUrl, names);
      if (o.eventsStore === 'mysql') {
        await prepareMysql(o.mysqlUrl!, names);
        mysqlPrepared = true;
        // In namespaces the nodes reach servers at the bridge address; MySQL, not chaos's, is
        // reached through a relay of chaos's own listening there.
        if (network) {
          const server = new URL(o.mysqlUrl!);
          mysqlRelay = await TcpRelay.start(network.hostAddress, { host: server.hostname.replace(/^\[|\]$/g, ''), port: server.port ? Number(server.port) : 3306 });
        }
      }
    } catch (err) {
      throw new ChaosStartError((err as Error).message);
    }
    const currentRedisUrl = () => redisSetup?.currentUrl ?? redisUrl!;
    io.out(`troupe chaos: ${o.nodes} nodes, ${o.durationMs / 1000}s of load (${o.workloads.join(' + ')}), faults ${o.faults.join(',')} (at most ${o.overlap} at once), seed ${o.seed}`);
    io.out(`  isolated as: cluster ${names.cluster} (Redis ${redactedUrl(redisUrl)}), queue ${names.queue}, schema ${names.schema} (PostgreSQL ${redactedUrl(postgresUrl)})`);
    const mysqlUrl = o.eventsStore === 'mysql' ? mysqlRunUrl(o.mysqlUrl!, names) : undefined;
    // What the nodes are given: the same database, through the relay when they are in namespaces.
    let nodeMysqlUrl = mysqlUrl;
    if (mysqlUrl && mysqlRelay) {
      const u = new URL(mysqlUrl);
      u.hostname = network!.hostAddress;
      u.port = String(mysqlRelay.port);
      nodeMysqlUrl = u.toString();
    }
    io.out(`  events stored in: ${mysqlUrl ? `MySQL database ${names.mysqlDatabase} (${redactedUrl(mysqlUrl)}${mysqlRelay ? `; the nodes reach it through chaos's relay on ${network!.hostAddress}:${mysqlRelay.port}` : ''})` : `PostgreSQL schema ${names.schema}`}`);
    if (redisSetup) io.out(`  Redis of the run: primary :${redisSetup.ports.primary} (AOF, appendfsync everysec)${redisSetup.replica ? `, replica :${redisSetup.ports.replica}, Sentinels ${redisSetup.sentinelAddresses} (master ${SENTINEL_MASTER}, quorum 2, down after 2s)` : ''}`);
    if (pgServer) io.out(`  PostgreSQL of the run: initdb in ${pgDir}, on ${pgServer.host}:${pgServer.port}`);
    if (network) io.out(`  network of the run: bridge ${network.bridge} ${network.hostAddress}/24; ${network.links.map((l, i) => `n${i + 1} ${l.address} (netns ${l.netns})`).join(', ')}${network.netem ? '' : '; no netem in this kernel: slow links are loss (nft) and a bandwidth cap (tbf)'}`);
    io.out(`  nodes' data and logs: ${runDir}${o.keep ? ' (kept)' : ' (removed at the end; --keep keeps them)'}`);
    io.out(`  plan: ${plan.length ? plan.map(describeFault).join(', ') : 'no faults (every interval is 0): a baseline run'}`);

    // With a replica and Sentinels (redis-failover), the nodes follow the Sentinels; the URL still
    // gives the password and db.
    const redisArgs = redisSetup?.replica ? ['--redis', redisUrl, '--redis-sentinels', redisSetup!.sentinelAddresses, '--redis-master', SENTINEL_MASTER] : ['--redis', redisUrl];
    // One carts secret for every node, from a 0600 file (a flag would show in ps).
    const secret = join(runDir, 'carts-secret');
    writeFileSync(secret, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    const storeArgs = nodeMysqlUrl ? ['--events-store', 'mysql', '--mysql', nodeMysqlUrl] : ['--events-store', 'postgres'];
    // GET /users/<id>/summary needs a token; the verdict reads every user's summary with it.
    const summaryToken = randomBytes(32).toString('base64url');
    const summaryTokenFile = join(runDir, 'summary-token');
    writeFileSync(summaryTokenFile, `${summaryToken}\n`, { mode: 0o600 });
    const tls = await makeClusterCerts(join(runDir, 'certs'), o.nodes);
    io.out(`  cluster port: mutual TLS, CA and node certificates in ${join(runDir, 'certs')}`);
    nodes = makeNodes(o, names, runDir, secret, [...redisArgs, ...storeArgs, '--events-summary-token-file', summaryTokenFile], postgresUrl, network, tls);

    db = new Postgres(postgresUrl);
    if (withEvents) {
      // Opening it creates the tables, once, before any node starts.
      try {
        eventRows = new EventRows(await openEventStore({ eventsStore: o.eventsStore, dataDir: runDir, postgresUrl, pgSchema: names.schema, mysqlUrl, poolSize: 2 }));
      } catch (err) {
        throw new ChaosStartError(`the run's events store could not be opened: ${(err as Error).message}`);
      }
    }
    const checkAbort = () => {
      if (abort.aborted) throw new ChaosInterrupted('interrupted');
    };

    // Nodes that end on their own are a finding: say so, and start them again so the run goes on.
    const restarting = new Map<NodeProcess, Promise<void>>();
    for (const node of nodes) {
      node.onUnexpectedExit = (n, how) => {
        if (finished || abort.aborted) return;
        faults.unexpectedExits++;
        // A node that cannot start (its Redis is a read-only replica, say) is not started forever.
        if (n.unexpectedExits > MAX_RESTARTS_ON_EXIT) {
          say(`${n.name} ended on its own (${how}) for the ${n.unexpectedExits}th time; see ${n.spec.logFile}; not starting it again`);
          return;
        }
        say(`${n.name} ended on its own (${how}); see ${n.spec.logFile}; starting it again`);
        restarting.set(n, startAgain(n, async (line) => say(line), NODE_START_TIMEOUT_MS).then(
          (up) => (up ? say(`${n.name} up again after ending on its own`) : undefined),
        ).finally(() => restarting.delete(n)));
      };
    }

    // The first node alone creates the tables; the others then join at once.
    const startedAt = performance.now();
    try {
      await nodes[0]!.start(NODE_START_TIMEOUT_MS);
      checkAbort();
      await Promise.all(nodes.slice(1).map((n) => n.start(NODE_START_TIMEOUT_MS)));
    } catch (err) {
      if (err instanceof ChaosInterrupted || abort.aborted) throw new ChaosInterrupted('interrupted');
      throw new ChaosStartError((err as Error).message);
    }
    checkAbort();
    io.out(`  started in ${((performance.now() - startedAt) / 1000).toFixed(1)}s: ${nodes.map((n) => `${n.name} (pid ${n.pid}, ${portsOf(n)})`).join(', ')}`);

    const targets = (key: string) => (): LoadTarget[] =>
      nodes.filter((n) => n.state !== 'down' && n.state !== 'starting' && n.ports[key] !== undefined).map((n) => ({ node: n.name, host: n.spec.address, port: n.ports[key]! }));
    if (withCarts) {
      const user = randomUUID();
      cartLoad = new CartLoad({
        targets: targets('carts.grpc'),
        userToken: cartsToken(secret, user, false, runDir),
        adminToken: cartsToken(secret, user, true, runDir),
        addsPerSecond: o.cartAddsPerSecond,
        concurrency: CART_CONCURRENCY,
        carts: CARTS,
        items: CART_ITEMS,
      });
      try {
        await cartLoad.createItems();
      } catch (err) {
        throw new ChaosStartError(`the cart items could not be created: ${(err as Error).message}`);
      }
    }
    if (withEvents) {
      eventLoad = new EventLoad({ targets: targets('events.http'), eventsPerSecond: o.eventsPerSecond, batchSize: o.batchSize, concurrency: o.concurrency, retries: EVENT_RETRIES, users: EVENT_USERS });
    }
    if (withCounters) counterLoad = new CounterLoad({ targets: targets('chaos-counter.http'), addsPerSecond: o.counterAddsPerSecond, concurrency: COUNTER_CONCURRENCY, counters: COUNTERS });

    const storedEvents = async () => (eventRows ? eventRows.store.count() : 0);
    const status = async () => {
      const parts: string[] = [];
      if (eventLoad) {
        let stored = '?';
        try {
          stored = fmt(await Promise.race([storedEvents(), sleep(2000).then(() => { throw new Error('slow'); })]));
        } catch {
          // the table may not be there yet, or PostgreSQL is slow or restarting: the line still goes out
        }
        parts.push(`events acked ${fmt(eventLoad.acked.size)}, not acked ${fmt(eventLoad.refused.size + eventLoad.ambiguous.size)}, stored ${stored}`);
      }
      if (cartLoad) {
        const t = cartLoad.totals();
        parts.push(`cart adds acked ${fmt(t.acked)}, not acked ${fmt(t.refused + t.ambiguous)}`);
      }
      if (counterLoad) parts.push(`increments acked ${fmt(counterLoad.acked.length)}, not acked ${fmt(counterLoad.refused.size + counterLoad.ambiguous.size)}`);
      return parts.join(' | ');
    };

    // Which nodes no fault holds now: a partition whose lease names another counts as unserved.
    const notServing = new Set<string>();
    watch = new OwnershipWatch({ redisUrl: currentRedisUrl, cluster: names.cluster, partitions: PARTITIONS, serving: () => new Set(nodes.filter((n) => n.state === 'up' && n.nodeId && !notServing.has(n.name)).map((n) => n.nodeId!)), now: sinceLoad });

    t0 = performance.now();
    eventLoad?.start();
    cartLoad?.start();
    counterLoad?.start();
    watch.start();
    say(`load started on ${nodes.length} nodes`);
    const loadEnds = t0 + o.durationMs;
    let lastLine = performance.now();
    const sayWithCounts = async (text: string) => {
      lastLine = performance.now();
      say(`${text.padEnd(44)} ${await status()}`);
    };
    const ctx: FaultContext = { o, nodes, network, redisSetup, pgServer, say: sayWithCounts, faults, notServing, redisDown, now: sinceLoad, abort, notes };

    // Faults in plan order, at most --overlap at once, each on a node no other fault holds.
    const ticker = setInterval(() => {
      if (performance.now() - lastLine >= STATUS_EVERY_MS - 100) void sayWithCounts('load');
    }, 1000);
    const heldNodes = new Set<number>();
    let serverFault: string | undefined;
    try {
      for (const fault of plan) {
        const due = t0 + fault.atMs;
        while (performance.now() < due) {
          checkAbort();
          await sleep(Math.min(200, due - performance.now()));
        }
        while (running.size >= o.overlap) {
          checkAbort();
          await Promise.race([...running, sleep(200)]);
        }
        checkAbort();
        if (performance.now() >= loadEnds) {
          say(`skipped ${describeFault(fault)}: the load is over (earlier faults ran late)`);
          continue;
        }
        let node: NodeProcess | undefined;
        if (NODE_FAULTS.includes(fault.kind)) {
          // The planned node, or the next one no fault holds; one node must stay serving.
          const free = (i: number) => !heldNodes.has(i) && nodes[i]!.state === 'up' && !restarting.has(nodes[i]!);
          const pick = [...Array(o.nodes).keys()].map((k) => (fault.node + k) % o.nodes).find(free);
          const servingAfter = nodes.filter((n, i) => free(i) && i !== pick).length;
          if (pick === undefined || (TAKES_NODE_AWAY.has(fault.kind) && servingAfter < 1)) {
            say(`skipped ${describeFault(fault)}: no node is free for it (every other one is under a fault)`);
            continue;
          }
          node = nodes[pick]!;
          heldNodes.add(pick);
        } else {
          if (serverFault) {
            say(`skipped ${describeFault(fault)}: ${serverFault} is still running`);
            continue;
          }
          serverFault = fault.kind;
        }
        const p: Promise<void> = runFault(fault, node, ctx)
          .then(async (record) => {
            faultLog.push(record);
            // The slot is held until the cluster has settled (every partition served) or the
            // stuck threshold passed, so that the next fault does not hide this one's recovery.
            const settleBy = performance.now() + STUCK_AFTER_MS;
            while (performance.now() < settleBy && !abort.aborted && recoveredAt(watch!.samples, record.healedAtMs ?? Infinity) === undefined) await sleep(250);
          })
          .catch((err: Error) => say(`${fault.kind} failed: ${err.message}`))
          .finally(() => {
            running.delete(p);
            if (node) heldNodes.delete(nodes.indexOf(node));
            else serverFault = undefined;
          });
        running.add(p);
      }
      await Promise.all(running);
      while (performance.now() < loadEnds) {
        checkAbort();
        await sleep(Math.min(200, loadEnds - performance.now()));
      }
    } finally {
      clearInterval(ticker);
    }
    await Promise.all(restarting.values());
    await Promise.all([eventLoad?.stop(), cartLoad?.stop(), counterLoad?.stop()]);
    await watch.stop();
    await sayWithCounts('load stopped');
    checkAbort();

    // Drain: every acknowledged event must reach processed_events; bounded by --drain-timeout.
    const drainStart = performance.now();
    let drained = true;
    if (eventLoad) drained = await drainEvents(eventLoad, nodes, eventRows!, o.drainTimeoutMs, say, abort);
    const drainMs = performance.now() - drainStart;
    checkAbort();

    // The judgement, from the stores, the counters and the ownership samples.
    if (io.beforeJudgement) await io.beforeJudgement(await db.client(), names.schema, mysqlUrl);
    const tally = eventLoad ? await eventRows!.tally() : undefined;
    const events = eventLoad ? judgeEvents(eventLoad, tally!.perId, await eventRows!.deadLetterIds()) : undefined;
    const carts = cartLoad ? judgeCarts(cartLoad.lines, await cartLines(db, names)) : undefined;
    const perUser = tally?.perUser;
    // Reading back is bounded: a cluster that does not answer fails the run as unanswered, not by hanging it.
    const readBackEnds = performance.now() + READ_BACK_TIMEOUT_MS;
    let counted = perUser ? await countedPerUser([...perUser.keys()], targets('events.http'), readBackEnds, summaryToken, say) : undefined;
    if (perUser && counted) counted = await settleShortCounts(perUser, counted, targets('events.http'), readBackEnds, summaryToken, say);
    const aggregates = perUser && counted ? judgeAggregates(perUser, counted) : undefined;
    let counters: CountersJudgement | undefined;
    if (counterLoad) {
      const states = await readCounters(counterLoad.keys, targets('chaos-counter.http'), readBackEnds, READ_BACK_REQUEST_MS);
      if (states.misses.size > 0) say(`counters not read: ${describeMisses(states.misses)} (the last answer of each counter's tries)`);
      counters = judgeCounters(counterLoad, states.values);
    }
    const ownership = { ...judgeOwnership(watch.samples, STUCK_AFTER_MS, redisDown), stuckAfterMs: STUCK_AFTER_MS };
    for (const f of faultLog) if (f.healedAtMs !== undefined) f.recoveredAtMs = recoveredAt(watch.samples, f.healedAtMs);
    faultLog.sort((a, b) => a.startedAtMs - b.startedAtMs);
    if (eventLoad) {
      say(`event attempts by answer: ${describeAnswers(eventLoad.answers)}`);
      if (eventLoad.resentAfterNoAnswer) say(`  ${fmt(eventLoad.resentAfterNoAnswer)} batches were acknowledged only when sent again after no answer: their ids may have been queued twice`);
    }
    if (cartLoad) {
      say(`AddItem calls by answer: ${describeAnswers(cartLoad.answers)}`);
      for (const [code, details] of cartLoad.failureExamples) say(`  ${code}, e.g.: ${details.length > 160 ? details.slice(0, 160) + '…' : details}`);
    }
    if (counterLoad) say(`increments by answer: ${describeAnswers(counterLoad.answers)}`);
    finished = true;
    await killNodes(nodes, say);
    const ok = isNothingLost(events, carts, aggregates, counters, ownership);
    if (!ok) {
      // Where only the output survives (CI), what the nodes said is the first clue.
      say('what the nodes logged over the run (warnings and errors, errors first):');
      for (const node of nodes) for (const line of node.logDigest()) say(`  ${line}`);
    }
    const report: ChaosReport = {
      ok,
      seed: o.seed,
      nodes: o.nodes,
      durationMs: o.durationMs,
      faults,
      events,
      carts,
      aggregates,
      counters,
      doubleActivations: counters?.doubleActivations,
      ownership,
      faultLog,
      drained,
      drainMs,
      notes,
    };
    return report;
  } finally {
    finished = true;
    await Promise.race([Promise.allSettled(running), sleep(NODE_STOP_TIMEOUT_MS)]);
    await Promise.allSettled([eventLoad?.stop(), cartLoad?.stop(), counterLoad?.stop(), watch?.stop()]);
    if (nodes.some((n) => n.alive)) await killNodes(nodes, say);
    await Promise.all(nodes.map((n) => n.closeLog()));
    await db?.end();
    await eventRows?.close().catch(() => {});
    await mysqlRelay?.stop();
    if (mysqlPrepared) {
      for (const p of await removeMysql(o.mysqlUrl!, names)) {
        notes.push(p);
        io.out(`  cleanup: ${p}`);
      }
    }
    // Servers the run owns go whole; in servers it does not, only its own keys and schema.
    if (redisUrl && postgresUrl && (!redisSetup || !pgServer)) {
      const problems = await removeRun(redisSetup ? redisSetup.currentUrl : redisUrl, postgresUrl, names, { redis: !redisSetup, postgres: !pgServer });
      for (const p of problems) {
        notes.push(p);
        io.out(`  cleanup: ${p}`);
      }
    }
    await redisSetup?.stopAll();
    await pgServer?.stop();
    for (const p of network?.remove() ?? []) {
      notes.push(p);
      io.out(`  cleanup: ${p}`);
    }
    process.off('exit', killAll);
    if (pgDir && !o.keep) rmSync(pgDir, { recursive: true, force: true });
    if (!o.keep) rmSync(runDir, { recursive: true, force: true });
    else io.out(`  kept: ${runDir} (a data directory and a log per node, the servers' logs)`);
  }
}

/** The run's own CA and a certificate per node (n1, n2, ...), as `troupe certs` makes them: the nodes talk mutual TLS. */
async function makeClusterCerts(dir: string, count: number): Promise<(name: string) => string[]> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority({ name: 'Troupe chaos run CA', days: 8 });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  for (let i = 1; i <= count; i++) {
    const pair = await issueCertificate({ ca, name: `n${i}`, days: 7 });
    writeFileSync(join(dir, `n${i}.pem`), pair.cert);
    writeFileSync(join(dir, `n${i}-key.pem`), pair.key, { mode: 0o600 });
  }
  return (name) => ['--tls-ca', join(dir, 'ca.pem'), '--tls-cert', join(dir, `${name}.pem`), '--tls-key', join(dir, `${name}-key.pem`)];
}

function makeNodes(o: ChaosOptions, names: RunNames, runDir: string, secretFile: string, redisArgs: string[], postgresUrl: string, network: RunNetwork | undefined, tlsArgs: (name: string) => string[]): NodeProcess[] {
  const gateways = o.workloads.map((w) => (w === 'counters' ? 'chaos-counter' : w)).join(',');
  const ports = ['ops', ...(o.workloads.includes('events') ? ['events.http'] : []), ...(o.workloads.includes('carts') ? ['carts.grpc'] : []), ...(o.workloads.includes('counters') ? ['chaos-counter.http'] : [])];
  const args = (address: string) => [
    '--host', address,
    '--gateways', gateways,
    ...redisArgs,
    '--postgres', postgresUrl,
    '--cluster', names.cluster,
    '--shards', String(o.shards),
    '--log-level', o.nodeLogLevel,
    '--cluster-port', '0',
    '--ops-port', '0',
    '--events-port', '0',
    '--carts-port', '0',
    '--chaos-counter-port', '0',
    '--events-queue-name', names.queue,
    '--events-pg-schema', names.schema,
    '--carts-schema', names.schema,
    '--carts-secret-file', secretFile,
    // PostgreSQL connections: about 10 + 4 per node instead of 34 + 8, so that a few nodes fit
    // beside whatever else shares the server (100 connections by default).
    '--events-queue-workers', '8',
    '--events-pool-threads', '1',
    '--carts-pool-size', '2',
    '--events-lock-duration', LOCK_DURATION,
    // A node told to stop under continued load leaves at this timeout (the queue is shared).
    '--events-drain-timeout', '3s',
  ];
  return Array.from({ length: o.nodes }, (_, i) => {
    const name = `n${i + 1}`;
    const dataDir = join(runDir, name);
    mkdirSync(dataDir, { recursive: true });
    const link = network?.links[i];
    const address = link?.address ?? '127.0.0.1';
    return new NodeProcess({ name, dataDir, logFile: join(runDir, `${name}.log`), troupeBin: TROUPE_BIN, command: 'chaos-node', args: [...args(address), ...tlsArgs(name)], ports, address, netns: link?.netns });
  });
}

function portsOf(n: NodeProcess): string {
  return Object.entries(n.ports)
    .filter(([k]) => k !== 'ops')
    .map(([k, v]) => `${k.split('.')[0]} :${v}`)
    .join(', ');
}

/** A bearer token from `troupe carts-token`, the tool an operator would use. */
function cartsToken(secretFile: string, user: string, admin: boolean, runDir: string): string {
  const r = spawnSync(process.execPath, [TROUPE_BIN, 'carts-token', '--carts-secret-file', secretFile, '--user', user, '--ttl', '6h', '--data-dir', runDir, ...(admin ? ['--admin'] : [])], { encoding: 'utf8' });
  const token = r.stdout.trim();
  if (r.status !== 0 || !token) throw new ChaosStartError(`troupe carts-token failed (exit ${r.status}): ${r.stderr.trim()}`);
  return token;
}

interface FaultContext {
  o: ChaosOptions;
  nodes: NodeProcess[];
  network?: RunNetwork;
  redisSetup?: RedisSetup;
  pgServer?: PostgresServer;
  say(text: string): Promise<void>;
  faults: FaultCounts;
  /** Nodes a fault holds now (killed, paused, stopped, cut off): what they lease counts as unserved. */
  notServing: Set<string>;
  /** Stretches of Redis faults, ms after the load started. */
  redisDown: [number, number][];
  now(): number;
  abort: AbortSignal;
  notes: string[];
}

/** Runs one fault to its heal; returns its record (the recovery time is read from the samples later). */
async function runFault(fault: PlannedFault, node: NodeProcess | undefined, c: FaultContext): Promise<FaultRecord> {
  const { o, say, faults } = c;
  const began = performance.now();
  const took = () => `${((performance.now() - began) / 1000).toFixed(1)}s`;
  const record: FaultRecord = { kind: fault.kind, target: node?.name ?? (fault.kind === 'pg-restart' ? 'postgres' : 'redis'), startedAtMs: c.now() };
  const healed = () => {
    record.healedAtMs = c.now();
  };
  const index = node ? c.nodes.indexOf(node) : -1;
  switch (fault.kind) {
    case 'kill': {
      const n = node!;
      const pid = n.pid;
      c.notServing.add(n.name);
      await n.kill();
      faults.kill++;
      await say(`kill ${n.name} (SIGKILL pid ${pid})`);
      await sleep(o.downForMs);
      if (!c.abort.aborted) await restart(n, say, took);
      c.notServing.delete(n.name);
      healed();
      break;
    }
    case 'pause': {
      const n = node!;
      c.notServing.add(n.name);
      n.pause();
      faults.pause++;
      await say(`pause ${n.name} (SIGSTOP pid ${n.pid}, ${o.pauseForMs / 1000}s)`);
      await sleep(o.pauseForMs);
      n.resume();
      c.notServing.delete(n.name);
      healed();
      await say(`resume ${n.name} (SIGCONT)`);
      if (c.abort.aborted) break;
      const ready = await n.waitReady(READY_AFTER_PAUSE_TIMEOUT_MS);
      await say(ready ? `${n.name} ready again after ${took()}` : `${n.name} not ready ${READY_AFTER_PAUSE_TIMEOUT_MS / 1000}s after SIGCONT; going on`);
      break;
    }
    case 'stop': {
      const n = node!;
      await say(`stop ${n.name} (SIGTERM pid ${n.pid})`);
      c.notServing.add(n.name);
      const { how, forced } = await n.terminate(NODE_STOP_TIMEOUT_MS);
      faults.stop++;
      await say(forced ? `${n.name} did not leave within ${NODE_STOP_TIMEOUT_MS / 1000}s; killed (${how})` : `${n.name} left (${how}) after ${took()}`);
      await sleep(o.downForMs);
      if (!c.abort.aborted) await restart(n, say, took);
      c.notServing.delete(n.name);
      healed();
      break;
    }
    case 'partition': {
      const n = node!;
      const side = fault.side ?? 'both';
      record.detail = `from ${side}`;
      c.notServing.add(n.name);
      c.network!.cut(index, side, c.redisSetup?.allPorts ?? []);
      faults.partition = (faults.partition ?? 0) + 1;
      await say(`partition ${n.name} from ${side === 'both' ? 'its peers and Redis' : side === 'peers' ? 'its peers (Redis still reachable)' : 'Redis (peers still reachable)'} for ${o.faultForMs / 1000}s`);
      await sleep(o.faultForMs);
      c.network!.heal(index);
      c.notServing.delete(n.name);
      healed();
      await say(`heal ${n.name}: every link open again`);
      break;
    }
    case 'slow-link': {
      const n = node!;
      record.detail = c.network!.slow(index, SLOW_LINK_DELAY_MS, SLOW_LINK_LOSS_PERCENT);
      faults['slow-link'] = (faults['slow-link'] ?? 0) + 1;
      await say(`slow link on ${n.name} for ${o.faultForMs / 1000}s: ${record.detail}`);
      await sleep(o.faultForMs);
      c.network!.heal(index);
      healed();
      await say(`heal ${n.name}: its link at full speed again`);
      break;
    }
    case 'redis-restart': {
      const r = c.redisSetup!;
      const from = c.now();
      faults['redis-restart'] = (faults['redis-restart'] ?? 0) + 1;
      await say(`redis-restart: SIGKILL the Redis primary (pid ${r.currentProcess.pid}), start it again on its AOF after ${o.downForMs / 1000}s`);
      try {
        await r.restart(o.downForMs);
      } finally {
        healed();
        c.redisDown.push([from, record.healedAtMs!]);
      }
      await say(`Redis answers again after ${took()}`);
      break;
    }
    case 'redis-pause': {
      const r = c.redisSetup!;
      const pauseMs = Math.max(o.faultForMs, MIN_REDIS_PAUSE_MS);
      const proc = r.currentProcess;
      const from = c.now();
      proc.pause();
      faults['redis-pause'] = (faults['redis-pause'] ?? 0) + 1;
      record.detail = `${pauseMs / 1000}s`;
      await say(`redis-pause: SIGSTOP the Redis primary (pid ${proc.pid}) for ${pauseMs / 1000}s (lease TTL 2s)`);
      await sleep(pauseMs);
      proc.resume();
      healed();
      c.redisDown.push([from, record.healedAtMs!]);
      await say('Redis resumed (SIGCONT)');
      break;
    }
    case 'redis-failover': {
      const r = c.redisSetup!;
      const from = c.now();
      faults['redis-failover'] = (faults['redis-failover'] ?? 0) + 1;
      await say(`redis-failover: SIGKILL the Redis primary (pid ${r.currentProcess.pid}); the Sentinels promote the replica`);
      try {
        record.detail = `promoted ${await r.failover()}`;
      } finally {
        healed();
        c.redisDown.push([from, record.healedAtMs!]);
      }
      await say(`Sentinels promoted ${record.detail.replace('promoted ', '')} after ${took()}; the old primary starts again as its replica`);
      break;
    }
    case 'pg-restart': {
      const p = c.pgServer!;
      faults['pg-restart'] = (faults['pg-restart'] ?? 0) + 1;
      await say(`pg-restart: stop PostgreSQL (fast shutdown, pid ${p.process.pid}), start it again after ${o.downForMs / 1000}s`);
      try {
        await p.restart(o.downForMs);
      } finally {
        healed();
      }
      await say(`PostgreSQL answers again after ${took()}`);
      break;
    }
  }
  return record;
}

async function restart(node: NodeProcess, say: (text: string) => Promise<void>, took: () => string): Promise<void> {
  if (await startAgain(node, say, NODE_START_TIMEOUT_MS)) await say(`${node.name} back (pid ${node.pid}, ${took()} after the fault)`);
}


/**
 * Waits until every acknowledged event is in processed_events and the queue is empty (or the store
 * has been still for a while), printing progress; false if --drain-timeout came first.
 */
async function drainEvents(load: EventLoad, nodes: NodeProcess[], rows: EventRows, timeoutMs: number, say: (text: string) => void, abort: AbortSignal): Promise<boolean> {
  const pending = new Set(load.acked);
  const deadline = performance.now() + timeoutMs;
  let lastPrint = 0;
  let lastCount = -1;
  let stillSince = performance.now();
  for (;;) {
    if (abort.aborted) return false;
    if (pending.size > 0) {
      for (const id of await rows.storedOf([...pending])) pending.delete(id);
    }
    const count = await rows.count();
    if (count !== lastCount) {
      lastCount = count;
      stillSince = performance.now();
    }
    const depth = await queueDepth(nodes);
    const now = performance.now();
    if (pending.size === 0 && (depth === 0 || now - stillSince >= DRAIN_STILL_MS)) {
      say(`drained: every acknowledged event stored (${fmt(count)} rows; queue depth ${depth ?? 'unknown'})`);
      return true;
    }
    if (now >= deadline) {
      say(`drain timeout: ${fmt(pending.size)} acknowledged events still not stored (queue depth ${depth ?? 'unknown'})`);
      return false;
    }
    if (now - lastPrint >= DRAIN_PRINT_EVERY_MS) {
      lastPrint = now;
      say(`drain: ${fmt(pending.size)} acknowledged events not stored yet; ${fmt(count)} rows; queue depth ${depth ?? 'unknown'}`);
    }
    await sleep(DRAIN_POLL_MS);
  }
}

/** current_queue_depth from the first node that answers GET /metrics (cluster-wide with BullMQ). */
async function queueDepth(nodes: NodeProcess[]): Promise<number | undefined> {
  for (const n of nodes) {
    const port = n.ports['events.http'];
    if (n.state !== 'up' || port === undefined) continue;
    try {
      const res = await fetch(`http://${n.spec.address}:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
      const m = (await res.json()) as { current_queue_depth?: number };
      if (typeof m.current_queue_depth === 'number') return m.current_queue_depth;
    } catch {
      // try the next node
    }
  }
  return undefined;
}

/** How long users whose summary counts fewer events than their rows are read again before they count as off. */
const AGGREGATE_SETTLE_MS = 10_000;

/**
 * A summary that counts fewer events than the user's rows may be read while its last events are on
 * their way to the actor (a row is stored before its actor is told, and a queue-depth of 0 does not
 * prove every hand-off done): such users are read again, once a second, for AGGREGATE_SETTLE_MS.
 * One that catches up was late, not off, and the run says how many were; one that stays short, or
 * counts more than its rows, is judged off.
 */
async function settleShortCounts(rows: ReadonlyMap<string, number>, counted: Map<string, number | undefined>, targets: () => LoadTarget[], endsAt: number, token: string, say: (line: string) => void): Promise<Map<string, number | undefined>> {
  const short = () => [...rows].filter(([user, n]) => { const c = counted.get(user); return c !== undefined && c < n; }).map(([user]) => user);
  const first = short();
  if (first.length === 0) return counted;
  const until = Math.min(endsAt, performance.now() + AGGREGATE_SETTLE_MS);
  let left = first;
  while (left.length > 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const [user, n] of await countedPerUser(left, targets, endsAt, token)) if (n !== undefined) counted.set(user, n);
    left = short();
  }
  say(`${fmt(first.length)} users' summaries counted fewer events than their rows when first read; ${fmt(first.length - left.length)} caught up within ${AGGREGATE_SETTLE_MS / 1000} s (events still on their way to the actor)`);
  return counted;
}

/** Each user's event count from its summary (GET /users/<id>/summary), asked of the running nodes in turn. */
async function countedPerUser(users: string[], targets: () => LoadTarget[], endsAt: number, token: string, say?: (line: string) => void): Promise<Map<string, number | undefined>> {
  const { values, misses } = await readBack(users, targets, {
    path: (user) => `/users/${encodeURIComponent(user)}/summary`,
    headers: { authorization: `Bearer ${token}` },
    parse: (body) => (body as { events: number }).events,
  }, { endsAt, attempts: 3, requestTimeoutMs: READ_BACK_REQUEST_MS });
  if (misses.size > 0) say?.(`user summaries not read: ${describeMisses(misses)} (the last answer of each user's tries)`);
  return values;
}

async function cartLines(db: Postgres, names: RunNames): Promise<Map<string, number>> {
  const res = await db.query<{ cart: string; item: string; quantity: number }>(`SELECT cart_uuid::text AS cart, item_uuid::text AS item, quantity FROM ${quoteIdent(names.schema)}.cart_entry`);
  return new Map(res.rows.map((r) => [`${r.cart}|${r.item}`, Number(r.quantity)]));
}

function describeAnswers(answers: Map<string, number>): string {
  return [...answers].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') || 'none';
}

/**
 * At the end, once the stores are read: SIGKILL (a graceful leave of every node at once only waits
 * on hand-offs to nodes that are leaving too; their data is removed or kept as it is).
 */
async function killNodes(nodes: NodeProcess[], say: (text: string) => void): Promise<void> {
  const alive = nodes.filter((n) => n.alive);
  await Promise.all(alive.map((n) => n.kill()));
  if (alive.length) say(`nodes killed: ${alive.map((n) => n.name).join(', ')}`);
}

export { formatVerdict };
