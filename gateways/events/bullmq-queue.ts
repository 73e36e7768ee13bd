// The clustered event-batch queue on BullMQ, shared by every node on the same Redis. A job holds the
// batches of the requests that arrived while the door's previous adds were in flight (one request's
// when the node is quiet), is retried as a whole with exponential backoff, and is redelivered by
// BullMQ's stalled-job check once its lock expires if its worker died.

import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { describeRedis, openRedis, ReplicaWait, rootLogger, type Logger, type RedisTarget } from '../../runtime/index.js';
import type { BatchProcessor, EventBatchQueue, QueuedBatch, RetryPolicy } from './queue.js';

export interface BullmqQueueOptions {
  /** A URL, or Sentinels and a master name (runtime/redis-connection.ts). */
  redis: RedisTarget;
  /** BullMQ queue name; every node of a cluster uses the same one. */
  name: string;
  /** Redis key prefix (BullMQ's `prefix`), default "bull". */
  prefix?: string;
  retry: RetryPolicy;
  /**
   * How long a worker's hold on a job lasts without renewal. After a crash, the job is delivered
   * again within about twice this (lock expiry, then the next stalled check).
   */
  lockDurationMs?: number;
  log?: Logger;
}

const ACTIVE_STATES = ['wait', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

/** A job's data: the batches of the requests queued together (jobs of older versions held one). */
type QueuedJob = { parts: QueuedBatch[] } | QueuedBatch;

const partsOf = (data: QueuedJob): QueuedBatch[] => ('parts' in data ? data.parts : [data]);
const eventsIn = (parts: readonly QueuedBatch[]) => parts.reduce((n, p) => n + p.count, 0);

/** Adds in flight at once; requests arriving meanwhile wait and go as one job. */
const ADDS_IN_FLIGHT = 2;
/** Requests in one job at most. */
const MAX_PARTS_PER_JOB = 32;

interface PendingAdd {
  batch: QueuedBatch;
  resolve(): void;
  reject(err: unknown): void;
}

/** KEYS: the job's hash, the depth counter; ARGV: the job's events. Decrements only the first time. */
const COUNT_DONE_ONCE = `
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HSETNX', KEYS[1], 'troupeDepthCounted', '1') == 1 then
  return redis.call('DECRBY', KEYS[2], ARGV[1])
end
return false`;

export class BullmqEventQueue implements EventBatchQueue {
  readonly kind = 'bullmq' as const;
  readonly #opts: BullmqQueueOptions;
  readonly #prefix: string;
  readonly #queue: Queue<QueuedJob>;
  readonly #redis: Redis;
  /** BullMQ leaves connections it was given open; these are closed in close(). */
  readonly #connections: Redis[] = [];
  #worker?: Worker<QueuedJob>;
  /** With Redis replicas, an add is acknowledged only once a replica holds it (WAIT on the queue's connection). */
  readonly #replicas: ReplicaWait;
  readonly #pendingAdds: PendingAdd[] = [];
  #addsInFlight = 0;
  /** Events queued and not finished, kept beside the queue: BullMQ counts jobs, not events. */
  readonly #depthKey: string;

  constructor(options: BullmqQueueOptions) {
    this.#opts = options;
    this.#prefix = options.prefix ?? 'bull';
    // Failures are reported through ping() and failed enqueues; the client logs its state changes.
    this.#redis = this.#open('command', 'event queue bookkeeping');
    const adds = this.#connect('command', 'event queue');
    this.#replicas = ReplicaWait.forEndpoint(adds, options.redis, 'an event-queue add', options.log ?? rootLogger());
    this.#queue = new Queue<QueuedJob>(options.name, {
      connection: adds,
      prefix: this.#prefix,
      defaultJobOptions: {
        attempts: options.retry.attempts,
        backoff: { type: 'exponential', delay: options.retry.backoffMs },
        removeOnComplete: true,
        removeOnFail: false,
      },
    });
    this.#queue.on('error', () => {});
    this.#depthKey = `${this.#prefix}:${options.name}:troupe-event-depth`;
  }

  #open(role: 'command' | 'blocking', purpose: string): Redis {
    return openRedis(this.#opts.redis, { role, purpose: `${purpose} "${this.#opts.name}"`, log: this.#opts.log ?? rootLogger() });
  }

  #connect(role: 'command' | 'blocking', purpose: string): Redis {
    const r = this.#open(role, purpose);
    this.#connections.push(r);
    return r;
  }

  enqueue(batch: QueuedBatch): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pendingAdds.push({ batch, resolve, reject });
      this.#startAdds();
    });
  }

  #startAdds(): void {
    while (this.#addsInFlight < ADDS_IN_FLIGHT && this.#pendingAdds.length) {
      const group = this.#pendingAdds.splice(0, MAX_PARTS_PER_JOB);
      this.#addsInFlight++;
      void this.#add(group).finally(() => {
        this.#addsInFlight--;
        this.#startAdds();
      });
    }
  }

  async #add(group: PendingAdd[]): Promise<void> {
    const parts = group.map((p) => p.batch);
    const since = this.#replicas.begin();
    try {
      // Queue.add resolves once Redis has the job, on the connection WAIT then asks about.
      await this.#queue.add('batch', { parts });
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    // The job is queued: it counts in the depth (bookkeeping for /metrics), and a failed counter
    // update must not turn the 202 into an error (the client would resend, and events without a
    // client-given id would be stored twice).
    await this.#redis.incrby(this.#depthKey, eventsIn(parts)).catch(() => {});
    try {
      await this.#replicas.confirm(since);
    } catch (err) {
      // Not confirmed by a replica: not acknowledged (503, retry), though the job may still be
      // processed; events with a client-given id are then stored once, others may be stored twice.
      for (const p of group) p.reject(err);
      return;
    }
    for (const p of group) p.resolve();
  }

  start(processor: BatchProcessor, concurrency: number): void {
    const attempts = this.#opts.retry.attempts;
    const lockDuration = this.#opts.lockDurationMs ?? 30_000;
    this.#worker = new Worker<QueuedJob>(
      this.#opts.name,
      async (job: Job<QueuedJob>) => {
        const attempt = job.attemptsMade + 1;
        const final = attempt >= attempts;
        const parts = partsOf(job.data);
        try {
          await processor(parts, { batchId: String(job.id), attempt, redelivered: (job.attemptsStarted ?? 1) > 1 || job.attemptsMade > 0, final });
        } catch (err) {
          if (final) await this.#countDone(job, eventsIn(parts));
          throw err;
        }
        // Done whatever the counter does: a failed update must not have the job processed again.
        await this.#countDone(job, eventsIn(parts));
      },
      {
        connection: this.#connect('blocking', 'event workers'),
        prefix: this.#prefix,
        concurrency: Math.max(1, concurrency),
        lockDuration,
        stalledInterval: Math.max(500, Math.floor(lockDuration / 2)),
        // A job whose worker died is redelivered, not failed: a batch is only dropped by its own
        // errors (attempts), never because nodes crashed while it was in flight.
        maxStalledCount: 100,
        drainDelay: 1,
      },
    );
    this.#worker.on('error', () => {});
  }

  /**
   * Takes a finished job's events off the depth, once per job: a job whose lock lapsed (its worker
   * paused or cut from Redis) is processed again by another worker, and both finish. The mark sits
   * in the job's own hash, gone with the job (removeOnComplete), so nothing is left to clean up.
   */
  async #countDone(job: Job<QueuedJob>, events: number): Promise<void> {
    const jobKey = `${this.#prefix}:${this.#opts.name}:${job.id}`;
    await this.#redis.eval(COUNT_DONE_ONCE, 2, jobKey, this.#depthKey, events).catch(() => {});
  }

  async depth(): Promise<number> {
    return Math.max(0, Number((await this.#redis.get(this.#depthKey)) ?? 0));
  }

  async ping(): Promise<void> {
    try {
      await this.#redis.ping();
    } catch (err) {
      throw new Error(`redis at ${describeRedis(this.#opts.redis)} does not answer: ${(err as Error).message}`);
    }
  }

  async drained(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const counts = await this.#queue.getJobCounts(...ACTIVE_STATES);
      if (Object.values(counts).every((n) => n === 0)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async close(): Promise<void> {
    await this.#worker?.close();
    await this.#queue.close();
    for (const r of this.#connections) r.disconnect();
    this.#redis.disconnect();
  }

  /** Removes a queue and its keys (tests: each uses its own queue name). */
  static async destroy(redis: RedisTarget, name: string, prefix = 'bull'): Promise<void> {
    const connection = openRedis(redis, { role: 'command', purpose: `removing event queue "${name}"`, log: rootLogger() });
    const queue = new Queue(name, { connection, prefix });
    try {
      await queue.obliterate({ force: true });
      await connection.del(`${prefix}:${name}:troupe-event-depth`);
    } finally {
      await queue.close();
      connection.disconnect();
    }
  }

  /** Jobs kept after their last attempt failed. */
  async failedCount(): Promise<number> {
    return this.#queue.getJobCountByTypes('failed');
  }
}
