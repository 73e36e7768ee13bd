// Redis reached with a password from a file, through Sentinels that have a password of their own,
// and over TLS with a private CA: each against a server of the test's own that demands it.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../runtime/errors.js';
import { rootLogger } from '../../runtime/log.js';
import { connectRedis } from '../../runtime/redis-connection.js';
import { redisEndpointFrom } from '../../runtime/redis-settings.js';
import { freePort, redisSet } from './redis-servers.js';

const log = rootLogger();

function secret(dir: string, name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

test('a password from --redis-password-file gets in; the same URL without it is refused with NOAUTH', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const redis = await servers.server({ args: ['--requirepass', 'pw-of-the-test-0123456789'] });
  const file = secret(servers.dir, 'redis-password', 'pw-of-the-test-0123456789\n');

  const endpoint = redisEndpointFrom({ redis: redis.url, 'redis-password-file': file })!;
  const client = await connectRedis(endpoint, { role: 'command', purpose: 'test', log, giveUpAfter: 1 });
  t.teardown(() => client.disconnect());
  t.is(await client.set('k', 'v'), 'OK');
  t.is(await client.get('k'), 'v');

  const refused = await t.throwsAsync(connectRedis({ url: redis.url }, { role: 'command', purpose: 'test', log, giveUpAfter: 1 }));
  t.regex(refused!.message, /NOAUTH/);
  const wrong = await t.throwsAsync(connectRedis({ ...endpoint, password: 'not-it' }, { role: 'command', purpose: 'test', log, giveUpAfter: 1 }));
  t.regex(wrong!.message, /WRONGPASS|invalid/i);
  // The password never shows in the message that names where Redis was looked for.
  t.false(refused!.message.includes('pw-of-the-test'));
});

test('Sentinels with a password of their own name the primary, which has its own', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const primary = await servers.server({ args: ['--requirepass', 'primary-pw-0123456789'] });
  const sentinel = await servers.sentinel(primary, 'auth-test', 1000, { password: 'sentinel-pw-0123456789', primaryPassword: 'primary-pw-0123456789' });
  const values = {
    'redis-sentinels': `127.0.0.1:${sentinel.port}`,
    'redis-master': 'auth-test',
    'redis-password-file': secret(servers.dir, 'primary', 'primary-pw-0123456789\n'),
    'redis-sentinel-password-file': secret(servers.dir, 'sentinel', 'sentinel-pw-0123456789'),
  };
  const client = await connectRedis(redisEndpointFrom(values)!, { role: 'command', purpose: 'test', log, giveUpAfter: 2 });
  t.teardown(() => client.disconnect());
  t.is(await client.set('through-sentinel', '1'), 'OK');
  t.is(await client.get('through-sentinel'), '1');

  // Without the Sentinels' password they do not say where the primary is.
  const { 'redis-sentinel-password-file': _, ...without } = values;
  await t.throwsAsync(connectRedis(redisEndpointFrom(without)!, { role: 'command', purpose: 'test', log, giveUpAfter: 1 }));
});

test('rediss:// with --redis-tls-ca reaches a Redis whose certificate a private CA signed, and only with that CA', async (t) => {
  const servers = redisSet((fn) => t.teardown(fn));
  const dir = servers.dir;
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    openssl('version');
  } catch {
    t.log('openssl is not installed: this check of Redis over TLS is skipped (apt-get install openssl)');
    t.pass();
    return;
  }
  const makeCa = (name: string) => openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`);
  makeCa('ca');
  makeCa('other-ca');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'redis-key.pem', '-out', 'redis.csr');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', 'redis.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf', '-out', 'redis.pem');
  chmodSync(join(dir, 'redis-key.pem'), 0o600);

  const port = await freePort();
  // Plain port off: only TLS; the server asks no client certificate.
  await servers.server({ port, tls: true, args: ['--port', '0', '--tls-port', String(port), '--tls-cert-file', join(dir, 'redis.pem'), '--tls-key-file', join(dir, 'redis-key.pem'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no'] });

  const url = `rediss://127.0.0.1:${port}`;
  const client = await connectRedis(redisEndpointFrom({ redis: url, 'redis-tls-ca': join(dir, 'ca.pem') })!, { role: 'command', purpose: 'test', log, giveUpAfter: 20 });
  t.teardown(() => client.disconnect());
  t.is(await client.ping(), 'PONG');

  await t.throwsAsync(connectRedis(redisEndpointFrom({ redis: url, 'redis-tls-ca': join(dir, 'other-ca.pem') })!, { role: 'command', purpose: 'test', log, giveUpAfter: 1 }));
});

test('the Redis secret and CA settings are checked at the door', (t) => {
  const dir = redisSet((fn) => t.teardown(fn)).dir;
  const problems = (values: Record<string, string | boolean>) => t.throws(() => redisEndpointFrom(values), { instanceOf: ConfigError })!.message;
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-password-file': join(dir, 'missing') }), /redis-password-file: cannot read .*ENOENT/);
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-password-file': secret(dir, 'empty', '\n') }), /is empty/);
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-password-file': secret(dir, 'two', 'a\nb\n') }), /more than one line/);
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-sentinel-password-file': secret(dir, 's', 'x') }), /without --redis-sentinels/);
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-tls-ca': secret(dir, 'not-pem', 'hello') }), /no PEM certificate/);
  t.regex(problems({ 'redis-password-file': secret(dir, 'alone', 'x') }), /without --redis or --redis-sentinels/);
  t.regex(problems({ redis: 'redis://127.0.0.1:1', 'redis-sentinel-tls': true }), /redis-sentinel-tls: given without --redis-sentinels/);
});
