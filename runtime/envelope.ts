// The batch frame that carries actor messages and replies between threads: flat arrays, one
// postMessage per destination per tick. Flat arrays of primitives are what structured clone copies
// fastest; no object is allocated per message.

/** Values per message in `Batch.m`: actor id, partition, handler, payload, origin, ask id. */
export const MSG_STRIDE = 6;
/** Values per reply in `Batch.r`: ask id, ok (1) or failed (0), value or WireError. */
export const REPLY_STRIDE = 3;

/** Origin of a message: who gets the reply. 0 = nobody (a tell), 1 = the main thread, 2 + k = shard k. */
export const NO_REPLY = 0;
export const MAIN_ORIGIN = 1;
export function shardOrigin(shard: number): number {
  return 2 + shard;
}

/** Outbox slot of a destination: 0 = main thread, 1 + k = shard k. */
export function destOfOrigin(origin: number): number {
  return origin - 1;
}

export interface Batch {
  /** Messages, MSG_STRIDE values each. */
  m?: unknown[];
  /** Replies, REPLY_STRIDE values each. */
  r?: unknown[];
}

/** Control frames on the data port, ordered with the batches. */
export interface StopFrame {
  stop: true;
}
export interface StoppedFrame {
  stopped: true;
}

/** Ownership table values (SharedArrayBuffer, one Int32 per partition). */
export const OWNED_HERE = 1;
export const OWNED_ELSEWHERE = 0;
