// `troupe chaos` as a person runs it: bad settings refused at the door with what to do (exit 2), an
// unreachable Redis refused before anything starts, and a short real run on three `troupe node`
// processes with kills and a pause, whose verdict is "nothing acknowledged was lost", after which
// no node, Redis key or schema of the run is left; and a run whose stored rows are taken away
// before the judgement, which must fail (a checker that cannot fail proves nothing).

import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { runChaos } from '../../ops/chaos/run.js';
import { CHAOS_SETTINGS, chaosOptionsFrom } from '../../ops/chaos/settings.js';
import { formatVerdict, type ChaosReport } from '../../ops/chaos/verdict.js';
import { readSettings } from '../../runtime/settings.js';
import { newRedis, REDIS_URL } from '../cluster/helpers.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;
const PG_URL = process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

const chaos = (args: string[]) => spawnSync(process.execPath, [TROUPE, 'chaos', ...args], { encoding: 'utf8', env: { ...process.env, TROUPE_REDIS: '', TROUPE_POSTGRES: '' } });

test('troupe --help lists chaos; chaos --help lists its settings', (t) => {
  t.regex(spawnSync(process.execPath, [TROUPE, '--help'], { encoding: 'utf8' }).stdout, /\n  chaos +start a cluster of nodes, kill, pause and restart them under load/);
  const help = chaos(['--help']);
  t.is(help.status, 0);
  for (const s of ['nodes', 'duration', 'faults', 'overlap', 'fault-every', 'fault-for', 'kill-every', 'pause-every', 'stop-every', 'redis', 'postgres', 'seed', 'keep', 'drain-timeout', 'counter-rate']) t.regex(help.stdout, new RegExp(`--${s} `));
});

test('bad settings are refused at start, all together, with what to do (exit 2)', (t) => {
  const range = chaos(['--nodes', '1', '--duration', 'soon', '--workloads', 'events,chat', '--faults', 'kill,flood']);
  t.is(range.status, 2);
  t.regex(range.stderr, /setting nodes: got --nodes "1"; expected a whole number from 2 to 9/);
  t.regex(range.stderr, /setting duration: got --duration "soon"; expected a duration like 500ms, 3s, 2m/);
  t.regex(range.stderr, /"chat" not known/);
  t.regex(range.stderr, /setting faults: got --faults "kill,flood"; "flood" not known, expected a comma-separated list of kill, pause, stop, partition, slow-link, redis-restart, redis-pause, redis-failover, pg-restart/);

  const together = chaos(['--duration', '20s', '--kill-every', '30s', '--redis', 'redis://127.0.0.1:6379', '--faults', 'kill,redis-pause', 'extra']);
  t.is(together.status, 2);
  t.regex(together.stderr, /setting faults: redis-pause needs a Redis chaos starts itself/);
  t.regex(together.stderr, /setting kill-every: got 30s, not shorter than --duration 20s, so it would never happen/);
  t.regex(together.stderr, /unexpected argument "extra"/);
  t.is(together.stdout, '');
});

test('a Redis that does not answer stops the run before any node starts (exit 2)', (t) => {
  const r = chaos(['--redis', 'redis://127.0.0.1:1', '--postgres', PG_URL, '--duration', '10s']);
  t.is(r.status, 2);
  t.regex(r.stderr, /the run could not begin: Redis at redis:\/\/127\.0\.0\.1:1 does not answer \(.*ECONNREFUSED.*\); start it or give another --redis/);
  t.notRegex(r.stdout, /started/);
});

test('faults on a server chaos does not own are refused, with what to do (exit 2)', (t) => {
  const r = chaos(['--redis', REDIS_URL, '--postgres', PG_URL, '--faults', 'kill,redis-restart,redis-pause,pg-restart']);
  t.is(r.status, 2);
  t.regex(r.stderr, /setting faults: redis-restart, redis-pause need a Redis chaos starts itself, and --redis .* names one it does not own \(chaos never stops, pauses or restarts a server it did not start\); leave out --redis, or these faults/);
  t.regex(r.stderr, /setting faults: pg-restart needs a PostgreSQL chaos starts itself, and --postgres names one it does not own/);
  const net = chaos(['--redis', REDIS_URL, '--postgres', PG_URL, '--faults', 'partition', '--duration', '10s']);
  t.is(net.status, 2);
  t.regex(net.stderr, /partition and slow-link run the nodes in network namespaces of the run, which reach only the Redis and PostgreSQL chaos starts itself/);
});

