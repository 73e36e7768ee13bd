// The event pipeline put together: HTTP door -> event-batch queue -> queue workers -> piscina pool
// -> processed_events + user actors; and its orderly stop. The gateway (index.ts) and tests start it.

import { Piscina } from 'piscina';
import type { Logger, RedisTarget } from '../../runtime/index.js';
import { createBatchProcessor, type UserActivity } from './batch-processor.js';
import { BullmqEventQueue } from './bullmq-queue.js';
import type { EnrichResult, EnrichTask } from './enrichment.js';
import type { CheckedBody, CheckTask } from './request-check.js';
import { startEventsHttp, type HealthReport } from './http-server.js';
import { PipelineMetrics, type MetricsSnapshot } from './metrics.js';
import type { EventBatchQueue, RetryPolicy } from './queue.js';
import { SqliteEventQueue } from './sqlite-queue.js';
import { openEventStore, storeKindOf } from './open-store.js';
import type { EventStoreKind, ProcessedEventStore } from './store.js';
import { answerWithin, UserAnswers } from './user-answers.js';

export interface EventsPipelineOptions {
  host: string;
  port: number;
  dataDir: string;
  /** BullMQ on this Redis (a URL, or Sentinels and a master) when set, else the SQLite queue in dataDir. */
  redis?: RedisTarget;
  queueName: string;
  /** PostgreSQL when set, else SQLite in dataDir. */
  postgresUrl?: string;
  pgSchema: string;
  /** Where processed_events live; absent: postgres when postgresUrl is set, else sqlite. */
  eventsStore?: EventStoreKind;
  /** For eventsStore mysql (absent: the brief's mysql://root:testpass@127.0.0.1:3306/eventdb). */
  mysqlUrl?: string;
  queueWorkers: number;
  poolThreads: number;
  retry: RetryPolicy;
  lockDurationMs: number;
  maxBodyBytes: number;
  maxPendingEnqueues: number;
  /** Events queued beyond which new requests get 503 (the queue is bounded, as every queue here). */
  maxQueueDepth: number;
  /** The events port's limits (http-server.ts has the defaults). */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxConnections?: number;
  /** GET /users/<id>/summary needs `authorization: Bearer <this>`; absent: that path answers 404. */
  summaryToken?: string;
  /** Serve HTTPS with this certificate (public-tls.ts); absent: plain HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  drainTimeoutMs: number;
  activity: UserActivity;
  /** How long a batch waits for one user actor before handing that user's events off (default 10 s). */
  askTimeoutMs?: number;
  log: Logger;
  /** Tests: wrap the store (to inject failures). */
  wrapStore?: (store: ProcessedEventStore) => ProcessedEventStore;
}

export interface EventsPipeline {
  readonly port: number;
  readonly queue: EventBatchQueue;
  readonly store: ProcessedEventStore;
  metrics(): Promise<MetricsSnapshot>;
  /** Every check; `{ actors: false }` leaves out the ask to a user actor (readiness does not wait for them). */
  health(options?: { actors?: boolean }): Promise<HealthReport>;
  /**
   * Graceful: new requests get 503, requests in progress are answered, the queue is drained (up to
   * drainTimeoutMs; what is left stays queued for the next start), workers finish, stores close.
   */
  stop(): Promise<void>;
}

const HEALTH_TIMEOUT_MS = 2000;

