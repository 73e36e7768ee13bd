// Shared by the events tests: a node with the events pipeline on the embedded backends (SQLite), the
// cluster ones (BullMQ on Redis, PostgreSQL) or BullMQ with MySQL, each test with its own queue name,
// schema or MySQL database, and data directory, all removed afterwards.

import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { startNode, type TroupeNode } from '../../../runtime/index.js';
import { userActivityOf } from '../../../gateways/events/index.js';
import type { UserActivity } from '../../../gateways/events/batch-processor.js';
import { BullmqEventQueue } from '../../../gateways/events/bullmq-queue.js';
import { PgEventStore } from '../../../gateways/events/pg-store.js';
import { tempDir, waitFor } from '../../common.js';
import { openEventStore } from '../../../gateways/events/open-store.js';
import type { ProcessedEventStore } from '../../../gateways/events/store.js';
import { createTestDatabase, dropTestDatabase, MYSQL_TEST_URL } from './mysql-test-db.js';
import { startEventsPipeline, type EventsPipeline, type EventsPipelineOptions } from '../../../gateways/events/pipeline.js';
import { startEventsHttp, type EventsHttpDeps, type EventsHttpServer } from '../../../gateways/events/http-server.js';
import { checkBody } from '../../../gateways/events/request-check.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';
/** Quiet unless TROUPE_TEST_LOG names a level: the tests provoke failures on purpose. */
export const testLog = pino({ level: process.env.TROUPE_TEST_LOG ?? 'silent' }) as unknown as import('../../../runtime/index.js').Logger;

export const REDIS_URL = process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379';
export const PG_URL = process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
/** embedded: SQLite queue and store; cluster: BullMQ + PostgreSQL; mysql: BullMQ + MySQL (MariaDB here). */
export type Backend = 'embedded' | 'cluster' | 'mysql';
export const BACKENDS: Backend[] = ['embedded', 'cluster', 'mysql'];

const USER_ACTOR = new URL('../../../actors/user.js', import.meta.url).href;

/** The token GET /users/<id>/summary needs in these tests (`get` sends it). */
export const SUMMARY_TOKEN = 'events-tests-summary-token-0123456789abcdef';

/** Options for a pipeline with its own names: a data dir, and on cluster a queue name and a schema. */
export function isolatedOptions(backend: Backend): Omit<EventsPipelineOptions, 'activity' | 'log'> {
  const tag = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  return {
    host: '127.0.0.1',
    port: 0,
    dataDir: tempDir('troupe-events-'),
    redis: backend === 'embedded' ? undefined : REDIS_URL,
    queueName: `events-test-${tag}`,
    postgresUrl: backend === 'cluster' ? PG_URL : undefined,
    pgSchema: `events_test_${tag}`,
    ...(backend === 'mysql' ? { eventsStore: 'mysql' as const, mysqlUrl: `${MYSQL_TEST_URL}/troupe_${tag}` } : {}),
    queueWorkers: 4,
    poolThreads: 1,
    retry: { attempts: 3, backoffMs: 20 },
    lockDurationMs: 5000,
    maxBodyBytes: 1_048_576,
    maxPendingEnqueues: 2000,
    maxQueueDepth: 1_000_000,
    summaryToken: SUMMARY_TOKEN,
    drainTimeoutMs: 20_000,
  };
}

/** Removes what isolatedOptions named. */
export async function cleanUp(o: Omit<EventsPipelineOptions, 'activity' | 'log'>): Promise<void> {
  if (o.redis) await BullmqEventQueue.destroy(o.redis, o.queueName).catch(() => {});
  if (o.postgresUrl) await PgEventStore.dropSchema(o.postgresUrl, o.pgSchema).catch(() => {});
  if (o.eventsStore === 'mysql' && o.mysqlUrl) await dropTestDatabase(o.mysqlUrl).catch(() => {});
  rmSync(o.dataDir, { recursive: true, force: true });
}

/** Creates what isolatedOptions named and the pipeline does not create itself (a MySQL database). */
export async function prepare(o: Omit<EventsPipelineOptions, 'activity' | 'log'>): Promise<void> {
  if (o.eventsStore === 'mysql' && o.mysqlUrl) await createTestDatabase(o.mysqlUrl);
}

