// The one place a Redis client of the cluster is made: from a RedisEndpoint (a URL, or Sentinels and
// a master name) and a role, every client gets a command timeout, a connect timeout, a bounded
// reconnect delay that never gives up, and an error listener that logs once per change of state.

import { Command, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './log.js';
import { redactedUrl } from './redact.js';
import type { WaitReplicas } from './replica-wait.js';

/** Where Redis is: one server by URL, or the primary that Sentinels name. */
export interface RedisEndpoint {
  /**
   * `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). With `sentinels`, only its
   * user, password, db and scheme (TLS) are used, for the primary; its host and port are ignored.
   */
  url?: string;
  /** Sentinels to ask for the primary (with `master`). */
  sentinels?: readonly { host: string; port: number }[];
  /** The master group name the Sentinels watch (`sentinel monitor NAME ...`). */
  master?: string;
  /** The password of Redis itself (AUTH), instead of one in the URL (which shows in `ps` as a flag). */
  password?: string;
  /** The Sentinels' own password (their `requirepass`), when they have one. */
  sentinelPassword?: string;
  /** Ask the Sentinels over TLS too (`rediss://` alone covers only the primary they name). */
  sentinelTls?: boolean;
  /**
   * PEM certificates of the CA that signed the TLS certificate of Redis (and of the Sentinels, with
   * `rediss://`): a private CA, instead of Node's own list. Setting it turns TLS on.
   */
  tlsCa?: string;
  /** Every command but blocking ones fails with "Command timed out" after this (default 2000 ms). */
  commandTimeoutMs?: number;
  /** A connection attempt is given up after this, and retried (default 3000 ms). */
  connectTimeoutMs?: number;
  /**
   * Replicas that must confirm (WAIT) a write that backs an acknowledgement (changelog writes, event
   * queue adds) before it is acknowledged; default `auto` (runtime/replica-wait.ts).
   */
  waitReplicas?: WaitReplicas;
  /** How long such a WAIT may take before the write is refused as not acknowledged (default 1000 ms). */
  waitTimeoutMs?: number;
}

/** A URL alone, or an endpoint. */
export type RedisTarget = string | RedisEndpoint;

/**
 * What the client is for:
 * - `command`: ordinary commands (scripts, reads, writes); a command fails after the command
 *   timeout, and after two failed reconnects while it waits.
 * - `subscriber`: pub/sub; resubscribes on reconnect.
 * - `blocking`: BullMQ's worker connections, which BullMQ duplicates for its blocking BZPOPMIN:
 *   `maxRetriesPerRequest: null` as BullMQ demands, and blocking commands are exempt from the
 *   command timeout (BullMQ bounds them with its own watchdog); the others still time out.
 */
export type RedisRole = 'command' | 'subscriber' | 'blocking';

export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 3000;
/** The longest pause between two reconnect attempts. */
const MAX_RECONNECT_DELAY_MS = 2000;

export interface RedisConnectionOptions {
  role: RedisRole;
  /** What the client is for, in its log lines ("membership", "changelog of shard 2"). */
  purpose: string;
  log: Logger;
  /** Connect only on `connect()` or the first command. */
  lazyConnect?: boolean;
  /**
   * Stop reconnecting after this many failed attempts in a row (default: never). For one-shot tools
   * that should fail rather than wait; a node's clients keep trying.
   */
  giveUpAfter?: number;
}

/** Parses `host:port,host:port` (IPv6 in brackets); throws a message naming what is wrong. */
export function parseSentinels(text: string): { host: string; port: number }[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new Error(`got "${text}"; expected a comma-separated list of Sentinel HOST:PORT, like 10.0.0.1:26379,10.0.0.2:26379`);
  return items.map((item) => {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\],]+):(\d+)$/.exec(item);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw new Error(`"${item}" is not HOST:PORT of a Sentinel (like 10.0.0.1:26379)`);
    return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
  });
}

export function redisEndpoint(target: RedisTarget): RedisEndpoint {
  return typeof target === 'string' ? { url: target } : target;
}


