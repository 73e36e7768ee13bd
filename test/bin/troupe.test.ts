// The troupe command itself: help, configuration errors a person can act on, and a node with
// every service that starts on free ports and shuts down cleanly on SIGTERM.

import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { tempDir } from '../common.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

test('troupe --help lists the commands; troupe node --help every setting', (t) => {
  const help = spawnSync(process.execPath, [TROUPE, '--help'], { encoding: 'utf8' });
  t.is(help.status, 0);
  for (const command of ['node', 'dating', 'dating-harness', 'presence-client', 'migrate']) t.regex(help.stdout, new RegExp(`\\n  ${command} `));
  const nodeHelp = spawnSync(process.execPath, [TROUPE, 'node', '--help'], { encoding: 'utf8' });
  t.is(nodeHelp.status, 0);
  for (const setting of ['presence-port', 'dating-source-port', 'carts-port', 'who-port', 'events-port', 'cluster-port', 'ops-port', 'gateways', 'data-dir', 'redis']) {
    t.regex(nodeHelp.stdout, new RegExp(`--${setting} `));
  }
  t.regex(nodeHelp.stdout, /env TROUPE_WHO_PORT/);
});

test('a bad configuration is refused at start, naming each setting, what was given and what is allowed', (t) => {
  const r = spawnSync(process.execPath, [TROUPE, 'node', '--who-port', '70000', '--gateways', 'who,chat'], {
    encoding: 'utf8',
    env: { ...process.env, TROUPE_SHARDS: 'many' },
  });
  t.is(r.status, 2);
  t.regex(r.stderr, /setting who-port: got --who-port "70000"; expected a TCP port from 0 to 65535/);
  t.regex(r.stderr, /"chat" not known/);
  t.regex(r.stderr, /setting shards: got TROUPE_SHARDS "many"/);
  t.is(spawnSync(process.execPath, [TROUPE, 'nonsense'], { encoding: 'utf8' }).status, 2);
  // A URL setting shows a URL of its own kind, and the tracing settings are checked too.
  const tracing = spawnSync(process.execPath, [TROUPE, 'node', '--otlp-endpoint', 'collector 4318', '--trace-sample-ratio', '2', '--postgres', 'db'], { encoding: 'utf8' });
  t.is(tracing.status, 2);
  t.regex(tracing.stderr, /setting otlp-endpoint: got --otlp-endpoint "collector 4318"; expected a URL such as http:\/\/collector:4318\/v1\/traces/);
  t.regex(tracing.stderr, /setting trace-sample-ratio: got --trace-sample-ratio "2"; expected a number from 0 to 1/);
  t.regex(tracing.stderr, /setting postgres: got --postgres "db"; expected a URL such as postgres:\/\//);
  const scheme = spawnSync(process.execPath, [TROUPE, 'node', '--otlp-endpoint', 'grpc://collector:4317'], { encoding: 'utf8' });
  t.is(scheme.status, 2);
  t.regex(scheme.stderr, /traces go over OTLP\/HTTP, so give an http:\/\/ or https:\/\/ URL/);
});

test('troupe node starts every service on free ports and exits 0 on SIGTERM', async (t) => {
  const dataDir = tempDir('troupe-cli-');
  const child = spawn(
    process.execPath,
    [TROUPE, 'node', '--host', '127.0.0.1', '--data-dir', dataDir, '--shards', '1', '--log-level', 'warn',
      ...['presence-port', 'dating-source-port', 'dating-listener-port', 'carts-port', 'who-port', 'events-port', 'cluster-port', 'ops-port'].flatMap((s) => [`--${s}`, '0'])],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!/events\.http/.test(stderr) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  for (const name of ['presence.grpc', 'dating.source', 'dating.listener', 'carts.grpc', 'who.who', 'events.http', 'ops']) t.regex(stderr, new RegExp(`troupe:\\s+${name.replace('.', '\\.')}\\s+127\\.0\\.0\\.1:\\d+`));
  const ops = Number(/troupe:\s+ops\s+127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
  const ready = await fetch(`http://127.0.0.1:${ops}/readyz`);
  t.is(ready.status, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${ops}/metrics`)).text();
  t.regex(metrics, /troupe_activations\{shard="0"\}/);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number];
  t.is(code, 0);
});
