// What keeps a chaos run apart from everything else on a shared Redis and PostgreSQL: its own
// cluster name (Redis keys troupe:{NAME}:*), its own BullMQ queue (bull:NAME:*) and its own
// PostgreSQL schema, and with --events-store mysql its own MySQL database; checked reachable before
// the run, and removed after it. Never a flush, never a database or schema of another name.

import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
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
  /** With --events-store mysql: the run's database in the --mysql server (troupe_chaos_<tag>). */
  mysqlDatabase: string;
}

/** The only database names chaos creates or drops in a MySQL server it does not own. */
const RUN_DATABASE = /^troupe_chaos_[a-z0-9]{1,40}$/;

export function newRunNames(): RunNames {
  const tag = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  return { cluster: `chaos-${tag}`, queue: `chaos-${tag}`, schema: `chaos_${tag}`, mysqlDatabase: `troupe_chaos_${tag}` };
}

/** The URL of the run's database in the --mysql server (which is given without one). */
export function mysqlRunUrl(serverUrl: string, names: RunNames): string {
  return `${serverUrl.replace(/\/+$/, '')}/${names.mysqlDatabase}`;
}

/** One connection to the server, no database chosen. */
async function openMysqlServer(serverUrl: string): Promise<mysql.Connection> {
  const u = new URL(serverUrl);
  return mysql.createConnection({
    host: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username) || 'root',
    password: decodeURIComponent(u.password),
    connectTimeout: 5000,
  });
}

function runDatabase(names: RunNames): string {
  // A name made here always matches; the check keeps a bug from dropping anything else.
  if (!RUN_DATABASE.test(names.mysqlDatabase)) throw new Error(`refusing the MySQL database name ${names.mysqlDatabase}: chaos only makes and drops troupe_chaos_<tag>`);
  return names.mysqlDatabase;
}

/** Creates the run's database in a MySQL server chaos does not own; throws what to do. */
export async function prepareMysql(serverUrl: string, names: RunNames): Promise<void> {
  const database = runDatabase(names);
  let conn: mysql.Connection | undefined;
  try {
    conn = await openMysqlServer(serverUrl);
    await conn.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
  } catch (err) {
    const e = err as Error & { code?: string };
    const what = e.code === 'ECONNREFUSED' || e.code === 'ETIMEDOUT' || e.code === 'EHOSTUNREACH'
      ? 'start MySQL or MariaDB there, or give another --mysql'
      : 'check the user and password in --mysql and that the user may create databases named troupe_chaos_* (.ci/mysql-test-user.sql makes troupe_test, which may)';
    throw new Error(`MySQL at ${redactedUrl(serverUrl)} refused the run's database ${database} (${e.code ? `${e.code}: ` : ''}${e.message}); ${what}`);
  } finally {
    await conn?.end().catch(() => {});
  }
}

/** Drops the run's database (only it); returns what could not be done, for the report. */
export async function removeMysql(serverUrl: string, names: RunNames): Promise<string[]> {
  let conn: mysql.Connection | undefined;
  try {
    const database = runDatabase(names);
    conn = await openMysqlServer(serverUrl);
    await conn.query(`DROP DATABASE IF EXISTS \`${database}\``);
    return [];
  } catch (err) {
    return [`MySQL database ${names.mysqlDatabase} not dropped: ${(err as Error).message}; drop it with: DROP DATABASE ${names.mysqlDatabase}`];
  } finally {
    await conn?.end().catch(() => {});
  }
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
