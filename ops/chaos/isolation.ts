// What keeps a chaos run apart from everything else on a shared Redis and PostgreSQL: its own
// cluster name (Redis keys troupe:{NAME}:*), its own BullMQ queue (bull:NAME:*) and its own
// PostgreSQL schema; checked reachable before the run, and removed after it. Never a flush.

import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { openRedis as openRedisClient, redactedUrl, type Logger } from '../../runtime/index.js';

export interface RunNames {
  /** --cluster of every node: the Redis keys troupe:{cluster}:*. */
  cluster: string;
  /** --events-queue-name: the BullMQ keys bull:queue:*. */
  queue: string;
  /** --events-pg-schema and --carts-schema: every table of the run. */
  schema: string;
}

export function newRunNames(): RunNames {
  const tag = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  return { cluster: `chaos-${tag}`, queue: `chaos-${tag}`, schema: `chaos_${tag}` };
}


export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A client that fails fast instead of retrying forever; its last connection error is kept. */
export function openRedis(url: string): Redis & { lastError?: Error } {
  const redis: Redis & { lastError?: Error } = openRedisClient(url, { role: 'command', purpose: 'chaos run set-up', log: pino({ level: 'silent' }) as unknown as Logger, lazyConnect: true, giveUpAfter: 3 });
  redis.on('error', (err: Error) => {
    redis.lastError = err;
  });
  return redis;
}

export async function openPostgres(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  return client;
}

/**
 * Checks that Redis and PostgreSQL answer, and creates the run's schema (the nodes create their
 * tables in it; creating the schema once here keeps them from racing on it). Throws a message a
 * person can act on.
 */
export async function prepareRun(redisUrl: string, postgresUrl: string, names: RunNames): Promise<void> {
  const redis = openRedis(redisUrl);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`Redis at ${redactedUrl(redisUrl)} does not answer (${(redis.lastError ?? (err as Error)).message}); start it or give another --redis`);
  } finally {
    redis.disconnect();
  }
  let client: pg.Client | undefined;
  try {
    client = await openPostgres(postgresUrl);
    await client.query(`CREATE SCHEMA ${quoteIdent(names.schema)}`);
  } catch (err) {
    throw new Error(`PostgreSQL at ${redactedUrl(postgresUrl)} refused the run's schema ${names.schema} (${(err as Error).message}); check the URL and that the user may create schemas`);
  } finally {
    await client?.end().catch(() => {});
  }
}

async function deleteMatching(redis: Redis, pattern: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

/**
 * Removes the run's Redis keys (its cluster's and its queue's, by their exact prefixes) and drops
 * its schema. Call it only once no node of the run is alive, or they would write them again.
 * Returns what could not be removed, for the report.
 */
export async function removeRun(redisUrl: string, postgresUrl: string, names: RunNames, which: { redis: boolean; postgres: boolean } = { redis: true, postgres: true }): Promise<string[]> {
  const problems: string[] = [];
  const redis = openRedis(redisUrl);
  if (which.redis) try {
    await redis.connect();
    await deleteMatching(redis, `troupe:{${names.cluster}}:*`);
    await deleteMatching(redis, `bull:${names.queue}:*`);
  } catch (err) {
    problems.push(`Redis keys troupe:{${names.cluster}}:* and bull:${names.queue}:* not all deleted: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
  let client: pg.Client | undefined;
  if (which.postgres) try {
    client = await openPostgres(postgresUrl);
    await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(names.schema)} CASCADE`);
  } catch (err) {
    problems.push(`schema ${names.schema} not dropped: ${(err as Error).message}; drop it with: DROP SCHEMA ${names.schema} CASCADE`);
  } finally {
    await client?.end().catch(() => {});
  }
  return problems;
}