test('a short run: 3 nodes under load, SIGKILLs and a SIGSTOP; nothing acknowledged lost, user aggregates exact; nothing left behind', async (t) => {
  t.timeout(300_000);
  const child = spawn(
    process.execPath,
    [TROUPE, 'chaos', '--redis', REDIS_URL, '--postgres', PG_URL, '--nodes', '3', '--duration', '24s', '--kill-every', '7s', '--pause-every', '10s', '--pause-for', '4s', '--seed', '20261122', '--rate', '1000', '--cart-rate', '30', '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close', not 'exit': the report is the last line of stdout, read only once the pipe is drained.
  const [code] = (await once(child, 'close')) as [number];
  t.log(stdout.split('\n').filter((l) => !l.startsWith('{')).join('\n'));
  if (stderr) t.log(stderr);
  t.is(code, 0);

  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as ChaosReport;
  t.true(report.ok);
  t.true(report.faults.kill >= 1, 'at least one node was killed and restarted');
  t.true(report.faults.pause >= 1, 'at least one node was paused and resumed');
  t.true(report.drained);
  t.true(report.events!.acked > 0);
  t.like(report.events, { lost: 0, duplicated: 0, neverSent: 0 });
  t.true(report.events!.stored >= report.events!.acked);
  t.true(report.carts!.acked > 0);
  t.like(report.carts, { lost: 0, duplicated: 0, neverSent: 0 });
  // The user aggregates, durable actors moved by every kill and pause, count exactly their rows.
  t.true(report.aggregates!.users > 0);
  t.like(report.aggregates, { off: 0, unanswered: 0 });
  t.regex(stdout, /\] kill n\d \(SIGKILL pid \d+\)/);
  t.regex(stdout, /\] n\d back \(pid \d+/);
  t.regex(stdout, /\] pause n\d \(SIGSTOP pid \d+, 4s\)/);
  t.regex(stdout, /NOTHING ACKNOWLEDGED WAS LOST OR DUPLICATED \(seed 20261122\)/);

  // Nothing of the run is left: its processes, data directory, Redis keys and schema.
  const [, cluster, queue, schema] = /cluster (\S+) \(Redis .*\), queue (\S+), schema (\S+) /.exec(stdout)!;
  const runDir = /nodes' data and logs: (\S+)/.exec(stdout)![1]!;
  t.false(existsSync(runDir));
  t.is(spawnSync('pgrep', ['-f', runDir]).status, 1, 'no process of the run is left');
  const redis = newRedis();
  t.teardown(() => redis.disconnect());
  const anyKey = async (pattern: string) => (await redis.scan('0', 'MATCH', pattern, 'COUNT', 100_000))[1];
  t.deepEqual(await anyKey(`troupe:{${cluster}}:*`), []);
  t.deepEqual(await anyKey(`bull:${queue}:*`), []);
  const db = new pg.Client({ connectionString: PG_URL });
  await db.connect();
  t.teardown(() => db.end());
  t.is((await db.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount, 0);
});

test('the verdict sees a loss: acknowledged rows taken away before the judgement fail the run', async (t) => {
  t.timeout(120_000);
  const lines: string[] = [];
  const { options } = chaosOptionsFrom(readSettings(CHAOS_SETTINGS, { argv: ['--redis', REDIS_URL, '--postgres', PG_URL, '--nodes', '2', '--duration', '6s', '--kill-every', '0', '--pause-every', '0', '--workloads', 'events', '--rate', '500'], env: {} }).values, () => 1);
  let taken: string[] = [];
  const report = await runChaos(options!, {
    out: (line) => lines.push(line),
    async beforeJudgement(db, schema) {
      const res = await db.query<{ id: string }>(`DELETE FROM "${schema}".processed_events WHERE id IN (SELECT id FROM "${schema}".processed_events LIMIT 3) RETURNING id`);
      taken = res.rows.map((r) => r.id);
    },
  }, new AbortController().signal);
  t.log(lines.join('\n'));
  t.is(taken.length, 3);
  t.false(report.ok);
  t.is(report.events!.lost, 3);
  t.deepEqual([...report.events!.lostExamples].sort(), [...taken].sort());
  t.regex(formatVerdict(report), /FAILED: acknowledged work was lost/);
});
