// MySQL (MariaDB on these machines) for tests: the tests' own account (troupe_test, allowed only
// databases named troupe_*), made once through the local root socket when it is missing, and one
// database per test, dropped afterwards. Never touches root's password or anything else.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import { mysqlConnection } from '../../../gateways/events/mysql-store.js';

/** Server and account, without a database: TROUPE_TEST_MYSQL, else the account .ci/run makes. */
export const MYSQL_TEST_URL = (process.env.TROUPE_TEST_MYSQL ?? 'mysql://troupe_test:troupe_test@127.0.0.1:3306').replace(/\/+$/, '');
const ACCOUNT_SQL = new URL('../../../../.ci/mysql-test-user.sql', import.meta.url);
const TEST_DATABASE = /^troupe_[a-z0-9_]{1,56}$/;

let account: Promise<void> | undefined;

async function connect(): Promise<mysql.Connection> {
  const u = new URL(MYSQL_TEST_URL);
  return mysql.createConnection({
    host: u.hostname,
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    connectTimeout: 10_000,
  });
}

/** Makes sure the test account can log in, creating it as root over the socket if it cannot. */
function ensureAccount(): Promise<void> {
  account ??= (async () => {
    try {
      await (await connect()).end();
      return;
    } catch (err) {
      // MariaDB answers 1698 (not 1045) for an account that does not exist.
      const code = (err as { code?: string }).code;
      if ((code !== 'ER_ACCESS_DENIED_ERROR' && code !== 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR') || process.env.TROUPE_TEST_MYSQL) throw err;
    }
    const sql = readFileSync(ACCOUNT_SQL, 'utf8');
    let made = false;
    for (const client of ['mariadb', 'mysql']) {
      try {
        execFileSync(client, ['-u', 'root'], { input: sql, stdio: ['pipe', 'ignore', 'pipe'], timeout: 20_000 });
        made = true;
        break;
      } catch {
        // the next client, or the message below
      }
    }
    if (!made) {
      throw new Error(`the MySQL test account of ${MYSQL_TEST_URL.replace(/:[^:@/]*@/, ':***@')} cannot log in and could not be made as root over the socket; run .ci/run, or run .ci/mysql-test-user.sql as an administrator, or set TROUPE_TEST_MYSQL=mysql://USER:PASS@HOST:PORT`);
    }
    await (await connect()).end();
  })();
  account.catch(() => (account = undefined));
  return account;
}

function databaseOf(url: string): string {
  const { database } = mysqlConnection(url);
  // The account may only touch troupe_*; refuse anything else before the server has to.
  if (!TEST_DATABASE.test(database)) throw new Error(`test databases are named troupe_<tag>; refusing ${database}`);
  return database;
}

export async function createTestDatabase(url: string): Promise<void> {
  const database = databaseOf(url);
  await ensureAccount();
  const conn = await connect();
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4`);
  } finally {
    await conn.end();
  }
}

export async function dropTestDatabase(url: string): Promise<void> {
  const database = databaseOf(url);
  const conn = await connect();
  try {
    await conn.query(`DROP DATABASE IF EXISTS \`${database}\``);
  } finally {
    await conn.end();
  }
}

/** A raw connection into a test database, for looking at the table as the server has it. */
export async function connectTestDatabase(url: string): Promise<mysql.Connection> {
  const c = mysqlConnection(url);
  return mysql.createConnection({ ...c, connectTimeout: 10_000, dateStrings: true });
}
