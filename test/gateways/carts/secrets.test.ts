// Where the carts secret comes from: a file of at least 32 bytes (a shorter one, or a short flag,
// refused saying how to make one), required in a cluster; the flag warns it shows in `ps`; alone, a
// development secret kept 0600 in the data dir, and the start log holds a user token, never an
// admin token.

import test from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { cartsSecretFrom, DEV_SECRET_FILE, verifyToken } from '../../../gateways/carts/auth.js';
import { cartsGateway, DEVELOPMENT_USER } from '../../../gateways/carts/index.js';
import { ConfigError } from '../../../runtime/errors.js';
import { startNode, type Logger } from '../../../runtime/index.js';

process.env.TROUPE_LOG_LEVEL ??= 'silent';

function tempDir(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-carts-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function secretFile(dir: string, content: string, mode = 0o600): string {
  const file = join(dir, 'carts-secret');
  writeFileSync(file, content, { mode });
  chmodSync(file, mode);
  return file;
}

const GOOD = 'k'.repeat(40);

test('a secret file of 32 bytes or more is read (less its trailing newline), quietly when 0600', (t) => {
  const dir = tempDir(t);
  const r = cartsSecretFrom({ 'carts-secret-file': secretFile(dir, `${GOOD}\n`) }, dir, []);
  t.deepEqual(r, { secret: GOOD, development: false, warnings: [] });
});

test('a secret file shorter than 32 bytes is refused, naming its length and how to make one', (t) => {
  const dir = tempDir(t);
  const file = secretFile(dir, 'short-secret\n');
  const e = t.throws(() => cartsSecretFrom({ 'carts-secret-file': file }, dir, []), { instanceOf: ConfigError });
  t.regex(e!.message, /setting carts-secret-file: the file .* holds 12 bytes; a secret needs at least 32/);
  t.regex(e!.message, /head -c 48 \/dev\/urandom \| base64 >/);
  t.throws(() => cartsSecretFrom({ 'carts-secret-file': join(dir, 'missing') }, dir, []), { instanceOf: ConfigError, message: /does not exist/ });
});

test('a secret file readable by others is used, with a warning saying chmod 600', (t) => {
  const dir = tempDir(t);
  const r = cartsSecretFrom({ 'carts-secret-file': secretFile(dir, GOOD, 0o644) }, dir, []);
  t.is(r.secret, GOOD);
  t.regex(r.warnings.join('\n'), /can be read by other users .*mode 644.*chmod 600/);
});

test('--carts-secret: at least 32 bytes too; as a flag it warns that it shows in ps; not both', (t) => {
  const dir = tempDir(t);
  t.throws(() => cartsSecretFrom({ 'carts-secret': 'tiny' }, dir, []), { instanceOf: ConfigError, message: /carts-secret: the value holds 4 bytes; a secret needs at least 32.*--carts-secret-file/ });
  const flag = cartsSecretFrom({ 'carts-secret': GOOD }, dir, ['node', 'troupe', 'node', '--carts-secret', GOOD]);
  t.is(flag.secret, GOOD);
  t.regex(flag.warnings.join('\n'), /`ps`.*--carts-secret-file/);
  t.deepEqual(cartsSecretFrom({ 'carts-secret': GOOD }, dir, ['node', 'troupe', 'node']).warnings, [], 'from the environment: not in ps');
  t.throws(() => cartsSecretFrom({ 'carts-secret': GOOD, 'carts-secret-file': secretFile(dir, GOOD) }, dir, []), { message: /both are set/ });
});

test('in a cluster (a Redis or Sentinels) a node without a secret is refused, naming --carts-secret-file', (t) => {
  const dir = tempDir(t);
  for (const settings of [{ redis: 'redis://127.0.0.1:6379' }, { 'redis-sentinels': '127.0.0.1:26379', 'redis-master': 'm' }]) {
    const e = t.throws(() => cartsSecretFrom(settings, dir, []), { instanceOf: ConfigError });
    t.regex(e!.message, /in a cluster .* no carts secret.*--carts-secret-file FILE/);
  }
  t.throws(() => readFileSync(join(dir, DEV_SECRET_FILE)), undefined, 'no development secret made in a cluster');
  t.is(cartsSecretFrom({ redis: 'redis://127.0.0.1:6379', 'carts-secret-file': secretFile(dir, GOOD) }, dir, []).secret, GOOD);
});

test('the carts gateway of a cluster node without a secret does not start', async (t) => {
  const dir = tempDir(t);
  const host = { settings: { redis: 'redis://127.0.0.1:6379', 'carts-port': 0 }, dataDir: dir, host: '127.0.0.1', log: pino({ level: 'silent' }) as unknown as Logger } as never;
  await t.throwsAsync(cartsGateway.start(host), { instanceOf: ConfigError, message: /--carts-secret-file/ });
});

test('alone: a development secret kept 0600 in the data dir, the same on the next start', (t) => {
  const dir = join(tempDir(t), 'node-a');
  const first = cartsSecretFrom({}, dir, []);
  t.true(first.development);
  t.true(first.secret.length >= 32);
  const file = join(dir, DEV_SECRET_FILE);
  t.is(statSync(file).mode & 0o777, 0o600);
  t.is(statSync(dir).mode & 0o077, 0, 'the data dir is private');
  chmodSync(file, 0o644);
  t.is(cartsSecretFrom({}, dir, []).secret, first.secret);
  t.is(statSync(file).mode & 0o777, 0o600, 'an existing file is made 0600 again');
});

test('alone: the start log gives a user token that works, and no admin token', async (t) => {
  const dir = tempDir(t);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const log = pino({ level: 'info' }, sink) as unknown as Logger;
  const node = await startNode({ dataDir: join(dir, 'node'), actorModules: cartsGateway.actorModules, shards: 1, log });
  t.teardown(() => node.stop());
  const gateway = await cartsGateway.start({
    system: node,
    membership: node.membership,
    settings: { 'carts-port': 0, 'carts-schema': 'public', 'carts-pool-size': 1 },
    metrics: new Registry(),
    log,
    dataDir: dir,
    host: '127.0.0.1',
  });
  t.teardown(() => gateway.stop());
  const all = lines.join('\n');
  t.notRegex(all, /admin[Tt]oken/);
  const entry = lines.map((l) => JSON.parse(l) as { token?: string; msg?: string }).find((l) => l.token);
  t.truthy(entry, all);
  t.regex(entry!.msg!, /troupe carts-token --admin/, 'the log says how to get an admin token');
  const secret = readFileSync(join(dir, DEV_SECRET_FILE), 'utf8').trim();
  t.deepEqual(verifyToken(secret, entry!.token!), { user: DEVELOPMENT_USER, admin: false });
  // Every token in the log, whatever its field, is a user's.
  for (const jwt of all.match(/[\w-]+\.[\w-]+\.[\w-]+/g) ?? []) {
    try {
      t.false(verifyToken(secret, jwt).admin);
    } catch {
      // not a token
    }
  }
});
