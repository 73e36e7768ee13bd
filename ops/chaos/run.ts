// A chaos run from start to verdict: start N `troupe node` processes in a cluster of their own, run
// the load against all of them, kill, pause and stop nodes on the seeded plan, then stop the load,
// wait for the pipeline to drain, compare what was acknowledged with what the stores hold, and
// remove everything the run made.

import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { CartLoad } from './cart-load.js';
import { EventLoad, type LoadTarget } from './event-load.js';
import { newRunNames, openPostgres, prepareRun, quoteIdent, removeRun, type RunNames } from './isolation.js';
import { NodeProcess, sleep } from './node-process.js';
import { redactedUrl } from '../../runtime/index.js';
import { describeFault, planFaults, type PlannedFault } from './schedule.js';
import type { ChaosOptions } from './settings.js';
import { formatVerdict, isNothingLost, judgeAggregates, judgeCarts, judgeEvents, type ChaosReport, type FaultCounts } from './verdict.js';

export interface ChaosIO {
  /** Progress and the verdict, for a person. */
  out(line: string): void;
  /** Tests: runs after the drain, before the stores are read (to take rows away and see the verdict fail). */
  beforeJudgement?(db: pg.Client, schema: string): Promise<void>;
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

const fmt = (v: number): string => v.toLocaleString('en-US');

export async function runChaos(o: ChaosOptions, io: ChaosIO, abort: AbortSignal): Promise<ChaosReport> {
  const names = newRunNames();
  const withEvents = o.workloads.includes('events');
  const withCarts = o.workloads.includes('carts');
  const plan = planFaults({ seed: o.seed, nodes: o.nodes, durationMs: o.durationMs, killEveryMs: o.killEveryMs, pauseEveryMs: o.pauseEveryMs, stopEveryMs: o.stopEveryMs });

  try {
    await prepareRun(o.redisUrl, o.postgresUrl, names);
  } catch (err) {
    throw new ChaosStartError((err as Error).message);
  }
  const runDir = mkdtempSync(join(o.workDir, 'troupe-chaos-'));
  io.out(`troupe chaos: ${o.nodes} nodes, ${o.durationMs / 1000}s of load (${o.workloads.join(' + ')}), seed ${o.seed}`);
  io.out(`  isolated as: cluster ${names.cluster} (Redis ${redactedUrl(o.redisUrl)}), queue ${names.queue}, schema ${names.schema} (PostgreSQL ${redactedUrl(o.postgresUrl)})`);
  io.out(`  nodes' data and logs: ${runDir}${o.keep ? ' (kept)' : ' (removed at the end; --keep keeps them)'}`);
  io.out(`  plan: ${plan.length ? plan.map(describeFault).join(', ') : 'no faults (every interval is 0): a baseline run'}`);

  const secret = randomBytes(24).toString('base64url');
  const nodes = makeNodes(o, names, runDir, secret);
  const killAll = () => nodes.forEach((n) => n.killNow());
  process.on('exit', killAll);

  let db: pg.Client | undefined;
  let eventLoad: EventLoad | undefined;
  let cartLoad: CartLoad | undefined;
  const notes: string[] = [];
  const faults: FaultCounts = { kill: 0, pause: 0, stop: 0, unexpectedExits: 0 };
  let t0 = performance.now();
  const clock = () => `[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
  const say = (text: string) => io.out(`${clock()} ${text}`);
  let finished = false;

  try {
    db = await openPostgres(o.postgresUrl);
    const checkAbort = () => {
      if (abort.aborted) throw new ChaosInterrupted('interrupted');
    };

    // Nodes that end on their own are a finding: say so, and start them again so the run goes on.
    const restarting = new Map<NodeProcess, Promise<void>>();
    for (const node of nodes) {
      node.onUnexpectedExit = (n, how) => {
        if (finished || abort.aborted) return;
        faults.unexpectedExits++;
        say(`${n.name} ended on its own (${how}); see ${n.spec.logFile}; starting it again`);
        restarting.set(n, n.start(NODE_START_TIMEOUT_MS).then(
          () => say(`${n.name} up again after ending on its own`),
          (err: Error) => say(`${n.name} did not start again: ${err.message}`),
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
      nodes.filter((n) => n.state !== 'down' && n.state !== 'starting' && n.ports[key] !== undefined).map((n) => ({ node: n.name, port: n.ports[key]! }));
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

    const storedEvents = async () => (withEvents ? Number((await db!.query(`SELECT count(*) AS n FROM ${quoteIdent(names.schema)}.processed_events`)).rows[0].n) : 0);
    const status = async () => {
      const parts: string[] = [];
      if (eventLoad) {
        let stored = '?';
        try {
          stored = fmt(await storedEvents());
        } catch {
          // the table may not be there yet, or PostgreSQL is slow: the line still goes out
        }
        parts.push(`events acked ${fmt(eventLoad.acked.size)}, not acked ${fmt(eventLoad.refused.size + eventLoad.ambiguous.size)}, stored ${stored}`);
      }
      if (cartLoad) {
        const t = cartLoad.totals();
        parts.push(`cart adds acked ${fmt(t.acked)}, not acked ${fmt(t.refused + t.ambiguous)}`);
      }
      return parts.join(' | ');
    };

    t0 = performance.now();
    eventLoad?.start();
    cartLoad?.start();
    say(`load started on ${nodes.length} nodes`);
    const loadEnds = t0 + o.durationMs;
    let lastLine = performance.now();
    const sayWithCounts = async (text: string) => {
      lastLine = performance.now();
      say(`${text.padEnd(44)} ${await status()}`);
    };

    // Faults one at a time, in plan order: each ends with its node up again before the next begins.
    const ticker = setInterval(() => {
      if (performance.now() - lastLine >= STATUS_EVERY_MS - 100) void sayWithCounts('load');
    }, 1000);
    try {
      for (const fault of plan) {
        const due = t0 + fault.atMs;
        while (performance.now() < due) {
          checkAbort();
          await sleep(Math.min(200, due - performance.now()));
        }
        checkAbort();
        if (performance.now() >= loadEnds) {
          say(`skipped ${describeFault(fault)}: the load is over (earlier faults ran late)`);
          continue;
        }
        const node = nodes[fault.node]!;
        await restarting.get(node);
        if (node.state !== 'up') {
          say(`skipped ${describeFault(fault)}: ${node.name} is ${node.state}`);
          continue;
        }
        await runFault(fault, node, o, sayWithCounts, faults, abort);
      }
      while (performance.now() < loadEnds) {
        checkAbort();
        await sleep(Math.min(200, loadEnds - performance.now()));
      }
    } finally {
      clearInterval(ticker);
    }
    await Promise.all(restarting.values());
    await Promise.all([eventLoad?.stop(), cartLoad?.stop()]);
    await sayWithCounts('load stopped');
    checkAbort();

    // Drain: every acknowledged event must reach processed_events; bounded by --drain-timeout.
    const drainStart = performance.now();
    let drained = true;
    if (eventLoad) drained = await drainEvents(eventLoad, nodes, db, names, o.drainTimeoutMs, say, abort);
    const drainMs = performance.now() - drainStart;
    checkAbort();

    // The judgement, from the stores.
    await io.beforeJudgement?.(db, names.schema);
    const events = eventLoad ? judgeEvents(eventLoad, await rowsPerEventId(db, names), await deadLetterIds(db, names)) : undefined;
    const carts = cartLoad ? judgeCarts(cartLoad.lines, await cartLines(db, names)) : undefined;
    const perUser = eventLoad ? await rowsPerUser(db, names) : undefined;
    const aggregates = perUser ? judgeAggregates(perUser, await countedPerUser([...perUser.keys()], targets('events.http'))) : undefined;
    if (eventLoad) {
      say(`event attempts by answer: ${describeAnswers(eventLoad.answers)}`);
      if (eventLoad.resentAfterNoAnswer) say(`  ${fmt(eventLoad.resentAfterNoAnswer)} batches were acknowledged only when sent again after no answer: their ids may have been queued twice`);
    }
    if (cartLoad) {
      say(`AddItem calls by answer: ${describeAnswers(cartLoad.answers)}`);
      for (const [code, details] of cartLoad.failureExamples) say(`  ${code}, e.g.: ${details.length > 160 ? details.slice(0, 160) + '…' : details}`);
    }
    finished = true;
    await killNodes(nodes, say);
    const report: ChaosReport = { ok: isNothingLost(events, carts, aggregates), seed: o.seed, nodes: o.nodes, durationMs: o.durationMs, faults, events, carts, aggregates, drained, drainMs, notes };
    return report;
  } finally {
    finished = true;
    await Promise.allSettled([eventLoad?.stop(), cartLoad?.stop()]);
    if (nodes.some((n) => n.alive)) await killNodes(nodes, say);
    await Promise.all(nodes.map((n) => n.closeLog()));
    process.off('exit', killAll);
    await db?.end().catch(() => {});
    const problems = await removeRun(o.redisUrl, o.postgresUrl, names);
    for (const p of problems) {
      notes.push(p);
      io.out(`  cleanup: ${p}`);
    }
    if (!o.keep) rmSync(runDir, { recursive: true, force: true });
    else io.out(`  kept: ${runDir} (a data directory and a log per node)`);
  }
}

function makeNodes(o: ChaosOptions, names: RunNames, runDir: string, secret: string): NodeProcess[] {
  const gateways = o.workloads.join(',');
  const ports = ['ops', ...(o.workloads.includes('events') ? ['events.http'] : []), ...(o.workloads.includes('carts') ? ['carts.grpc'] : [])];
  const args = [
    '--host', '127.0.0.1',
    '--gateways', gateways,
    '--redis', o.redisUrl,
    '--postgres', o.postgresUrl,
    '--cluster', names.cluster,
    '--shards', String(o.shards),
    '--log-level', o.nodeLogLevel,
    '--cluster-port', '0',
    '--ops-port', '0',
    '--events-port', '0',
    '--carts-port', '0',
    '--events-queue-name', names.queue,
    '--events-pg-schema', names.schema,
    '--carts-schema', names.schema,
    '--carts-secret', secret,
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
    return new NodeProcess({ name, dataDir, logFile: join(runDir, `${name}.log`), troupeBin: TROUPE_BIN, args, ports });
  });
}

function portsOf(n: NodeProcess): string {
  return Object.entries(n.ports)
    .filter(([k]) => k !== 'ops')
    .map(([k, v]) => `${k.split('.')[0]} :${v}`)
    .join(', ');
}

/** A bearer token from `troupe carts-token`, the tool an operator would use. */
function cartsToken(secret: string, user: string, admin: boolean, runDir: string): string {
  const r = spawnSync(process.execPath, [TROUPE_BIN, 'carts-token', '--carts-secret', secret, '--user', user, '--ttl', '6h', '--data-dir', runDir, ...(admin ? ['--admin'] : [])], { encoding: 'utf8' });
  const token = r.stdout.trim();
  if (r.status !== 0 || !token) throw new ChaosStartError(`troupe carts-token failed (exit ${r.status}): ${r.stderr.trim()}`);
  return token;
}

async function runFault(fault: PlannedFault, node: NodeProcess, o: ChaosOptions, say: (text: string) => Promise<void>, faults: FaultCounts, abort: AbortSignal): Promise<void> {
  const began = performance.now();
  const took = () => `${((performance.now() - began) / 1000).toFixed(1)}s`;
  switch (fault.kind) {
    case 'kill': {
      const pid = node.pid;
      await node.kill();
      faults.kill++;
      await say(`kill ${node.name} (SIGKILL pid ${pid})`);
      await sleep(o.downForMs);
      if (abort.aborted) return;
      await restart(node, say, took);
      return;
    }
    case 'pause': {
      node.pause();
      faults.pause++;
      await say(`pause ${node.name} (SIGSTOP pid ${node.pid}, ${o.pauseForMs / 1000}s)`);
      await sleep(o.pauseForMs);
      node.resume();
      await say(`resume ${node.name} (SIGCONT)`);
      if (abort.aborted) return;
      const ready = await node.waitReady(READY_AFTER_PAUSE_TIMEOUT_MS);
      await say(ready ? `${node.name} ready again after ${took()}` : `${node.name} not ready ${READY_AFTER_PAUSE_TIMEOUT_MS / 1000}s after SIGCONT; going on`);
      return;
    }
    case 'stop': {
      await say(`stop ${node.name} (SIGTERM pid ${node.pid})`);
      const { how, forced } = await node.terminate(NODE_STOP_TIMEOUT_MS);
      faults.stop++;
      await say(forced ? `${node.name} did not leave within ${NODE_STOP_TIMEOUT_MS / 1000}s; killed (${how})` : `${node.name} left (${how}) after ${took()}`);
      await sleep(o.downForMs);
      if (abort.aborted) return;
      await restart(node, say, took);
      return;
    }
  }
}

async function restart(node: NodeProcess, say: (text: string) => Promise<void>, took: () => string): Promise<void> {
  try {
    await node.start(NODE_START_TIMEOUT_MS);
    await say(`${node.name} back (pid ${node.pid}, ${took()} after the fault)`);
  } catch (err) {
    await say(`${node.name} did not start again: ${(err as Error).message}`);
  }
}

/**
 * Waits until every acknowledged event is in processed_events and the queue is empty (or the store
 * has been still for a while), printing progress; false if --drain-timeout came first.
 */
async function drainEvents(load: EventLoad, nodes: NodeProcess[], db: pg.Client, names: RunNames, timeoutMs: number, say: (text: string) => void, abort: AbortSignal): Promise<boolean> {
  const table = `${quoteIdent(names.schema)}.processed_events`;
  const pending = new Set(load.acked);
  const deadline = performance.now() + timeoutMs;
  let lastPrint = 0;
  let lastCount = -1;
  let stillSince = performance.now();
  for (;;) {
    if (abort.aborted) return false;
    if (pending.size > 0) {
      const found = await db.query<{ id: string }>(`SELECT id FROM ${table} WHERE id = ANY($1::varchar[])`, [[...pending]]);
      for (const r of found.rows) pending.delete(r.id);
    }
    const count = Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
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
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
      const m = (await res.json()) as { current_queue_depth?: number };
      if (typeof m.current_queue_depth === 'number') return m.current_queue_depth;
    } catch {
      // try the next node
    }
  }
  return undefined;
}

async function rowsPerEventId(db: pg.Client, names: RunNames): Promise<Map<string, number>> {
  const res = await db.query<{ id: string; n: number }>(`SELECT id, count(*)::int AS n FROM ${quoteIdent(names.schema)}.processed_events GROUP BY id`);
  return new Map(res.rows.map((r) => [r.id, r.n]));
}

async function rowsPerUser(db: pg.Client, names: RunNames): Promise<Map<string, number>> {
  const res = await db.query<{ user_id: string; n: number }>(`SELECT user_id, count(*)::int AS n FROM ${quoteIdent(names.schema)}.processed_events WHERE user_id IS NOT NULL GROUP BY user_id`);
  return new Map(res.rows.map((r) => [r.user_id, r.n]));
}

/** Each user's event count from its summary (GET /users/<id>/summary), asked of the running nodes in turn. */
async function countedPerUser(users: string[], targets: () => LoadTarget[]): Promise<Map<string, number | undefined>> {
  const counted = new Map<string, number | undefined>();
  let turn = 0;
  for (const user of users) {
    let n: number | undefined;
    for (let attempt = 0; attempt < 3 && n === undefined; attempt++) {
      const live = targets();
      const target = live[turn++ % Math.max(1, live.length)];
      if (!target) break;
      try {
        const res = await fetch(`http://127.0.0.1:${target.port}/users/${encodeURIComponent(user)}/summary`, { signal: AbortSignal.timeout(5000) });
        if (res.ok) n = ((await res.json()) as { events: number }).events;
      } catch {
        // another node, next attempt
      }
    }
    counted.set(user, n);
  }
  return counted;
}

async function deadLetterIds(db: pg.Client, names: RunNames): Promise<Set<string>> {
  const res = await db.query<{ id: string }>(`SELECT DISTINCT id FROM ${quoteIdent(names.schema)}.dead_letter_events WHERE id IS NOT NULL`);
  return new Set(res.rows.map((r) => r.id));
}

async function cartLines(db: pg.Client, names: RunNames): Promise<Map<string, number>> {
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
