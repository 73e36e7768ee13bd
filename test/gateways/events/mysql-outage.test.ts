// MySQL going away under a running pipeline (through a TCP relay the test owns and cuts, since the
// shared server must not be stopped): /health names the store, reads answer 503, batches wait in
// the queue and are retried; when MySQL answers again every accepted event is stored exactly once.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { get, isolatedOptions, post, startEvents, until, userAction } from './helpers.js';

/** A relay to MySQL that can be cut (every connection dropped, new ones refused) and restored. */
async function relay(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((client) => {
        const upstream = connect(target.port, target.host);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {});
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as AddressInfo).port;
        resolve();
      });
    });
  await listen();
  return {
    get port() {
      return port;
    },
    async cut() {
      const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    restore: listen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => (server?.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}

test('mysql: cut off under load, the store is named unhealthy, reads get 503, and all accepted events are stored once it is back', async (t) => {
  const base = isolatedOptions('mysql');
  const direct = new URL(base.mysqlUrl!);
  const r = await relay({ host: direct.hostname, port: Number(direct.port || 3306) });
  t.teardown(() => r.close());
  const viaRelay = new URL(base.mysqlUrl!);
  viaRelay.port = String(r.port);
  // Enough attempts that no batch runs out of them during the cut (the backoff doubles from 50 ms).
  const h = await startEvents(t, 'mysql', { ...base, mysqlUrl: viaRelay.toString(), retry: { attempts: 12, backoffMs: 50 } });

  const ids: string[] = [];
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const res = await post(`${h.url}/events/batch`, { events: Array.from({ length: 20 }, () => userAction(`outage-${i % 4}`)) });
      t.is(res.status, 202, 'the queue, not the store, is what a 202 waits for');
      ids.push(...res.body.ids);
    }
  };
  await send(5);
  await until('the first batches stored', async () => (await h.pipeline.store.count().catch(() => 0)) === 100);

  await r.cut();
  await send(10);
  const health = await get(`${h.url}/health`);
  t.is(health.status, 503);
  t.deepEqual(health.body.failing, ['store (mysql)']);
  t.regex(health.body.checks['store (mysql)'], /^mysql at mysql:\/\/troupe_test:\*\*\*@127\.0\.0\.1:\d+\/troupe_\w+ does not answer/);
  const read = await get(`${h.url}/events/${ids[0]}`);
  t.is(read.status, 503);
  t.is(read.body.error, 'store_unavailable');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.is((await h.pipeline.metrics()).events_failed, 0, 'nothing dead-lettered while it is down');

  await r.restore();
  await until('every accepted event stored', async () => (await h.pipeline.metrics()).events_processed === ids.length, 90_000);
  t.is(await h.pipeline.store.count(), ids.length);
  t.is((await h.pipeline.store.rows(ids)).length, ids.length);
  t.is((await get(`${h.url}/health`)).status, 200);
  t.is((await get(`${h.url}/events/${ids[ids.length - 1]}`)).status, 200);
  t.is((await get(`${h.url}/events/${randomUUID()}`)).status, 404);
  let total = 0;
  for (let u = 0; u < 4; u++) total += (await get(`${h.url}/users/outage-${u}/summary`)).body.events;
  t.is(total, ids.length, 'each counted once in its user aggregate');
});
