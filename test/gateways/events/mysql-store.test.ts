// What only the MySQL store has to show (MariaDB here): it takes the table the brief's init made
// first, rows and all; a date its TIMESTAMP cannot hold fails the batch with a reason instead of
// storing zeros; pages are read from the brief's two indexes; start errors say what to do.

import test, { type ExecutionContext } from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MysqlEventStore, mysqlPageSql, PROCESSED_EVENTS_DDL } from '../../../gateways/events/mysql-store.js';
import { connectTestDatabase, createTestDatabase, dropTestDatabase, MYSQL_TEST_URL } from './mysql-test-db.js';

async function database(t: ExecutionContext): Promise<string> {
  const url = `${MYSQL_TEST_URL}/troupe_mstore_${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  t.teardown(() => dropTestDatabase(url).catch(() => {}));
  await createTestDatabase(url);
  return url;
}

/** compose.yml's init script for MySQL 8, the brief's table. */
const INIT_SQL = readFileSync(new URL('../../../../ops/mysql/init.sql', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => !l.startsWith('--'))
  .join('\n')
  .trim();

test('the store creates the table with the DDL of the brief\'s init script, word for word', (t) => {
  t.is(INIT_SQL, `${PROCESSED_EVENTS_DDL};`);
});

function rowsJson(rows: { id: string; created_at: string; user_id?: string | null; type?: string }[]) {
  return JSON.stringify(rows.map((r) => ({ type: 'user_action', source: 'web', user_id: null, processed_data: { a: 1 }, received_at: Date.parse(r.created_at), ...r })));
}

test('the table the brief\'s init created first, with its rows, is used as it is', async (t) => {
  const url = await database(t);
  const db = await connectTestDatabase(url);
  t.teardown(() => db.end());
  await db.query(INIT_SQL);
  const old = randomUUID();
  // As another writer might: only the NOT NULL columns, the rest left to their defaults.
  await db.query("INSERT INTO processed_events (id, type, source) VALUES (?, 'system_log', 'system')", [old]);
  const store = await MysqlEventStore.open({ url, poolSize: 2 });
  t.teardown(() => store.close());
  const fresh = randomUUID();
  const inserted = await store.insert({ rowsJson: rowsJson([{ id: fresh, created_at: '2026-11-22T10:00:00.000Z' }, { id: old, created_at: '2026-11-22T10:00:00.000Z' }]), rowCount: 2, processedAt: Date.now() });
  t.deepEqual([...inserted], [fresh]);
  t.is(await store.count(), 2);
  const kept = await store.get(old);
  t.is(kept!.type, 'system_log', 'the earlier row is untouched');
  t.deepEqual(kept!.processed_data, {});
  t.is(kept!.processing_time_ms, 0);
  const [[created]] = (await db.query("SHOW CREATE TABLE processed_events")) as any;
  t.regex(created['Create Table'], /`type` enum\('user_action','sensor_data','system_log'\) NOT NULL/);
});

test('a created_at outside TIMESTAMP\'s range fails the batch with the reason; nothing is stored as zeros', async (t) => {
  const url = await database(t);
  const store = await MysqlEventStore.open({ url, poolSize: 2 });
  t.teardown(() => store.close());
  for (const at of ['1969-12-31T23:59:59.000Z', '2040-01-01T00:00:00.000Z']) {
    const err = await t.throwsAsync(store.insert({ rowsJson: rowsJson([{ id: randomUUID(), created_at: '2026-11-22T10:00:00.000Z' }, { id: randomUUID(), created_at: at }]), rowCount: 2, processedAt: Date.now() }));
    t.regex(err!.message, /1970-01-01 to 2038-01-19/);
  }
  t.is(await store.count(), 0, 'the statement is all or nothing');
});

test('pages are read from idx_user_created and idx_type_created', async (t) => {
  const url = await database(t);
  const store = await MysqlEventStore.open({ url, poolSize: 2 });
  t.teardown(() => store.close());
  const types = ['user_action', 'sensor_data', 'system_log'];
  const rows = Array.from({ length: 600 }, (_, i) => ({ id: randomUUID(), type: types[i % 3]!, user_id: `u${i % 40}`, created_at: new Date(Date.UTC(2026, 10, 22, 10, 0, i)).toISOString() }));
  await store.insert({ rowsJson: rowsJson(rows), rowCount: rows.length, processedAt: Date.now() });
  const db = await connectTestDatabase(url);
  t.teardown(() => db.end());
  await db.query('ANALYZE TABLE processed_events');
  const after = { created_at: '2026-11-22T10:05:00.000Z', id: randomUUID() };
  const keys = async (q: Parameters<typeof mysqlPageSql>[0]) => {
    const { sql, values } = mysqlPageSql(q);
    const [plan] = (await db.query(`EXPLAIN ${sql}`, values)) as any;
    return (plan as { table: string; key: string | null }[]).filter((p) => p.table === 'processed_events').map((p) => p.key);
  };
  t.deepEqual(await keys({ user_id: 'u7', limit: 51 }), ['idx_user_created']);
  t.deepEqual(await keys({ user_id: 'u7', type: 'user_action', after, limit: 51 }), ['idx_user_created']);
  t.deepEqual(await keys({ type: 'sensor_data', since: '2026-11-22T10:01:00.000Z', limit: 101 }), ['idx_type_created']);
  t.deepEqual(await keys({ after, limit: 101 }), ['idx_type_created', 'idx_type_created', 'idx_type_created'], 'no filter: one index range per type');
});

test('opening names what to fix: unknown database, wrong password, nothing listening', async (t) => {
  const base = MYSQL_TEST_URL;
  const missing = await t.throwsAsync(MysqlEventStore.open({ url: `${base}/troupe_missing_${randomBytes(4).toString('hex')}` }));
  t.regex(missing!.message, /ER_BAD_DB_ERROR.*create the database first \(CREATE DATABASE troupe_missing_/);
  const denied = await t.throwsAsync(MysqlEventStore.open({ url: `${base.replace(/:[^:@/]*@/, ':not-the-password@')}/troupe_x` }));
  t.regex(denied!.message, /ER_ACCESS_DENIED_ERROR.*the user or password is refused/);
  t.notRegex(denied!.message, /not-the-password/);
  const down = await t.throwsAsync(MysqlEventStore.open({ url: 'mysql://u:p@127.0.0.1:1/eventdb' }));
  t.regex(down!.message, /ECONNREFUSED.*nothing answers there/);
});
