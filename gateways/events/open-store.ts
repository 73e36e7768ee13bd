// Which processed-events store a node uses (--events-store, defaulting to postgres when --postgres
// is given, else sqlite), and opening it.

import { ConfigError } from '../../runtime/index.js';
import { MysqlEventStore } from './mysql-store.js';
import { PgEventStore } from './pg-store.js';
import { SqliteEventStore } from './sqlite-store.js';
import type { EventStoreKind, ProcessedEventStore } from './store.js';

export const EVENT_STORE_KINDS: readonly EventStoreKind[] = ['sqlite', 'postgres', 'mysql'];
export const DEFAULT_MYSQL_URL = 'mysql://root:testpass@127.0.0.1:3306/eventdb';

export interface StoreChoice {
  /** Absent: postgres when postgresUrl is set, else sqlite. */
  eventsStore?: EventStoreKind;
  dataDir: string;
  postgresUrl?: string;
  pgSchema: string;
  /** Absent: DEFAULT_MYSQL_URL. */
  mysqlUrl?: string;
  poolSize: number;
}

export function storeKindOf(c: Pick<StoreChoice, 'eventsStore' | 'postgresUrl'>): EventStoreKind {
  return c.eventsStore ?? (c.postgresUrl ? 'postgres' : 'sqlite');
}

export async function openEventStore(c: StoreChoice): Promise<ProcessedEventStore> {
  switch (storeKindOf(c)) {
    case 'postgres':
      if (!c.postgresUrl) throw new Error('the events store is postgres but no PostgreSQL URL is set; give --postgres URL, or --events-store sqlite|mysql');
      return PgEventStore.open({ url: c.postgresUrl, schema: c.pgSchema, poolSize: c.poolSize });
    case 'mysql':
      // At start, a MySQL that cannot be used is the configuration's problem: said as one (exit 2).
      return MysqlEventStore.open({ url: c.mysqlUrl ?? DEFAULT_MYSQL_URL, poolSize: c.poolSize }).catch((err: Error) => {
        throw new ConfigError(`setting events-store: mysql was chosen, but ${err.message}`);
      });
    case 'sqlite':
      return new SqliteEventStore(c.dataDir);
  }
}
