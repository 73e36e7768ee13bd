// The BullMQ event-batch queue against the machine's Redis (a queue name of its own per test): the
// door queues requests that arrive together as one job, every batch reaches the processor once, and a
// job is retried as a whole, its second delivery marked as such.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { BullmqEventQueue } from '../../../gateways/events/bullmq-queue.js';
import type { Delivery, QueuedBatch } from '../../../gateways/events/queue.js';
import { REDIS_URL, until } from './helpers.js';

function open(t: import('ava').ExecutionContext) {
  const name = `events-queue-test-${randomBytes(4).toString('hex')}`;
  const queue = new BullmqEventQueue({ redis: REDIS_URL, name, retry: { attempts: 3, backoffMs: 10 }, lockDurationMs: 5000 });
  t.teardown(async () => {
    await queue.close();
    await BullmqEventQueue.destroy(REDIS_URL, name);
  });
  return queue;
}

const batch = (i: number, count = 3): QueuedBatch => ({ receivedAt: Date.now(), count, events: JSON.stringify({ request: i }) });

test('requests queued together share jobs; each batch is processed once and the depth returns to 0', async (t) => {
  const queue = open(t);
  await Promise.all(Array.from({ length: 40 }, (_, i) => queue.enqueue(batch(i))));
  t.is(await queue.depth(), 120);
  const seen: number[] = [];
  const jobs = new Set<string>();
  queue.start(async (parts, delivery) => {
    jobs.add(delivery.batchId);
    for (const p of parts) seen.push((JSON.parse(p.events) as { request: number }).request);
  }, 4);
  await until('all processed', async () => seen.length >= 40);
  t.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i),
  );
  t.true(jobs.size < 40, `${jobs.size} jobs for 40 requests`);
  t.true(await queue.drained(5000));
  await until('depth back to 0', async () => (await queue.depth()) === 0);
});

test('a job that fails is delivered again whole, marked as redelivered', async (t) => {
  const queue = open(t);
  // Two adds go at once; the three requests behind them wait and share the third job.
  await Promise.all([1, 2, 3, 4, 5].map((i) => queue.enqueue(batch(i))));
  const deliveries: { requests: number[]; delivery: Delivery }[] = [];
  queue.start(async (parts, delivery) => {
    deliveries.push({ requests: parts.map((p) => (JSON.parse(p.events) as { request: number }).request), delivery });
    if (parts.length > 1 && delivery.attempt === 1) throw new Error('transient (test)');
  }, 1);
  await until('all delivered', async () => deliveries.length >= 4 && (await queue.drained(100)));
  const shared = deliveries.filter((d) => d.requests.includes(4));
  t.is(shared.length, 2, 'the failed job came back');
  const [first, second] = shared;
  t.deepEqual(first!.requests, [3, 4, 5]);
  t.deepEqual(second!.requests, [3, 4, 5], 'whole');
  t.false(first!.delivery.redelivered);
  t.true(second!.delivery.redelivered);
  t.is(second!.delivery.attempt, 2);
  t.is(second!.delivery.batchId, first!.delivery.batchId);
  t.is(deliveries.length, 4);
});

test('a job processed twice (its lock lapsed, another worker took it) leaves the depth counted once', async (t) => {
  const name = `events-queue-test-${randomBytes(4).toString('hex')}`;
  const a = new BullmqEventQueue({ redis: REDIS_URL, name, retry: { attempts: 3, backoffMs: 10 }, lockDurationMs: 1000 });
  const b = new BullmqEventQueue({ redis: REDIS_URL, name, retry: { attempts: 3, backoffMs: 10 }, lockDurationMs: 1000 });
  const redis = new Redis(REDIS_URL);
  t.teardown(async () => {
    redis.disconnect();
    await a.close();
    await b.close();
    await BullmqEventQueue.destroy(REDIS_URL, name);
  });
  await a.enqueue(batch(1, 3));
  const depthKey = `bull:${name}:troupe-event-depth`;
  t.is(await redis.get(depthKey), '3');

  // Worker a takes the job and hangs; its lock is taken away, as when its node is cut from Redis.
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  let jobId: string | undefined;
  a.start(async (_parts, delivery) => {
    jobId = delivery.batchId;
    await hung;
  }, 1);
  await until('a took the job', async () => jobId !== undefined);
  await redis.del(`bull:${name}:${jobId}:lock`);
  // The stalled-job check gives it to worker b, which finishes it.
  let bDone = false;
  b.start(async () => {
    bDone = true;
  }, 1);
  await until('b processed the job again', async () => bDone && (await redis.get(depthKey)) === '0');
  // Then a, resumed, finishes too: the depth must not count the job's events off twice.
  release();
  await new Promise((r) => setTimeout(r, 500));
  t.is(await redis.get(depthKey), '0');
});
