// The node's files are private: data directories 0700, the SQLite files (and their -wal and -shm)
// 0600, whatever the umask lets through by default.

import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCatalogue } from '../../actors/catalogue-sqlite.js';
import { SqliteEventQueue } from '../../gateways/events/sqlite-queue.js';
import { SqliteEventStore } from '../../gateways/events/sqlite-store.js';
import { makePrivateDir } from '../../runtime/private-files.js';
import { SnapshotStore } from '../../runtime/snapshot-store.js';

// The usual umask: without the fix, files come out 0644 and directories 0755.
process.umask(0o022);

function scratch(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-modes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (path: string) => statSync(path).mode & 0o777;

/** The database file and whichever of -wal and -shm exist are 0600. */
function privateDb(t: ExecutionContext, path: string): void {
  t.is(mode(path).toString(8), '600', path);
  for (const suffix of ['-wal', '-shm']) if (existsSync(path + suffix)) t.is(mode(path + suffix).toString(8), '600', path + suffix);
}

test('a data directory is made 0700, parents included', (t) => {
  const dir = join(scratch(t), 'a', 'b');
  makePrivateDir(dir);
  t.is(mode(dir).toString(8), '700');
  t.is(mode(join(dir, '..')).toString(8), '700');
});

test('the snapshot store is 0600, an existing world-readable one made 0600', (t) => {
  const dir = scratch(t);
  const path = join(dir, 'shard-0.sqlite');
  const store = new SnapshotStore(path);
  store.commit([{ id: 'user/1', partition: 1, blob: Buffer.from('x') }]);
  privateDb(t, path);
  store.close();
  const old = join(dir, 'old.sqlite');
  writeFileSync(old, '', { mode: 0o644 });
  new SnapshotStore(old).close();
  t.is(mode(old).toString(8), '600');
});

test('the embedded events store and queue are 0600', async (t) => {
  const dir = scratch(t);
  const store = new SqliteEventStore(dir);
  const queue = new SqliteEventQueue({ dataDir: dir, retry: { attempts: 1, backoffMs: 10 } });
  t.teardown(async () => {
    await queue.close();
    await store.close();
  });
  privateDb(t, join(dir, 'events-store.sqlite'));
  privateDb(t, join(dir, 'events-queue.sqlite'));
});

test('the embedded carts catalogue is 0600 in a 0700 directory it makes', async (t) => {
  const dir = join(scratch(t), 'carts');
  const catalogue = new SqliteCatalogue(join(dir, 'catalogue.sqlite'));
  t.teardown(() => catalogue.close());
  t.is(mode(dir).toString(8), '700');
  privateDb(t, join(dir, 'catalogue.sqlite'));
});