/** The endpoint in words, without its password: for messages and logs. */
export function describeRedis(target: RedisTarget): string {
  const e = redisEndpoint(target);
  if (e.sentinels?.length) return `the primary "${e.master}" of Sentinels ${e.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  return e.url === undefined ? '(no Redis)' : redactedUrl(e.url);
}

/** The ioredis options for an endpoint, before the role's. */
function endpointOptions(e: RedisEndpoint): RedisOptions {
  const o: RedisOptions = {};
  const url = e.url === undefined ? undefined : new URL(e.url);
  if (url) {
    if (url.username) o.username = decodeURIComponent(url.username);
    if (url.password) o.password = decodeURIComponent(url.password);
    const db = url.pathname.replace(/^\//, '');
    if (db !== '') o.db = Number(db);
    if (url.protocol === 'rediss:') o.tls = {};
  }
  if (e.password !== undefined) o.password = e.password;
  if (e.tlsCa !== undefined) o.tls = { ...o.tls, ca: e.tlsCa };
  if (e.sentinels?.length) {
    if (!e.master) throw new Error('Redis Sentinels given without the master name: set --redis-master too');
    o.sentinels = e.sentinels.map((s) => ({ host: s.host, port: s.port }));
    o.name = e.master;
    if (o.tls) o.enableTLSForSentinelMode = true;
    if (e.sentinelTls) o.sentinelTLS = { ...(e.tlsCa === undefined ? {} : { ca: e.tlsCa }) };
    if (e.sentinelPassword !== undefined) o.sentinelPassword = e.sentinelPassword;
    // ioredis ends a client for good when its Sentinel round fails without a retry: keep asking.
    o.sentinelRetryStrategy = (times) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS);
    o.sentinelCommandTimeout = e.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    // No failoverDetector: its Sentinel clients have no error listener in ioredis 5 (one
    // "Unhandled error event" per attempt while the Sentinels are down). A failed-over primary is
    // left when its socket fails, or when it answers READONLY once demoted (reconnectOnError).
  } else if (url) {
    o.host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
    o.port = url.port === '' ? 6379 : Number(url.port);
  }
  return o;
}

/** Commands that already carry their deadline. */
const timed = new WeakSet<Command>();

/**
 * A client that never hangs on a command: each command but the blocking ones is rejected with
 * "Command timed out" after the timeout (WAIT gets its own timeout on top), and duplicates (BullMQ
 * makes them; membership's subscriber) are of this kind too, with the same listener.
 */
class TimedRedis extends Redis {
  readonly #timeoutMs: number;
  readonly #connection: RedisConnectionOptions;

  constructor(options: RedisOptions, timeoutMs: number, connection: RedisConnectionOptions) {
    super(options);
    this.#timeoutMs = timeoutMs;
    this.#connection = connection;
    watchErrors(this, connection);
  }

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): ReturnType<Redis['sendCommand']> {
    // Once per command: ioredis sends a command again after a reconnect, and the first deadline holds.
    if (!timed.has(command) && !Command.checkFlag('BLOCKING_COMMANDS', command.name)) {
      timed.add(command);
      // WAIT blocks on the server for its own timeout (second argument, ms) before it answers.
      const extra = command.name === 'wait' ? Number(command.args[1] ?? 0) : 0;
      const timer = setTimeout(
        // After a stalled event loop the timer runs before the socket's pending replies are read:
        // give the poll phase its turn (setImmediate comes after it) before calling it a timeout.
        () => setImmediate(() => (command.isResolved ? undefined : command.reject(new Error('Command timed out')))),
        this.#timeoutMs + (Number.isFinite(extra) ? extra : 0),
      );
      const clear = () => clearTimeout(timer);
      command.promise.then(clear, clear);
    }
    return super.sendCommand(command, stream);
  }

  override duplicate(override?: Partial<RedisOptions>): Redis {
    return new TimedRedis({ ...this.options, ...override }, this.#timeoutMs, this.#connection);
  }
}

/** Reconnects after 100, 200, 400 ... ms up to 2 s, jittered, forever unless told to give up. */
function reconnectDelay(giveUpAfter: number | undefined): (times: number) => number | null {
  return (times) => {
    if (giveUpAfter !== undefined && times > giveUpAfter) return null;
    const base = Math.min(100 * 2 ** Math.min(times - 1, 5), MAX_RECONNECT_DELAY_MS);
    return Math.round(base * (0.75 + Math.random() * 0.5));
  };
}

/**
 * Logs the first error after the client was well (with what it is for and where Redis is), then
 * nothing until it is well again, which is logged once too: a Redis that is down for a minute
 * gives two lines, not one per reconnect attempt, and never "[ioredis] Unhandled error event".
 */
function watchErrors(redis: Redis, o: RedisConnectionOptions): void {
  let failingSince: number | undefined;
  let suppressed = 0;
  redis.on('error', (err: Error) => {
    if (failingSince !== undefined) {
      suppressed++;
      return;
    }
    failingSince = Date.now();
    suppressed = 0;
    o.log.warn({ redis: o.purpose, err: err.message }, `Redis client for ${o.purpose} failed; reconnecting (further errors are not logged until it is back)`);
  });
  redis.on('ready', () => {
    if (failingSince === undefined) return;
    o.log.info({ redis: o.purpose, downMs: Date.now() - failingSince, errors: suppressed + 1 }, `Redis client for ${o.purpose} is back`);
    failingSince = undefined;
  });
}

/** A new client of the endpoint for one role; see RedisRole. */
export function openRedis(target: RedisTarget, o: RedisConnectionOptions): Redis {
  const e = redisEndpoint(target);
  const timeoutMs = e.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const options: RedisOptions = {
    ...endpointOptions(e),
    connectTimeout: e.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retryStrategy: reconnectDelay(o.giveUpAfter),
    // A primary demoted by a failover answers writes with READONLY: reconnect (through the
    // Sentinels, to the new primary) and send the command again.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    maxRetriesPerRequest: o.role === 'blocking' ? null : 2,
    enableOfflineQueue: true,
    lazyConnect: o.lazyConnect ?? false,
    connectionName: `troupe:${o.purpose.replace(/[^A-Za-z0-9_.:-]/g, '-')}`,
  };
  if (options.sentinels && o.giveUpAfter !== undefined) {
    const giveUpAfter = o.giveUpAfter;
    options.sentinelRetryStrategy = (times) => (times > giveUpAfter ? null : Math.min(times * 100, MAX_RECONNECT_DELAY_MS));
  }
  return new TimedRedis(options, timeoutMs, o);
}

/**
 * Opens a client and waits until it answers: for a node's start, where Redis must be there. On
 * failure the client is closed and the error says where Redis was looked for.
 */
export async function connectRedis(target: RedisTarget, o: Omit<RedisConnectionOptions, 'lazyConnect'>): Promise<Redis> {
  const redis = openRedis(target, { ...o, lazyConnect: true });
  let lastError: Error | undefined;
  const onError = (err: Error) => (lastError = err);
  redis.on('error', onError);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${describeRedis(target)} for ${o.purpose}: ${(lastError ?? (err as Error)).message}`);
  } finally {
    redis.off('error', onError);
  }
  return redis;
}
