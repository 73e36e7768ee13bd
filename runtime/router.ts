// The main thread's router: gathers messages per shard and flushes each shard's batch once per
// tick (or when it is large), keeps the main thread's pending asks, and applies backpressure
// from the shared per-shard queue counters.

import type { MessagePort } from 'node:worker_threads';
import type { MessageSender } from './actor-ref.js';
import { MAIN_ORIGIN, MSG_STRIDE, NO_REPLY, OWNED_HERE, REPLY_STRIDE, type Batch } from './envelope.js';
import { NotRunning, Overloaded, toWireError } from './errors.js';
import { PendingAsks } from './pending-asks.js';
import { sendingSpan, tracedAsk, tracedTell, tracingOn } from './tracing.js';

/** A shard's batch is sent at once when it reaches this many messages, without waiting for the tick. */
const FLUSH_AT = 4096 * MSG_STRIDE;

export interface RouterOptions {
  shards: MessagePort[];
  queued: Int32Array;
  queueCapacity: number;
  askTimeoutMs: number;
  /** The shared per-partition ownership table; partitions not OWNED_HERE take the remote path. */
  ownership: Int32Array;
}

/**
 * Where messages go whose partition this node does not serve now (the cluster's forwarding and
 * buffering). Asks proxied for other nodes use negative ask ids; their replies come back here.
 */
export interface RemotePath {
  route(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void;
  replyToRemote(proxyAskId: number, ok: boolean, value: unknown): void;
}

export class Router implements MessageSender {
  readonly #ports: MessagePort[];
  readonly #queued: Int32Array;
  readonly #capacity: number;
  readonly #askTimeoutMs: number;
  readonly #count: number;
  readonly #ownership: Int32Array;
  #remote: RemotePath | undefined;
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
    this.#ownership = o.ownership;
    this.#out = o.shards.map(() => []);
    this.#replies = o.shards.map(() => []);
    for (const port of o.shards) port.on('message', (frame: Batch) => this.#receive(frame));
  }

  /** Plugs the cluster in: from now on partitions not OWNED_HERE are its to route. */
  setRemotePath(remote: RemotePath): void {
    this.#remote = remote;
  }

  tell(id: string, partition: number, handler: string, message: unknown): void {
    if (!this.#accepting) throw new NotRunning('this node');
    if (tracingOn) {
      const span = sendingSpan();
      if (span !== undefined) message = tracedTell(message, span);
    }
    if (this.#ownership[partition] !== OWNED_HERE && this.#remote !== undefined) {
      this.#remote.route(id, partition, handler, message, NO_REPLY, 0);
      return;
    }
    this.#enqueue(partition % this.#count, id, partition, handler, message, NO_REPLY, 0);
  }

  ask(id: string, partition: number, handler: string, message: unknown, timeoutMs?: number): Promise<unknown> {
    if (!this.#accepting) return Promise.reject(new NotRunning('this node'));
    const remote = this.#ownership[partition] !== OWNED_HERE ? this.#remote : undefined;
    const shard = partition % this.#count;
    if (remote === undefined && this.#full(shard)) return Promise.reject(new Overloaded(`the queue of shard ${shard}`));
    const { id: askId, promise } = this.pending.create(id, handler, timeoutMs ?? this.#askTimeoutMs);
    if (tracingOn) {
      const span = sendingSpan();
      if (span !== undefined) message = tracedAsk(id, partition, handler, message, span, promise);
    }
    try {
      if (remote !== undefined) remote.route(id, partition, handler, message, MAIN_ORIGIN, askId);
      else this.#enqueue(shard, id, partition, handler, message, MAIN_ORIGIN, askId);
    } catch (err) {
      this.pending.fail(askId, err);
    }
    return promise;
  }

  /** For the remote path: a message for a partition served here. Throws Overloaded when full. */
  deliverLocal(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    this.#enqueue(partition % this.#count, id, partition, handler, payload, origin, askId);
  }

  /** For the remote path: a reply to a shard's ask that went to another node. */
  replyToShard(shard: number, askId: number, ok: boolean, value: unknown): void {
    this.#replies[shard]!.push(askId, ok ? 1 : 0, value);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushAll);
    }
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
      for (let i = 0; i < r.length; i += REPLY_STRIDE) {
        const askId = r[i] as number;
        if (askId < 0) this.#remote?.replyToRemote(askId, r[i + 1] === 1, r[i + 2]);
        else this.pending.settle(askId, r[i + 1] === 1, r[i + 2]);
      }
    }
    const m = frame.m;
    if (m !== undefined) {
      // Shards send the main thread the messages of partitions they do not serve (any more).
      for (let i = 0; i < m.length; i += MSG_STRIDE) {
        const partition = m[i + 1] as number;
        if (this.#ownership[partition] !== OWNED_HERE && this.#remote !== undefined) {
          this.#routeRemoteSafely(m[i] as string, partition, m[i + 2] as string, m[i + 3], m[i + 4] as number, m[i + 5] as number);
        } else {
          this.#out[partition % this.#count]!.push(m[i], partition, m[i + 2], m[i + 3], m[i + 4], m[i + 5]);
        }
      }
      this.flush();
    }
  }

  #routeRemoteSafely(id: string, partition: number, handler: string, payload: unknown, origin: number, askId: number): void {
    try {
      this.#remote!.route(id, partition, handler, payload, origin, askId);
    } catch (err) {
      if (origin === NO_REPLY) return;
      const wire = toWireError(err);
      if (origin === MAIN_ORIGIN) this.pending.settle(askId, false, wire);
      else this.replyToShard(origin - 2, askId, false, wire);
    }
  }

  /** Refuses new messages from now on. */
  close(): void {
    this.#accepting = false;
    this.flush();
  }
}
