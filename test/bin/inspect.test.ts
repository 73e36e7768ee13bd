// The `troupe inspect` command against a `troupe node` process: --eval, --json, commands on
// standard input, exit codes, an unreachable node, and settings refused with what to do.

import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { networkInterfaces } from 'node:os';
import { createInterface } from 'node:readline';
import { tempDir } from '../common.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function troupe(args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [TROUPE, ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
    else child.stdin!.end();
  });
}

test('inspect settings are checked at the door, all problems at once, each with what to do', async (t) => {
  // In parallel: each run loads the whole command.
  const [help, top, bad, timeout, noRedis] = await Promise.all([
    troupe(['inspect', '--help']),
    troupe(['--help']),
    troupe(['inspect', '--node', 'nope', '--redis', 'redis://127.0.0.1:1', '--cluster', 'a b', 'stats']),
    troupe(['inspect', '--timeout', 'soon', '--ask-timeout', '2m']),
    troupe(['inspect', '--redis', 'redis://127.0.0.1:1', '--eval', 'nodes']),
  ]);
  t.is(help.code, 0);
  for (const s of ['node', 'redis', 'cluster', 'eval', 'json', 'timeout', 'ask-timeout']) t.regex(help.stdout, new RegExp(`--${s} `));
  t.regex(top.stdout, /\n  inspect +a REPL onto a running node or cluster/);

  t.is(bad.code, 2);
  t.regex(bad.stderr, /troupe inspect: the configuration is not valid:/);
  t.regex(bad.stderr, /setting node: got "nope"; expected HOST:PORT of a node's cluster port, like 127\.0\.0\.1:7070/);
  t.regex(bad.stderr, /settings node and redis: both are set/);
  t.regex(bad.stderr, /setting cluster: cluster name "a b" must be 1 to 64 letters/);
  t.regex(bad.stderr, /unexpected argument "stats": give commands with --eval/);

  t.is(timeout.code, 2);
  t.regex(timeout.stderr, /setting timeout: got --timeout "soon"; expected a duration like 500ms/);
  t.regex(timeout.stderr, /setting ask-timeout: got --ask-timeout "2m"/);

  t.is(noRedis.code, 1);
  t.regex(noRedis.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1.*ECONNREFUSED/);
});

test('an unreachable node: each command fails with a clear error and the exit code says so', async (t) => {
  const r = await troupe(['inspect', '--node', '127.0.0.1:1', '--timeout', '2s', '--eval', 'nodes; help']);
  t.is(r.code, 1);
  t.regex(r.stderr, /error: node 127\.0\.0\.1:1 is unreachable \(connect ECONNREFUSED 127\.0\.0\.1:1\); is a troupe node running there/);
  t.regex(r.stdout, /commands:/, 'the next command still ran');
});

/**
 * Starts `troupe node` with `args` (its data in a new temporary directory, one shard, warnings
 * only), killed at the test's end; resolves once it has printed the address of every name in
 * `ready` ("troupe:   <name>   <host>:<port>"), with every address printed so far.
 */
async function startNodeProcess(t: ExecutionContext, args: string[], ready: string[]): Promise<{ node: ChildProcess; bound: Record<string, string> }> {
  const dataDir = tempDir('troupe-inspect-cli-');
  const node = spawn(process.execPath, [TROUPE, 'node', '--data-dir', dataDir, '--shards', '1', '--log-level', 'warn', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => {
    if (node.exitCode === null) node.kill('SIGKILL');
  });
  const bound: Record<string, string> = {};
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: node.stderr! }).on('line', (line) => {
      const m = /^troupe:\s+(\S+)\s+(\S+:\d+)$/.exec(line);
      if (m) bound[m[1]!] = m[2]!;
      if (ready.every((name) => bound[name] !== undefined)) resolve();
    });
    node.once('exit', (code) => reject(new Error(`troupe node exited with ${code}`)));
  });
  return { node, bound };
}

