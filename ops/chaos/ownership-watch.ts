// Who serves each partition during a chaos run, seen from outside: every half second the run reads
// every partition's lease from Redis; a partition is served when its lease names a node that no
// fault holds (not killed, paused, stopped or cut off; a restarted node is another id). From the samples come the partitions left
// unserved longer than detection plus hand-off (stuck) and each fault's recovery time.

import { Redis } from 'ioredis';
import { sleep } from './node-process.js';

export interface OwnershipSample {
  /** ms after the load started. */
  atMs: number;
  /** Partitions served, or undefined when Redis did not answer. */
  served?: boolean[];
}

export interface OwnershipWatchOptions {
  /** The Redis the cluster uses now (it moves with a failover). */
  redisUrl(): string;
  cluster: string;
  partitions: number;
  /** Cluster ids of the nodes no fault holds now (what their leases name). */
  serving(): ReadonlySet<string>;
  /** ms after the load started. */
  now(): number;
  everyMs?: number;
}

export class OwnershipWatch {
  readonly samples: OwnershipSample[] = [];
  #running = false;
  #loop?: Promise<void>;
  readonly #o: OwnershipWatchOptions;

  constructor(o: OwnershipWatchOptions) {
    this.#o = o;
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  async #run(): Promise<void> {
    const keys = Array.from({ length: this.#o.partitions }, (_, p) => `troupe:{${this.#o.cluster}}:lease:${p}`);
    let url = '';
    let redis: Redis | undefined;
    while (this.#running) {
      if (url !== this.#o.redisUrl()) {
        redis?.disconnect();
        url = this.#o.redisUrl();
        redis = new Redis(url, { lazyConnect: true, connectTimeout: 1000, commandTimeout: 1000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 200 });
        redis.on('error', () => {});
        await redis.connect().catch(() => {});
      }
      const atMs = this.#o.now();
      try {
        const values = await redis!.mget(...keys);
        const serving = this.#o.serving();
        this.samples.push({ atMs, served: values.map((v) => v !== null && serving.has(v.slice(v.indexOf('|') + 1))) });
      } catch {
        this.samples.push({ atMs });
      }
      await sleep(this.#o.everyMs ?? 500);
    }
    redis?.disconnect();
  }
}

/** A fault as the verdict reports it. */
export interface FaultRecord {
  kind: string;
  /** n1..., or the server. */
  target: string;
  detail?: string;
  startedAtMs: number;
  healedAtMs?: number;
  /** First sample after the heal with every partition served; undefined if it never came. */
  recoveredAtMs?: number;
}

export interface OwnershipJudgement {
  /** Partitions unserved for longer than `stuckAfterMs` (counted from the end of any Redis fault). */
  stuck: number;
  /** The longest such stretch, in ms. */
  longestUnservedMs: number;
  stuckExamples: string[];
  /** Samples Redis did not answer outside a Redis fault (the watch could not tell). */
  unreadSamples: number;
}

/**
 * `redisDown`: the stretches [from, to) of Redis faults: while Redis itself is down nobody can hold a
 * lease, so a partition's unserved time starts counting at the end of the stretch it falls in.
 */
export function judgeOwnership(samples: readonly OwnershipSample[], stuckAfterMs: number, redisDown: readonly [number, number][]): OwnershipJudgement {
  const inRedisFault = (t: number) => redisDown.find(([a, b]) => t >= a && t < b);
  const since = new Map<number, number>();
  const stuck = new Set<number>();
  let longest = 0;
  let unread = 0;
  const examples: string[] = [];
  for (const s of samples) {
    const fault = inRedisFault(s.atMs);
    if (!s.served) {
      if (!fault) unread++;
      continue;
    }
    s.served.forEach((served, p) => {
      if (served) {
        since.delete(p);
        return;
      }
      // While Redis itself is down, the clock of every unserved partition starts at its return.
      if (fault) {
        since.set(p, fault[1]);
        return;
      }
      if (!since.has(p)) since.set(p, s.atMs);
      const start = since.get(p)!;
      const unservedMs = s.atMs - start;
      if (unservedMs > longest) longest = unservedMs;
      if (unservedMs > stuckAfterMs && !stuck.has(p)) {
        stuck.add(p);
        if (examples.length < 5) examples.push(`partition ${p} served by nobody from ${(start / 1000).toFixed(1)}s to at least ${(s.atMs / 1000).toFixed(1)}s`);
      }
    });
  }
  return { stuck: stuck.size, longestUnservedMs: longest, stuckExamples: examples, unreadSamples: unread };
}

/** The first sample at or after `healedAtMs` with every partition served. */
export function recoveredAt(samples: readonly OwnershipSample[], healedAtMs: number): number | undefined {
  return samples.find((s) => s.atMs >= healedAtMs && s.served && s.served.every(Boolean))?.atMs;
}
