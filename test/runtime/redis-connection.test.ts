// The Redis connection factory against servers of the test's own: a paused server gives a timeout
// error, not a hang; blocking commands and WAIT are not cut by the command timeout; a dead server
// is logged once, not once per reconnect, and nothing prints "[ioredis] Unhandled error event".

import test from 'ava';
import { ConfigError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/log.js';
import { openRedis, parseSentinels } from '../../runtime/redis-connection.js';
import { redisEndpointFrom } from '../../runtime/redis-settings.js';
import { redisSet } from './redis-servers.js';

interface Line {
  level: string;
  msg: string;
}

function recordingLog(lines: Line[]): Logger {
  const at =
    (level: string) =>
    (obj: object | string, msg?: string): void =>
      void lines.push({ level, msg: typeof obj === 'string' ? obj : (msg ?? '') });
  const log: Logger = { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

/** Collects what console.error prints while `fn` runs (ioredis prints unhandled errors there). */
async function consoleErrors(fn: () => Promise<void>): Promise<string[]> {
  const printed: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return printed;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.serial('a command to a SIGSTOPped server fails with a timeout, and nothing unhandled is printed', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const server = await servers.server();
  const lines: Line[] = [];
  const redis = openRedis({ url: server.url, commandTimeoutMs: 300 }, { role: 'command', purpose: 'test', log: recordingLog(lines) });
  t.teardown(() => redis.disconnect());
  t.is(await redis.set('k', 'v'), 'OK');
  const printed = await consoleErrors(async () => {
    server.pause();
    const started = Date.now();
    const err = await t.throwsAsync(redis.get('k'));
    t.regex(err!.message, /timed out/i);
    // Generous: what matters is that it ends, near the timeout rather than never.
    t.true(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    // A pipeline's commands are bounded too (the changelog reads with one).
    const pipelined = await redis.pipeline().get('k').get('k').exec().catch((e: Error) => e);
    t.truthy(pipelined instanceof Error ? pipelined : pipelined?.find(([e]) => e !== null));
    server.resume();
    t.is(await redis.get('k'), 'v');
  });
  t.deepEqual(printed.filter((p) => p.includes('ioredis')), []);
});

test.serial('a reply that came while the event loop was stalled past the timeout is not called a timeout', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const server = await servers.server();
  const redis = openRedis({ url: server.url, commandTimeoutMs: 300 }, { role: 'command', purpose: 'test', log: recordingLog([]) });
  t.teardown(() => redis.disconnect());
  await redis.set('k', 'v');
  for (let i = 0; i < 3; i++) {
    const reply = redis.get('k');
    // A busy machine or a long GC: the loop does nothing for three timeouts while the reply waits.
    const until = Date.now() + 900;
    while (Date.now() < until);
    t.is(await reply, 'v');
  }
});

test.serial('a dead server is logged once, then once when it is back; nothing unhandled is printed', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const server = await servers.server();
  const lines: Line[] = [];
  const redis = openRedis({ url: server.url, commandTimeoutMs: 300, connectTimeoutMs: 300 }, { role: 'command', purpose: 'test', log: recordingLog(lines) });
  t.teardown(() => redis.disconnect());
  await redis.ping();
  let attempts = 0;
  redis.on('reconnecting', () => attempts++);
  const printed = await consoleErrors(async () => {
    server.kill();
    const until = Date.now() + 20_000;
    while (attempts < 4 && Date.now() < until) await sleep(50);
    t.true(attempts >= 4, `only ${attempts} reconnect attempts`);
    await t.throwsAsync(redis.get('k'));
  });
  t.deepEqual(printed.filter((p) => p.includes('ioredis')), []);
  t.is(lines.filter((l) => l.level === 'warn').length, 1, JSON.stringify(lines));
  t.regex(lines.find((l) => l.level === 'warn')!.msg, /Redis client for test failed; reconnecting/);
  // Back on the same port: the client finds it by itself (it never stopped trying), and says so once.
  await servers.server({ port: server.port });
  const until = Date.now() + 20_000;
  while (redis.status !== 'ready' && Date.now() < until) await sleep(50);
  t.is(await redis.ping(), 'PONG');
  t.is(lines.filter((l) => l.level === 'info' && /is back/.test(l.msg)).length, 1, JSON.stringify(lines));
});

test.serial('blocking commands and WAIT outlast the command timeout; other commands of the same client do not', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const server = await servers.server();
  const redis = openRedis({ url: server.url, commandTimeoutMs: 200 }, { role: 'blocking', purpose: 'test', log: recordingLog([]) });
  t.teardown(() => redis.disconnect());
  // BZPOPMIN for 1 s on an empty key answers null after 1 s, well past the 200 ms timeout.
  t.is(await redis.bzpopmin('nothing', 1), null);
  // WAIT blocks for its own timeout (600 ms; no replicas): it answers 0, not "timed out".
  t.is(await redis.wait(1, 600), 0);
  // Duplicates (BullMQ makes its blocking connection that way) keep the timeout.
  const copy = redis.duplicate();
  t.teardown(() => copy.disconnect());
  await copy.ping();
  server.pause();
  t.teardown(() => server.resume());
  await t.throwsAsync(copy.get('k'), { message: /timed out/i });
  await t.throwsAsync(redis.get('k'), { message: /timed out/i });
});

test('Sentinel lists and the Redis settings are checked together', (t) => {
  t.deepEqual(parseSentinels('10.0.0.1:26379, [::1]:26380'), [
    { host: '10.0.0.1', port: 26379 },
    { host: '::1', port: 26380 },
  ]);
  t.throws(() => parseSentinels(''), { message: /comma-separated list of Sentinel HOST:PORT/ });
  t.throws(() => parseSentinels('host'), { message: /"host" is not HOST:PORT/ });
  t.throws(() => parseSentinels('host:99999'), { message: /"host:99999" is not HOST:PORT/ });
  t.is(redisEndpointFrom({}), undefined);
  t.deepEqual(redisEndpointFrom({ redis: 'redis://127.0.0.1:6379' }), {
    url: 'redis://127.0.0.1:6379',
    sentinels: undefined,
    master: undefined,
    commandTimeoutMs: undefined,
    connectTimeoutMs: undefined,
    waitReplicas: 'auto',
    waitTimeoutMs: undefined,
  });
  t.is(redisEndpointFrom({ redis: 'redis://h:1', 'redis-wait-replicas': '1' })?.waitReplicas, 1);
  t.throws(() => redisEndpointFrom({ redis: 'redis://h:1', 'redis-wait-replicas': 'all' }), { instanceOf: ConfigError, message: /redis-wait-replicas: got "all"/ });
  t.throws(() => redisEndpointFrom({ 'redis-sentinels': '127.0.0.1:26379' }), { instanceOf: ConfigError, message: /redis-master: missing/ });
  t.throws(() => redisEndpointFrom({ 'redis-master': 'mymaster' }), { instanceOf: ConfigError, message: /redis-sentinels: missing/ });
  t.throws(() => redisEndpointFrom({ redis: 'http://x:1' }), { instanceOf: ConfigError, message: /expected redis:\/\/host:port/ });
  const both = redisEndpointFrom({ redis: 'rediss://:secret@ignored/2', 'redis-sentinels': 'a:1,b:2', 'redis-master': 'm', 'redis-command-timeout': 900 });
  t.deepEqual(both?.sentinels, [
    { host: 'a', port: 1 },
    { host: 'b', port: 2 },
  ]);
  t.is(both?.master, 'm');
  t.is(both?.url, 'rediss://:secret@ignored/2');
  t.is(both?.commandTimeoutMs, 900);
});