test('troupe node serves the inspector on its cluster port; inspect runs --eval, --json and standard input', async (t) => {
  const { node, bound } = await startNodeProcess(
    t,
    ['--host', '127.0.0.1', '--gateways', 'dating', ...['dating-source-port', 'dating-listener-port', 'cluster-port', 'ops-port'].flatMap((s) => [`--${s}`, '0'])],
    ['dating.listener', 'cluster'],
  );
  const ports = Object.fromEntries(Object.entries(bound).map(([name, address]) => [name, Number(address.slice(address.lastIndexOf(':') + 1))]));
  const at = `127.0.0.1:${ports.cluster}`;

  const text = await troupe(['inspect', '--node', at, '--eval', 'nodes; ask match-pair/1-2 likes {"round": 1, "events": [11, 18]}; state match-pair/1-2; actors']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /1 node on its own \(no cluster\)/);
  t.regex(text.stdout, new RegExp(`ports cluster ${ports.cluster}, ops ${ports.ops}, dating.source ${ports['dating.source']}, dating.listener ${ports['dating.listener']}`));
  t.regex(text.stdout, /match-pair\/1-2: partition \d+, shard 0, live on/);
  t.regex(text.stdout, /"liked": 3/);
  t.regex(text.stdout, /1 live actor\n/);

  const json = await troupe(['inspect', '--node', at, '--json', '--eval', 'stats; ask match-pair/1-2 nosuch']);
  t.is(json.code, 1);
  const [stats, ask] = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { command: string; ok: boolean; data: any; error?: string });
  t.like(stats, { command: 'stats', ok: true });
  t.is(stats!.data[0].shards.length, 1);
  t.like(ask, { command: 'ask', ok: false });
  t.regex(ask!.error!, /actor type "match-pair" has no handler "nosuch" \(handlers: likes\)/);

  // Commands on standard input, a bad one among them: every line runs, the exit code is 1.
  const piped = await troupe(['inspect', '--node', at], 'ring\n\n# a comment\nask match-pair/1-2 likes {oops\nstate match-pair/1-2\nexit\nstats\n');
  t.is(piped.code, 1);
  t.regex(piped.stdout, /every partition is served by exactly one node/);
  t.regex(piped.stderr, /error: the message is not valid JSON/);
  t.regex(piped.stdout, /"liked": 3/, 'the line after the bad one ran');
  t.notRegex(piped.stdout, /shard +actors/, 'nothing ran after exit');

  node.kill('SIGTERM');
  const [code] = (await once(node, 'exit')) as [number];
  t.is(code, 0);
});

test('a node alone serves its inspector on loopback unless --inspector-host says otherwise; in a cluster that setting is refused', async (t) => {
  const refused = await troupe(['node', '--redis', 'redis://127.0.0.1:6379', '--inspector-host', '0.0.0.0', '--gateways', 'who']);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /setting inspector-host: applies to a node without --redis; in a cluster the inspector shares the cluster port on --host/);

  // --host is left at its default (every interface): the gateways listen there, the inspector not.
  const { bound } = await startNodeProcess(t, ['--gateways', 'who', ...['who-port', 'cluster-port', 'ops-port'].flatMap((s) => [`--${s}`, '0'])], ['cluster', 'who.who']);
  t.regex(bound.cluster!, /^127\.0\.0\.1:\d+$/);
  t.regex(bound['who.who']!, /^0\.0\.0\.0:\d+$/);
  const port = Number(bound.cluster!.split(':')[1]);
  const local = await troupe(['inspect', '--node', `127.0.0.1:${port}`, '--eval', 'nodes']);
  t.is(local.code, 0, local.stderr);
  // From another address of this machine, if it has one, the port is closed.
  const other = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (other !== undefined) {
    const remote = await troupe(['inspect', '--node', `${other}:${port}`, '--timeout', '2s', '--eval', 'nodes']);
    t.is(remote.code, 1);
    t.regex(remote.stderr, /is unreachable/);
  }
});
