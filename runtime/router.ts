// The main thread's router: gathers messages per shard and flushes each shard's batch once per
// tick (or when it is large), keeps the main thread's pending asks, and applies backpressure
// from the shared per-shard queue counters.

import type { MessagePort } from 'node:worker_threads';
import type { MessageSender } from './actor-ref.js';
import { MAIN_ORIGIN, MSG_STRIDE, NO_REPLY, REPLY_STRIDE, type Batch } from './envelope.js';
import { NotRunning, Overloaded } from './errors.js';
import { PendingAsks } from './pending-asks.js';

/** A shard's batch is sent at once when it reaches this many messages, without waiting for the tick. */
const FLUSH_AT = 4096 * MSG_STRIDE;

export interface RouterOptions {
  shards: MessagePort[];
  queued: Int32Array;
  queueCapacity: number;
  askTimeoutMs: number;
}

export class Router implements MessageSender {
  readonly #ports: MessagePort[];
  readonly #queued: Int32Array;
  readonly #capacity: number;
  readonly #askTimeoutMs: number;
  readonly #count: number;
  #out: unknown[][];
  #replies: unknown[][];
  #flushScheduled = false;
  #accepting = true;
  readonly pending = new PendingAsks();
  readonly #flushAll = (): void => {
    this.#flushScheduled = false;
    this.flush();
  };

  constructor(o: RouterOptions) {
    this.#ports = o.shards;
    this.#queued = o.queued;
    this.#capacity = o.queueCapacity;
    this.#askTimeoutMs = o.askTimeoutMs;
    this.#count = o.shards.length;
    this.#out = o.shards.map(() => []);
    this.#replies = o.shards.map(() => []);
    for (const port of o.shards) port.on('message', (frame: Batch) => this.#receive(frame));
  }

  tell(id: string, partition: number, handler: string, message: unknown): void {
    if (!this.#accepting) throw new NotRunning('this node');
    this.#enqueue(partition % this.#count, id, partition, handler, message, NO_REPLY, 0);
  }

  ask(id: string, partition: number, handler: string, message: unknown, timeoutMs?: number): Promise<unknown> {
    if (!this.#accepting) return Promise.reject(new NotRunning('this node'));
    const shard = partition % this.#count;
    if (this.#full(shard)) return Promise.reject(new Overloaded(`the queue of shard ${shard}`));
    const { id: askId, promise } = this.pending.create(id, handler, timeoutMs ?? this.#askTimeoutMs);
    this.#enqueue(shard, id, partition, handler, message, MAIN_ORIGIN, askId);
    return promise;
  }

  #full(shard: number): boolean {
    return Atomics.load(this.#queued, shard) + this.#out[shard]!.length / MSG_STRIDE >= this.#capacity;
  }

  #enqueue(shard: number, id: string, partition: number, handler: string, message: unknown, origin: number, askId: number): void {
    const out = this.#out[shard]!;
    if (Atomics.load(this.#queued, shard) + out.length / MSG_STRIDE >= this.#capacity) throw new Overloaded(`the queue of shard ${shard}`);
    out.push(id, partition, handler, message, origin, askId);
    if (out.length >= FLUSH_AT) this.#flushShard(shard);
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushAll);
    }
  }

  #flushShard(shard: number): void {
    const m = this.#out[shard]!;
    const r = this.#replies[shard]!;
    if (m.length === 0 && r.length === 0) return;
    const batch: Batch = {};
    if (m.length > 0) {
      Atomics.add(this.#queued, shard, m.length / MSG_STRIDE);
      batch.m = m;
      this.#out[shard] = [];
    }
    if (r.length > 0) {
      batch.r = r;
      this.#replies[shard] = [];
    }
    this.#ports[shard]!.postMessage(batch);
  }

  /** Sends every gathered batch now. */
  flush(): void {
    for (let s = 0; s < this.#count; s++) this.#flushShard(s);
  }

  #receive(frame: Batch): void {
    const r = frame.r;
    if (r !== undefined) {
      for (let i = 0; i < r.length; i += REPLY_STRIDE) this.pending.settle(r[i] as number, r[i + 1] === 1, r[i + 2]);
    }
    const m = frame.m;
    if (m !== undefined) {
      // On one node every partition is owned here, so shards only send the main thread messages
      // when ownership moved under them; put them back on the path to their shard.
      for (let i = 0; i < m.length; i += MSG_STRIDE) {
        const partition = m[i + 1] as number;
        this.#out[partition % this.#count]!.push(m[i], partition, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
      }
      this.flush();
    }
  }

  /** Refuses new messages from now on. */
  close(): void {
    this.#accepting = false;
    this.flush();
  }
}
