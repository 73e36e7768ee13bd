// Property: any random sequence of messages to a few actors ends in the same states as a plain
// sequential model of the same handlers, including failed turns that must leave no trace.

import test from 'ava';
import fc from 'fast-check';
import Counter from './fixtures/counter.js';
import { testNode } from './helpers.js';

type Op = { key: number; kind: 'add' | 'fail' | 'record'; value: number };

const op = fc.record({
  key: fc.integer({ min: 0, max: 5 }),
  kind: fc.constantFrom<'add' | 'fail' | 'record'>('add', 'fail', 'record'),
  value: fc.integer({ min: -1000, max: 1000 }),
});

test('random message sequences give the states of a sequential model', async (t) => {
  const node = await testNode({ shards: 3 });
  t.teardown(() => node.stop());
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 200 }), fc.boolean(), async (ops: Op[], useAsk: boolean) => {
      run++;
      const model = new Map<number, { n: number; log: number[] }>();
      const waits: Promise<unknown>[] = [];
      for (const o of ops) {
        const m = model.get(o.key) ?? { n: 0, log: [] };
        model.set(o.key, m);
        const ref = node.ref(Counter, `p${run}-${o.key}`);
        if (o.kind === 'add') m.n += o.value;
        if (o.kind === 'record') m.log.push(o.value);
        const handler = o.kind === 'fail' ? 'addThenFail' : o.kind;
        if (useAsk) waits.push(ref.ask(handler, o.value).catch(() => undefined));
        else if (o.kind !== 'fail') ref.tell(handler, o.value);
        else waits.push(ref.ask('addThenFail', o.value).catch(() => undefined));
      }
      await Promise.all(waits);
      for (const [key, expected] of model) {
        const ref = node.ref(Counter, `p${run}-${key}`);
        const [n, log] = await Promise.all([ref.ask('get'), ref.ask('log')]);
        if (n !== expected.n || JSON.stringify(log) !== JSON.stringify(expected.log)) return false;
      }
      return true;
    }),
    { numRuns: 40 },
  );
  t.pass();
});
