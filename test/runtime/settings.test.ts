// Settings are read from flags, environment and file, and every bad value is named with what is allowed.

import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, readSettings, describeSettings, type SettingSpec } from '../../runtime/index.js';
import { fnv1a, partitionOf } from '../../runtime/partition.js';
import { tempDir } from './helpers.js';

const specs: SettingSpec[] = [
  { name: 'who-port', kind: 'port', default: 4242, description: 'WHO TCP port' },
  { name: 'ask-timeout', kind: 'duration', default: 5000, description: 'ask timeout' },
  { name: 'gateways', kind: 'list', choices: ['who', 'events'], default: ['who', 'events'], description: 'services' },
  { name: 'durability', kind: 'enum', choices: ['normal', 'full'], default: 'normal', description: 'sync' },
  { name: 'verbose', kind: 'bool', default: false, description: 'more' },
  { name: 'redis', kind: 'url', default: undefined, example: 'redis://127.0.0.1:6379', description: 'Redis URL' },
  { name: 'sample-ratio', kind: 'number', min: 0, max: 1, default: 0.01, description: 'share traced' },
];

test('defaults, then file, then environment, then flags', (t) => {
  const dir = tempDir();
  const file = join(dir, 'troupe.json');
  writeFileSync(file, JSON.stringify({ whoPort: 1, 'ask-timeout': '2s', durability: 'full' }));
  const { values, rest } = readSettings(specs, {
    argv: ['--config', file, '--who-port', '3', 'extra', '--verbose', '--gateways=who'],
    env: { TROUPE_WHO_PORT: '2', TROUPE_ASK_TIMEOUT: '250ms', TROUPE_SAMPLE_RATIO: '.25' },
  });
  t.is(values['sample-ratio'], 0.25);
  t.is(values['who-port'], 3);
  t.is(values['ask-timeout'], 250);
  t.is(values.durability, 'full');
  t.is(values.verbose, true);
  t.deepEqual(values.gateways, ['who']);
  t.is(values.redis, undefined);
  t.deepEqual(rest, ['extra']);
});

test('every bad value is reported at once, naming the setting, the value and what is allowed', (t) => {
  const err = t.throws(
    () =>
      readSettings(specs, {
        argv: ['--who-port', '70000', '--gateways', 'who,carts', '--bogus', '1', '--redis', 'not a url', '--sample-ratio', '1.5'],
        env: { TROUPE_DURABILITY: 'sometimes', TROUPE_ASK_TIMEOUT: 'soon' },
      }),
    { instanceOf: ConfigError },
  );
  const msg = err!.message;
  t.regex(msg, /setting who-port: got --who-port "70000"; expected a TCP port from 0 to 65535/);
  t.regex(msg, /"carts" not known, expected a comma-separated list of who, events/);
  t.regex(msg, /unknown option --bogus/);
  t.regex(msg, /setting durability: got TROUPE_DURABILITY "sometimes"; expected one of normal, full/);
  t.regex(msg, /setting ask-timeout: got TROUPE_ASK_TIMEOUT "soon"; expected a duration/);
  t.regex(msg, /setting redis: got --redis "not a url"; expected a URL such as redis:\/\/127\.0\.0\.1:6379/);
  t.regex(msg, /setting sample-ratio: got --sample-ratio "1.5"; expected a number from 0 to 1/);
});

test('a config file that is not JSON is a clear error', (t) => {
  const file = join(tempDir(), 'bad.json');
  writeFileSync(file, '{ nope');
  t.throws(() => readSettings(specs, { argv: ['--config', file], env: {} }), { message: /cannot be read as JSON/ });
});

test('help lists every setting with its flag, environment variable and default', (t) => {
  const help = describeSettings(specs);
  t.regex(help, /--who-port +WHO TCP port \(default: 4242\)/);
  t.regex(help, /env TROUPE_WHO_PORT/);
});

test('partitions are a stable hash of the UTF-8 id', (t) => {
  // Fixed values: the same in every process, run and language that hashes UTF-8 with FNV-1a.
  t.is(fnv1a(''), 0x811c9dc5);
  t.is(fnv1a('a'), 0xe40c292c);
  t.is(fnv1a('user/42'), fnv1a('user/42'));
  // Non-ASCII ids hash their UTF-8 bytes, as a byte-wise reference does.
  let h = 0x811c9dc5;
  for (const b of Buffer.from('user/café', 'utf8')) h = Math.imul(h ^ b, 0x01000193);
  t.is(fnv1a('user/café'), h >>> 0);
  const counts = new Array(16).fill(0);
  for (let i = 0; i < 16_000; i++) counts[partitionOf(`user/${i}`, 16)]++;
  t.true(counts.every((c) => c > 800 && c < 1200), `spread: ${counts.join(',')}`);
});
