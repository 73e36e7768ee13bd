// The durable counter of a chaos run (`chaos-counter/<key>`): each increment is an ask that names its
// sequence number, and the counter keeps every number it applied, so the verdict can tell an
// increment lost from one applied twice. Each activation draws an id of its own and stamps it, with
// the shard's clock, on every reply: two activations of one counter whose replies interleave in
// time were live at once (a double activation), seen from the activations themselves.

import { randomBytes } from 'node:crypto';
import { defineActor } from '../../runtime/index.js';

export interface CounterState {
  n: number;
  /** The sequence numbers applied, in order. */
  applied: number[];
}

export interface IncrementReply {
  /** The count after this increment. */
  n: number;
  /** The id of the activation that applied it. */
  activation: string;
  /** The shard's clock at the turn (ms since the epoch). */
  at: number;
}

/** This worker's live activation id per counter key; a new activation of a key draws a new one. */
const activations = new Map<string, string>();

export default defineActor({
  type: 'chaos-counter',
  storage: 'durable',
  snapshotCodec: 'json',
  idleTimeoutMs: 10 * 60_000,
  initialState: (): CounterState => ({ n: 0, applied: [] }),
  activate(ctx) {
    activations.set(ctx.key, randomBytes(6).toString('hex'));
  },
  handlers: {
    add(ctx, seq: number): IncrementReply {
      if (!Number.isSafeInteger(seq) || seq < 0) throw new TypeError(`increment sequence number must be a whole number >= 0, got ${String(seq)}`);
      ctx.state = { n: ctx.state.n + 1, applied: [...ctx.state.applied, seq] };
      return { n: ctx.state.n, activation: activations.get(ctx.key) ?? 'unknown', at: ctx.now() };
    },
    read(ctx): CounterState {
      return ctx.state;
    },
  },
});
