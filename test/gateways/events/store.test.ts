// The processed-events store suite on each store: SQLite (embedded), PostgreSQL (a schema per test)
// and MySQL (MariaDB here; a database per test).

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MysqlEventStore } from '../../../gateways/events/mysql-store.js';
import { PgEventStore } from '../../../gateways/events/pg-store.js';
import { SqliteEventStore } from '../../../gateways/events/sqlite-store.js';
import { PG_URL } from './helpers.js';
import { createTestDatabase, dropTestDatabase, MYSQL_TEST_URL } from './mysql-test-db.js';
import { storeSuite, type StoreFactory } from './store-suite.js';

const tag = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

const factories: StoreFactory[] = [
  {
    name: 'sqlite',
    async open(t) {
      const dir = mkdtempSync(join(tmpdir(), 'troupe-store-'));
      const store = new SqliteEventStore(dir);
      t.teardown(async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      });
      return store;
    },
  },
  {
    name: 'postgres',
    async open(t) {
      const schema = `store_test_${tag()}`;
      t.teardown(() => PgEventStore.dropSchema(PG_URL, schema).catch(() => {}));
      const store = await PgEventStore.open({ url: PG_URL, schema, poolSize: 2 });
      t.teardown(() => store.close());
      return store;
    },
  },
  {
    name: 'mysql',
    async open(t) {
      const url = `${MYSQL_TEST_URL}/troupe_store_${tag()}`;
      t.teardown(() => dropTestDatabase(url).catch(() => {}));
      await createTestDatabase(url);
      const store = await MysqlEventStore.open({ url, poolSize: 2 });
      t.teardown(() => store.close());
      return store;
    },
  },
];

for (const factory of factories) storeSuite(test, factory);
