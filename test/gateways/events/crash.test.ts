// The promises that outlive a process: SIGTERM mid-load loses nothing that got a 202 (and the node
// exits 0); SIGKILL mid-load and a restart store every 202'd event exactly once, and the user
// aggregates count each once. A child process node, on every backend.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import type { ProcessedEventStore } from '../../../gateways/events/store.js';
import { BACKENDS, cleanUp, get, isolatedOptions, openStoreOf, spawnEventsNode, until, type Backend } from './helpers.js';

const USERS = Array.from({ length: 8 }, (_, i) => `crash-user-${i}`);

function postBatch(agent: Agent, port: number, events: unknown[]): Promise<number> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ events });
    const req = request({ agent, host: '127.0.0.1', port, method: 'POST', path: '/events/batch', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/** Keeps `concurrency` batches in flight until stopped; remembers what was sent and what got 202. */
function load(port: number, concurrency: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const sent = new Set<string>();
  const accepted = new Set<string>();
  const statuses = new Map<number, number>();
  let running = true;
  const loops = Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; running && i < 10_000; i++) {
      const events = Array.from({ length: 20 }, (_, j) => ({ id: randomUUID(), type: 'user_action', source: 'web', user_id: USERS[(w + i + j) % USERS.length], data: { action: 'click' } }));
      events.forEach((e) => sent.add(e.id));
      const status = await postBatch(agent, port, events);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 202) events.forEach((e) => accepted.add(e.id));
      else await new Promise((r) => setTimeout(r, 20));
    }
  });
  return {
    sent,
    accepted,
    statuses,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

function openStore(o: ReturnType<typeof isolatedOptions>): Promise<ProcessedEventStore> {
  return openStoreOf(o);
}

function options(backend: Backend) {
  const o = isolatedOptions(backend);
  return { ...o, queueWorkers: 4, lockDurationMs: 1000 };
}

for (const backend of BACKENDS) {
  test(`${backend}: SIGTERM mid-load answers 503 to new requests, stores everything accepted, exits 0`, async (t) => {
    const o = options(backend);
    t.teardown(() => cleanUp(o));
    const child = await spawnEventsNode(o);
    const traffic = load(child.port, 8);
    await until('some accepted', async () => traffic.accepted.size >= 400);
    child.proc.kill('SIGTERM');
    const code = await child.exited;
    await traffic.stop();
    t.is(code, 0);
    const store = await openStore(o);
    t.teardown(() => store.close());
    const rows = await store.rows();
    const stored = new Set(rows.map((r) => r.id));
    const missing = [...traffic.accepted].filter((id) => !stored.has(id));
    t.deepEqual(missing, [], 'every 202 is stored');
    t.true(rows.every((r) => traffic.sent.has(r.id)));
    t.is(rows.length, stored.size);
    t.log(`accepted ${traffic.accepted.size}, stored ${rows.length}, statuses ${JSON.stringify([...traffic.statuses])}`);
  });

  test(`${backend}: after SIGKILL mid-load and a restart, every 202'd event is stored and counted exactly once`, async (t) => {
    const o = options(backend);
    t.teardown(() => cleanUp(o));
    const first = await spawnEventsNode(o);
    const traffic = load(first.port, 8);
    await until('some accepted', async () => traffic.accepted.size >= 600);
    first.proc.kill('SIGKILL');
    await first.exited;
    await traffic.stop();

    const second = await spawnEventsNode(o);
    t.teardown(() => {
      second.proc.kill('SIGKILL');
    });
    const store = await openStore(o);
    t.teardown(() => store.close());
    const base = `http://127.0.0.1:${second.port}`;
    await until(
      'every accepted event stored',
      async () => {
        const stored = new Set((await store.rows()).map((r) => r.id));
        return [...traffic.accepted].every((id) => stored.has(id));
      },
      40_000,
    );
    // Let batches that were in flight at the kill (sent, maybe queued, never acknowledged) settle.
    let last = -1;
    await until('the store settles', async () => {
      const n = await store.count();
      const m = (await get(`${base}/metrics`)).body;
      const settled = n === last && m.active_workers === 0;
      last = n;
      await new Promise((r) => setTimeout(r, 300));
      return settled;
    }, 40_000);
    const rows = await store.rows();
    t.is(new Set(rows.map((r) => r.id)).size, rows.length);
    t.true(rows.every((r) => traffic.sent.has(r.id)), 'only events that were sent');
    for (const user of USERS) {
      const summary = (await get(`${base}/users/${user}/summary`)).body;
      t.is(summary.events, rows.filter((r) => r.user_id === user).length, `${user} counted once per stored event`);
    }
    t.log(`accepted ${traffic.accepted.size}, stored ${rows.length}, statuses ${JSON.stringify([...traffic.statuses])}`);
  });
}
