// The Redis settings every command that reaches Redis shares (`troupe node`, `troupe inspect`, the
// nodes `troupe chaos` starts), and the one check that turns them into a RedisEndpoint.

import { ConfigError } from './errors.js';
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, parseSentinels, type RedisEndpoint } from './redis-connection.js';
import { DEFAULT_WAIT_TIMEOUT_MS, type WaitReplicas } from './replica-wait.js';
import type { SettingSpec, SettingValues } from './settings.js';

/** With `--redis`, the settings beside it; `--redis` itself is each command's own (its wording differs). */
export const redisSettings: SettingSpec[] = [
  {
    name: 'redis-sentinels',
    kind: 'string',
    default: undefined,
    description:
      'Redis Sentinels HOST:PORT,... to ask for the primary, with --redis-master (instead of a Redis host; --redis may still give the password, db and rediss: TLS, its host is then ignored)',
  },
  { name: 'redis-master', kind: 'string', default: undefined, description: 'the master group name the Redis Sentinels watch, with --redis-sentinels' },
  { name: 'redis-command-timeout', kind: 'duration', min: 50, max: 600_000, default: DEFAULT_COMMAND_TIMEOUT_MS, description: 'a Redis command without an answer fails after this (blocking BullMQ reads excepted)' },
  {
    name: 'redis-wait-replicas',
    kind: 'string',
    default: 'auto',
    description:
      'Redis replicas that must confirm (WAIT) a changelog write or an event-queue add before it is acknowledged: auto (the primary\'s connected replicas, at most 1, read every 5 s and after each reconnect), 0 (never wait) or a number',
  },
  { name: 'redis-wait-timeout', kind: 'duration', min: 1, max: 60_000, default: DEFAULT_WAIT_TIMEOUT_MS, description: 'how long a write waits for its replicas; past it, the write is not acknowledged (retried, or a retryable error)' },
  { name: 'redis-connect-timeout', kind: 'duration', min: 50, max: 600_000, default: DEFAULT_CONNECT_TIMEOUT_MS, description: 'a Redis connection attempt is given up after this, then retried' },
];

/**
 * The endpoint the settings name, or undefined when they name none. Sentinels and a master go
 * together; `--redis` beside them gives only credentials, db and TLS (a Sentinel set-up has no one
 * host to name). Throws a ConfigError naming every problem.
 */
export function redisEndpointFrom(values: SettingValues): RedisEndpoint | undefined {
  const problems: string[] = [];
  const url = values['redis'] === undefined ? undefined : String(values['redis']);
  const sentinelsText = values['redis-sentinels'] === undefined ? undefined : String(values['redis-sentinels']);
  const master = values['redis-master'] === undefined ? undefined : String(values['redis-master']).trim();
  let sentinels: RedisEndpoint['sentinels'];
  if (sentinelsText !== undefined) {
    try {
      sentinels = parseSentinels(sentinelsText);
    } catch (err) {
      problems.push(`setting redis-sentinels: ${(err as Error).message}`);
    }
  }
  if (sentinelsText !== undefined && (master === undefined || master === '')) {
    problems.push('setting redis-master: missing; --redis-sentinels needs the master group name the Sentinels watch (--redis-master NAME or TROUPE_REDIS_MASTER), e.g. mymaster');
  }
  if (master !== undefined && sentinelsText === undefined) {
    problems.push('setting redis-sentinels: missing; --redis-master names a group of Redis Sentinels, so give them too (--redis-sentinels HOST:PORT,... or TROUPE_REDIS_SENTINELS), or drop --redis-master and give --redis URL');
  }
  if (url !== undefined && !/^rediss?:$/.test(new URL(url).protocol)) {
    problems.push(`setting redis: got a ${new URL(url).protocol} URL; expected redis://host:port or rediss://host:port (TLS)`);
  }
  const waitText = values['redis-wait-replicas'] === undefined ? 'auto' : String(values['redis-wait-replicas']).trim();
  let waitReplicas: WaitReplicas = 'auto';
  if (waitText !== 'auto') {
    if (/^\d{1,2}$/.test(waitText)) waitReplicas = Number(waitText);
    else problems.push(`setting redis-wait-replicas: got "${waitText}"; expected auto, 0 (do not wait for replicas) or the number of replicas that must confirm each acknowledged write, like 1`);
  }
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  if (url === undefined && sentinels === undefined) return undefined;
  return {
    url,
    sentinels,
    master: sentinels ? master : undefined,
    commandTimeoutMs: values['redis-command-timeout'] === undefined ? undefined : Number(values['redis-command-timeout']),
    connectTimeoutMs: values['redis-connect-timeout'] === undefined ? undefined : Number(values['redis-connect-timeout']),
    waitReplicas,
    waitTimeoutMs: values['redis-wait-timeout'] === undefined ? undefined : Number(values['redis-wait-timeout']),
  };
}
