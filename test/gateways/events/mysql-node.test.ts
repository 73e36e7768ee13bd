// Issue 23's check, on a real `troupe node --events-store mysql --mysql URL` (MariaDB here): the
// events contract over HTTP; 300 events in batches, one id posted twice, are 300 rows in the brief's
// table (type an ENUM, both indexes); they read back by id and by user a page at a time. And the
// start refuses, saying why, when MySQL does not answer or the settings do not fit.

import test, { type ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { get, post, until } from './helpers.js';
import { connectTestDatabase, createTestDatabase, dropTestDatabase, MYSQL_TEST_URL } from './mysql-test-db.js';

const TROUPE = new URL('../../../bin/troupe.js', import.meta.url).pathname;

async function startTroupeNode(t: ExecutionContext, args: string[]): Promise<{ url: string; stop(): Promise<number | null> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'troupe-mysql-node-'));
  const child = spawn(process.execPath, [TROUPE, 'node', '--data-dir', dataDir, '--shards', '1', '--log-level', 'warn', '--host', '127.0.0.1', '--gateways', 'events', '--events-port', '0', '--ops-port', '0', '--cluster-port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  });
  const stderr: string[] = [];
  const address = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr.push(line);
      const m = /^troupe:\s+events\.http\s+(\S+:\d+)$/.exec(line);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`troupe node exited with ${code}: ${stderr.join('\n')}`)));
  });
  return {
    url: `http://${address}`,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

test('a troupe node on MySQL passes the events contract, stores 300 events once, and reads them back', async (t) => {
  const url = `${MYSQL_TEST_URL}/troupe_node_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  t.teardown(() => dropTestDatabase(url).catch(() => {}));
  await createTestDatabase(url);
  const node = await startTroupeNode(t, ['--events-store', 'mysql', '--mysql', url]);

  const health = await get(`${node.url}/health`);
  t.is(health.status, 200);
  t.is(health.body.checks['store (mysql)'], 'ok');
  const m0 = await get(`${node.url}/metrics`);
  t.deepEqual(Object.keys(m0.body).sort(), ['active_workers', 'average_processing_latency_ms', 'current_queue_depth', 'events_failed', 'events_per_second', 'events_processed', 'events_received', 'uptime_seconds']);
  t.is((await post(`${node.url}/events`, { type: 'bogus' })).status, 400);
  t.is((await post(`${node.url}/events/batch`, { events: Array.from({ length: 101 }, () => ({ type: 'system_log', source: 'system', data: {} })) })).status, 413);

  // 300 events in 6 batches of 50; 120 of them are one user's; then one of them again, alone.
  const user = `mysql-${randomUUID().slice(0, 8)}`;
  const sent: Record<string, unknown>[] = [];
  for (let i = 0; i < 300; i++) {
    const kind = i % 3;
    sent.push(
      kind === 0
        ? { id: randomUUID(), type: 'user_action', source: 'web', user_id: i % 5 < 2 ? user : `other-${i % 7}`, timestamp: new Date(Date.UTC(2026, 10, 22, 10, 0, i)).toISOString(), data: { action: 'purchase', value: 1.5 } }
        : kind === 1
          ? { id: randomUUID(), type: 'sensor_data', source: 'iot_device', user_id: i % 5 < 2 ? user : null, data: { celsius: i } }
          : { id: randomUUID(), type: 'system_log', source: 'system', user_id: i % 5 < 2 ? user : undefined, data: { level: 'info', message: `line ${i}` } },
    );
  }
  for (const e of sent) if (e.user_id === undefined) delete e.user_id;
  const ofUser = sent.filter((e) => e.user_id === user).length;
  t.is(ofUser, 120);
  for (let b = 0; b < 6; b++) {
    const r = await post(`${node.url}/events/batch`, { events: sent.slice(b * 50, b * 50 + 50) });
    t.is(r.status, 202);
    t.is(r.body.accepted, 50);
  }
  const twice = sent[7]!;
  t.is((await post(`${node.url}/events`, twice)).status, 202);
  await until('every event processed', async () => (await get(`${node.url}/metrics`)).body.events_processed === 301, 60_000);
  const metrics = (await get(`${node.url}/metrics`)).body;
  t.like(metrics, { events_received: 301, events_processed: 301, events_failed: 0, current_queue_depth: 0 });

  const db = await connectTestDatabase(url);
  t.teardown(() => db.end());
  const [[count]] = (await db.query('SELECT count(*) AS n, count(DISTINCT id) AS ids FROM processed_events')) as any;
  t.is(Number(count.n), 300);
  t.is(Number(count.ids), 300);
  const [[type]] = (await db.query(`SELECT DATA_TYPE AS data_type, COLUMN_TYPE AS column_type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'processed_events' AND COLUMN_NAME = 'type'`)) as any;
  t.is(type.data_type, 'enum');
  t.is(type.column_type, "enum('user_action','sensor_data','system_log')");
  const [indexes] = (await db.query(`SELECT INDEX_NAME AS name, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS cols FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'processed_events' GROUP BY INDEX_NAME`)) as any;
  t.deepEqual(Object.fromEntries((indexes as { name: string; cols: string }[]).map((i) => [i.name, i.cols])), { PRIMARY: 'id', idx_type_created: 'type,created_at', idx_user_created: 'user_id,created_at' });

  const one = await get(`${node.url}/events/${twice.id}`);
  t.is(one.status, 200);
  t.like(one.body, { id: twice.id, type: twice.type, source: twice.source, user_id: twice.user_id ?? null });
  t.is(typeof one.body.processed_data, 'object');
  t.regex(one.body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  t.is(typeof one.body.processing_time_ms, 'number');
  t.is((await get(`${node.url}/events/${randomUUID()}`)).status, 404);
  t.is((await get(`${node.url}/events/not-a-uuid`)).status, 400);

  const page = await get(`${node.url}/events?user_id=${user}&limit=50`);
  t.is(page.status, 200);
  t.is(page.body.events.length, 50);
  t.true(page.body.events.every((e: { user_id: string }) => e.user_id === user));
  t.is(typeof page.body.next_cursor, 'string');
  const seen = new Set<string>(page.body.events.map((e: { id: string }) => e.id));
  let cursor: string | null = page.body.next_cursor;
  while (cursor) {
    const next = await get(`${node.url}/events?user_id=${user}&limit=50&cursor=${cursor}`);
    t.is(next.status, 200);
    for (const e of next.body.events) seen.add(e.id);
    cursor = next.body.next_cursor;
  }
  t.is(seen.size, ofUser, 'every event of the user, once, over the pages');

  t.is(await node.stop(), 0, 'SIGTERM: a clean stop');
});

test('troupe node refuses to start, saying why, when MySQL does not answer or the store settings do not fit', async (t) => {
  // Not spawnSync: the other test of this file shares the event loop.
  const run = (args: string[]) =>
    new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'troupe-mysql-refused-'));
      t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
      const child = execFile(process.execPath, [TROUPE, 'node', '--gateways', 'events', '--events-port', '0', '--ops-port', '0', '--cluster-port', '0', '--shards', '1', '--log-level', 'silent', '--data-dir', dataDir, ...args], { encoding: 'utf8', timeout: 120_000 }, (_err, _stdout, stderr) => resolve({ status: child.exitCode, stderr }));
    });
  // At once: each is a node start, slow on a loaded machine.
  const [down, refused, noPg, scheme, noDb, bad] = await Promise.all([
    run(['--events-store', 'mysql', '--mysql', 'mysql://someone:secret@127.0.0.1:1/eventdb']),
    run(['--events-store', 'mysql', '--mysql', `${MYSQL_TEST_URL.replace(/:[^:@/]*@/, ':wrong-password@')}/troupe_nope`]),
    run(['--events-store', 'postgres']),
    run(['--events-store', 'mysql', '--mysql', 'postgres://postgres@127.0.0.1:5432/test']),
    run(['--events-store', 'mysql', '--mysql', 'mysql://root@127.0.0.1:3306']),
    run(['--events-store', 'oracle']),
  ]);
  t.is(down.status, 2, down.stderr);
  t.regex(down.stderr, /events-store: mysql was chosen, but cannot prepare processed_events in MySQL at mysql:\/\/someone:\*\*\*@127\.0\.0\.1:1\/eventdb: ECONNREFUSED/);
  t.regex(down.stderr, /nothing answers there: start MySQL/);
  t.notRegex(down.stderr, /secret/, 'the password is never printed');

  t.is(refused.status, 2, refused.stderr);
  t.regex(refused.stderr, /the user or password is refused/);

  t.is(noPg.status, 2);
  t.regex(noPg.stderr, /events-store: postgres needs --postgres URL/);
  t.is(scheme.status, 2);
  t.regex(scheme.stderr, /must start with mysql:\/\//);
  t.is(noDb.status, 2);
  t.regex(noDb.stderr, /names no database/);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /expected one of sqlite, postgres, mysql/);
});
