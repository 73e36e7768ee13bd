// Crash safety: a node killed with SIGKILL mid-load, restarted on the same data directory, serves
// every acknowledged update, and none that was never sent.

import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import Counter from './fixtures/counter.js';
import { tempDir, testNode } from './helpers.js';

test('SIGKILL mid-load loses no acknowledged update and invents none', async (t) => {
  const dataDir = tempDir('troupe-crash-');
  const child = spawn(process.execPath, [new URL('./fixtures/crash-child.js', import.meta.url).pathname, dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' },
  });
  const sent = new Map<string, number>();
  const acked = new Map<string, number>();
  let acks = 0;
  const lines = createInterface({ input: child.stdout! });
  const enough = new Promise<void>((resolve) => {
    lines.on('line', (line) => {
      const [kind, key, value] = line.split(' ');
      if (kind === 'SENT') sent.set(key!, (sent.get(key!) ?? 0) + 1);
      else if (kind === 'ACK') {
        acked.set(key!, Math.max(acked.get(key!) ?? 0, Number(value)));
        if (++acks === 3000) resolve();
      }
    });
  });
  await enough;
  child.kill('SIGKILL');
  // 'close', not 'exit': every line the child wrote before it died is read first ('exit' can come
  // while SENT lines are still in the pipe, and an update would then look invented).
  await once(child, 'close');
  lines.close();

  const node = await testNode({ dataDir, shards: 3 });
  t.teardown(() => node.stop());
  t.is(acked.size, 10);
  for (const [key, ack] of acked) {
    const value = await node.ref(Counter, key).ask('get');
    t.true(value >= ack, `${key}: ${value} committed, ${ack} acknowledged`);
    t.true(value <= sent.get(key)!, `${key}: ${value} committed, only ${sent.get(key)} sent`);
  }
});
