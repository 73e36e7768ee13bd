// `troupe chaos --events-store mysql`: the events load stored in a MySQL database of the run's own
// (MariaDB here), judged through the same store interface as PostgreSQL: nodes killed under load,
// nothing acknowledged lost, user aggregates exact, the verdict's counts those of the MySQL table,
// and the run's database dropped at the end. Skipped, saying why, when MySQL does not answer.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { mysqlRunUrl, removeMysql } from '../../ops/chaos/isolation.js';
import { TcpRelay } from '../../ops/chaos/relay.js';
import { runChaos } from '../../ops/chaos/run.js';
import { CHAOS_SETTINGS, chaosOptionsFrom } from '../../ops/chaos/settings.js';
import { readSettings } from '../../runtime/settings.js';
import { REDIS_URL } from '../cluster/helpers.js';
import { connectTestDatabase, createTestDatabase, dropTestDatabase, MYSQL_TEST_URL } from '../gateways/events/mysql-test-db.js';

const TROUPE = new URL('../../bin/troupe.js', import.meta.url).pathname;
const PG_URL = process.env.TROUPE_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the test account can make a database (it makes the account over the root socket if missing). */
async function mysqlProblem(): Promise<string | undefined> {
  const probe = `${MYSQL_TEST_URL}/troupe_chaosprobe_${randomBytes(4).toString('hex')}`;
  try {
    await createTestDatabase(probe);
    await dropTestDatabase(probe);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
const problem = await mysqlProblem();

const chaos = (args: string[]) => spawnSync(process.execPath, [TROUPE, 'chaos', ...args], { encoding: 'utf8', env: { ...process.env, TROUPE_REDIS: '', TROUPE_POSTGRES: '', TROUPE_MYSQL: '', TROUPE_EVENTS_STORE: '' } });

test('--mysql names a server, not a database; a wrong scheme is refused (exit 2)', (t) => {
  const withDb = chaos(['--events-store', 'mysql', '--mysql', 'mysql://troupe_test:secret@127.0.0.1:3306/eventdb', '--duration', '10s']);
  t.is(withDb.status, 2);
  t.regex(withDb.stderr, /setting mysql: got "mysql:\/\/troupe_test:\*\*\*@127\.0\.0\.1:3306\/eventdb", which names the database eventdb; give the server only \(mysql:\/\/USER:PASS@HOST:PORT\): chaos creates a database troupe_chaos_<run>/);
  t.notRegex(withDb.stderr, /secret/);
  const scheme = chaos(['--events-store', 'mysql', '--mysql', 'postgres://127.0.0.1:5432', '--duration', '10s']);
  t.is(scheme.status, 2);
  t.regex(scheme.stderr, /setting mysql: got "postgres:\/\/127\.0\.0\.1:5432"; expected a mysql:\/\/ URL/);
  const store = chaos(['--events-store', 'sqlite']);
  t.is(store.status, 2);
  t.regex(store.stderr, /setting events-store: got --events-store "sqlite"; expected one of postgres, mysql/);
});

test('a MySQL that does not answer stops the run before any node starts (exit 2)', (t) => {
  const r = chaos(['--redis', REDIS_URL, '--postgres', PG_URL, '--events-store', 'mysql', '--mysql', 'mysql://troupe_test:troupe_test@127.0.0.1:1', '--duration', '10s']);
  t.is(r.status, 2);
  t.regex(r.stderr, /the run could not begin: MySQL at mysql:\/\/troupe_test:\*+@127\.0\.0\.1:1 refused the run's database troupe_chaos_\w+ \(ECONNREFUSED.*\); start MySQL or MariaDB there, or give another --mysql/);
  t.notRegex(r.stdout, /started/);
});

const runTitle = 'events on MySQL: 3 nodes, SIGKILLs under load; nothing lost, aggregates exact, counts from the MySQL table; its database dropped';
(problem ? test.skip : test.serial)(problem ? `${runTitle} (SKIPPED: MySQL does not answer: ${problem})` : runTitle, async (t) => {
  t.timeout(300_000);
  const lines: string[] = [];
  const argv = ['--redis', REDIS_URL, '--postgres', PG_URL, '--events-store', 'mysql', '--mysql', MYSQL_TEST_URL, '--nodes', '3', '--duration', '18s', '--faults', 'kill', '--kill-every', '6s', '--seed', '20261203', '--rate', '500', '--cart-rate', '20', '--workloads', 'events,carts'];
  const { options, problems } = chaosOptionsFrom(readSettings(CHAOS_SETTINGS, { argv, env: {} }).values, () => 1);
  t.deepEqual(problems, []);
  let inMysql = -1;
  let database = '';
  let pgHasEvents: boolean | undefined;
  const report = await runChaos(options!, {
    out: (line) => lines.push(line),
    async beforeJudgement(db, schema, mysqlUrl) {
      // What the verdict is about to count, read straight from the server, and nothing in PostgreSQL.
      database = new URL(mysqlUrl!).pathname.slice(1);
      const conn = await connectTestDatabase(mysqlUrl!);
      try {
        const [rows] = await conn.query('SELECT count(*) AS n FROM processed_events');
        inMysql = Number((rows as { n: number }[])[0]!.n);
      } finally {
        await conn.end();
      }
      pgHasEvents = (await db.query('SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2', [schema, 'processed_events'])).rowCount !== 0;
    },
  }, new AbortController().signal);
  t.log(lines.join('\n'));
  t.true(report.ok);
  t.true(report.faults.kill >= 1, 'at least one node was killed and restarted');
  t.true(report.drained);
  t.true(report.events!.acked > 0);
  t.like(report.events, { lost: 0, duplicated: 0, neverSent: 0 });
  t.is(report.events!.stored, inMysql, 'the verdict counted the MySQL table');
  t.false(pgHasEvents, 'no processed_events in the PostgreSQL schema: the nodes stored events in MySQL');
  t.true(report.aggregates!.users > 0);
  t.like(report.aggregates, { off: 0, unanswered: 0 });
  t.like(report.carts, { lost: 0, duplicated: 0 });
  t.true(lines.some((l) => l.includes(`events stored in: MySQL database ${database}`)));

  // The run's database is gone.
  t.regex(database, /^troupe_chaos_[a-z0-9]+$/);
  const conn = await connectTestDatabase(`${MYSQL_TEST_URL}/information_schema`);
  t.teardown(() => conn.end().catch(() => {}));
  const [left] = await conn.query('SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?', [database]);
  t.deepEqual(left, []);
});

test('the cleanup drops only a database named troupe_chaos_<tag>', async (t) => {
  const names = { cluster: 'chaos-x', queue: 'chaos-x', schema: 'chaos_x', mysqlDatabase: 'eventdb' };
  const problems = await removeMysql(MYSQL_TEST_URL, names);
  t.is(problems.length, 1);
  t.regex(problems[0]!, /MySQL database eventdb not dropped: refusing the MySQL database name eventdb: chaos only makes and drops troupe_chaos_<tag>/);
  t.regex(mysqlRunUrl('mysql://u:p@127.0.0.1:3306/', { ...names, mysqlDatabase: 'troupe_chaos_abc' }), /^mysql:\/\/u:p@127\.0\.0\.1:3306\/troupe_chaos_abc$/);
});

test('the relay carries bytes both ways to the server behind it, and closes every connection when stopped', async (t) => {
  const server = createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const relay = await TcpRelay.start('127.0.0.1', { host: '127.0.0.1', port: (server.address() as { port: number }).port });
  t.teardown(() => relay.stop());
  const client = connect({ host: '127.0.0.1', port: relay.port });
  t.teardown(() => client.destroy());
  await once(client, 'connect');
  client.write('ping through the relay');
  const [echo] = (await once(client, 'data')) as [Buffer];
  t.is(echo.toString(), 'ping through the relay');
  const closed = once(client, 'close');
  await relay.stop();
  await closed;
  t.pass();
});