export async function startEventsPipeline(o: EventsPipelineOptions): Promise<EventsPipeline> {
  let store: ProcessedEventStore = await openEventStore({ ...o, poolSize: Math.max(4, o.queueWorkers + 2) });
  if (o.wrapStore) store = o.wrapStore(store);
  const queue: EventBatchQueue = o.redis
    ? new BullmqEventQueue({ redis: o.redis, name: o.queueName, retry: o.retry, lockDurationMs: o.lockDurationMs })
    : new SqliteEventQueue({ dataDir: o.dataDir, retry: o.retry });
  const pool = new Piscina<EnrichTask | CheckTask, EnrichResult | CheckedBody>({
    filename: new URL('./enrich-worker.js', import.meta.url).href,
    minThreads: o.poolThreads,
    maxThreads: o.poolThreads,
    idleTimeout: 60_000,
  });
  const metrics = new PipelineMetrics();
  const log = o.log;

  const enrichment = { run: (task: EnrichTask) => pool.run(task) as Promise<EnrichResult> };
  const askTimeoutMs = o.askTimeoutMs ?? 10_000;
  const answers = new UserAnswers({ probe: (user) => o.activity.record(user, []), askTimeoutMs });
  const processor = createBatchProcessor({ pool: enrichment, store, activity: o.activity, metrics, log, handOff: (batch) => queue.enqueue(batch), askTimeoutMs, answers });
  queue.start(processor, o.queueWorkers);

  const snapshot = async () => metrics.snapshot(await queue.depth().catch(() => -1));

  // The depth is read at most every 100 ms, not per request; the bound is a brake, not a ledger.
  let depthSeen = 0;
  let depthReadAt = 0;
  let depthReading: Promise<void> | undefined;
  async function refuseWhenFull(): Promise<void> {
    if (Date.now() - depthReadAt > 100) {
      depthReading ??= queue
        .depth()
        .then((d) => {
          depthSeen = d;
          depthReadAt = Date.now();
        })
        .catch(() => {})
        .finally(() => (depthReading = undefined));
      if (depthSeen >= o.maxQueueDepth) await depthReading;
    }
    if (depthSeen >= o.maxQueueDepth) {
      throw Object.assign(new Error(`${depthSeen} events are queued, over the bound of ${o.maxQueueDepth}; retry shortly`), { code: 'OVERLOADED' });
    }
  }
  async function health(options: { actors?: boolean } = {}): Promise<HealthReport> {
    const checks: Record<string, string> = {};
    const probe = async (name: string, check: () => Promise<unknown>) => {
      try {
        await answerWithin(HEALTH_TIMEOUT_MS, name, check());
        checks[name] = 'ok';
      } catch (err) {
        checks[name] = (err as Error).message;
      }
    };
    await Promise.all([
      probe(o.redis ? 'queue (redis)' : 'queue (sqlite)', () => queue.ping()),
      probe(`store (${storeKindOf(o)})`, () => store.ping()),
      // A short ask to a user actor, and how this node's recent asks went: either can say that the
      // actors do not answer (a Redis that lost the ring, a partition nobody serves, a cut node).
      options.actors === false
        ? undefined
        : probe('actors', async () => {
            await o.activity.ping();
            const trouble = answers.trouble();
            if (trouble) throw new Error(trouble);
          }),
      probe('worker pool', async () => {
        if (pool.threads.length === 0) throw new Error('the enrichment pool has no threads');
      }),
    ]);
    return { ok: Object.values(checks).every((v) => v === 'ok'), checks };
  }

  const http = await startEventsHttp(
    {
      maxBodyBytes: o.maxBodyBytes,
      maxPendingEnqueues: o.maxPendingEnqueues,
      ...(o.headersTimeoutMs !== undefined ? { headersTimeoutMs: o.headersTimeoutMs } : {}),
      ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
      ...(o.maxConnections !== undefined ? { maxConnections: o.maxConnections } : {}),
      ...(o.summaryToken !== undefined ? { summaryToken: o.summaryToken } : {}),
      ...(o.tls !== undefined ? { tls: o.tls } : {}),
      admit: refuseWhenFull,
      check: (task) => pool.run(task, { name: 'checkBody' }) as Promise<CheckedBody>,
      async accept(batch) {
        depthSeen += batch.count;
        await queue.enqueue(batch);
        metrics.accepted(batch.count);
      },
      metrics: snapshot,
      health,
      summary: (userId) => o.activity.summary(userId),
      events: store,
      log,
    },
    o.host,
    o.port,
  );
  log.info({ port: http.port, queue: queue.kind, store: store.kind, tls: o.tls !== undefined, summary: o.summaryToken !== undefined }, `events gateway listening${o.tls ? ' (HTTPS)' : ''}`);

  let stopping: Promise<void> | undefined;
  return {
    port: http.port,
    queue,
    store,
    metrics: snapshot,
    health,
    stop() {
      stopping ??= (async () => {
        await http.refuseNew();
        const drained = await queue.drained(o.drainTimeoutMs).catch(() => false);
        if (!drained) log.warn({ depth: await queue.depth().catch(() => -1) }, 'events left queued at stop; the next start takes them');
        await queue.close();
        answers.close();
        await http.close();
        await pool.destroy();
        await store.close();
        log.info(metrics.snapshot(0), 'events gateway stopped');
      })();
      return stopping;
    },
  };
}
