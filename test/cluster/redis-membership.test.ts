// RedisMembership against the real Redis: join, gauges over live members, graceful leave, and
// death detection after SIGKILL and SIGSTOP of a member process.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RedisMembership } from '../../runtime/cluster/redis-membership.js';
import { clusterFixture, eventually, sleep } from './helpers.js';

const memberScript = fileURLToPath(new URL('./fixtures/member-process.js', import.meta.url));

function startMemberProcess(cluster: string, id: string, gauge?: number): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(process.execPath, [memberScript, cluster, id, ...(gauge === undefined ? [] : [String(gauge)])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      lines.push(...chunk.split('\n').filter(Boolean));
      if (lines.includes('ready')) resolve({ child, lines });
    });
    child.once('exit', (code) => reject(new Error(`member process exited early with code ${code}`)));
  });
}

function killQuietly(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
}

test('members see each other, sum gauges over live members, and see a graceful leave at once', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  const a = await RedisMembership.join({ redis, cluster, self: 'a', address: '127.0.0.1:7001' });
  const b = await RedisMembership.join({ redis, cluster, self: 'b', address: '127.0.0.1:7002' });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const seenByA: string[][] = [];
  a.onChange((m) => seenByA.push(m));

  await eventually(() => a.members().length === 2 && b.members().length === 2, 3000, 'both members visible');
  t.deepEqual(a.members(), ['a', 'b']);
  t.is(a.info('b')?.address, '127.0.0.1:7002');

  a.setGauge('connections', 3);
  b.setGauge('connections', 4);
  b.setGauge('connections', 5);
  await eventually(async () => (await a.sumGauge('connections')) === 8, 3000, 'gauge sum 8');
  t.is(await b.sumGauge('never-set'), 0);

  const left = Date.now();
  await b.leave();
  await eventually(() => a.members().length === 1, 3000, 'b gone');
  t.log(`graceful leave seen after ${Date.now() - left} ms`);
  t.deepEqual(a.members(), ['a']);
  t.deepEqual(seenByA.at(-1), ['a']);
  t.is(await a.sumGauge('connections'), 3);
});

test('a member killed with SIGKILL is declared dead within the deadline, and its gauges stop counting', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  const observer = await RedisMembership.join({ redis, cluster, self: 'observer', address: '127.0.0.1:7001' });
  t.teardown(() => observer.close());
  const { child } = await startMemberProcess(cluster, 'victim', 10);
  t.teardown(() => killQuietly(child));
  observer.setGauge('connections', 1);
  await eventually(async () => observer.members().includes('victim') && (await observer.sumGauge('connections')) === 11, 5000, 'victim joined with its gauge');

  const killedAt = Date.now();
  child.kill('SIGKILL');
  await eventually(() => !observer.members().includes('victim'), 8000, 'victim declared dead');
  const detectedMs = Date.now() - killedAt;
  t.log(`SIGKILL detected after ${detectedMs} ms (deadline 2000 ms, poll 250 ms)`);
  // Not a speed assertion: a bound far above the design figure, to catch a detector that never fires.
  t.true(detectedMs < 8000);
  t.is(await observer.sumGauge('connections'), 1);
});

test('a member paused with SIGSTOP is declared dead, and on SIGCONT learns it was evicted and registers again', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  const observer = await RedisMembership.join({ redis, cluster, self: 'observer', address: '127.0.0.1:7001' });
  t.teardown(() => observer.close());
  const { child, lines } = await startMemberProcess(cluster, 'sleeper');
  t.teardown(() => killQuietly(child));
  await eventually(() => observer.members().includes('sleeper'), 5000, 'sleeper joined');

  const stoppedAt = Date.now();
  child.kill('SIGSTOP');
  await eventually(() => !observer.members().includes('sleeper'), 8000, 'sleeper declared dead');
  t.log(`SIGSTOP detected after ${Date.now() - stoppedAt} ms`);

  child.kill('SIGCONT');
  await eventually(() => lines.includes('evicted'), 5000, 'sleeper told it was evicted');
  await eventually(() => observer.members().includes('sleeper'), 5000, 'sleeper registered again');
  t.pass();
});

test('pub/sub is only a hint: members are still found by polling when announcements are missed', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  const a = await RedisMembership.join({ redis, cluster, self: 'a', address: 'x:1', pollMs: 100 });
  t.teardown(() => a.close());
  // A member written straight into Redis, with no announcement, as if the PUBLISH was lost.
  const now = Number((await redis.time())[0]) * 1000;
  await redis.zadd(a.keys.members, now + 60_000, 'silent');
  await redis.hset(a.keys.node('silent'), 'address', 'y:2', 'started', '0');
  await eventually(() => a.members().includes('silent'), 3000, 'silent member found by polling');
  t.is(a.info('silent')?.address, 'y:2');
  await sleep(10);
});

test('configuration that would kill nodes on one late heartbeat is refused', async (t) => {
  const { redis, cluster } = await clusterFixture(t);
  await t.throwsAsync(RedisMembership.join({ redis, cluster, self: 'a', address: 'x:1', heartbeatMs: 500, deadAfterMs: 600 }), { message: /at least twice/ });
});