/** The store a pipeline with these options writes, opened beside it (tests and benches read it). */
export function openStoreOf(o: Omit<EventsPipelineOptions, 'activity' | 'log'>): Promise<ProcessedEventStore> {
  return openEventStore({ ...o, poolSize: 2 });
}

export interface Harness {
  url: string;
  pipeline: EventsPipeline;
  node: TroupeNode;
  options: Omit<EventsPipelineOptions, 'activity' | 'log'>;
  /** Stops the pipeline and the node (idempotent). */
  stop(): Promise<void>;
}

/** A node plus pipeline in this process; stopped and cleaned when the test ends. */
export async function startEvents(
  t: ExecutionContext,
  backend: Backend,
  overrides: Partial<EventsPipelineOptions> & { wrapActivity?: (activity: UserActivity) => UserActivity } = {},
): Promise<Harness> {
  const { wrapActivity, ...rest } = overrides;
  const options = { ...isolatedOptions(backend), ...rest };
  await prepare(options);
  const node = await startNode({ dataDir: join(options.dataDir, 'node'), actorModules: [USER_ACTOR], shards: 1 });
  const activity = userActivityOf(node, options.askTimeoutMs ?? 10_000);
  const pipeline = await startEventsPipeline({ ...options, activity: wrapActivity ? wrapActivity(activity) : activity, log: testLog });
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await pipeline.stop();
      await node.stop();
    })());
  t.teardown(async () => {
    await stop();
    await cleanUp(options);
  });
  return { url: `http://127.0.0.1:${pipeline.port}`, pipeline, node, options, stop };
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** A GET with the summary token (harmless on the other paths). */
export async function get(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${SUMMARY_TOKEN}` } });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export function userAction(userId: string, action = 'click', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: randomUUID(), type: 'user_action', source: 'web', user_id: userId, data: { action, ...(action === 'purchase' ? { value: 10 } : {}), ...extra } };
}

/** Polls until `check` is true (bounded; the test fails on timeout rather than hanging). */
export function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  return waitFor(check, timeoutMs, what, 25);
}

export interface ChildNode {
  port: number;
  proc: ChildProcess;
  exited: Promise<number | null>;
  /** Lines the child printed after the first. */
  lines: string[];
}

/** Starts the fixture node in a child process. */
export async function spawnEventsNode(options: Omit<EventsPipelineOptions, 'activity' | 'log' | 'host'>): Promise<ChildNode> {
  await prepare({ ...options, host: '127.0.0.1' });
  const script = new URL('./fixtures/events-node.js', import.meta.url);
  const proc = spawn(process.execPath, [script.pathname], {
    env: { ...process.env, TROUPE_EVENTS_FIXTURE: JSON.stringify(options), TROUPE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lines: string[] = [];
  const rl = createInterface({ input: proc.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    rl.on('line', (line) => {
      const msg = JSON.parse(line) as { port?: number };
      if (msg.port !== undefined) resolve(msg.port);
      else lines.push(line);
    });
    void exited.then((code) => reject(new Error(`events node exited with ${code} before listening`)));
  });
  return { port, proc, exited, lines };
}

/**
 * The events door alone (GET, POST /events and the rest of the HTTP surface, nothing behind it: no
 * queue, no store, a quiet summary) on a free loopback port, closed when the test ends. A test
 * gives what it checks in `deps`: the queue's admit or accept, the health, TLS, the limits.
 */
export async function startDoor(t: ExecutionContext, deps: Partial<EventsHttpDeps> = {}): Promise<EventsHttpServer & { url: string }> {
  const server = await startEventsHttp(
    {
      maxBodyBytes: 64 * 1024,
      maxPendingEnqueues: 100,
      check: async (task) => checkBody(task),
      async accept() {},
      async metrics() {
        return { events_received: 0, events_processed: 0, events_failed: 0, average_processing_latency_ms: 0, current_queue_depth: 0, active_workers: 0, events_per_second: 0, uptime_seconds: 1 };
      },
      async health() {
        return { ok: true, checks: { queue: 'ok' } };
      },
      async summary(user_id) {
        return { user_id, events: 0, by_type: {}, by_action: {}, purchase_total: 0, last_event_at: null };
      },
      log: testLog,
      ...deps,
    },
    '127.0.0.1',
    0,
  );
  t.teardown(() => server.close());
  return Object.assign(server, { url: `${deps.tls ? 'https' : 'http'}://127.0.0.1:${server.port}` });
}
