// Test helpers for the cluster: a Redis client, a unique cluster name per test (its own key
// prefix), cleanup of exactly that prefix, and polling until a condition holds.

import type { ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import { waitFor } from '../common.js';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { Logger } from '../../runtime/log.js';

/** For tests that provoke warnings on purpose. */
export const quietLog = pino({ level: 'silent' }) as unknown as Logger;

export const REDIS_URL = process.env.TROUPE_TEST_REDIS ?? 'redis://127.0.0.1:6379';

export function newRedis(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 3, lazyConnect: false });
}

export function uniqueCluster(): string {
  return `test-${randomBytes(6).toString('hex')}`;
}

/** Deletes every key of the cluster (its prefix only; never FLUSHDB). */
export async function dropCluster(redis: Redis, cluster: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `troupe:{${cluster}}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** A Redis client and a fresh cluster name, both cleaned up when the test ends. */
export async function clusterFixture(t: ExecutionContext): Promise<{ redis: Redis; cluster: string; extra(): Redis }> {
  const redis = newRedis();
  const cluster = uniqueCluster();
  const extras: Redis[] = [];
  t.teardown(async () => {
    await dropCluster(redis, cluster);
    for (const r of extras) r.disconnect();
    await redis.quit();
  });
  return {
    redis,
    cluster,
    extra() {
      const r = newRedis();
      extras.push(r);
      return r;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, or fails after `timeoutMs` (stretched on a loaded machine, see test/common.ts). */
export function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  return waitFor(check, timeoutMs, what);
}
