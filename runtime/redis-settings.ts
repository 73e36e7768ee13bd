// The Redis settings every command that reaches Redis shares (`troupe node`, `troupe inspect`, the
// nodes `troupe chaos` starts), and the one check that turns them into a RedisEndpoint.

import { readFileSync } from 'node:fs';
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
      'Redis replicas that must confirm (WAIT) a changelog write, a lease or an event-queue add before it is acknowledged: auto (with --redis-sentinels 1; else the primary\'s connected replicas, at most 1, read every 5 s and after each reconnect), 0 (never wait) or a number',
  },
  { name: 'redis-wait-timeout', kind: 'duration', min: 1, max: 60_000, default: DEFAULT_WAIT_TIMEOUT_MS, description: 'how long a write waits for its replicas; past it, the write is not acknowledged (retried, or a retryable error)' },
  {
    name: 'redis-password-file',
    kind: 'string',
    default: undefined,
    description: "a file holding Redis's password (AUTH), instead of one in the --redis URL, where a flag shows it in ps; a trailing newline is ignored",
  },
  { name: 'redis-sentinel-password-file', kind: 'string', default: undefined, description: "a file holding the Redis Sentinels' own password, when they have one (requirepass in sentinel.conf)" },
  { name: 'redis-tls-ca', kind: 'string', default: undefined, description: 'PEM file of the CA that signed the TLS certificates of Redis (rediss://) and of the Sentinels, when it is not one Node trusts already; turns TLS on' },
  { name: 'redis-sentinel-tls', kind: 'bool', default: false, description: 'ask the Redis Sentinels over TLS too (rediss:// alone covers the primary they name)' },
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
  const password = secretFile(values, 'redis-password-file', problems);
  const sentinelPassword = secretFile(values, 'redis-sentinel-password-file', problems);
  if (sentinelPassword !== undefined && sentinelsText === undefined) problems.push('setting redis-sentinel-password-file: given without --redis-sentinels; it is the password of the Sentinels, so give them too, or drop it');
  const sentinelTls = values['redis-sentinel-tls'] === true;
  if (sentinelTls && sentinelsText === undefined) problems.push('setting redis-sentinel-tls: given without --redis-sentinels; rediss:// in --redis turns TLS on for one server');
  let tlsCa: string | undefined;
  if (values['redis-tls-ca'] !== undefined) {
    const file = String(values['redis-tls-ca']);
    try {
      tlsCa = readFileSync(file, 'utf8');
      if (!tlsCa.includes('-----BEGIN CERTIFICATE-----')) problems.push(`setting redis-tls-ca: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA certificate that signed Redis's`);
    } catch (err) {
      problems.push(`setting redis-tls-ca: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; give a readable PEM file of the CA that signed Redis's certificate`);
    }
  }
  if ((password !== undefined || tlsCa !== undefined) && url === undefined && sentinelsText === undefined) {
    problems.push('settings redis-password-file / redis-tls-ca: given without --redis or --redis-sentinels; they say how to reach a Redis, so name it too');
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
    ...(password === undefined ? {} : { password }),
    ...(sentinelPassword === undefined ? {} : { sentinelPassword }),
    ...(sentinelTls ? { sentinelTls } : {}),
    ...(tlsCa === undefined ? {} : { tlsCa }),
  };
}

/** A password read from the file a setting names: one trailing newline dropped, empty refused. */
function secretFile(values: SettingValues, name: string, problems: string[]): string | undefined {
  if (values[name] === undefined) return undefined;
  const file = String(values[name]);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`setting ${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; give a readable file that holds only the password`);
    return undefined;
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '' || /[\r\n]/.test(secret)) {
    problems.push(`setting ${name}: ${file} ${secret === '' ? 'is empty' : 'holds more than one line'}; it must hold the password alone on one line`);
    return undefined;
  }
  return secret;
}
