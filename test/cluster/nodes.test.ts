// Whole nodes in a cluster (child processes, real Redis): forwarding, rebalancing on join and
// leave with hand-off, failure detection, durable actors rebuilt from the partition changelogs
// after a crash, and counters that end equal to the acknowledged adds.

import test from 'ava';
import { TestCluster, waitFor } from './test-cluster.js';

test('a reference works the same from every node; durable state moves with its partition on join and leave', async (t) => {
  const cluster = new TestCluster(t);
  const [a] = await cluster.start(1);
  const keys = Array.from({ length: 40 }, (_, i) => `counter/k${i}`);
  for (const k of keys) await a!.ask(k, 'add', 1);

  const [b] = await cluster.start(1);
  t.true(await waitFor(async () => (await a!.members()).length === 2 && (await b!.members()).length === 2));
  // Asked from either node, every counter is where its partition now lives, with its state.
  for (const k of keys) t.is(await b!.ask(k, 'add', 1), 2, k);
  for (const k of keys) t.is(await a!.ask(k, 'get'), 2, k);
  const onA = (await a!.actors()).filter((id) => id.startsWith('counter/')).length;
  const onB = (await b!.actors()).filter((id) => id.startsWith('counter/')).length;
  t.true(onA > 0 && onB > 0, `actors spread over both nodes (${onA} on a, ${onB} on b)`);

  // A graceful leave hands every partition back to the node that stays.
  await a!.stop();
  for (const k of keys) t.is(await b!.ask(k, 'get'), 2, k);
});

test('durable actors of a node killed with SIGKILL come back on the survivor with every acknowledged change (partition changelogs)', async (t) => {
  const cluster = new TestCluster(t);
  const [a, b] = await cluster.start(2);
  t.true(await waitFor(async () => (await a!.members()).length === 2 && (await b!.members()).length === 2));
  const keys = Array.from({ length: 60 }, (_, i) => `counter/c${i}`);
  // Acknowledged adds, asked through both nodes, so some land on b's shards and are answered there.
  for (const k of keys) {
    await a!.ask(k, 'add', 1);
    await b!.ask(k, 'add', 2);
  }
  const onB = (await b!.actors()).filter((id) => id.startsWith('counter/')).length;
  t.true(onB > 0, `some counters live on b (${onB})`);

  b!.kill('SIGKILL');
  t.true(await waitFor(async () => (await a!.members()).length === 1, 5000, 20), 'the dead node leaves the membership');
  // b's data directory is gone with it as far as a knows: its counters come from the changelogs.
  for (const k of keys) t.is(await a!.ask(k, 'get'), 3, k);

  // A node that joins later takes its share of the partitions from the changelogs too.
  const [c] = await cluster.start(1);
  t.true(await waitFor(async () => (await c!.members()).length === 2));
  for (const k of keys) t.is(await c!.ask(k, 'add', 1), 4, k);
  const onC = (await c!.actors()).filter((id) => id.startsWith('counter/')).length;
  t.true(onC > 0, `some counters moved to c (${onC})`);
});

test('a node killed with SIGKILL is detected and its volatile actors come back on the survivors', async (t) => {
  const cluster = new TestCluster(t);
  const [a, b] = await cluster.start(2);
  t.true(await waitFor(async () => (await a!.members()).length === 2));
  const keys = Array.from({ length: 20 }, (_, i) => `ticker/v${i}`);
  for (const k of keys) await a!.ask(k, 'hit');
  const killedAt = Date.now();
  b!.kill('SIGKILL');
  t.true(await waitFor(async () => (await a!.members()).length === 1, 5000, 20), 'the dead node leaves the membership');
  const detected = Date.now() - killedAt;
  t.true(detected <= 3500, `detected after ${detected} ms`);
  // Every actor answers again from the survivor (the ones that lived on b start over).
  const results = await Promise.all(keys.map((k) => a!.ask<{ hits: number }>(k, 'hit')));
  t.true(results.every((r) => r.hits >= 1));
  t.true(Date.now() - killedAt < 8000);
});
