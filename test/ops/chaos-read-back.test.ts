// troupe chaos reading the cluster back after the load: keys read a few at once, so one key whose
// node never answers costs only its own tries; what was not read is counted by reason.

import test from 'ava';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeMisses, readBack } from '../../ops/chaos/read-back.js';

async function server(t: import('ava').ExecutionContext, handle: (path: string, res: import('node:http').ServerResponse) => void): Promise<{ node: string; host: string; port: number }> {
  const s: Server = createServer((req, res) => handle(req.url ?? '', res));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    return new Promise<void>((r) => s.close(() => r()));
  });
  return { node: 'n1', host: '127.0.0.1', port: (s.address() as AddressInfo).port };
}

test('a key that hangs costs its own tries; the others are read, in the order given', async (t) => {
  let inFlight = 0;
  let mostAtOnce = 0;
  const target = await server(t, (path, res) => {
    mostAtOnce = Math.max(mostAtOnce, ++inFlight);
    res.on('close', () => inFlight--);
    if (path === '/k/hang') return; // never answers
    if (path === '/k/busy') {
      res.writeHead(503, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: 'PartitionUnavailable', message: 'retry later' }));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ n: path.length }));
  });
  const keys = ['a', 'hang', 'bb', 'busy', ...Array.from({ length: 40 }, (_, i) => `k${i}`)];
  const { values, misses } = await readBack(keys, () => [target], { path: (k) => `/k/${k}`, parse: (b) => (b as { n: number }).n }, { endsAt: performance.now() + 60_000, attempts: 2, requestTimeoutMs: 300 });
  t.deepEqual([...values.keys()], keys);
  t.is(values.get('a'), '/k/a'.length);
  t.is(values.get('k39'), '/k/k39'.length);
  t.is(values.get('hang'), undefined);
  t.is(values.get('busy'), undefined);
  t.is([...values.values()].filter((v) => v !== undefined).length, keys.length - 2);
  t.deepEqual(Object.fromEntries(misses), { 'no answer in 0.3 s': 1, '503 PartitionUnavailable': 1 });
  t.is(describeMisses(misses), '1 503 PartitionUnavailable, 1 no answer in 0.3 s');
  // Read one after another, the hung key would have held the 42 others behind its tries.
  t.true(mostAtOnce > 1, 'keys are read a few at once');
});

test('past its end no request starts: every key left is counted as not read', async (t) => {
  let asked = 0;
  const target = await server(t, (_path, res) => {
    asked++;
    res.end('{}');
  });
  const { values, misses } = await readBack(['x', 'y'], () => [target], { path: (k) => `/${k}`, parse: (b) => b }, { endsAt: performance.now() - 1, attempts: 3 });
  t.is(asked, 0);
  t.deepEqual([...values.values()], [undefined, undefined]);
  t.deepEqual(Object.fromEntries(misses), { 'no time left to ask': 2 });
});

test('no node running: nothing is asked, and the reason says so', async (t) => {
  const { values, misses } = await readBack(['x'], () => [], { path: (k) => `/${k}`, parse: (b) => b }, { endsAt: performance.now() + 1000, attempts: 3 });
  t.is(values.get('x'), undefined);
  t.deepEqual(Object.fromEntries(misses), { 'no node running': 1 });
});
