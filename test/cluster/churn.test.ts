// The cluster under churn (child-process nodes, real Redis): counters asked from several nodes
// while nodes join and leave end equal to the acknowledged adds, and no actor ever has two live
// activations while nodes join, leave, pause and die.

import test from 'ava';
import { TestCluster, waitFor, type TestNode } from './test-cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('counters asked from several nodes during joins and graceful leaves end equal to the acknowledged adds', async (t) => {
  const cluster = new TestCluster(t);
  const initial = await cluster.start(2);
  const live: TestNode[] = [...initial];
  const keys = Array.from({ length: 8 }, (_, i) => `counter/churn${i}`);
  const acked = new Map<string, number>(keys.map((k) => [k, 0]));
  const failed = new Map<string, number>(keys.map((k) => [k, 0]));
  let running = true;
  const workers = keys.map(async (key, i) => {
    while (running) {
      const via = live[i % live.length]!;
      try {
        await via.ask(key, 'add', 1);
        acked.set(key, acked.get(key)! + 1);
      } catch {
        failed.set(key, failed.get(key)! + 1);
      }
    }
  });
  // Churn: two joins and two graceful leaves while the adds go on.
  for (let round = 0; round < 2; round++) {
    await sleep(400);
    const [joined] = await cluster.start(1);
    live.push(joined!);
    await sleep(600);
    const leaving = live.shift()!;
    await leaving.stop();
  }
  await sleep(300);
  running = false;
  await Promise.all(workers);
  let total = 0;
  for (const key of keys) {
    const value = await live[0]!.ask<number>(key, 'get');
    total += acked.get(key)!;
    // Every acknowledged add is there; an add that failed (a timeout) may or may not have applied.
    t.true(value >= acked.get(key)!, `${key}: ${value} < ${acked.get(key)} acknowledged`);
    t.true(value <= acked.get(key)! + failed.get(key)!, `${key}: ${value} > acknowledged + failed`);
  }
  t.true(total > 50, `the load went on (${total} acknowledged adds)`);
});

test('under joins, leaves, pauses and kills no actor ever has two live activations', async (t) => {
  const cluster = new TestCluster(t);
  const live: TestNode[] = await cluster.start(3);
  t.true(await waitFor(async () => (await live[0]!.members()).length === 3));
  const keys = Array.from({ length: 24 }, (_, i) => `witness/w${i}`);
  const histories = new Map<string, string[]>(keys.map((k) => [k, []]));
  /** Per key, what each answer said: nonce, visits, the answering process, and when. */
  const traces = new Map<string, string[]>(keys.map((k) => [k, []]));
  const t0 = Date.now();
  let running = true;
  let answered = 0;
  const workers = keys.map(async (key, i) => {
    let n = i;
    while (running) {
      const alive = live.filter((node) => node.child.exitCode === null && node.child.signalCode === null);
      const via = alive[n++ % alive.length];
      if (!via) break;
      try {
        const r = await via.ask<{ nonce: string; visits: number; pid: number }>(key, 'visit');
        histories.get(key)!.push(r.nonce);
        traces.get(key)!.push(`${Date.now() - t0}ms ${r.nonce.slice(0, 8)} #${r.visits} pid ${r.pid}`);
        answered++;
      } catch {
        // A paused or killed node's asks time out; the history only records what was answered.
      }
    }
  });
  const churned: string[] = [];
  const note = (what: string, node: TestNode) => churned.push(`${Date.now() - t0}ms ${what} pid ${node.child.pid}`);
  const churn = async () => {
    await sleep(500);
    const [joined] = await cluster.start(1); // join
    live.push(joined!);
    note('joined', joined!);
    await sleep(700);
    const paused = live[1]!; // pause past the lease TTL, then resume
    paused.kill('SIGSTOP');
    note('SIGSTOP', paused);
    await sleep(3000);
    paused.kill('SIGCONT');
    note('SIGCONT', paused);
    await sleep(1000);
    note('leaving', live[0]!);
    await live[0]!.stop(); // graceful leave
    note('left', live[0]!);
    await sleep(700);
    live[2]!.kill('SIGKILL'); // crash
    note('SIGKILL', live[2]!);
    await sleep(3000);
  };
  await churn();
  running = false;
  await Promise.all(workers);
  t.true(answered > 100, `asks were answered throughout (${answered})`);
  for (const [key, history] of histories) {
    // Runs of one nonce; once a nonce is left behind it never answers again.
    const seen = new Set<string>();
    let current = '';
    for (const [i, nonce] of history.entries()) {
      if (nonce === current) continue;
      const around = traces.get(key)!.slice(Math.max(0, i - 6), i + 3).join('; ');
      t.false(seen.has(nonce), `${key}: activation ${nonce} answered again after a newer one (${around}) [churn: ${churned.join('; ')}]`);
      seen.add(nonce);
      current = nonce;
    }
  }
});
